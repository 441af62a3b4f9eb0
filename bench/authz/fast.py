"""The bench's handshake authorizer for the fast paths.  argv[1] picks one:

* ``rule``: declares ``rule="openat path2=/dev/null => cont"``: the broker
  settles /dev/null opens itself, with no round trip;
* ``cache``: answers ``cont ; cache``: the first identical call asks, the
  rest come from the broker's verdict cache;
* ``notify``: subscribes to getppid and declares
  ``verdicts=cont,skip-fail,skip-ok``, so the session may use the seccomp
  user-notification backend instead of ptrace.
"""
import sys

mode = sys.argv[1]
inp, out = sys.stdin.buffer, sys.stdout.buffer
inp.readline()
hello = {
    "rule": b'hello 1 role=authorizer name=rule trace=openat rule="openat path2=/dev/null => cont"',
    "cache": b"hello 1 role=authorizer name=cache trace=openat",
    "notify": b"hello 1 role=authorizer name=notify trace=getppid verdicts=cont,skip-fail,skip-ok",
}[mode]
out.write(hello + b"\n")
out.flush()
reply = b" cont ; cache\n" if mode == "cache" else b" cont\n"
for line in inp:
    if line.startswith(b"syscall "):
        out.write(line.split(b" ", 2)[1] + reply)
        out.flush()
