"""The same authorizer in every language: deny /etc/shadow with EACCES, allow
the rest; each must give the traced program exactly the same outcome."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import brokerctl

EXAMPLES = Path(__file__).parent.parent / "clients" / "examples"


def _awk() -> str:
    awk = shutil.which("awk")
    assert awk, "awk is required"
    version = subprocess.run([awk, "-W", "version"], capture_output=True, text=True, timeout=120).stdout
    interactive = "-W interactive " if "mawk" in version else ""
    return f"{awk} {interactive}-f {EXAMPLES / 'deny-shadow.awk'}"


@pytest.fixture(scope="module")
def c_authorizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "deny-shadow"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(out), str(EXAMPLES / "deny-shadow.c")], check=True, timeout=120)
    return str(out)


LANGS = ["sh", "awk", "perl", "c", "python"]


def command(lang: str, c_authorizer: str) -> str:
    return {
        "sh": f"sh {EXAMPLES / 'deny-shadow.sh'}",
        "awk": _awk(),
        "perl": f"perl {EXAMPLES / 'deny-shadow.pl'}",
        "c": c_authorizer,
        "python": f"{sys.executable} {EXAMPLES / 'deny-shadow.py'}",
    }[lang]


@pytest.mark.parametrize("lang", LANGS)
def test_same_outcome_with_cat(lang, c_authorizer):
    r = brokerctl("run", "-a", command(lang, c_authorizer), "--", "cat", "/etc/hostname", "/etc/shadow")
    assert r.returncode == 1
    assert r.stdout == Path("/etc/hostname").read_text()
    assert r.stderr == "cat: /etc/shadow: Permission denied\n"


@pytest.mark.parametrize("lang", LANGS)
def test_same_outcome_with_c_opener(lang, c_authorizer, cprog):
    r = brokerctl("run", "-a", command(lang, c_authorizer), "--", str(cprog("opener")),
                  "/etc/shadow", "/etc/hostname", "/nonexistent")
    lines = r.stdout.splitlines()
    assert lines[0] == "/etc/shadow EACCES"
    assert lines[1].startswith("/etc/hostname ok ")
    assert lines[2] == "/nonexistent ENOENT"
    assert r.returncode == 0
