"""python -m shared.traces collect | inspect | bench | ctf (see shared/traces/__init__.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.progress import setup_logging
from shared.report import markdown_table
from shared.traces.behaviours import BEHAVIOURS
from shared.traces.errors import OptionError, TraceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.traces", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("collect", help="collect a dataset (root, tracefs, the Debian packages)")
    c.add_argument("--out", type=Path, required=True, help="dataset folder (rerun to resume)")
    c.add_argument("--behaviours", default="all", help=f"comma list of {', '.join(BEHAVIOURS)}, or all")
    c.add_argument("--requests", type=int, default=1000, help="traced requests per block (default 1000)")
    c.add_argument("--rounds", type=int, default=4, help="rounds of alternating blocks (>= 2; default 4)")
    c.add_argument("--seed", type=int, default=0, help="seeds the server's table contents (0 .. 2**32-1)")
    c.add_argument("--warmup", type=int, default=1000, help="untraced requests before each block (default 1000)")
    c.add_argument("--rate", type=int, default=400, help="requests per second, fixed (default 400)")
    c.add_argument("--connections", type=int, default=10, help="wrk connections (>= its 2 threads)")
    c.add_argument("--cpu-workers", type=int, default=32, help="stress-ng workers of the cpu behaviour (32)")
    c.add_argument(
        "--queue-connections", type=int, default=100, help="connections of the connection behaviour (> 25; 100)"
    )
    c.add_argument("--keep", type=int, default=0, help="keep the middle N requests of each block (0: all)")
    c.add_argument("--nice", type=int, default=-5, help="autogroup nice of the servers' session (-20..19; -5)")
    c.add_argument("--boundaries", default="auto", help="auto | uprobe | marker")
    c.add_argument("--no-sanity", action="store_true", help="skip the normal-vs-normal n-gram check")
    c.add_argument("--drop-raw", action="store_true", help="delete raw pages once decoded (no resume after)")

    i = sub.add_parser("inspect", help="print a dataset's table: requests, length and duration per split")
    i.add_argument("dir", type=Path)
    i.add_argument("--mode", default="global", help="global (the paper's rule) or thread")

    b = sub.add_parser("bench", help="parse rate and tracing overhead (root)")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--seconds", type=int, default=4)
    b.add_argument("--repeats", type=int, default=3)

    t = sub.add_parser("ctf", help="convert an LTTng CTF trace folder (the paper's format) to a dataset")
    t.add_argument("src", type=Path)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--split", default=None, help="split name (default: the folder name)")
    t.add_argument("--skip", type=int, default=0, help="requests to skip at the start (the paper: 1000)")

    r = sub.add_parser("readme", help="render README tables from the sample's manifest and bench results")
    r.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")

    args = parser.parse_args(argv)
    try:
        _check_options(args)
    except OptionError as exc:
        flag = "--" + exc.option.replace("_", "-")
        sub.choices[args.command].error(f"{flag} {exc.value!r} {exc.problem}; valid: {exc.valid}")
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    try:
        return COMMANDS[args.command](args)
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _check_options(args: argparse.Namespace) -> None:
    """Every numeric option in range before a command touches anything (OptionError names the first
    that is not); `collect` keeps the checked CollectOptions in args.options."""
    from shared.traces.options import check, check_all

    if args.command == "collect":
        from shared.traces.behaviours import parse_behaviours
        from shared.traces.collect import CollectOptions

        args.options = CollectOptions(
            out=args.out, behaviours=[b.name for b in parse_behaviours(args.behaviours)], requests=args.requests,
            rounds=args.rounds, seed=args.seed, warmup=args.warmup, rate=args.rate, connections=args.connections,
            cpu_workers=args.cpu_workers, queue_connections=args.queue_connections, keep=args.keep,
            nice=args.nice, boundaries=args.boundaries,
        )  # fmt: skip
    elif args.command == "bench":
        check_all({"seconds": args.seconds, "repeats": args.repeats})
    elif args.command == "ctf":
        check("skip", args.skip)


def _collect(args) -> int:
    from shared.traces.collect import Interrupted, collect
    from shared.traces.sanity import sanity_check

    try:
        out = collect(args.options, drop_raw=args.drop_raw)
    except Interrupted as exc:
        print(f"collection {exc}; cleaned up. Rerun the same command to resume.", file=sys.stderr)
        return 130
    if not args.no_sanity:
        sanity_check(out)
    return _inspect(argparse.Namespace(dir=out, mode="global"))


def _inspect(args) -> int:
    from shared.traces.dataset import load_dataset

    ds = load_dataset(args.dir)
    rows = [
        [
            s.split,
            s.requests,
            f"{s.length_mean:.1f} ± {s.length_sd:.1f}",
            f"{s.duration_ms_mean:.2f} ± {s.duration_ms_sd:.2f}",
        ]
        for s in ds.stats(args.mode)
    ]
    m = ds.manifest
    print(f"{args.dir}: {sum(r[1] for r in rows)} requests, kernel {m['host']['kernel']}, {m['host']['cores']} cores")
    if m.get("flagged_blocks"):
        print(f"flagged (lost events): {', '.join(m['flagged_blocks'])}")
    if "sanity" in m:
        print(f"sanity: {m['sanity']['summary']}")
    print(markdown_table(["split", "requests", f"length ({args.mode}, events)", "duration (ms)"], rows))
    return 0


def _bench(args) -> int:
    from shared.traces.bench import run_bench

    run_bench(args.out, seconds=args.seconds, repeats=args.repeats)
    return 0


def _ctf(args) -> int:
    from shared.traces.ctf import convert_ctf

    out = convert_ctf(args.src, args.out, split=args.split, skip=args.skip)
    return _inspect(argparse.Namespace(dir=out, mode="global"))


def _readme(args) -> int:
    from shared.traces.readme import update

    changed = update(write=not args.check)
    if args.check and changed:
        print("shared/traces/README.md is out of date: run python -m shared.traces readme", file=sys.stderr)
        return 1
    return 0


COMMANDS = {"collect": _collect, "inspect": _inspect, "bench": _bench, "ctf": _ctf, "readme": _readme}

if __name__ == "__main__":
    sys.exit(main())
