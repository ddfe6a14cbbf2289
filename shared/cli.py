"""The command line every paper's reproduce.py shares.

python -m papers.<name>.reproduce --scale mini --seeds 0,1 --stages pca,report --out runs \
    --set knn.n_iter=20 --dry-run --publish
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from shared.config import available_scales
from shared.environment import REPO_ROOT

T = TypeVar("T")


@dataclass
class ReproduceArgs:
    scale: str
    seeds: list[int] | None
    stages: list[str] | None
    out: Path
    overrides: list[str]
    dry_run: bool
    publish: bool
    force_publish: bool
    fresh: bool
    command: str


def parse_list(text: str | None, cast=str) -> list | None:
    """'0,1,2' or '0 1 2' -> [0, 1, 2]; None or '' -> None."""
    if not text:
        return None
    return [cast(part) for part in text.replace(",", " ").split()]


def parse_reproduce_args(paper_dir: Path, stages: Sequence[str], argv: Sequence[str] | None = None) -> ReproduceArgs:
    """Parse and check the shared flags; an unknown scale or stage names the valid ones."""
    scales = available_scales(paper_dir)
    parser = argparse.ArgumentParser(
        prog=f"python -m papers.{paper_dir.name}.reproduce",
        description=f"Reproduce {paper_dir.name}: runs the stages of one scale and writes results.json.",
    )
    parser.add_argument(
        "--scale", default="mini", help=f"config in configs/: one of {', '.join(scales)} (default mini)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, overriding the config's")
    parser.add_argument("--stages", default=None, help=f"comma-separated subset of: {', '.join(stages)}")
    parser.add_argument("--out", default=str(REPO_ROOT / "runs"), help="root of run folders (default runs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set knn.n_iter=20 (repeatable)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and plan, run nothing")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="copy results.json and figures to the paper's results/<scale>/ and update its README",
    )
    parser.add_argument(
        "--force-publish",
        action="store_true",
        help="with --publish: publish even a degraded run, a dirty tree's or one that lost targets (says why)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore cached stage outputs of this run")
    raw = list(sys.argv[1:] if argv is None else argv)
    ns = parser.parse_args(raw)
    if ns.scale not in scales:
        parser.error(f"unknown scale {ns.scale!r}; valid: {', '.join(scales)}")
    try:
        seeds = parse_list(ns.seeds, int)
    except ValueError:
        parser.error(f"--seeds must be integers separated by commas, got {ns.seeds!r}")
    chosen = parse_list(ns.stages)
    if chosen:
        unknown = [s for s in chosen if s not in stages]
        if unknown:
            parser.error(f"unknown stage(s) {', '.join(unknown)}; valid: {', '.join(stages)}")
    shown = raw if any(a == "--scale" or a.startswith("--scale=") for a in raw) else ["--scale", ns.scale, *raw]
    command = f"python -m papers.{paper_dir.name}.reproduce " + " ".join(shlex.quote(a) for a in shown)
    return ReproduceArgs(
        scale=ns.scale,
        seeds=seeds,
        stages=chosen,
        out=Path(ns.out),
        overrides=ns.overrides,
        dry_run=ns.dry_run,
        publish=ns.publish,
        force_publish=ns.force_publish,
        fresh=ns.fresh,
        command=command.strip(),
    )


def load_paper_config(cls: type[T], paper_dir: Path, args: ReproduceArgs) -> T:
    """The scale's config with --set overrides (and --seeds, when the config has seeds); a config that
    does not load exits with status 2 and one line naming the problem."""
    import dataclasses

    from shared.config import ConfigError, load_config

    overrides = list(args.overrides)
    if args.seeds:
        if "seeds" not in {f.name for f in dataclasses.fields(cls)}:
            print(f"error: --seeds: {paper_dir.name} has no seeds setting to override", file=sys.stderr)
            raise SystemExit(2)
        overrides.append(f"seeds=[{','.join(map(str, args.seeds))}]")  # checked like the config's own seeds
    try:
        return load_config(cls, paper_dir / "configs" / f"{args.scale}.yaml", overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def dry_run(
    cfg: Any, all_stages: Sequence[str], stages: set[str], paper: str | None = None, overrides: Sequence[str] = ()
) -> int:
    """--dry-run: print the resolved config and the plan; for a GPU config with an `engine` section,
    also the torchrun command and the sbatch script that launch it (with the user's --set values)."""
    from shared.config import to_dict

    print(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(f"stages: {', '.join(s for s in all_stages if s in stages)}; seeds: {getattr(cfg, 'seeds', '-')}")
    engine = getattr(cfg, "engine", None)
    if engine is not None and engine.accelerator != "cpu" and paper is not None:
        from shared.launch import SlurmJob, render_slurm, render_torchrun

        gpus, nodes = engine.devices, engine.num_nodes
        print(f"\n# torchrun:\n{render_torchrun(paper, cfg.scale, gpus, nodes)}")
        job = SlurmJob(paper, cfg.scale, gpus=gpus, nodes=nodes, overrides=list(overrides))
        print(f"\n# sbatch script:\n{render_slurm(job)}", end="")
    plan = getattr(cfg, "launch_plan", None)
    if callable(plan) and plan():  # a config that launches itself otherwise (e.g. a SLURM array over a grid)
        print(f"\n{plan()}", end="")
    return 0


def begin(
    paper_dir: Path, stages: Sequence[str], cls: type[T], argv: Sequence[str] | None
) -> tuple[ReproduceArgs, T, set[str]] | int:
    """The start of every reproduce.py: logging, flags, the scale's config and the chosen stages; or the
    exit status to return at once (0 after --dry-run printed the plan, 2 for a config that does not load)."""
    from shared.progress import setup_logging

    setup_logging()
    args = parse_reproduce_args(paper_dir, stages, argv)
    try:
        cfg = load_paper_config(cls, paper_dir, args)
    except SystemExit as exc:
        return int(exc.code or 2)
    chosen = set(args.stages or stages)
    if args.dry_run:
        return dry_run(cfg, stages, chosen, paper_dir.name, args.overrides)
    return args, cfg, chosen


def run_command(main: Callable[[], int]) -> int:
    """Run a command's `main`; Ctrl-C (SIGINT) ends it with status 130 and one line saying how to resume,
    whatever the libraries underneath do with the KeyboardInterrupt (Lightning turns it into exit 1)."""
    interrupted = False

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the cleanup short
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return main()
    except KeyboardInterrupt:
        interrupted = True
    except SystemExit:
        if not interrupted:
            raise
    finally:
        signal.signal(signal.SIGINT, previous)
    from shared.run import Run

    where = f"; finished stages are cached in {Run.latest.dir}" if Run.latest is not None else ""
    command = " ".join(shlex.quote(a) for a in sys.argv)
    print(f"interrupted: run the same command again to resume ({command}){where}", file=sys.stderr)
    return 130
