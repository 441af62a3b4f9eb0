"""The top-level folders ``protocol/`` and ``clients/`` are brokerd's packages
``brokerd.protocol`` and ``brokerd.clients`` (pyproject's package-dir), not
packages of their own.

Run from the repository root, Python would also import them as ``protocol``
and ``clients``: every module loaded twice, each class twice, so
``protocol.types.Int is brokerd.protocol.types.Int`` is False and an
``isinstance`` check against the other copy quietly fails.  Importing them by
their folder name is therefore an ImportError that names the right name.
"""

from __future__ import annotations


def require(name: str, right: str) -> None:
    """Refuse package ``name`` unless it is ``right``."""
    if name != right:
        raise ImportError(
            f"{name!r} is the source folder of {right!r}: import {right} (scripts/setup installs it"
            " into .venv); under its folder name every module would load twice", name=name)


require(__name__.rpartition(".")[0], "brokerd.protocol")
