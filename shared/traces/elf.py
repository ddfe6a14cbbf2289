"""Symbol -> file offset in an ELF binary, which is what a uprobe definition takes.

The offset changes with every package build, so it is computed from the installed binary each time
(dynamic symbol table, then the LOAD segment that maps the symbol's address), never hard-coded.
"""

from __future__ import annotations

from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from shared.traces.errors import TraceError


def symbol_offset(binary: str | Path, symbol: str) -> int:
    """File offset of `symbol` (a defined function in .dynsym or .symtab) inside `binary`."""
    binary = Path(binary)
    try:
        with binary.open("rb") as fh:
            elf = ELFFile(fh)
            vaddr = _symbol_vaddr(elf, symbol)
            if vaddr is None:
                raise TraceError(f"{binary}: no defined symbol {symbol!r} (the build does not export it)")
            for seg in elf.iter_segments("PT_LOAD"):
                start = seg["p_vaddr"]
                if start <= vaddr < start + seg["p_memsz"]:
                    return vaddr - start + seg["p_offset"]
    except FileNotFoundError as exc:
        raise TraceError(f"{binary}: not found; is the package installed?") from exc
    except ELFError as exc:
        raise TraceError(f"{binary}: not a readable ELF file ({exc})") from exc
    raise TraceError(f"{binary}: symbol {symbol!r} at {vaddr:#x} lies in no LOAD segment")


def _symbol_vaddr(elf: ELFFile, symbol: str) -> int | None:
    for name in (".dynsym", ".symtab"):
        section = elf.get_section_by_name(name)
        if section is None:
            continue
        for sym in section.get_symbol_by_name(symbol) or []:
            if sym["st_shndx"] != "SHN_UNDEF" and sym["st_value"]:
                return int(sym["st_value"])
    return None
