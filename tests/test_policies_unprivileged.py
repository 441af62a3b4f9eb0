"""A normal user sandboxes their own build: no root anywhere, the shipped
sandbox policy with its kernel layer (and per call with --no-landlock)."""

from __future__ import annotations

import os
import shutil

import pytest
from daemon_fixtures import readable_copy, run_ctl, shared_dir
from test_policies_sandbox import MAKEFILE

NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user for the test"),
    pytest.mark.skipif(not all(shutil.which(p) for p in ("make", "cc")), reason="needs make and cc"),
]


@pytest.mark.parametrize("mode", ["landlock", "per-call"])
def test_a_normal_user_sandboxes_their_own_build(tmp_path, mode):
    top = shared_dir(tmp_path)
    proj = top / "proj"
    (proj / ".tmp").mkdir(parents=True)
    (proj / "Makefile").write_text(MAKEFILE)
    (proj / "util.h").write_text("int answer(void);\n")
    (proj / "util.c").write_text('#include "util.h"\nint answer(void) { return 42; }\n')
    (proj / "main.c").write_text('#include <stdio.h>\n#include "util.h"\n'
                                 'int main(void) { printf("%d\\n", answer()); return 0; }\n')
    secret = top / "secret.txt"  # the user's own file, readable natively, outside the box
    secret.write_text("outside\n")
    for p in (top, proj, proj / ".tmp", *proj.iterdir(), secret):
        os.chown(p, NOBODY, NOBODY)
    secret.chmod(0o600)
    script = f"cd {proj} && make -s -j2 && ./hello; cat {secret}; echo x > {top}/planted"
    extra = ["--no-landlock"] if mode == "per-call" else []
    r = run_ctl("run", *extra, "--policy",
                f"sandbox:{proj},/dev/null,--ro=/usr,--ro=/lib,--ro=/lib64,--ro=/etc",
                "--", "sh", "-c", script, user=NOBODY, timeout=300,
                env={"HOME": str(proj), "TMPDIR": str(proj / ".tmp"),
                     # the policy process is a python3 of its own: let it find brokerd
                     "PYTHONPATH": readable_copy()})
    assert r.stdout.splitlines() == ["42"], r.stderr
    assert f"cat: {secret}: Permission denied" in r.stderr
    assert not (top / "planted").exists()
    assert (proj / "hello").stat().st_uid == NOBODY
    # the same commands natively: the user can read their file and write beside it
    import subprocess

    from daemon_fixtures import as_user
    native = subprocess.run(["sh", "-c", f"cat {secret}"], capture_output=True, text=True,
                            preexec_fn=as_user(NOBODY), cwd="/", timeout=120)
    assert native.stdout == "outside\n"
