"""protocol/ and clients/ are brokerd.protocol and brokerd.clients; run from
the repository root, importing them by their folder names used to load every
module a second time (``protocol.types.Int is brokerd.protocol.types.Int`` was
False).  Now that is an ImportError naming the right name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _python(code: str) -> subprocess.CompletedProcess:
    # cwd = the repository root: its folders are importable by name from there
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module,right", [
    ("protocol", "brokerd.protocol"),
    ("protocol.types", "brokerd.protocol"),
    ("clients", "brokerd.clients"),
    ("clients.policies.sandbox", "brokerd.clients"),
])
def test_folder_names_do_not_import(module: str, right: str) -> None:
    r = _python(f"import {module}")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and f"import {right}" in last, r.stderr


def test_one_copy_of_each_class() -> None:
    r = _python("import brokerd.protocol.types as a\n"
                "try:\n    import protocol.types as b\nexcept ImportError:\n    b = a\n"
                "print(a.Int is b.Int)")
    assert r.stdout.strip() == "True", r.stderr


def test_the_package_names_work_from_the_root() -> None:
    r = _python("import brokerd.protocol, brokerd.clients.policies.sandbox; print('ok')")
    assert r.stdout.strip() == "ok", r.stderr
