"""brokerctl's command line: --version, no arguments, per-command help, and
bad arguments anywhere are one line on stderr with a non-zero exit and never
a traceback (a small fuzz of the argument parser)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

from conftest import brokerctl

# one interpreter runs every case (fork per case): fast enough to fuzz
DRIVER = r'''
import io, json, os, sys
from brokerd.cli.main import main
for line in sys.stdin:
    argv = json.loads(line)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 2)
        os.dup2(os.open(os.devnull, os.O_RDWR), 0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback; traceback.print_exc()
            code = 99
        os._exit(code or 0)
    os.close(w)
    err = b""
    while chunk := os.read(r, 65536):
        err += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    print(json.dumps([argv, os.waitstatus_to_exitcode(status), err.decode(errors="replace")]), flush=True)
'''

WORDS = ["run", "attach", "policy", "check", "list", "command", "replay", "sessions", "kill", "detach", "stats",
         "serve", "-a", "--policy", "-e", "--timeout", "--default", "--strsize", "--audit", "--cpu", "-o", "-p",
         "-t", "-T", "-y", "-c", "--on-exit", "--backend", "--ask", "--save-policy", "--json", "--socket", "--",
         "--bogus", "-Z", "trace=", "trace=%nope", "signal=bad", "x=y", "nan", "-1", "0", "1e999", "inf", "abc",
         "/nonexistent/x", "sandbox:", ":", "nope:1", "file:", "x.toml", "99999999999999999999", "\x00", "é",
         "-", "--once", "--name", "--scope", "evil"]


def test_version_and_no_arguments():
    r = brokerctl("--version")
    assert r.returncode == 0 and r.stdout.startswith("brokerctl ") and r.stdout.strip() != "brokerctl"
    r = brokerctl()
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "--help" in r.stderr, r.stderr


def test_attach_help_lists_only_attach_options():
    r = brokerctl("attach", "--help")
    assert r.returncode == 0
    assert "--on-exit" in r.stdout and "--ask" in r.stdout
    for launch_only in ("--backend", "--cpu", "--no-landlock", "-T"):
        assert launch_only not in r.stdout.replace("-T)", ""), launch_only


def test_bad_arguments_anywhere_are_one_line(tmp_path):
    rng = random.Random(15)
    cases = [[]] + [["run", "--timeout", "nan", "--", "true"], ["run", "--strsize", "1e999", "--", "true"],
                    ["attach", "0"], ["attach", "-1"], ["run", "--cpu", "9999", "--", "true"],
                    ["run", "-e", "trace=", "--", "true"], ["replay", "/nonexistent/journal", "-a", "cat"]]
    for _ in range(200):
        cases.append([rng.choice(WORDS) for _ in range(rng.randint(1, 6))])
    env = dict(os.environ, BROKERD_SOCKET=str(tmp_path / "no-daemon.sock"))
    p = subprocess.run([sys.executable, "-c", DRIVER], input="".join(json.dumps(c) + "\n" for c in cases),
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    bad = []
    for line in p.stdout.splitlines():
        argv, code, err = json.loads(line)
        if "Traceback" in err or code == 99 or (code != 0 and len(err.strip().splitlines()) != 1):
            bad.append((argv, code, err[-500:]))
    assert not bad, bad[:5]


def test_file_errors_name_the_file(tmp_path):
    r = brokerctl("replay", str(tmp_path / "missing.jsonl"), "-a", "cat")
    assert r.returncode != 0 and r.stderr == f"brokerctl: {tmp_path / 'missing.jsonl'}: No such file or directory\n"
    r = brokerctl("run", "--audit", str(tmp_path / "no" / "audit.jsonl"), "--", "true")
    assert r.returncode != 0 and str(tmp_path / "no" / "audit.jsonl") in r.stderr, r.stderr


def test_nonsense_numbers_are_refused():
    for value in ("nan", "inf", "0", "-1", "soon"):
        r = brokerctl("run", "--timeout", value, "--", "true")
        assert r.returncode == 2 and "--timeout" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_a_cpu_this_machine_lacks_is_named_with_the_cpus_it_has():
    have = sorted(os.sched_getaffinity(0))
    r = brokerctl("run", "--cpu", str(have[-1] + 1000), "--", "true")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "no such CPU here" in r.stderr and f"CPUs {have[0]}" in r.stderr, r.stderr


def test_an_unknown_option_before_the_command_is_named():
    r = brokerctl("--bogus", "run", "--", "true")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "'--bogus'" in r.stderr, r.stderr
