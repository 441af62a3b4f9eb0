"""Verdict caching: an answer marked `; cache` settles the same call again
without a round trip, and only the same call."""

from __future__ import annotations

from conftest import brokerctl

CACHING = r'''
import sys
log = open(sys.argv[1], "a")
sys.stdin.readline()
print("hello 1 role=authorizer name=cacher trace=openat", flush=True)
for line in sys.stdin:
    if not line.startswith("syscall"):
        continue
    log.write(line); log.flush()
    f = line.split()
    if '"/etc/hostname"' in line:
        print(f[1], "skip-fail EACCES ; cache", flush=True)
    else:
        print(f[1], "cont ; cache", flush=True)
'''


def test_cached_verdict_settles_the_same_call(authz, cprog, tmp_path):
    log = tmp_path / "log"
    other = tmp_path / "other"
    other.write_text("o\n")
    paths = ["/etc/hostname", str(other)] * 5
    r = brokerctl("run", "--audit", "-", "-a", authz(CACHING) + f" {log}", "--", str(cprog("opener")), *paths)
    assert r.stdout.splitlines() == ["/etc/hostname EACCES", f"{other} ok o"] * 5, r.stderr
    seen = log.read_text().splitlines()
    assert sum('"/etc/hostname", O_RDONLY' in s for s in seen) == 1  # asked once, then from the cache
    assert sum(f'"{other}", O_RDONLY' in s for s in seen) == 1
    # cached decisions are still audited
    assert sum('openat AT_FDCWD, \\"/etc/hostname\\"' in line for line in r.stderr.splitlines()) == 5


def test_same_spelling_elsewhere_is_not_the_same_call(authz, cprog, tmp_path):
    log = tmp_path / "log"
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_text(d + "\n")
    opener = cprog("opener")
    r = brokerctl("run", "-a", authz(CACHING) + f" {log}", "--", "sh", "-c",
                  f"cd {tmp_path}/a && {opener} f; cd {tmp_path}/b && {opener} f")
    assert r.stdout.splitlines() == ["f ok a", "f ok b"]
    # "f" resolves to two different files (path2 differs): asked twice
    assert log.read_text().count('"f", O_RDONLY') == 2


LIBRARY_CACHING = r'''
import sys
from brokerd.clients.authorizer import Authorizer, cached, cont, skip_fail

log = open(sys.argv[1], "a")
az = Authorizer("cacher")


@az.on("openat")
def openat(call):
    log.write(call.text() + "\n"); log.flush()
    return cached(skip_fail("EACCES") if call.path(1) == "/etc/hostname" else cont())


az.main()
'''


def test_library_authorizer_can_mark_a_verdict_cached(authz, cprog, tmp_path):
    """Before, brokerd.clients.authorizer had no way to send `; cache` (it
    dropped the flag of any Reply): every open was asked.  With cached(),
    each of the two files is asked about once, over ten opens."""
    log = tmp_path / "log"
    other = tmp_path / "other"
    other.write_text("o\n")
    paths = ["/etc/hostname", str(other)] * 5
    r = brokerctl("run", "-a", authz(LIBRARY_CACHING) + f" {log}", "--", str(cprog("opener")), *paths)
    assert r.stdout.splitlines() == ["/etc/hostname EACCES", f"{other} ok o"] * 5, r.stderr
    seen = log.read_text().splitlines()
    assert sum('"/etc/hostname", O_RDONLY' in s for s in seen) == 1, seen
    assert sum(f'"{other}", O_RDONLY' in s for s in seen) == 1, seen
