"""The tables of shared/traces/README.md, rendered from the shipped sample's manifest and the committed
bench results (never typed by hand): `python -m shared.traces readme` rewrites them."""

from __future__ import annotations

import json
from pathlib import Path

from shared.report import markdown_table, update_readme
from shared.traces.dataset import load_dataset

HERE = Path(__file__).parent
README = HERE / "README.md"
SAMPLE = HERE / "sample"
BENCH = HERE / "results" / "bench.json"
MARKERS = {
    "sample": ("<!-- sample:begin -->", "<!-- sample:end -->"),
    "bench": ("<!-- bench:begin -->", "<!-- bench:end -->"),
}
SAMPLE_COMMAND = (
    "python -m shared.traces collect --out shared/traces/sample --behaviours all --keep 300 --seed 0 --drop-raw"
)
# The paper's durations (ms, the dataset table below) for its slowdown: cpu 13.25 / 1.68
PAPER_MEDIAN_NOTE = "the paper: cpu 7.9x (13.25 vs 1.68 ms mean), socket 4.1x (6.89 ms), connection 1.0x"

# The paper's dataset table (syscall_novelty repository, logs/2-gram/log.txt, --dataset_stat): length in
# syscall events (entry and exit), duration in ms, mean ± sd where the log gives it.
PAPER = {
    "train": ("1105.7 ± 244.8", "1.68 ± 0.65"),
    "valid_id": ("1107.3 ± 244.9", "1.67 ± 0.59"),
    "test_id": ("1108.7 ± 247.1", "1.67 ± 0.61"),
    "valid_ood_connection": ("1125.7 ± 243.0", "1.66"),
    "test_ood_connection": ("1125.0 ± 243.3", "1.66"),
    "valid_ood_cpu": ("1910.6 ± 607.6", "13.25"),
    "test_ood_cpu": ("1913.8 ± 596.0", "13.58"),
    "valid_ood_io": ("1827.7 ± 323.4", "2.13"),
    "test_ood_io": ("1821.1 ± 321.0", "2.10"),
    "valid_ood_opcache": ("1162.9 ± 244.2", "1.78"),
    "test_ood_opcache": ("1160.6 ± 245.9", "1.77"),
    "valid_ood_socket": ("2082.0 ± 362.5", "6.89"),
    "test_ood_socket": ("2081.8 ± 355.7", "6.89"),
    "valid_ood_ssl": ("1058.1 ± 229.1", "1.48"),
    "test_ood_ssl": ("1054.8 ± 230.2", "1.47"),
}


def sample_section(root: Path = SAMPLE) -> str:
    ds = load_dataset(root)
    m = ds.manifest
    host = m["host"]
    lost = sum(sum(b["lost_events"].values()) for b in m["blocks"])
    behaviour = {s: ("normal" if "_ood_" not in s else s.split("_ood_")[1]) for s in ds.splits}
    rows = [
        [
            s.split,
            behaviour[s.split],
            s.requests,
            f"{s.length_mean:.1f} ± {s.length_sd:.1f}",
            f"{s.duration_ms_mean:.2f} ± {s.duration_ms_sd:.2f}",
            *PAPER.get(s.split, ("—", "—")),
        ]
        for s in ds.stats()
    ]
    table = markdown_table(
        ["split", "behaviour", "requests", "length (events)", "duration (ms)", "paper length", "paper duration (ms)"],
        rows,
    )
    effects = effects_table(m)
    sanity = m["sanity"]
    novelty = ", ".join(f"{k} {v:.3f}" for k, v in sanity["novelty_test_auroc"].items())
    return "\n".join(
        [
            f"`{SAMPLE_COMMAND}` on a {host['cores']}-core {host['machine']} VM ({host['cpu']}, {host['os']}, "
            f"kernel {host['kernel']}), code {m['code_commit'][:7]}, {m['created'][:10]}: "
            f"{ds.requests.num_rows:,} requests in {len(m['blocks'])} blocks, {lost} lost events. {_how_much(m)}",
            "",
            "What each behaviour did, measured during the collection (medians over the behaviour's blocks; "
            "handler: the request handler alone; window: the request as cut, with its connection's accept "
            "and close for a connection's first and last request; latency: wrk, client side; server: Apache's "
            "%D; queueing: latency minus server; rate: requests/s seen in the trace; slowdown: handler median "
            f"over normal's; {PAPER_MEDIAN_NOTE}):",
            "",
            effects,
            "",
            table,
            "",
            f"Sanity check ({sanity['ngram_order']}-gram, perplexity score): valid_id vs test_id AUROC "
            f"**{sanity['id_vs_id_auroc']:.3f}** ({'passed' if sanity['passed'] else 'FAILED'}: within 0.5 ± "
            f"{sanity['tolerance']}). Novelty test AUROC against test_id: {novelty}.",
        ]
    )


