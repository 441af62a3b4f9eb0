"""Objects of the judged call's path made in one compiled call (issue #13).

A Python ``__init__`` that only stores its arguments is a Python frame and
a few hundred nanoseconds per object; every judged call makes several (the
path's ``Str``, the ``Call``, the ``SyscallEvent``, the ``Decision``, each
in-process member's ``Syscall``).  ``accel.maker`` (brokerd.tracer.accel)
makes the same objects without the frame.  Nothing is decided here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from .accel import accel

_T = TypeVar("_T")


def maker(cls: type[_T], fixed: tuple[tuple[str, object], ...] = ()) -> Callable[..., _T]:
    """A function making ``cls`` objects from every field not in ``fixed``,
    positionally in ``__slots__`` order, each of ``fixed``'s set to its
    value: one compiled call where brokerd.tracer.accel is built, else
    ``cls`` itself (whose ``__init__`` must then take the same arguments and
    set ``fixed``'s so).  Only for classes of slots whose ``__init__`` just
    stores its arguments (tests/test_fused.py compares the two)."""
    make = getattr(accel, "maker", None)  # (None also for a module built before it had one)
    if make is None:
        return cls
    skip = {name for name, _ in fixed}
    names = tuple(n for n in cls.__slots__ if n not in skip)  # type: ignore[attr-defined]
    return cast(Callable[..., _T], make(cls, names, fixed))


__all__ = ["maker"]
