"""Summaries of an analysis (JSON-able, cached), the generated per-cluster text, the tables beside the
paper's, targets and the per-cluster state-time figure."""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from papers.request_analysis.config import Config, PipelineConfig  # noqa: E402
from papers.request_analysis.pipeline import Analysis, characterise  # noqa: E402
from papers.request_analysis.states import state_names  # noqa: E402
from shared.results import Results, Table, Target  # noqa: E402
from shared.run import Run  # noqa: E402

FIGURE = "state_times_{source}.png"
NGRAM_REFERENCE = 5000  # normal requests sampled as the n-gram reference (the paper used all)


def _stats(ms: np.ndarray) -> dict:
    if not len(ms):
        return {}
    return {
        "median": float(np.median(ms)),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "pct_gt_200": float((ms > 200).mean() * 100),
        "pct_gt_300": float((ms > 300).mean() * 100),
    }


def summarise(a: Analysis, p: PipelineConfig, labels: np.ndarray | None) -> dict:
    """Everything the report needs from one analysis, JSON-able (cached in the run folder)."""
    t0 = time.perf_counter()
    names = state_names(p.state_order)
    req = a.kept
    ms = req.duration_ns / 1e6
    length = np.array([len(s) for s in req.syscalls])
    normal = np.nonzero(~a.outlier)[0]
    out_idx = np.nonzero(a.outlier)[0]
    rng = np.random.default_rng(p.seed)
    ref = rng.choice(normal, min(NGRAM_REFERENCE, len(normal)), replace=False) if len(normal) else normal
    groups = {"normal": [req.syscalls[i] for i in ref]}
    for c in range(int(a.cluster.max()) + 1 if len(a.cluster) else 0):
        groups[f"cluster {c + 1}"] = [req.syscalls[i] for i in out_idx[a.cluster == c]]
    grams = characterise(groups, "normal", p.ngram_max, p.top)
    clusters = []
    for c in range(len(groups) - 1):
        idx = out_idx[a.cluster == c]
        entry = {
            "size": len(idx),
            "duration_ms": _stats(ms[idx]),
            "syscalls_median": float(np.median(length[idx])),
            "syscalls_mean": float(length[idx].mean()),
            "state_time_ms": dict(zip(names, (req.times_ns[idx].mean(0) / 1e6).tolist(), strict=True)),
            "state_intervals": dict(zip(names, req.counts[idx].mean(0).tolist(), strict=True)),
            "ngrams": grams.get(f"cluster {c + 1}", []),
        }
        if labels is not None:
            entry["behaviour_share"] = {b: float((labels[idx] == b).mean()) for b in np.unique(labels)}
        clusters.append(entry)
    result = {
        "requests": len(req) + a.dropped,
        "dropped": a.dropped,
        "duration_ms": _stats(a.all_duration_ns / 1e6),  # the whole dataset, as the paper's figures
        "syscalls": {"median": float(np.median(length)), "mean": float(length.mean()), "std": float(length.std())},
        "normal": {
            "size": len(normal),
            "duration_ms": _stats(ms[normal]),
            "syscalls_median": float(np.median(length[normal])),
            "state_time_ms": dict(zip(names, (req.times_ns[normal].mean(0) / 1e6).tolist(), strict=True)),
        },
        "outliers": {"size": len(out_idx), "duration_ms": _stats(ms[out_idx])},
        "clusters": clusters,
        "isolation_forest_flags": a.isolation_flags,
        "state_names": list(names),
        "timing": {"ngram_s": time.perf_counter() - t0},
    }
    if labels is not None:
        result["behaviours"] = {b: int((labels == b).sum()) for b in np.unique(labels)}
        result["flagged_by_behaviour"] = {b: float(a.outlier[labels == b].mean()) for b in np.unique(labels)}
        slow = np.percentile(ms[labels == "normal"], 99) if (labels == "normal").any() else np.inf
        affected = np.nonzero((labels != "normal") & (ms > slow))[0]
        result["slow_injected"] = {
            "threshold_ms": float(slow),
            "count": len(affected),
            "flagged": float(a.outlier[affected].mean()) if len(affected) else float("nan"),
        }
    return result


