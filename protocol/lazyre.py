"""Regular expressions compiled on first use.

The codec has some thirty patterns, most of them for parsing lines: a
``brokerctl run`` whose policies run inside the broker parses none, yet
compiling them all at import was about 2 ms of every start-up (issue 13).
``compile(PATTERN)`` returns a stand-in that compiles the pattern the first
time one of its methods is looked up, then keeps the bound methods (``match``,
``fullmatch``...) as its own attributes, so later calls cost what calling the
compiled pattern's methods does.  Use it for module-level patterns only
called as ``P.match(...)`` and the like (not passed to ``re`` functions).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["LazyPattern", "compile"]


class LazyPattern:
    """A ``re.Pattern`` made when first used (see the module's docstring)."""

    def __init__(self, pattern: str | bytes, flags: int = 0) -> None:
        self._source: tuple[Any, int] = (pattern, flags)

    def __getattr__(self, name: str) -> Any:  # names not (yet) in the instance: the first use
        if name.startswith("__"):
            raise AttributeError(name)
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            compiled = self._compiled = re.compile(*self._source)
            for method in ("match", "fullmatch", "search", "sub", "subn", "split", "finditer", "findall"):
                setattr(self, method, getattr(compiled, method))
        return getattr(compiled, name)


def compile(pattern: Any, flags: int = 0) -> re.Pattern:
    """``re.compile``, deferred until the pattern is used (typed as a Pattern:
    it answers every method and attribute one has)."""
    return LazyPattern(pattern, flags)  # type: ignore[return-value]
