import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from papers.dim_reduction import data as datasets
from papers.dim_reduction.config import DataConfig, IsomapConfig
from papers.dim_reduction.reducers import fit_isomap
from papers.dim_reduction.targets import evaluate
from shared.data.errors import DatasetNotFoundError

PAPER_DIR = Path(__file__).resolve().parents[1]
REFERENCE_DIR = PAPER_DIR.parents[2] / "shared" / "data" / "dim_reduction_reference"
FASHION = Path(datasets.DEFAULT_DIRS["fashion_mnist"])


def test_digits_are_scaled_and_stratified():
    ds = datasets.load(DataConfig("digits"))
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    assert ds.n_features == 64 and ds.n_classes == 10
    x, y = datasets.stratified_subset(ds.x_train, ds.y_train, 500, seed=0)
    assert len(y) == 500 and np.bincount(y).min() >= 45


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.load(DataConfig("fashion_mnist", data_dir=str(tmp_path / "nope")))
    with pytest.raises(DatasetNotFoundError, match="MNIST IDX files"):
        datasets.load(DataConfig("mnist"))


@pytest.mark.data
@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST absent: apt-get install dataset-fashion-mnist")
def test_fashion_mnist_from_debian():
    ds = datasets.load(DataConfig("fashion_mnist"))
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10 and np.bincount(ds.y_test).tolist() == [1000] * 10


def read_author_csv(name: str) -> dict:
    rows = list(csv.reader((REFERENCE_DIR / name).open()))[1:]
    out = {"dims": [int(r[0]) for r in rows]}
    for j, method in enumerate(("pca", "isomap", "dae", "vae")):  # the four "knn Accuracy" columns, in order
        out[method] = {
            "accuracy": [float(r[3 + 4 * j]) for r in rows],
            "fit_time_s": [float(r[1 + 4 * j]) for r in rows],
            "accuracy_std": [float(r[4 + 4 * j]) for r in rows],
        }
    return out


@pytest.mark.data
@pytest.mark.skipif(not REFERENCE_DIR.is_dir(), reason="authors' CSVs absent (../shared/data/dim_reduction_reference)")
def test_paper_yaml_reference_equals_the_authors_csv():
    meta = yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())
    ref, csv_ref = meta["reference"]["fashion_mnist"], read_author_csv("fashion_dimension.csv")
    assert ref["dims"] == csv_ref["dims"]
    for method in ("pca", "isomap", "dae", "vae"):
        np.testing.assert_allclose(ref[method]["accuracy"], csv_ref[method]["accuracy"], atol=5e-6)
        np.testing.assert_allclose(ref[method]["fit_time_s"], csv_ref[method]["fit_time_s"], atol=5e-3)
        np.testing.assert_allclose(ref[method]["accuracy_std"], csv_ref[method]["accuracy_std"], atol=5e-6)
    for name, key in (("fashion", "fashion_mnist"), ("mnist", "mnist"), ("cifar", "cifar10")):
        value = float((REFERENCE_DIR / f"{name}_baseline.csv").read_text().strip().split(",")[1])
        assert meta["reference"]["baselines"][key] == value


def test_isomap_sliced_embedding_equals_a_smaller_fit():
    ds = datasets.load(DataConfig("digits"))
    cfg = IsomapConfig(fit_size=400, eigen_solver="dense")
    big, _, _ = fit_isomap(ds.x_train, ds.y_train, ds.x_test, 5, cfg, seed=0)
    small, _, _ = fit_isomap(ds.x_train, ds.y_train, ds.x_test, 2, cfg, seed=0)
    # eigenvectors up to sign; the embedding is float32 (as the input), hence float32 precision
    np.testing.assert_allclose(np.abs(big[:, :2]), np.abs(small), rtol=1e-5, atol=1e-6)


def test_targets_from_synthetic_curves():
    meta = yaml.safe_load((PAPER_DIR / "paper.yaml").read_text())
    ref = meta["reference"]["fashion_mnist"]
    pca = {
        d: {"accuracy": a + 0.001, "fit_s": 0.5, "k": 5}
        for d, a in zip(ref["dims"], ref["pca"]["accuracy"], strict=True)
    }
    curve = {
        "baseline": 0.852,
        "pca": pca,
        "dae": {1: {"accuracy": 0.6, "fit_s": 100.0, "k": 5}, 5: {"accuracy": 0.74, "fit_s": 80.0, "k": 5}},
    }
    got = {t.name: t for t in evaluate(meta["targets"], [curve, curve], ref)}
    assert got["raw_knn_baseline"].verdict == "reproduced" and got["raw_knn_baseline"].n == 2
    assert (
        got["pca_max_abs_deviation"].mean == pytest.approx(0.001)
        and got["pca_max_abs_deviation"].verdict == "reproduced"
    )
    # DAE at d=5 is 0.74 < PCA's 0.74816: the low-d claim fails, with the margin as the value
    assert got["dae_minus_pca_low_d"].mean == pytest.approx(0.74 - 0.74816)
    assert got["dae_minus_pca_low_d"].verdict == "not reproduced"
    assert got["ae_over_pca_fit_time"].mean == pytest.approx(160.0)
    assert got["vae_acc_d5"].verdict == "not run" and got["isomap_acc_d39"].verdict == "not run"


def test_hf_source_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="HF datasets could not load 'ylecun/mnist'.*MNIST IDX files"):
        datasets.load(DataConfig("mnist", source="hf", hf_id="ylecun/mnist"))
    with pytest.raises(DatasetNotFoundError, match="needs data.hf_id"):
        datasets.load(DataConfig("cifar10", source="hf"))