def cluster_text(s: dict) -> list[str]:
    """One generated sentence block per cluster: size, duration, where the time goes, what it calls."""
    lines = []
    normal = s["normal"]
    n_total = sum(normal["state_time_ms"].values()) or 1.0
    for i, c in enumerate(s["clusters"], 1):
        total = sum(c["state_time_ms"].values()) or 1.0
        ranked = sorted(c["state_time_ms"].items(), key=lambda kv: -kv[1])
        blocked = [kv for kv in ranked if kv[0].startswith("BLOCKED")]
        parts = [
            f"Cluster {i}: {c['size']} requests, median {c['duration_ms']['median']:.1f} ms "
            f"(normal {normal['duration_ms']['median']:.1f} ms), {c['syscalls_median']:.0f} syscalls per request "
            f"(normal {normal['syscalls_median']:.0f}).",
            f"Time mostly {ranked[0][0]} ({ranked[0][1] / total:.0%}; "
            f"normal {normal['state_time_ms'][ranked[0][0]] / n_total:.0%})"
            + (
                f"; most blocked in {blocked[0][0]} ({blocked[0][1] / total:.0%}; normal "
                f"{normal['state_time_ms'][blocked[0][0]] / n_total:.0%})."
                if blocked
                else "."
            ),
        ]
        if c["ngrams"]:
            g = c["ngrams"][:3]
            parts.append(
                "More than normal: "
                + ", ".join(f"`{r['ngram']}` {r['mean']:.1f} vs {r['ref_mean']:.1f}" for r in g)
                + " per request."
            )
        if "behaviour_share" in c:
            parts.append(
                "Behaviours: " + ", ".join(f"{b} {v:.0%}" for b, v in sorted(c["behaviour_share"].items())) + "."
            )
        lines.append(" ".join(parts))
    return lines


def _lookup(summary: dict, path: str):
    node = summary
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _derived(s: dict, name: str) -> float:
    """Measures over the clusters of the trace analysis."""
    normal_len = s["normal"]["syscalls_median"] or 1.0
    inj = [c for c in s["clusters"] if "behaviour_share" in c]
    if name == "injected_purity":  # the purest cluster's share of injected-behaviour requests
        return max((1 - c["behaviour_share"].get("normal", 0.0) for c in inj), default=float("nan"))
    purest = max(inj, key=lambda c: 1 - c["behaviour_share"].get("normal", 0.0), default=None)
    if name == "injected_syscall_ratio":
        return purest["syscalls_median"] / normal_len if purest else float("nan")
    if name == "blocking_excess":  # an injected cluster blocked in one state much more than normal requests
        normal = s["normal"]["state_time_ms"]
        n_total = sum(normal.values()) or 1.0
        best = float("nan")
        for c in inj:
            if 1 - c["behaviour_share"].get("normal", 0.0) < 0.8:
                continue
            total = sum(c["state_time_ms"].values()) or 1.0
            for state, t in c["state_time_ms"].items():
                if state.startswith("BLOCKED") and state != "BLOCKED_CPU":
                    excess = t / total - normal[state] / n_total
                    best = excess if np.isnan(best) else max(best, excess)
        return best
    if name == "cpu_blocked_excess":  # the outlier cluster holding most cpu requests: BLOCKED_CPU over normal
        with_cpu = [c for c in inj if c["behaviour_share"].get("cpu", 0.0) > 0]
        if not with_cpu:
            return float("nan")
        c = max(with_cpu, key=lambda c: c["behaviour_share"]["cpu"] * c["size"])
        normal = s["normal"]["state_time_ms"]
        share = c["state_time_ms"]["BLOCKED_CPU"] / (sum(c["state_time_ms"].values()) or 1.0)
        return share - normal["BLOCKED_CPU"] / (sum(normal.values()) or 1.0)
    raise KeyError(name)


def evaluate_targets(specs: list[dict], analyses: dict) -> list[Target]:
    targets = []
    for spec in specs:
        source, path = spec["measure"].split(":", 1)
        value = None
        if source in analyses:
            s = analyses[source]
            try:
                value = float(_derived(s, path[1:])) if path.startswith("=") else float(_lookup(s, path))
            except (KeyError, IndexError):
                value = None
            if value is not None and np.isnan(value):
                value = None
        fields = {k: v for k, v in spec.items() if k != "measure"}
        targets.append(
            Target(**fields, mean=value, std=0.0 if value is not None else None, n=int(value is not None)).judge()
        )
    return targets


