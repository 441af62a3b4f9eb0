"""A path-sandbox-like plain authorizer for the real-workload bench (used when
brokerd has no shipped path-sandbox policy yet).  Run it with
``-e trace=openat,openat2,execve``: it pulls the path out of each call line
and answers ``skip-fail EACCES`` for paths under a denied prefix, else ``cont``."""
import os
import sys

DENY = tuple(p.encode() for p in ("/etc/shadow", "/etc/gshadow", "/root/.ssh", "/proc/kcore"))

inp, out = sys.stdin.buffer, sys.stdout.buffer
for line in inp:
    verdict = b"cont\n"
    q = line.find(b'"')
    if q >= 0:
        end = line.find(b'"', q + 1)
        path = line[q + 1 : end if end > 0 else len(line)]
        if path.startswith(b"/") and path.startswith(DENY):
            verdict = b"skip-fail EACCES\n"
        elif not path.startswith(b"/"):
            path = os.path.normpath(path)  # relative to the tracee's cwd: nothing to check here
    out.write(verdict)
    out.flush()
