import json

import numpy as np

from shared.io import atomic_write_text
from shared.run import Run, content_hash, publish


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


def test_publish_copies_results_and_figures(tmp_path):
    run_dir, paper_dir = tmp_path / "run", tmp_path / "paper"
    atomic_write_text(run_dir / "results.json", "{}")
    atomic_write_text(run_dir / "plot.png", "png")
    dest = publish(run_dir, paper_dir, "mini", ["plot.png"])
    assert sorted(p.name for p in dest.iterdir()) == ["plot.png", "results.json"]


def test_lookup_reads_only_what_was_computed(tmp_path):
    run = Run("p", "mini", {}, [0], root=tmp_path)
    assert run.lookup("s", {"d": 1}) is None
    run.cached("s", {"d": 1}, lambda: {"acc": 0.5})
    assert run.lookup("s", {"d": 1}) == {"acc": 0.5} and run.lookup("s", {"d": 2}) is None
