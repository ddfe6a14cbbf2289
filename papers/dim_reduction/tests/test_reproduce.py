import json
import logging
import re
import struct

import numpy as np

from papers.dim_reduction.reproduce import main


def results_of(out):
    (path,) = out.glob("dim_reduction/smoke/*/results.json")
    return json.loads(path.read_text())


def test_stages_resume_and_report_renders_the_cache(tmp_path):
    base = ["--scale", "smoke", "--out", str(tmp_path), "--set", "methods=[pca, isomap]"]
    assert main([*base, "--stages", "pca"]) == 0
    first = results_of(tmp_path)
    pca = first["tables"]["accuracy"]["rows"]
    assert [r[0] for r in pca] == [2, 5] and "Isomap" not in " ".join(first["tables"]["accuracy"]["columns"])
    # report only: nothing is computed, the cached PCA units come back unchanged
    assert main([*base, "--stages", "report"]) == 0
    again = results_of(tmp_path)
    assert again["tables"]["accuracy"] == first["tables"]["accuracy"]
    assert again["wall_time_s"]["pca/seed0"] == first["wall_time_s"]["pca/seed0"]  # the original stage time


def test_bad_input_is_one_clear_error(tmp_path, capsys):
    assert main(["--scale", "smoke", "--out", str(tmp_path), "--set", "knn.foldz=3"]) == 2
    assert "unknown key(s) 'foldz'; valid keys: backend, folds, n_iter, n_jobs" in capsys.readouterr().err
    assert main(["--scale", "smoke", "--out", str(tmp_path), "--set", "methods=[pca, tsne]"]) == 2
    assert "unknown ['tsne']; valid: pca, isomap, dae, vae" in capsys.readouterr().err
    missing = ["--set", "data.dataset=fashion_mnist", "--set", "data.data_dir=/nope"]
    assert main(["--scale", "smoke", "--out", str(tmp_path), *missing]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
    path.write_bytes(header + arr.astype(">u1").tobytes())


def test_bad_data_is_one_line_on_stderr_and_status_2(tmp_path, capsys, monkeypatch):
    """A label out of range in the data files: one line naming file, fault and valid range; no traceback."""
    # the log handler an earlier test installed writes to that test's (closed) stderr: start a fresh one
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [h for h in root.handlers if not getattr(h, "_shared", False)])
    data = tmp_path / "fmnist"
    data.mkdir()
    labels = np.arange(20) % 10
    labels[17] = 200
    for split, n, y in (("train", 20, labels), ("t10k", 10, np.arange(10))):
        write_idx(data / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(data / f"{split}-labels-idx1-ubyte", y)
    args = ["--scale", "smoke", "--out", str(tmp_path / "out"), "--set", "data.dataset=fashion_mnist"]
    assert main([*args, "--set", f"data.data_dir={data}"]) == 2
    err = capsys.readouterr().err
    logged = re.compile(r"\d\d:\d\d:\d\d (INFO|WARNING) ")  # the run's own log lines ("run folder ...")
    assert "Traceback" not in err and [line for line in err.splitlines() if not logged.match(line)] == [
        f"error: {data / 'train-labels-idx1-ubyte'}: labels must be integers in 0..9, "
        "found 200 at index 17 (1 out of range)"
    ]
    assert err.splitlines()[-1].startswith("error: ")  # the last word: nothing ran after it


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    assert main(["--scale", "mini", "--dry-run", "--seeds", "3,4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dataset: fashion_mnist" in out and "seeds: [3, 4]" in out and not any(tmp_path.iterdir())


def test_same_seed_same_numbers(tmp_path):
    """Two fresh smoke runs (every method, the AEs included) give identical results on CPU."""
    out = []
    caps = ["--set", "ae.dims=[2, 5]", "--set", "ae.max_epochs=2", "--set", "ae.epochs_by_dim={5: 3}"]
    for name in ("a", "b"):
        assert main(["--scale", "smoke", "--out", str(tmp_path / name), *caps]) == 0
        out.append(results_of(tmp_path / name))
    for key in ("accuracy", "k"):
        assert out[0]["tables"][key] == out[1]["tables"][key]
    table = out[0]["tables"]["accuracy"]
    assert table["columns"] == ["d", "PCA", "Isomap", "DAE", "VAE"]  # every method ran
    assert table["rows"][0][0] == 2 and "–" not in table["rows"][0]
    # the AEs capped at 2 epochs and at 3 for d=5 (ae.epochs_by_dim): each fit ran to its own cap
    assert "AE epochs trained (cap): DAE d=2: 2 (2), DAE d=5: 3 (3), VAE d=2: 2 (2), VAE d=5: 3 (3)" in out[0]["notes"]
