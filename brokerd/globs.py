"""Path globs shared by the broker's argument rules and the shipped policies."""

from __future__ import annotations

import re


def glob_to_regex(glob: str) -> str:
    """A path glob: ``*`` and ``?`` stay within a component, ``**`` crosses
    ``/``, ``[...]`` as in the shell; ``/DIR/**`` also matches ``/DIR``."""
    out = []
    i = 0
    n = len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")
            i += 3
            continue
        if c == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append("[^/]*")
                i += 1
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 2 if glob.startswith("[!", i) or glob.startswith("[]", i) else i + 1)
            if j < 0:
                raise ValueError(f"unclosed '[' in glob {glob!r}")
            body = glob[i + 1:j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)
