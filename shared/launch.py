"""Launch scripts for full scale: an sbatch script that prepares the repo's environment once and runs a
paper's reproduce under srun (one task per GPU; Lightning reads SLURM's variables), and the torchrun
command for the same run outside SLURM.

What the sbatch script does, and why:
  * logs to runs/slurm/: sbatch opens --output before the script starts, so `--submit` creates the
    folder first (a script submitted by hand needs `mkdir -p runs/slurm` before `sbatch`);
  * passes --nodes and --gpus into the paper's config (engine.num_nodes, engine.devices, or the
    paper's own fields of those names), so Lightning's world matches the allocation;
  * sets MASTER_ADDR (the address of the allocation's first node, from `scontrol show hostnames` and
    that node's NodeAddr) and MASTER_PORT (derived from the job id: two jobs on one node differ);
  * sources a site hook for `module load` / conda (--setup-hook FILE or $REPRO_SETUP_HOOK), then
    prepares the environment once per requirements hash (a stamp file; not in every job, requeue or
    array task): $REPRO_SETUP, `make setup` by default; $REPRO_PYTHON picks the interpreter;
  * preemption: SLURM sends USR1 two minutes before it stops the job; the engine (shared/engine.py)
    checkpoints and exits with REQUEUE_EXIT, the script requeues the job, and the next start resumes
    from that checkpoint. `--requeue` also lets SLURM requeue a job whose node failed; the log is
    appended to, so one file holds every attempt;
  * arrays: `--array full,full_mnist` runs one task per scale; `--shards N` runs one task per shard of
    one scale's cells (papers whose config has shard / num_shards, e.g. peft_alignment's grid), then
    one merge job (afterok on the whole array) that reruns the scale unsharded: every cell is cached,
    so it reads them back, runs what is left (peft: the merges) and writes and publishes the report.

python -m shared.launch slurm --paper dim_reduction --scale full --gpus 1 [--array full,full_mnist]
python -m shared.launch slurm --paper peft_alignment --scale full --shards 64 [--dry-run | --submit]
python -m shared.launch torchrun --paper quant_pretraining --scale full --gpus 4 [--nodes 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from papers import UnknownPaperError, get_paper
from shared.config import ConfigError, available_scales, load_config

REQUEUE_EXIT = 99
# srun runs each task through this: it leaves the flag file $1 when the task exits REQUEUE_EXIT
TASK_WRAPPER = f'trap "" USR1; "${{@:2}}"; rc=$?; [ "$rc" -ne {REQUEUE_EXIT} ] || touch "$1"; exit "$rc"'
LOG_DIR = "runs/slurm"  # relative to the submit directory (the repo root): sbatch opens it before the script runs
ENGINE_FIELDS = ("accelerator", "devices", "num_nodes")  # the config fields the launcher sets from the allocation
SHARD_FIELDS = ("shard", "num_shards")

HEADER = """#!/bin/bash
# {title}
# Submit with `python -m shared.launch slurm {argv} --submit` (it creates {log_dir}/ first, which
# sbatch needs for --output), or by hand: mkdir -p {log_dir} && sbatch THIS_FILE
#SBATCH --job-name={job}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={tasks}
{gpu_line}#SBATCH --cpus-per-task={cpus}
#SBATCH --mem={mem}
#SBATCH --time={time}
#SBATCH --output={log_dir}/{log_name}.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=USR1@120
{extra_sbatch}"""

BODY = """set -euo pipefail
cd "$SLURM_SUBMIT_DIR"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
task=${{SLURM_ARRAY_TASK_ID:+ task $SLURM_ARRAY_TASK_ID}}
echo "launch: job $SLURM_JOB_ID$task start ${{SLURM_RESTART_COUNT:-0}} on $SLURM_JOB_NODELIST at $(date -Is)"

# Site hook, every start: `module load ...`, `conda activate ...`, NCCL_SOCKET_IFNAME=... (sourced; may set
# REPRO_PYTHON to the environment's interpreter and REPRO_SETUP=: when that environment is ready-made).
hook=${{REPRO_SETUP_HOOK:-{hook}}}
if [ -n "$hook" ]; then set +u; source "$hook"; set -u; fi

# The environment, once per requirements hash (not in every requeue or array task): a stamp file.
PY=${{REPRO_PYTHON:-.venv/bin/python}}
req=$({{ cat requirements/*.txt papers/*/requirements.txt pyproject.toml 2>/dev/null || true; }} \
    | sha256sum | cut -c1-16)
