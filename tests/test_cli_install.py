"""scripts/install-system (which scripts/setup runs as root): another user
can run the installed brokerctl, and the system python3 finds the brokerd
package (so the documented `python3 -m brokerd.clients.policies.NAME` and
`python3 clients/examples/deny-shadow.py` work) without generic top-level
names such as `protocol` or `clients`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from daemon_fixtures import OTHER_PY, as_user, shared_dir

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534

pytestmark = [
    pytest.mark.slow,  # a pip install
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user"),
    pytest.mark.skipif(not OTHER_PY.startswith("/usr/"), reason="no system python3 for the other user"),
]


def _as_nobody(*argv: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=120, cwd="/",
                          preexec_fn=as_user(NOBODY), env={"PATH": "/usr/bin:/bin", "HOME": "/"})


def test_installed_copy_works_for_every_user(tmp_path):
    d = shared_dir(tmp_path)
    try:
        _check_install(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _check_install(d: Path) -> None:
    system_python = d / "system-python"  # stands in for /usr/bin/python3
    subprocess.run([OTHER_PY, "-m", "venv", "--without-pip", str(system_python)], check=True, timeout=120)
    env = dict(os.environ, BROKERD_PREFIX=str(d / "opt"), BROKERD_BINDIR=str(d / "bin"),
               BROKERD_PYTHONS=str(system_python / "bin" / "python"))
    r = subprocess.run([str(ROOT / "scripts" / "install-system"), "--no-units"], env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    said = r.stdout + r.stderr
    assert "brokerctl and brokerd in" in said and "imports brokerd from" in said  # says what it did
    py = str(system_python / "bin" / "python")

    v = _as_nobody(str(d / "bin" / "brokerctl"), "--version")
    assert v.returncode == 0 and v.stdout.startswith("brokerctl "), v.stderr
    h = _as_nobody(py, "-m", "brokerd.clients.policies.sandbox", "--help")
    assert h.returncode == 0 and "usage: sandbox" in h.stdout, h.stderr
    example = d / "deny-shadow.py"
    shutil.copy(ROOT / "clients" / "examples" / "deny-shadow.py", example)
    example.chmod(0o644)
    g = _as_nobody(py, str(example), input="hello 1 role=broker\n")
    assert g.returncode == 0 and g.stdout.startswith("hello 1 role=authorizer"), g.stdout + g.stderr
    for generic in ("protocol", "clients", "trio"):
        n = _as_nobody(py, "-c", f"import {generic}")
        assert n.returncode != 0 and "ModuleNotFoundError" in n.stderr, generic
    # as documented, from the checkout, whose own brokerd/ comes first on the path
    c = subprocess.run([py, "-m", "brokerd.clients.policies.sandbox", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert c.returncode == 0 and "usage: sandbox" in c.stdout, c.stderr
    run = _as_nobody(str(d / "bin" / "brokerctl"), "run", "--policy", "readonly", "--", "cat", "/etc/hostname")
    assert run.returncode == 0 and run.stdout == Path("/etc/hostname").read_text(), run.stderr
