import json
import time

import numpy as np
import pytest

from shared.io import atomic_write_text
from shared.results import Results, Target, load
from shared.run import PublishError, Run, content_hash, publish, publish_refusals


def test_content_hash_is_stable_and_order_free():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_run_folder_contents_and_default_id(tmp_path):
    run = Run("p", "mini", {"x": 1}, [0, 1], root=tmp_path)
    assert run.dir == tmp_path / "p" / "mini" / content_hash({"config": {"x": 1}, "seeds": [0, 1]})
    for name in ("config.yaml", "seeds.json", "environment.json"):
        assert (run.dir / name).is_file()
    env = json.loads((run.dir / "environment.json").read_text())
    assert env["cpu_count"] >= 1 and "numpy" in env["packages"]
    with run.stage("fit"):
        pass
    run.log_metrics(step=1, loss=0.5)
    assert "fit" in json.loads((run.dir / "wall_time_s.json").read_text())
    assert json.loads((run.dir / "metrics.jsonl").read_text().splitlines()[0])["loss"] == 0.5


def test_cached_computes_once_and_resumes_in_a_new_run(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"z": np.arange(6.0).reshape(2, 3), "acc": 0.75, "k": 7}

    first = Run("p", "mini", {"x": 1}, [0], root=tmp_path).cached("pca", {"d": 3}, compute)
    again = Run("p", "mini", {"x": 1}, [0], root=tmp_path).cached("pca", {"d": 3}, compute)
    assert len(calls) == 1
    assert again["acc"] == 0.75 and isinstance(again["k"], int) and np.array_equal(again["z"], first["z"])
    Run("p", "mini", {"x": 1}, [0], root=tmp_path).cached("pca", {"d": 4}, compute)
    assert len(calls) == 2
    fresh = Run("p", "mini", {"x": 1}, [0], root=tmp_path, fresh=True)
    fresh.cached("pca", {"d": 3}, compute)
    assert len(calls) == 3


def test_failed_compute_leaves_no_cache_entry(tmp_path):
    run = Run("p", "mini", {}, [0], root=tmp_path)

    def boom():
        raise RuntimeError("interrupted")

    try:
        run.cached("s", 1, boom)
    except RuntimeError:
        pass
    assert not run.cache_dir.exists() or not any(run.cache_dir.iterdir())


def _results(commit: str = "abc123", measured: tuple[str, ...] = ("a", "b"), degraded=()) -> Results:
    targets = [
        Target(
            name=n,
            description="d",
            source="s",
            paper=1.0,
            tolerance=0.1,
            **({"mean": 1.0, "n": 1} if n in measured else {}),
        ).judge()
        for n in ("a", "b")
    ]
    return Results("p", "mini", "cmd", [0], "m", "now", commit, targets, degraded=list(degraded))


def test_publish_copies_results_and_figures(tmp_path):
    run_dir, paper_dir = tmp_path / "run", tmp_path / "paper"
    _results().write(run_dir / "results.json")
    atomic_write_text(run_dir / "plot.png", "png")
    dest = publish(run_dir, paper_dir, "mini", ["plot.png"])
    assert sorted(p.name for p in dest.iterdir()) == ["plot.png", "results.json"]
    assert load(dest / "results.json").to_json() == _results().to_json()


@pytest.mark.parametrize(
    "run, why",
    [
        (_results(degraded=["fell back to the shipped traces"]), "degraded: fell back to the shipped traces"),
        (_results(commit="abc123+dirty"), "not a commit"),
        (_results(commit="unknown"), "not a commit"),
        (_results(measured=("a",)), "1 target\\(s\\) the committed results measured are not run here: b"),
    ],
)
def test_publish_refuses_a_degraded_run_unless_forced(tmp_path, run, why):
    run_dir, paper_dir = tmp_path / "run", tmp_path / "paper"
    committed = _results(commit="0ld")
    committed.write(paper_dir / "results" / "mini" / "results.json")
    before = (paper_dir / "results" / "mini" / "results.json").read_bytes()
    run.write(run_dir / "results.json")
    assert publish_refusals(run, committed)
    with pytest.raises(PublishError, match=why):
        publish(run_dir, paper_dir, "mini", [])
    assert (paper_dir / "results" / "mini" / "results.json").read_bytes() == before  # nothing copied
    publish(run_dir, paper_dir, "mini", [], force=True)
    assert load(paper_dir / "results" / "mini" / "results.json").to_json() == run.to_json()


def test_publish_accepts_a_clean_run_that_measures_more(tmp_path):
    assert publish_refusals(_results(), _results(measured=("a",))) == []
    assert publish_refusals(_results(), None) == []


@pytest.mark.parametrize("kind", ["npz", "json"])
def test_a_corrupt_cache_file_is_named_removed_and_recomputed(tmp_path, caplog, kind):
    run = Run("p", "mini", {}, [0], root=tmp_path)
    store = run.cached if kind == "npz" else run.cached_json
    store("s", {"k": 1}, lambda: {"acc": 0.5})
    (path,) = run.cache_dir.glob(f"s-*.{kind}")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as by a full disk
    calls = []
    again = store("s", {"k": 1}, lambda: calls.append(1) or {"acc": 0.25})
    assert calls == [1] and again == {"acc": 0.25}
    assert any(str(path) in r.getMessage() and "corrupt cache" in r.getMessage() for r in caplog.records)
    assert store("s", {"k": 1}, lambda: {"acc": 0.0}) == {"acc": 0.25}  # the recomputed file reads back


def test_lookup_reads_only_what_was_computed(tmp_path):
    run = Run("p", "mini", {}, [0], root=tmp_path)
    assert run.lookup("s", {"d": 1}) is None
    run.cached("s", {"d": 1}, lambda: {"acc": 0.5})
    assert run.lookup("s", {"d": 1}) == {"acc": 0.5} and run.lookup("s", {"d": 2}) is None


def test_a_resumed_stage_reports_the_time_its_cached_work_took(tmp_path):
    def slow() -> dict:
        time.sleep(0.3)
        return {"acc": 0.5}

    first = Run("p", "mini", {}, [0], root=tmp_path)
    with first.stage("fit"):
        first.cached("fit", {"k": 1}, slow)
        first.cached_json("fit", {"k": 2}, slow)
    assert first.wall_time_s["fit"] >= 0.6
    again = Run("p", "mini", {}, [0], root=tmp_path)  # a rerun: both entries come from the cache
    start = time.perf_counter()
    with again.stage("fit"):
        again.cached("fit", {"k": 1}, slow)
        again.cached_json("fit", {"k": 2}, slow)
    assert time.perf_counter() - start < 0.3  # nothing was recomputed ...
    assert again.wall_time_s["fit"] >= 0.6  # ... yet the stage reports what it cost
    assert abs(again.wall_time_s["fit"] - first.wall_time_s["fit"]) < 0.1