stamp=${{REPRO_STAMP_DIR:-.venv}}/.setup-$req
if [ ! -e "$stamp" ]; then
    mkdir -p "$(dirname "$stamp")" {log_dir}
    exec 9>{log_dir}/.setup.lock
    flock 9  # array tasks starting together: one prepares, the others wait for its stamp
    if [ ! -e "$stamp" ]; then
        eval "${{REPRO_SETUP:-make setup}}"  # a failure ends the job here (set -e): no stamp, no srun
        touch "$stamp"
    fi
    exec 9>&-
fi

# Rendezvous from the allocation: the first node's address, a port derived from the job id.
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)  # not head: SIGPIPE + pipefail
addr=$(scontrol show node "$first" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p' | sed -n 1p)
export MASTER_ADDR=${{addr:-$first}} MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
echo "launch: MASTER_ADDR=$MASTER_ADDR MASTER_PORT=$MASTER_PORT"

{scale_line}
preempted={log_dir}/.preempted-$SLURM_JOB_ID
rm -f "$preempted"
rc=0
# One task per device. A task that fails ends the others (--kill-on-bad-exit: no rank waits hours for a
# dead peer), which makes srun's status 143 whatever the task's was, so a task that exits {requeue_exit}
# (checkpointed for preemption) leaves a flag file; its wrapper ignores USR1, which is the task's to handle.
srun --kill-on-bad-exit=1 bash -c {wrapper} task "$preempted" \\
    "$PY" -m {entry} --scale "$SCALE" {args} || rc=$?
if [ "$rc" -eq {requeue_exit} ] || [ -e "$preempted" ]; then  # preempted after a checkpoint: run again from it
    echo "launch: checkpointed for preemption; requeueing job $SLURM_JOB_ID"
    rm -f "$preempted"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
"""


@dataclass
class SlurmJob:
    """One full-scale launch. gpus: devices per node, one task each (CPU processes when accelerator is
    'cpu', e.g. a CPU cluster or the test cluster of tests/test_slurm_cluster.py)."""

    paper: str
    scale: str = "full"
    gpus: int = 1
    nodes: int = 1
    cpus: int = 8
    mem: str = "64G"
    time: str = "24:00:00"
    array: list[str] | None = None
    repo: str = "$SLURM_SUBMIT_DIR"  # kept for callers; the script runs from the submit directory
    extra: str = "--publish"
    shards: int = 0  # > 0: an array of this many tasks over one scale's cells, then a merge job
    accelerator: str = "gpu"  # "gpu" or "cpu"
    partition: str = ""
    account: str = ""
    setup_hook: str = ""  # a file sourced at every start (module load / conda); $REPRO_SETUP_HOOK overrides
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE passed to every task
    entry: str = ""  # the module srun runs; default papers.<paper>.reproduce (the tests run workers)
    argv: str = ""  # the launcher's own arguments, quoted in the script's header
    log_dir: str = LOG_DIR  # relative to the submit directory, or absolute


@dataclass
class Rendered:
    """The scripts of one launch: the job (an array when sharded) and, after a sharded array, the merge."""

    job: SlurmJob
    main: str
    merge: str | None = None


def check_job(job: SlurmJob) -> None:
    """ValueError naming the first field of `job` that would render a script SLURM refuses or misreads
    (every value is pasted into the script)."""
    for name in ("gpus", "nodes", "cpus"):
        value = getattr(job, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(job.shards, int) or job.shards < 0 or job.shards == 1:
        raise ValueError(f"shards must be 0 (no array) or an integer >= 2, got {job.shards!r}")
    if job.accelerator not in ("gpu", "cpu"):
        raise ValueError(f"accelerator must be 'gpu' or 'cpu', got {job.accelerator!r}")
    if not re.fullmatch(r"[0-9]+[KMGT]?", job.mem):
        raise ValueError(f"mem must look like 64G (a number, then K, M, G or T), got {job.mem!r}")
    if not re.fullmatch(r"([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}", job.time):
        raise ValueError(f"time must look like 24:00:00 or 2-00:00:00, got {job.time!r}")
    for name in ("partition", "account"):
        if not re.fullmatch(r"[A-Za-z0-9_.,-]*", getattr(job, name)):
            raise ValueError(f"{name} must be letters, digits, '_', '.', ',' or '-', got {getattr(job, name)!r}")
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", job.log_dir):
        raise ValueError(f"log_dir must be a path of letters, digits, '_', '.', '/' or '-', got {job.log_dir!r}")
    if job.entry and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", job.entry):
        raise ValueError(f"entry must be a dotted module name, got {job.entry!r}")
    if job.array and job.shards:
        raise ValueError("a job takes either an array of scales or shards of one scale, not both")
    if job.array is not None and not job.array:
        raise ValueError("array must name at least one scale")


def field_paths(obj: Any, names: tuple[str, ...], prefix: str = "") -> dict[str, list[str]]:
    """{name: dotted paths of the dataclass fields called `name`} anywhere in the config `obj`."""
    found: dict[str, list[str]] = {n: [] for n in names}
    for f in dataclasses.fields(obj):
        path = f"{prefix}{f.name}"
        if f.name in names:
            found[f.name].append(path)
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for name, paths in field_paths(value, names, path + ".").items():
                found[name] += paths
    return found


def _config_class(paper: str) -> type:
    return importlib.import_module(f"papers.{paper}.config").Config


def config_allocation(paper: str, scale: str, overrides: list[str] | None = None) -> tuple[int, int]:
    """(devices per node, nodes) the scale's config asks for: its devices / num_nodes fields, else 1."""
    try:
        cfg = load_config(_config_class(paper), get_paper(paper).dir / "configs" / f"{scale}.yaml", overrides or [])
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    paths = field_paths(cfg, ENGINE_FIELDS)

    def value(name: str) -> int:
        found = [_get(cfg, p) for p in paths[name]]
        return found[0] if found and isinstance(found[0], int) and found[0] >= 1 else 1

    return value("devices"), value("num_nodes")


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def allocation_overrides(job: SlurmJob, scale: str) -> list[str]:
    """The --set flags that make the paper's config match the allocation (nodes, devices per node, and
    the accelerator for a CPU job); ValueError when the paper cannot use it. Checked by loading the
    scale's config with them, so the paper's own rules (batch divisible by the world size...) apply."""
    paper = get_paper(job.paper)
    cls = _config_class(job.paper)
    path = paper.dir / "configs" / f"{scale}.yaml"
    try:
        base = load_config(cls, path, job.overrides)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    paths = field_paths(base, ENGINE_FIELDS)
    sets: list[str] = []
    if paths["num_nodes"]:
        sets += [f"{p}={job.nodes}" for p in paths["num_nodes"]]
    elif job.nodes > 1:
        raise ValueError(f"{job.paper} trains on one node (its config has no num_nodes); use --nodes 1")
    if paths["devices"]:
        sets += [f"{p}={job.gpus}" for p in paths["devices"]]
    elif job.gpus > 1:
        raise ValueError(f"{job.paper} uses one device per run (its config has no devices field); use --gpus 1")
    if job.accelerator == "cpu":
        sets += [f"{p}=cpu" for p in paths["accelerator"]]
    try:
        load_config(cls, path, [*job.overrides, *sets])
    except ConfigError as exc:
        raise ValueError(f"{job.paper} at {job.nodes} node(s) x {job.gpus} device(s): {exc}") from None
    return sets


def shard_overrides(job: SlurmJob, scale: str) -> list[str]:
    """--set flags of array task $SLURM_ARRAY_TASK_ID of job.shards: the paper's shard / num_shards."""
    cfg = load_config(_config_class(job.paper), get_paper(job.paper).dir / "configs" / f"{scale}.yaml")
    paths = field_paths(cfg, SHARD_FIELDS)
    if len(paths["shard"]) != 1 or len(paths["num_shards"]) != 1:
        raise ValueError(
            f"{job.paper} cannot be sharded: its config has no single shard / num_shards pair "
            "(--array over scales still works)"
        )
    return [f'{paths["shard"][0]}="$SLURM_ARRAY_TASK_ID"', f"{paths['num_shards'][0]}={job.shards}"]


def _quote_set(item: str) -> str:
    if item.endswith('="$SLURM_ARRAY_TASK_ID"'):  # expanded by bash in the task
        return f"--set {item}"
    return f"--set {shlex.quote(item)}"


def _header(job: SlurmJob, name: str, log_name: str, title: str, array_line: str) -> str:
    extra = array_line
    extra += f"#SBATCH --partition={job.partition}\n" if job.partition else ""
    extra += f"#SBATCH --account={job.account}\n" if job.account else ""
    return HEADER.format(
        title=title,
        argv=job.argv or f"--paper {job.paper} --scale {job.scale}",
        log_dir=job.log_dir,
        job=name,
        nodes=job.nodes,
        tasks=job.gpus,
        gpu_line=f"#SBATCH --gpus-per-node={job.gpus}\n" if job.accelerator == "gpu" else "",
        cpus=job.cpus,
        mem=job.mem,
        time=job.time,
        log_name=log_name,
        extra_sbatch=extra,
    )


def _body(job: SlurmJob, scale_line: str, args: list[str]) -> str:
    return BODY.format(
        hook=shlex.quote(job.setup_hook) if job.setup_hook else "",
        log_dir=shlex.quote(job.log_dir),
        scale_line=scale_line,
        entry=job.entry or f"papers.{job.paper}.reproduce",
        args=" ".join(a for a in args if a),
        requeue_exit=REQUEUE_EXIT,
        wrapper=shlex.quote(TASK_WRAPPER),
    )


def render_job(job: SlurmJob) -> Rendered:
    """The sbatch script(s) of `job`: with `array`, one task per scale; with `shards`, one task per shard
    of one scale's cells and a merge script to submit after it (afterok)."""
    check_job(job)
    paper = get_paper(job.paper)
    scales = job.array or [job.scale]
    known = available_scales(paper.dir)
    unknown = [s for s in scales if s not in known]
    if unknown:
        raise ValueError(f"{job.paper}: unknown scale(s) {unknown}; valid: {', '.join(known)}")
    sets = {s: allocation_overrides(job, s) for s in scales}
    if len({tuple(v) for v in sets.values()}) > 1:
        raise ValueError(f"{job.paper}: the scales {scales} need different settings; submit them one by one")
    common = [_quote_set(s) for s in [*job.overrides, *sets[scales[0]]]]
    publish = [job.extra] if job.extra else []
    if job.array:
        array_line = f"#SBATCH --array=0-{len(scales) - 1}\n"
        scale_line = f"SCALES=({' '.join(shlex.quote(s) for s in scales)}); SCALE=${{SCALES[$SLURM_ARRAY_TASK_ID]}}"
        title = f"{job.paper}: one array task per scale ({', '.join(scales)})"
        header = _header(job, f"{job.paper}-array", "%x-%A_%a", title, array_line)
        return Rendered(job, header + _body(job, scale_line, [*common, *publish]))
    scale_line = f"SCALE={shlex.quote(job.scale)}"
    if not job.shards:
        header = _header(job, f"{job.paper}-{job.scale}", "%x-%j", f"{job.paper} at scale {job.scale}", "")
        return Rendered(job, header + _body(job, scale_line, [*common, *publish]))
    shard = [_quote_set(s) for s in shard_overrides(job, job.scale)]
    title = f"{job.paper} at scale {job.scale}: {job.shards} array tasks, one per shard; then the merge job"
    array_line = f"#SBATCH --array=0-{job.shards - 1}\n"
    main = _header(job, f"{job.paper}-{job.scale}-shards", "%x-%A_%a", title, array_line)
    main += _body(job, scale_line, [*common, *shard])  # the merge job reports and publishes
    merge_title = f"{job.paper} at scale {job.scale}: the merge after the shards (submitted afterok on them)"
    merge = _header(job, f"{job.paper}-{job.scale}-merge", "%x-%j", merge_title, "")
    merge += _body(job, scale_line, [*common, *publish])
    return Rendered(job, main, merge)


def render_slurm(job: SlurmJob) -> str:
    """The sbatch script for `job` (with shards, the array's; the merge follows it in render_job)."""
    return render_job(job).main


def dry_run_text(rendered: Rendered) -> str:
    """What --dry-run prints: the script(s), then the commands --submit would run."""
    out = rendered.main
    steps = [f"mkdir -p {shlex.quote(rendered.job.log_dir)}", "sbatch --parsable <the script above>  # -> JOB"]
    if rendered.merge is not None:
        out += f"\n# ---- merge job ----\n{rendered.merge}"
        steps.append("sbatch --parsable --dependency=afterok:JOB <the merge script>")
    return out + "\n# --submit runs, from the repo root:\n" + "".join(f"#   {s}\n" for s in steps)


def submit(rendered: Rendered, root: Path, sbatch: str = "sbatch") -> list[str]:
    """Write the script(s) into the log folder (created here: sbatch opens --output before the script
    runs), submit them from `root` (the merge after the array, afterok); the job ids, in order. A refused
    submission raises RuntimeError with sbatch's message."""
    from shared.io import atomic_write_text

    job = rendered.job

    log_dir = root / job.log_dir  # an absolute log_dir stays as it is
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{job.paper}-{'array' if job.array else job.scale}"
    ids: list[str] = []
    scripts = [("", rendered.main)] + ([("-merge", rendered.merge)] if rendered.merge is not None else [])
    for suffix, text in scripts:
        path = atomic_write_text(log_dir / f"{stem}{suffix}.sbatch", text)
        cmd = [sbatch, "--parsable"] + ([f"--dependency=afterok:{ids[0]}"] if ids else []) + [str(path)]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        ids.append(proc.stdout.strip().split(";")[0])
    return ids


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
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m shared.launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    slurm = sub.add_parser("slurm", help="print (--dry-run, the default) or --submit an sbatch script")
    slurm.add_argument("--paper", required=True)
    slurm.add_argument("--scale", default="full")
    slurm.add_argument(
        "--gpus", type=positive_int, default=None, help="GPUs per node, one task each (default: the config's)"
    )
    slurm.add_argument("--cpu", action="store_true", help="no GPUs: --gpus counts CPU processes per node")
    slurm.add_argument("--nodes", type=positive_int, default=None, help="nodes (default: the config's num_nodes or 1)")
    slurm.add_argument("--cpus", type=positive_int, default=8, help="CPU cores per task")
    slurm.add_argument("--mem", default="64G")
    slurm.add_argument("--time", default="24:00:00")
    slurm.add_argument("--partition", default="")
    slurm.add_argument("--account", default="")
    slurm.add_argument("--setup-hook", default="", help="bash file sourced at every start (module load, conda)")
    slurm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    group = slurm.add_mutually_exclusive_group()
    group.add_argument("--array", default=None, help="comma-separated scales, one array task each")
    group.add_argument("--shards", type=positive_int, default=0, help="array over one scale's cells, then a merge")
    mode = slurm.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the script(s) and the sbatch commands")
    mode.add_argument("--submit", action="store_true", help="create the log folder and sbatch the script(s)")
    run = sub.add_parser("torchrun", help="print the torchrun command")
    run.add_argument("--paper", required=True)
    run.add_argument("--scale", default="full")
    run.add_argument("--gpus", type=positive_int, default=1)
    run.add_argument("--nodes", type=positive_int, default=1)
    args = parser.parse_args(raw)
    try:
        if args.command == "torchrun":
            print(render_torchrun(args.paper, args.scale, args.gpus, args.nodes))
            return 0
        if args.setup_hook and not Path(args.setup_hook).is_file():
            raise ValueError(f"--setup-hook {args.setup_hook!r}: no such file")
        shown = [a for a in raw[1:] if a not in ("--dry-run", "--submit")]
        gpus, nodes = args.gpus, args.nodes
        if gpus is None or nodes is None:  # the config's own devices and nodes (of the first scale of an array)
            first = args.array.split(",")[0] if args.array else args.scale
            known = available_scales(get_paper(args.paper).dir)
            if first not in known:
                raise ValueError(f"{args.paper}: unknown scale {first!r}; valid: {', '.join(known)}")
            devices, num_nodes = config_allocation(args.paper, first, args.overrides)
            gpus, nodes = gpus or devices, nodes or num_nodes
        job = SlurmJob(
            args.paper,
            args.scale,
            gpus,
            nodes,
            args.cpus,
            args.mem,
            args.time,
            [s for s in args.array.split(",") if s] if args.array is not None else None,
            shards=args.shards,
            accelerator="cpu" if args.cpu else "gpu",
            partition=args.partition,
            account=args.account,
            setup_hook=str(Path(args.setup_hook).resolve()) if args.setup_hook else "",
            overrides=args.overrides,
            argv=" ".join(shlex.quote(a) for a in shown),
        )
        rendered = render_job(job)
        if not args.submit:
            print(dry_run_text(rendered), end="")
            return 0
        from shared.environment import REPO_ROOT

        ids = submit(rendered, REPO_ROOT)
    except (UnknownPaperError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = ["job", "merge job (afterok)"]
    for name, job_id in zip(names, ids, strict=False):
        print(f"submitted {name} {job_id}; log: {job.log_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
