"""Launch scripts for full scale: an sbatch script that sets up the repo's environment and runs a
paper's reproduce under srun (one task per GPU; Lightning reads SLURM's variables), and the torchrun
command for the same run outside SLURM.

Preemption: the job asks for USR1 two minutes before it is stopped; the engine (shared/engine.py)
then checkpoints and exits with REQUEUE_EXIT, the script requeues the job, and the next start resumes
from that checkpoint. `--requeue` also lets SLURM requeue a job whose node failed.

python -m shared.launch slurm --paper dim_reduction --scale full --gpus 1 [--array full,full_mnist]
python -m shared.launch torchrun --paper quant_pretraining --scale full --gpus 4 [--nodes 2]
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass

from papers import UnknownPaperError, get_paper
from shared.config import available_scales

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={gpus}
#SBATCH --gpus-per-node={gpus}
#SBATCH --cpus-per-task={cpus}
#SBATCH --mem={mem}
#SBATCH --time={time}
#SBATCH --output=runs/slurm/%x-%A_%a.out
#SBATCH --requeue
#SBATCH --signal=USR1@120
{array_line}
set -euo pipefail
cd {repo}
make setup
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
{scale_line}
rc=0
srun .venv/bin/python -m papers.{paper}.reproduce --scale "$SCALE" {extra} || rc=$?
if [ "$rc" -eq {requeue_exit} ]; then  # preempted after a checkpoint: run again from it
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
"""

REQUEUE_EXIT = 99


@dataclass
class SlurmJob:
    paper: str
    scale: str = "full"
    gpus: int = 1
    nodes: int = 1
    cpus: int = 8
    mem: str = "64G"
    time: str = "24:00:00"
    array: list[str] | None = None
    repo: str = "$SLURM_SUBMIT_DIR"
    extra: str = "--publish"
    shards: int = 0  # > 0: an array of this many tasks over one scale, task i runs `--set grid.shard=i`


def check_job(job: SlurmJob) -> None:
    """ValueError naming the first field of `job` that would render a script SLURM refuses or misreads
    (every value is pasted into the script)."""
    for name in ("gpus", "nodes", "cpus"):
        if not isinstance(getattr(job, name), int) or getattr(job, name) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {getattr(job, name)!r}")
    if job.shards < 0:
        raise ValueError(f"shards must be >= 0, got {job.shards}")
    if not re.fullmatch(r"[0-9]+[KMGT]?", job.mem):
        raise ValueError(f"mem must look like 64G (a number, then K, M, G or T), got {job.mem!r}")
    if not re.fullmatch(r"([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}", job.time):
        raise ValueError(f"time must look like 24:00:00 or 2-00:00:00, got {job.time!r}")


def render_slurm(job: SlurmJob) -> str:
    """The sbatch script for `job`; with `array`, one task per scale name; with `shards`, one task per
    shard of one scale's grid (the paper's config reads grid.shard and grid.num_shards)."""
    check_job(job)
    paper = get_paper(job.paper)
    scales = job.array or [job.scale]
    known = available_scales(paper.dir)
    unknown = [s for s in scales if s not in known]
    if unknown:
        raise ValueError(f"{job.paper}: unknown scale(s) {unknown}; valid: {', '.join(known)}")
    if job.array and job.shards:
        raise ValueError("a job takes either an array of scales or shards of one scale, not both")
    extra = job.extra
    if job.array:
        array_line = f"#SBATCH --array=0-{len(scales) - 1}"
        scale_line = f"SCALES=({' '.join(scales)}); SCALE=${{SCALES[$SLURM_ARRAY_TASK_ID]}}"
    elif job.shards:
        array_line, scale_line = f"#SBATCH --array=0-{job.shards - 1}", f"SCALE={shlex.quote(job.scale)}"
        extra = f'--set grid.shard="$SLURM_ARRAY_TASK_ID" --set grid.num_shards={job.shards} {job.extra}'
    else:
        array_line, scale_line = "", f"SCALE={shlex.quote(job.scale)}"
    return TEMPLATE.format(
        job=f"{job.paper}-{job.scale if not (job.array or job.shards) else 'array'}",
        nodes=job.nodes,
        gpus=job.gpus,
        cpus=job.cpus,
        mem=job.mem,
        time=job.time,
        array_line=array_line,
        repo=job.repo,
        scale_line=scale_line,
        paper=job.paper,
        extra=extra,
        requeue_exit=REQUEUE_EXIT,
    )


def render_torchrun(paper: str, scale: str = "full", gpus: int = 1, nodes: int = 1) -> str:
    """The torchrun command for the same run on machines without SLURM (one process per GPU)."""
    if gpus < 1 or nodes < 1:
        raise ValueError(f"gpus and nodes must be integers >= 1, got gpus={gpus!r}, nodes={nodes!r}")
    known = available_scales(get_paper(paper).dir)
    if scale not in known:
        raise ValueError(f"{paper}: unknown scale {scale!r}; valid: {', '.join(known)}")
    rdzv = "--standalone" if nodes == 1 else '--rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:29500"'
    return (
        f"torchrun --nnodes={nodes} --nproc_per_node={gpus} {rdzv} "
        f"-m papers.{paper}.reproduce --scale {shlex.quote(scale)} --publish"
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (GPUs, nodes, CPUs per task)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.launch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    slurm = sub.add_parser("slurm", help="print an sbatch script")
    slurm.add_argument("--paper", required=True)
    slurm.add_argument("--scale", default="full")
    slurm.add_argument("--gpus", type=positive_int, default=1)
    slurm.add_argument("--nodes", type=positive_int, default=1)
    slurm.add_argument("--cpus", type=positive_int, default=8)
    slurm.add_argument("--mem", default="64G")
    slurm.add_argument("--time", default="24:00:00")
    slurm.add_argument("--array", default=None, help="comma-separated scales, one array task each")
    run = sub.add_parser("torchrun", help="print the torchrun command")
    run.add_argument("--paper", required=True)
    run.add_argument("--scale", default="full")
    run.add_argument("--gpus", type=positive_int, default=1)
    run.add_argument("--nodes", type=positive_int, default=1)
    args = parser.parse_args(argv)
    if args.command == "torchrun":
        try:
            print(render_torchrun(args.paper, args.scale, args.gpus, args.nodes))
        except (UnknownPaperError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    job = SlurmJob(
        args.paper,
        args.scale,
        args.gpus,
        args.nodes,
        args.cpus,
        args.mem,
        args.time,
        args.array.split(",") if args.array else None,
    )
    try:
        print(render_slurm(job), end="")
    except (UnknownPaperError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
