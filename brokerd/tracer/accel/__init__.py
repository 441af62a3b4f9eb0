"""The optional compiled stop-loop calls (``_accel.c`` beside this file).

Built by ``scripts/setup`` (and ``scripts/install-system`` for the /opt
copy) with the machine's gcc: ``scripts/build-accel PYTHON``.  Where it is
missing, failed to build, or ``BROKERD_ACCEL=0`` is set, :data:`accel` is
None and the shim makes the same calls through ctypes (the pure-Python path,
tested as the fallback).  It only makes system calls the shim would make
anyway, in fewer Python-level calls (docs/shim.md, "What runs in C").
"""

from __future__ import annotations

import os
from types import ModuleType

ENV = "BROKERD_ACCEL"


#: the compiled calls the shim uses: an object built from an older _accel.c (a
#: checkout updated without scripts/setup) lacks some, and is not used at all
#: rather than failing the first session that needs one
CALLS = ("seccomp_info", "read_cstr", "plain_stat", "set_info", "cont", "pin_setup", "pin_plain", "pin_open",
         "wait_any", "next_stop", "reap", "counts", "ask_open", "event_line", "ask_counts")


def _load() -> tuple[ModuleType | None, str]:
    """The module and why not, when it is not used."""
    if os.environ.get(ENV, "") == "0":
        return None, f"{ENV}=0"
    try:
        from . import _accel  # type: ignore[attr-defined]
    except ImportError as e:
        return None, f"not built ({e}; scripts/build-accel builds it)"
    missing = [name for name in CALLS if not hasattr(_accel, name)]
    if missing:
        return None, f"built from an older _accel.c (no {', '.join(missing)}; scripts/build-accel builds it again)"
    return _accel, ""


accel, why_not = _load()


def describe() -> str:
    """One line for ``brokerctl -v``: is the compiled stop loop in use?"""
    return "stop-loop accelerator: on" if accel is not None else f"stop-loop accelerator: off ({why_not})"


__all__ = ["CALLS", "ENV", "accel", "describe", "why_not"]
