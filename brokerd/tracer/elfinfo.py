"""ELF knowledge the shim reports, through pyelftools: what an exec'd binary
is (class, machine, interpreter) and which function made a call
(``library:symbol+offset``, like ``strace -k``'s innermost frame).

Both are off the hot path unless asked for: exec facts are read once per
exec, symbol tables once per mapped file (cached by path, inode and mtime).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile


@dataclass(frozen=True, slots=True)
class ExecFacts:
    elfclass: int  # 32 or 64
    machine: str  # e.g. "EM_X86_64"
    interp: str  # "" for a static binary
    static: bool


def exec_facts(path: str) -> ExecFacts | None:
    """Facts about the ELF file at ``path`` (e.g. ``/proc/PID/exe``); None if not ELF."""
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            interp = ""
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    interp = seg.get_interp_name()
                    break
            return ExecFacts(elf.elfclass, elf["e_machine"], interp, not interp)
    except (OSError, ELFError, ValueError):
        return None


class _SymbolTable:
    """Sorted function symbols and PT_LOAD segments of one ELF file."""

    def __init__(self, path: str) -> None:
        self.starts: list[int] = []
        self.syms: list[tuple[int, int, str]] = []
        self.loads: list[tuple[int, int, int]] = []  # (p_offset, p_filesz, p_vaddr)
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD":
                    self.loads.append((seg["p_offset"], seg["p_filesz"], seg["p_vaddr"]))
            found: dict[int, tuple[int, str]] = {}
            for name in (".symtab", ".dynsym"):
                sec = elf.get_section_by_name(name)
                if sec is None:
                    continue
                for sym in sec.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym["st_value"] and sym.name:
                        found.setdefault(sym["st_value"], (sym["st_size"], sym.name))
        self.syms = sorted((addr, size, name) for addr, (size, name) in found.items())
        self.starts = [s[0] for s in self.syms]

    def vaddr(self, file_offset: int) -> int | None:
        for off, size, vaddr in self.loads:
            if off <= file_offset < off + size:
                return vaddr + file_offset - off
        return None

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        addr, size, name = self.syms[i]
        if size and vaddr >= addr + size + 16:  # past the function (allow tail padding)
            return None
        return name, vaddr - addr


class Symbolizer:
    """Maps instruction pointers of traced processes to ``lib:symbol+0xoff``."""

    def __init__(self) -> None:
        self._tables: dict[tuple[str, int, int], _SymbolTable | None] = {}
        self._maps: dict[int, list[tuple[int, int, int, str]]] = {}

    def forget(self, pid: int) -> None:
        """The process exec'd or exited: its mappings are stale."""
        self._maps.pop(pid, None)

    def _mappings(self, pid: int, refresh: bool = False) -> list[tuple[int, int, int, str]]:
        maps = self._maps.get(pid)
        if maps is None or refresh:
            maps = []
            try:
                with open(f"/proc/{pid}/maps") as f:
                    for line in f:
                        parts = line.split(None, 5)
                        if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                            continue
                        lo, hi = (int(x, 16) for x in parts[0].split("-"))
                        maps.append((lo, hi, int(parts[2], 16), parts[5].rstrip("\n")))
            except OSError:
                pass
            self._maps[pid] = maps
        return maps

    def _table(self, path: str) -> _SymbolTable | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_ino, st.st_mtime_ns)
        if key not in self._tables:
            try:
                self._tables[key] = _SymbolTable(path)
            except (OSError, ELFError, ValueError):
                self._tables[key] = None
        return self._tables[key]

    def caller(self, pid: int, ip: int) -> str:
        """``libc.so.6:__open64+0x5c``; falls back to ``file+0xoff`` or a bare address."""
        for refresh in (False, True):
            for lo, hi, off, path in self._mappings(pid, refresh):
                if lo <= ip < hi:
                    base = os.path.basename(path)
                    table = self._table(path)
                    fileoff = ip - lo + off
                    if table is not None:
                        vaddr = table.vaddr(fileoff)
                        hit = table.lookup(vaddr) if vaddr is not None else None
                        if hit is not None:
                            return f"{base}:{hit[0]}+{hit[1]:#x}"
                    return f"{base}+{fileoff:#x}"
        return f"{ip:#x}"
