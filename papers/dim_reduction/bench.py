"""make bench PAPER=dim_reduction: our one-query-per-fold k search vs scikit-learn's RandomizedSearchCV.

Both run in the same process on the same data and candidate k (the same ParameterSampler draw),
so the comparison is a ratio: it must choose the same k, reach the same CV and test accuracy, and
be at least 10x faster. Data: a stratified Fashion-MNIST subset when the Debian package is there,
else scikit-learn's digits. Writes papers/dim_reduction/results/bench.json and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.model_selection import RandomizedSearchCV
from sklearn.neighbors import KNeighborsClassifier

from papers.dim_reduction import data as datasets
from papers.dim_reduction.config import DataConfig
from papers.dim_reduction.knn import k_range, knn_score
from shared.data.errors import DatasetNotFoundError
from shared.environment import machine_summary
from shared.io import atomic_write_json
from shared.report import markdown_table

TARGET_SPEEDUP = 10.0
PAPER_DIR = Path(__file__).resolve().parent


def sklearn_search(x_tr, y_tr, x_te, y_te, n_iter: int, seed: int) -> tuple[int, float, float, np.ndarray]:
    search = RandomizedSearchCV(
        KNeighborsClassifier(), {"n_neighbors": k_range(len(y_tr))}, n_iter=n_iter, cv=5, random_state=seed, n_jobs=-1
    ).fit(x_tr, y_tr)
    cv = search.cv_results_["mean_test_score"]
    return int(search.best_params_["n_neighbors"]), float(cv.max()), float(search.score(x_te, y_te)), cv


def load_bench_data(train_size: int, test_size: int) -> datasets.Dataset:
    try:
        return datasets.load(DataConfig("fashion_mnist", train_size=train_size, test_size=test_size))
    except DatasetNotFoundError:
        return datasets.load(DataConfig("digits"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.dim_reduction.bench", description=__doc__)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--dims", default="5,20", help="PCA dimensions to compare at")
    parser.add_argument("--n-iter", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(PAPER_DIR / "results" / "bench.json"))
    args = parser.parse_args(argv)
    ds = load_bench_data(args.train_size, args.test_size)
    rows, cases = [], []
    for d in [int(v) for v in args.dims.split(",")]:
        pca = PCA(d, random_state=args.seed).fit(ds.x_train)
        z_tr, z_te = pca.transform(ds.x_train), pca.transform(ds.x_test)
        start = time.perf_counter()
        ours = knn_score(z_tr, ds.y_train, z_te, ds.y_test, args.n_iter, 5, args.seed)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        k_ref, cv_ref, test_ref, cv_all = sklearn_search(z_tr, ds.y_train, z_te, ds.y_test, args.n_iter, args.seed)
        t_ref = time.perf_counter() - start
        case = {
            "d": d,
            "k_ours": ours.best_k,
            "k_sklearn": k_ref,
            "test_acc_ours": ours.test_accuracy,
            "test_acc_sklearn": test_ref,
            "max_abs_cv_score_diff": float(np.max(np.abs(np.asarray(ours.cv_scores) - cv_all))),
            "seconds_ours": t_ours,
            "seconds_sklearn": t_ref,
            "speedup": t_ref / t_ours,
        }
        case["same_choice"] = case["k_ours"] == k_ref and case["test_acc_ours"] == test_ref
        case["meets_target"] = case["same_choice"] and case["speedup"] >= TARGET_SPEEDUP
        cases.append(case)
        rows.append(
            [
                d,
                f"{ours.best_k} / {k_ref}",
                f"{ours.test_accuracy:.4f} / {test_ref:.4f}",
                f"{case['max_abs_cv_score_diff']:.1e}",
                f"{t_ours:.2f}",
                f"{t_ref:.2f}",
                f"{case['speedup']:.1f}x",
            ]
        )
    report = {
        "dataset": ds.name,
        "train": int(len(ds.y_train)),
        "test": int(len(ds.y_test)),
        "n_iter": args.n_iter,
        "machine": machine_summary(),
        "target_speedup": TARGET_SPEEDUP,
        "cases": cases,
    }
    atomic_write_json(args.out, report)
    print(
        f"{ds.name}: train {len(ds.y_train)}, test {len(ds.y_test)}, {args.n_iter} sampled k, 5 folds; "
        f"{machine_summary()}"
    )
    cols = [
        "PCA d",
        "k ours / sklearn",
        "test acc ours / sklearn",
        "max Δ cv score",
        "s ours",
        "s sklearn",
        "speedup",
    ]
    print(markdown_table(cols, rows))
    print(f"wrote {Path(args.out)}")
    return 0 if all(c["meets_target"] for c in cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
