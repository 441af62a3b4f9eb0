"""The shim's one exception a caller handles."""

from __future__ import annotations


class LaunchError(Exception):
    """The program could not be started; ``status`` is what a shell would exit with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
