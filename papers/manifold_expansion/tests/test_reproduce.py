"""The command line end to end on a tiny smoke run: determinism, resume, dry run, bad input."""

import json

import pytest
from scipy import stats

from papers.manifold_expansion.reproduce import main

TINY = [
    "--scale",
    "smoke",
    "--set",
    "models=[{name: mlp, kind: mlp, widths: [8, 8], base_epochs: 2, continue_epochs: 1, batch_size: 128}]",
]


def results_of(out):
    (path,) = out.glob("manifold_expansion/smoke/*/results.json")
    return json.loads(path.read_text())


def test_same_seed_same_numbers_and_report_only_rerenders_the_cache(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*TINY, "--out", str(a)]) == 0
    assert main([*TINY, "--out", str(b)]) == 0
    ra, rb = results_of(a), results_of(b)
    for name in ("correlation", "gains"):  # the cost table holds wall times, which vary
        assert ra["tables"][name] == rb["tables"][name]
    assert ra["targets"] == rb["targets"]
    gains = ra["tables"]["gains"]["rows"]
    assert [r[1] for r in gains] == sorted(r[1] for r in gains) and len(gains) == 5
    assert ra["tables"]["correlation"]["rows"][0][0] == "manifold (simplex log-volume)"
    # the committed per-point records suffice to recompute a target (independently, with scipy)
    rec = ra["tables"]["records"]
    col = {c: i for i, c in enumerate(rec["columns"])}
    rows = rec["rows"]
    assert len(rows) == 5 and all(
        r[col["gain"]] == pytest.approx(r[col["accuracy"]] - r[col["base_accuracy"]]) for r in rows
    )
    rho = stats.spearmanr([r[col["manifold"]] for r in rows], [r[col["gain"]] for r in rows]).statistic
    (target,) = [t for t in ra["targets"] if t["name"] == "manifold_spearman"]
    assert target["mean"] == pytest.approx(rho) and target["n"] == 1
    assert main([*TINY, "--out", str(a), "--stages", "report"]) == 0  # nothing recomputed, same numbers
    assert results_of(a)["tables"] == ra["tables"]  # the cost table too: its times are the cached ones


def test_dry_run_validates_every_scale_without_running(tmp_path, capsys):
    for scale in ("smoke", "mini", "medium", "full"):
        assert main(["--scale", scale, "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dataset: cifar10" in out and "kind: resnet" in out and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("simplex.vertizes=2", "unknown key(s) 'vertizes'; valid keys: batch_size, bisect_steps"),
        ("simplex.vertices=0", "simplex.vertices: 0 is out of range; valid: an integer >= 1"),
        ("analysis.ci=1.0", "analysis.ci: 1.0 is out of range; valid: a finite number (0, 1)"),
        ("analysis.bootstrap=50", "analysis.bootstrap: 50 resamples; valid: at least 100"),
        ("expansions=[{op: wider, init: net2net, layer: -1, units: 4}]", "expansions[0].layer: -1 is out of range"),
        ("expansions=[{op: deeper, init: zero, layer: 0}]", "a zero layer cuts a plain network"),
        (
            "expansions=[{op: wider, init: net2net, layer: 0}, {op: deeper, init: random, layer: 0}, "
            "{op: deeper, init: net2net, layer: 0}]",
            "give exactly one of units (new units) or match",
        ),
        (
            "expansions=[{op: deeper, init: net2net, layer: 5}, {op: deeper, init: random, layer: 0}, "
            "{op: deeper, init: net2net, layer: 0}]",
            "layer 5 does not exist in model mlp (2 hidden layers/blocks); valid: 0..1",
        ),
        ("expansions=[{op: deeper, init: net2net, layer: 0}]", "need at least 3 for a rank correlation"),
        ("models=[{name: m, kind: vit, widths: [4], base_epochs: 1, continue_epochs: 1}]", "'vit' is not valid"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, capsys, override, message):
    assert main(["--scale", "smoke", "--out", str(tmp_path), "--set", override]) == 2
    assert message in capsys.readouterr().err


def test_missing_data_names_how_to_get_it(tmp_path, capsys):
    args = ["--scale", "smoke", "--out", str(tmp_path), "--set", "data.dataset=fashion_mnist"]
    assert main([*args, "--set", "data.data_dir=/nope"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
