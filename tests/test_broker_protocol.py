"""Protocol features the broker provides: pathN/bufN notes, fetch of large
buffers on demand, the authorizer's own default verdict, proc events."""

from __future__ import annotations

import re

from conftest import brokerctl

FETCHER = r'''
import sys
from brokerd.protocol import codec
from brokerd.protocol.types import Data, Reply, SkipFail, Cont, Fetch, SyscallEvent
log = open(sys.argv[1], "a")
sys.stdin.readline()
print("hello 1 role=authorizer name=fetcher trace=write strsize=8", flush=True)
for raw in sys.stdin:
    ev = codec.parse_event(raw)
    log.write(raw); log.flush()
    if not isinstance(ev, SyscallEvent):
        continue
    buf = ev.call.args[1]
    if buf.truncated:
        # ask for the rest, as the seed's 10 MB write would need
        sys.stdout.write(codec.format_reply(Fetch(ev.id, 2, len(buf.data), buf.total - len(buf.data))).decode())
        sys.stdout.flush()
        data = codec.parse_event(sys.stdin.readline())
        log.write(f"DATA {data.offset} {len(data.data.data)}\n"); log.flush()
        whole = buf.data + data.data.data
    else:
        whole = buf.data
    verdict = SkipFail(13) if b"SECRET" in whole else Cont()
    sys.stdout.write(codec.format_reply(Reply(verdict, id=ev.id)).decode()); sys.stdout.flush()
'''


def test_fetch_reads_beyond_the_prefix(authz, cprog, tmp_path):
    log = tmp_path / "log"
    prog = str(cprog("calls"))
    r = brokerctl("run", "-a", authz(FETCHER) + f" {log}", "--", prog,
                  "write:public data, long enough to be cut\n", "write:harmless prefix then SECRET\n")
    assert "public data, long enough to be cut" in r.stdout
    assert "SECRET" not in r.stdout
    assert "write fail EACCES" in r.stdout, r.stdout + r.stderr
    text = log.read_text()
    assert '"harmless"...28' in text  # the event carried only strsize=8 bytes
    assert "DATA 8 " in text


def test_path_notes_resolve_cwd_and_dotdot(cprog, tmp_path):
    log = tmp_path / "log"
    spy = f"sh -c 'while read -r l; do printf \"%s\\n\" \"$l\" >> {log}; echo cont; done'"
    brokerctl("run", "-e", "trace=openat", "-a", spy, "--", "sh", "-c",
              f"cd {tmp_path} && {cprog('opener')} ./sub/../x")
    assert f'"./sub/../x", O_RDONLY, 00 ; path2="{tmp_path}/x"' in log.read_text()


def test_absolute_path_notes_are_folded(cprog, tmp_path):
    """An absolute path's note is folded as a relative one's is (``..``,
    ``.``, doubled and trailing slashes); one with nothing to fold is
    itself (the broker then shares the argument's value)."""
    log = tmp_path / "log"
    (tmp_path / "sub").mkdir()
    (tmp_path / "x").write_text("x\n")
    spy = f"sh -c 'while read -r l; do printf \"%s\\n\" \"$l\" >> {log}; echo cont; done'"
    r = brokerctl("run", "-e", "trace=openat", "-a", spy, "--", str(cprog("opener")),
                  f"{tmp_path}/sub/../x", f"{tmp_path}//./x", f"{tmp_path}/x", f"{tmp_path}/sub/")
    assert r.stdout.count(" ok x") == 3, r.stdout + r.stderr
    notes = [re.search(r'path2="[^"]*"', line)[0] for line in log.read_text().splitlines() if str(tmp_path) in line]
    assert notes == [f'path2="{tmp_path}/x"'] * 3 + [f'path2="{tmp_path}/sub"']


def test_sysret_carries_out_buffer(cprog, rules, tmp_path):
    log = tmp_path / "log"
    spy = f"sh -c 'while read -r l; do printf \"%s\\n\" \"$l\" >> {log}; case \"$l\" in syscall*) echo step;; *) echo cont;; esac; done'"
    brokerctl("run", "-e", "trace=read", "-a", spy, "--", str(cprog("opener")), "/etc/hostname")
    host = open("/etc/hostname").read().strip()
    assert f'ok {len(host) + 1} ; buf2="{host}\\n"' in log.read_text()


HELLO_DEFAULT = r'''
import sys, time
sys.stdin.readline()
print("hello 1 role=authorizer name=slow trace=openat default=kill", flush=True)
for line in sys.stdin:
    if not line.startswith("syscall"):
        continue
    if "hostname" in line:
        time.sleep(5)
    print(line.split()[1], "cont", flush=True)
'''


def test_authorizer_chooses_its_default(authz, cprog):
    r = brokerctl("run", "--timeout", "0.5", "-a", authz(HELLO_DEFAULT), "--", str(cprog("opener")), "/etc/hostname")
    assert r.returncode == -9  # its default is kill, applied at the deadline
    assert "did not answer within 0.5s" in r.stderr