def cluster_table(s: dict, title: str, paper: list[dict] | None) -> Table:
    rows = [
        [
            "normal",
            s["normal"]["size"],
            f"{s['normal']['duration_ms']['median']:.2f}",
            f"{s['normal']['syscalls_median']:.0f}",
            "–",
        ]
    ]
    for i, c in enumerate(s["clusters"], 1):
        ref = paper[i - 1] if paper and i <= len(paper) else None
        rows.append(
            [
                f"cluster {i}",
                c["size"],
                f"{c['duration_ms']['median']:.2f}",
                f"{c['syscalls_median']:.0f}",
                f"{ref['size']} requests, median {ref['median_ms']} ms, {ref['syscalls']} syscalls" if ref else "–",
            ]
        )
    return Table(title, ["group", "requests", "median duration (ms)", "median syscalls", "paper"], rows)


def figure(run: Run, s: dict, source: str) -> str:
    names = s["state_names"]
    groups = [("normal", s["normal"]["state_time_ms"])] + [
        (f"cluster {i}", c["state_time_ms"]) for i, c in enumerate(s["clusters"], 1)
    ]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bottom = np.zeros(len(groups))
    for state in names:
        vals = np.array([g[1][state] for g in groups])
        if vals.sum() == 0:
            continue
        ax.bar([g[0] for g in groups], vals, bottom=bottom, label=state)
        bottom += vals
    ax.set_yscale("log")
    ax.set_ylabel("mean time per request (ms, log)")
    ax.set_title(f"Time per thread state: normal requests and outlier clusters ({source})")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    name = FIGURE.format(source=source)
    fig.savefig(run.dir / name, dpi=110)
    plt.close(fig)
    return name


def write_report(run: Run, cfg: Config, analyses: dict, meta: dict, command: str) -> Results:
    tables, figures, notes = {}, [], []
    paper_clusters = meta["reference"]["clusters"]
    sources = (
        ("tables", "the authors' requests", "DBSCAN outliers clustered by k-means (k = 3)", paper_clusters),
        ("traces", "our traces", "normal + injected cache contention, outliers clustered", None),
        ("sample", "the shared sample", "normal requests + a few of each behaviour, outliers clustered", None),
    )
    for source, label, what, reference in sources:
        if source not in analyses:
            continue
        s = analyses[source]
        tables[f"{source}_clusters"] = cluster_table(s, f"{label[0].upper()}{label[1:]}: {what}", reference)
        tables[f"{source}_text"] = Table(
            f"Generated characterisation ({label})", ["cluster"], [[t] for t in cluster_text(s)]
        )
        figures.append(figure(run, s, source))
    if "tables" in analyses:
        s = analyses["tables"]
        notes.append(
            f"the authors' tables: {s['requests']} requests, {s['dropped']} dropped as measurement errors "
            f"(< {cfg.pipeline.min_ms} ms); timings {s['timing']}"
        )
    if "traces" in analyses:
        s = analyses["traces"]
        notes.append(
            f"our traces: {s['dataset']['path']} ({s['behaviours']}), DBSCAN eps {cfg.traces_eps} ms, "
            f"min_samples {cfg.traces_min_samples}"
        )
    if "sample" in analyses:
        s = analyses["sample"]
        notes.append(
            f"the shared sample: {s['dataset']['path']} (collector {s['dataset'].get('collector')}, created "
            f"{s['dataset']['created']}): all normal requests and {cfg.sample_injected} of each behaviour "
            f"({s['behaviours']}); DBSCAN eps {s['eps_ms']:.3f} ms ({cfg.sample_eps_share} x the median duration), "
            f"min_samples {cfg.sample_min_samples}"
        )
        tables["sample_behaviours"] = Table(
            "The shared sample: each behaviour's effect on its requests and how many of the sampled ones DBSCAN flags",
            ["behaviour", "requests", "median duration (ms)", "x normal", "sampled", "flagged as outliers"],
            [[b, s["all_requests"][b], f"{s['median_ms_by_behaviour'][b]:.2f}", f"{s['slowdown_by_behaviour'][b]:.2f}",
              s["behaviours"].get(b, 0), f"{s['flagged_by_behaviour'].get(b, float('nan')):.2f}"]
             for b in s["all_requests"]],
        )  # fmt: skip
        shares = s["state_share_by_behaviour"]
        used = [n for n in s["state_names"] if any(v[n] >= 0.005 for v in shares.values())]
        tables["sample_states"] = Table(
            "The shared sample (descriptive, not a target): share of each behaviour's time in each thread state, "
            "all its requests",
            ["behaviour", *used],
            [[b, *(f"{shares[b][n]:.2f}" for n in used)] for b in shares],
        )
    results = run.new_results(
        command,
        evaluate_targets(meta["targets"], analyses),
        tables=tables,
        figures=figures,
        notes=notes,
    )
    run.write_results(results)
    return results
