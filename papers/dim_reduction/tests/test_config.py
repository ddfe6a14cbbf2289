from pathlib import Path

import pytest

from papers.dim_reduction.config import FACTS, Config, ae_split_sizes
from shared.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_passes_the_checks(path):
    cfg = load_config(Config, path)
    assert cfg.scale == path.stem and cfg.data.dataset in FACTS


def smoke(*overrides: str) -> Config:
    return load_config(Config, CONFIGS / "smoke.yaml", overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dims=[2, 70]", "ae.dims=[2]"], r"dims: 70 exceeds the 64 input dimensions of digits"),
        (["data.dataset=mnist", "dims=[2, 785]", "ae.dims=[2]"], r"785 exceeds the 784 input dimensions of mnist"),
        (
            ["data.train_size=5"],
            r"data.train_size=5: .* of the 1347 images of digits needs at least 10 .* use 10..1337",
        ),
        (["data.train_size=1340"], r"data.train_size=1340: .*use 10..1337, or null \(all\)"),
        (["data.test_size=3"], r"data.test_size=3: .* of the 450 images of digits"),
        (
            ["data.train_size=40", "methods=[pca]"],
            r"knn.folds=5 stratified folds over 10 classes need at least 50 training images, data.train_size gives 40",
        ),
        (
            ["data.train_size=60", "methods=[pca]", "dims=[61]", "ae.dims=[]"],
            r"PCA cannot find 61 components in 60 training images",
        ),
        (["isomap.n_neighbors=500"], r"isomap.n_neighbors=500 must be below the 500 images Isomap is fit on"),
        (
            ["data.train_size=300", "methods=[isomap]", "isomap.n_neighbors=300"],
            r"n_neighbors=300 must be below the 300",
        ),
        (["isomap.fit_size=30", "dims=[2, 30]", "ae.dims=[2]"], r"Isomap cannot embed 30 fit images in 30 dimensions"),
        (["isomap.fit_size=5"], r"isomap.fit_size=5: .* of the 1347 images of the training set"),
        (
            ["data.train_size=150"],
            r"autoencoders split .* 100 for training and 100 for validation .* need at least 200, .* gives 150",
        ),
        (["dims=[2, 5, 2]"], r"dims: \[2\] listed more than once"),
        (["seeds=[0, 0]"], r"seeds: \[0\] listed more than once in \[0, 0\]"),
        (["methods=[pca, pca]"], r"methods: \['pca'\] listed more than once"),
        (["ae.accelerator=gpuu"], r"ae.accelerator"),
    ],
    ids=[
        "dims>pixels",
        "dims>pixels-mnist",
        "train<classes",
        "train-leaves<classes",
        "test<classes",
        "train<folds",
        "pca-dims>train",
        "neighbors>=fit",
        "neighbors>=train",
        "isomap-dims>=fit",
        "fit<classes",
        "ae-split",
        "dup-dims",
        "dup-seeds",
        "dup-methods",
        "accelerator",
    ],
)
def test_values_impossible_together_are_one_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        smoke(*overrides)


def test_the_checks_only_apply_to_the_methods_run():
    # without Isomap and the autoencoders, 60 images and 2 neighbours of 500 are fine
    cfg = smoke("data.train_size=60", "methods=[pca]", "isomap.n_neighbors=500")
    assert cfg.data.train_size == 60 and cfg.methods == ["pca"]
    assert smoke("data.train_size=200").data.train_size == 200  # 100 + 100 for the autoencoders: just enough


def test_ae_split_sizes_are_the_authors():
    assert ae_split_sizes(60000, 0.1) == (54000, 6000) and ae_split_sizes(1347, 0.1) == (1200, 100)
    assert ae_split_sizes(150, 0.1) == (100, 100)
