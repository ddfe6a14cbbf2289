import json

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


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    assert main(["--scale", "mini", "--dry-run", "--seeds", "3,4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dataset: fashion_mnist" in out and "seeds: [3, 4]" in out and not any(tmp_path.iterdir())


def test_same_seed_same_numbers(tmp_path):
    """Two fresh smoke runs (every method, the AEs included) give identical results on CPU."""
    out = []
    for name in ("a", "b"):
        assert main(["--scale", "smoke", "--out", str(tmp_path / name)]) == 0
        out.append(results_of(tmp_path / name))
    for key in ("accuracy", "k"):
        assert out[0]["tables"][key] == out[1]["tables"][key]
    table = out[0]["tables"]["accuracy"]
    assert table["columns"] == ["d", "PCA", "Isomap", "DAE", "VAE"]  # every method ran
    assert table["rows"][0][0] == 2 and "–" not in table["rows"][0]
