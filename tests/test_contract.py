"""The contract every paper keeps, checked for each folder in papers/ (a new paper is covered at once).

Each paper: paper.yaml with its metadata and targets; configs/{smoke,mini,medium,full}.yaml that
load into its Config; requirements pinned as in requirements/constraints.txt; a README whose
results section equals what its committed results render to; imports only from shared/ and
itself; and a smoke run that writes a schema-valid results.json.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from papers import REQUIRED_CONFIGS, REQUIRED_FIELDS, UnknownPaperError, get_paper, paper_names
from papers.status import STATUS_BEGIN, STATUS_END, render_status_table
from shared.config import load_config
from shared.report import BEGIN, END, render_paper_results
from shared.results import load

ROOT = Path(__file__).resolve().parents[1]
PAPERS = paper_names()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def between(text: str, begin: str, end: str) -> str:
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def test_there_is_at_least_one_paper():
    assert "dim_reduction" in PAPERS


def test_unknown_paper_lists_valid_ones():
    with pytest.raises(UnknownPaperError, match="unknown paper 'nope'; valid: .*dim_reduction"):
        get_paper("nope")


@pytest.mark.parametrize("name", PAPERS)
def test_paper_yaml(name):
    meta = get_paper(name).meta
    missing = [f for f in REQUIRED_FIELDS if f not in meta]
    assert not missing, f"{name}/paper.yaml lacks {missing}"
    assert meta["name"] == name
    for t in meta["targets"]:
        assert {"name", "description", "source", "comparison"} <= set(t), t
        assert t.get("paper") is not None or t.get("threshold") is not None, t


@pytest.mark.parametrize("name", PAPERS)
def test_every_config_loads(name):
    paper_dir = ROOT / "papers" / name
    config_cls = importlib.import_module(f"papers.{name}.config").Config
    scales = {p.stem for p in (paper_dir / "configs").glob("*.yaml")}
    assert set(REQUIRED_CONFIGS) <= scales
    for scale in sorted(scales):
        cfg = load_config(config_cls, paper_dir / "configs" / f"{scale}.yaml")
        assert cfg.scale == scale, f"{name}/configs/{scale}.yaml says scale {cfg.scale!r}"


@pytest.mark.parametrize("name", PAPERS)
def test_requirements_are_pinned_as_the_constraints(name):
    pins = constraints()
    for line in (ROOT / "papers" / name / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        assert "==" in line, f"{name}/requirements.txt: {line!r} is not pinned with =="
        pkg, version = line.split("==")
        key = pkg.lower().replace("_", "-")
        assert pins.get(key) == version, f"{name}: {line} disagrees with constraints.txt ({pins.get(key)})"


@pytest.mark.parametrize("name", PAPERS)
def test_imports_only_shared_and_itself(name):
    bad = []
    for path in (ROOT / "papers" / name).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            for mod in mods:
                parts = mod.split(".")
                if parts[0] == "papers" and (len(parts) < 2 or parts[1] != name) and mod != "papers.status":
                    bad.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not bad, bad


@pytest.mark.parametrize("name", PAPERS)
def test_readme_matches_committed_results(name):
    paper_dir = ROOT / "papers" / name
    text = (paper_dir / "README.md").read_text()
    assert between(text, BEGIN, END) == render_paper_results(paper_dir), (
        f"papers/{name}/README.md is out of date: run `python -m papers readme`"
    )
    for results_file in (paper_dir / "results").glob("*/results.json"):
        res = load(results_file)
        assert res.paper == name and res.scale == results_file.parent.name
        for fig in res.figures:
            assert (results_file.parent / fig).is_file(), f"{results_file.parent}/{fig} is missing"


def test_top_level_status_table_is_current():
    from papers import all_papers

    text = (ROOT / "README.md").read_text()
    assert between(text, STATUS_BEGIN, STATUS_END) == render_status_table(all_papers())


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPERS)
def test_smoke_scale_runs_and_writes_valid_results(name, tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", f"papers.{name}.reproduce", "--scale", "smoke", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = list(tmp_path.glob(f"{name}/smoke/*/results.json"))
    assert len(found) == 1
    res = load(found[0])
    assert res.scale == "smoke" and res.seeds and res.wall_time_s
    for fig in res.figures:
        assert (found[0].parent / fig).stat().st_size > 0


def test_readme_commands_exist_in_makefile():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"`make (\w+)", readme):
        assert re.search(rf"^{target}:", makefile, re.M), f"README mentions make {target}, the Makefile lacks it"


def test_make_rejects_unknown_paper():
    proc = subprocess.run(["make", "-s", "check-paper", "PAPER=nope"], cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "unknown PAPER 'nope'; valid:" in out and "dim_reduction" in out


def test_papers_cli_list_and_path():
    out = subprocess.run([sys.executable, "-m", "papers", "list"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "dim_reduction" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "papers", "path", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "valid:" in bad.stderr
