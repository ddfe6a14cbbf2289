"""What a result was measured on: versions, CPU or GPU, git commit. Goes into every run folder."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "lightning", "transformers", "datasets")


# What a run writes or renders (published results, README tables): a difference there does not change what
# the code computes, so it does not make the tree "dirty" (else one published paper blocks the next).
NOT_CODE = (":(exclude,glob)papers/*/results/**", ":(exclude,glob)**/*.md")


def git_commit(root: Path = REPO_ROOT) -> str:
    """The HEAD commit, with '+dirty' when tracked files other than results and Markdown differ from it;
    'unknown' outside git.

    $REPRO_GIT_COMMIT names it where the tree was copied without .git (a lent GPU machine).
    """
    if os.environ.get("REPRO_GIT_COMMIT"):
        return os.environ["REPRO_GIT_COMMIT"]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The CPU's feature flags (/proc/cpuinfo): libraries pick code paths by them (bitsandbytes' packed 4-bit
    path needs avx512_bf16; torch, oneDNN and OpenBLAS pick kernels by vector width), so a number that
    differs between machines can be traced to the path each one took."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return []


def torch_cpu_capability() -> str | None:
    """The vector kernels torch dispatches to on this CPU (e.g. AVX512, AVX2; ATEN_CPU_CAPABILITY forces one)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.backends.cpu.get_cpu_capability()


def gpu_names() -> list[str]:
    """CUDA devices torch can see. torch is imported here when installed: a stage that has not
    imported it yet (a report-only rerun) must still name the GPU the results came from."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def machine_summary() -> str:
    """One line naming the hardware, e.g. '1x NVIDIA H200, 16 CPU cores' or '2-core CPU (...), no GPU'."""
    cores = os.cpu_count() or 0
    gpus = gpu_names()
    if gpus:
        return f"{len(gpus)}x {gpus[0]}, {cores} CPU cores"
    return f"{cores}-core {platform.machine()} CPU ({cpu_model()}), no GPU"


def describe() -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "machine": machine_summary(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch_cpu_capability(),
        "gpus": gpu_names(),
        "packages": versions,
        "git_commit": git_commit(),
        "argv": sys.argv,
    }


# glibc's allocator hands large blocks back to the kernel as soon as they are freed (mmap above a dynamic
# threshold, trim at the heap top), so a training loop that allocates and frees the same activations every
# step pays for fresh zeroed pages each time: measured here, a DPO run spent 16 of its 39 s in the kernel.
# Keeping freed memory in the process removes that cost; it does not change any number computed.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(2**30),  # read at process start (children); mallopt caps it at 32 MiB
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(256 * 2**20),
}


def keep_freed_memory() -> bool:
    """Tune glibc malloc in this process (mallopt; it caps the mmap threshold at 32 MiB). Call it from a
    command's entry point only: it changes how a process measures its own memory (efficient_transformers'
    VmHWM harness), so library code and tests must not. False where glibc is absent."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim, m_top_pad, m_mmap = -1, -2, -3  # mallopt parameter numbers from glibc's malloc.h
        values = {m_mmap: 32 * 2**20, m_trim: int(MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"])}
        values[m_top_pad] = int(MALLOC_ENV["MALLOC_TOP_PAD_"])
        return all(libc.mallopt(param, value) == 1 for param, value in values.items())
    except (OSError, AttributeError):
        return False


@contextmanager
def child_malloc_env() -> Iterator[None]:
    """Within the block, child processes started (spawned) inherit MALLOC_ENV, which glibc reads at their
    start; the parent's environment is restored afterwards."""
    saved = {k: os.environ.get(k) for k in MALLOC_ENV}
    os.environ.update(MALLOC_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
