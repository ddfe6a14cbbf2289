"""Syscall number -> name, for raw_syscalls events (which carry only the number)."""

from __future__ import annotations

import functools
import json
import platform
import re
from pathlib import Path

from shared.traces.errors import TraceError

_BUNDLED = {"x86_64": Path(__file__).with_name("syscalls_x86_64.json")}
_HEADER = "/usr/include/{arch}-linux-gnu/asm/unistd_64.h"


@functools.cache
def syscall_names(arch: str | None = None) -> dict[int, str]:
    """The syscall table of `arch` (default: this machine): bundled for x86_64, else the kernel header."""
    arch = arch or platform.machine()
    if arch in _BUNDLED:
        table = json.loads(_BUNDLED[arch].read_text())["names"]
        return {int(k): v for k, v in table.items()}
    header = Path(_HEADER.format(arch=arch))
    if header.is_file():
        return {int(n): name for name, n in re.findall(r"#define __NR_(\w+)\s+(\d+)", header.read_text())}
    raise TraceError(f"no syscall table for {arch!r}: bundled are {sorted(_BUNDLED)}; install linux-libc-dev")