def _how_much(m: dict) -> str:
    """Per block: warm-up, traced and kept requests, and the capture's wall time."""
    opts = m.get("collection", {}).get("options", {})
    wall = sum(b.get("wall_s", 0) for b in m["blocks"])
    kept = f", the middle {opts['keep']} kept" if opts.get("keep") else ""
    return (
        f"Each block: {opts.get('warmup', '?')} untraced warm-up requests, then {opts.get('requests', '?')} traced "
        f"at {opts.get('rate', '?')} req/s{kept}; capture {wall / 60:.1f} min for all blocks (servers, warm-up, "
        "tracing; decoding and the sanity check come after)."
    )


def effects_table(m: dict) -> str:
    """Per behaviour: requests, medians, slowdown, client latency, server time, queueing, rate, lost events."""
    rows = []
    for name, e in m.get("effects", {}).items():
        rows.append(
            [
                name,
                f"{e['requests']:,}",
                _num(e.get("handler_ms_p50"), 2),
                _num(e.get("duration_ms_p50"), 2),
                f"{e['slowdown_handler']:.2f}x" if e.get("slowdown_handler") is not None else "—",
                _num(e.get("latency_ms_p50"), 2),
                _num(e.get("server_ms_p50"), 2),
                _num(e.get("queueing_ms_p50"), 2),
                _num(e.get("traced_rps"), 0),
                e.get("connections", "—"),
                e.get("lost_events", 0),
            ]
        )
    head = ["behaviour", "requests", "handler (ms)", "window (ms)", "slowdown", "latency (ms)", "server (ms)"]
    return markdown_table([*head, "queueing (ms)", "rate (req/s)", "connections", "lost events"], rows)


def _num(x: float | None, digits: int) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def bench_section(path: Path = BENCH) -> str:
    b = json.loads(path.read_text())
    o, p = b["overhead"], b["parse"]
    rows = [
        [
            "tracing overhead (throughput lost, saturating wrk)",
            f"{o['throughput_lost']:.1%}",
            f"≤ {o['target_at_most']:.0%}",
            "met" if o["met"] else "not met",
            f"untraced {', '.join(f'{x:.0f}' for x in o['untraced_rps'])} req/s; traced "
            f"{', '.join(f'{x:.0f}' for x in o['traced_rps'])} req/s; lost events {sum(o['lost_events'])}",
        ],
        [
            "parse rate, one core (events/s)",
            f"{p['ours_events_per_s'] / 1e6:.2f} M",
            f"≥ {p['target_at_least'] / 1e6:.0f} M",
            "met" if p["met"] else "not met",
            f"{p['events']:,} events in {p['ours_s']:.2f} s; the regex parser over the kernel's text rendering "
            f"of the same capture: {p['reference_events_per_s'] / 1e3:.0f} k/s ({p['speedup']}x slower)",
        ],
    ]
    return "\n".join(
        [
            f"`make bench-traces` (`{b['command']}`) on a {b['machine']}, kernel {b['kernel']}:",
            "",
            markdown_table(["measure", "ours", "target", "verdict", "details"], rows),
        ]
    )


def update(write: bool = True) -> bool:
    """Rewrite both sections; True when the README changed (or would change)."""
    changed = False
    for name, body in (("sample", sample_section()), ("bench", bench_section())):
        begin, end = MARKERS[name]
        changed |= update_readme(README, body, begin, end, write=write)
    return changed
