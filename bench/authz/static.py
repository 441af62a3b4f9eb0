"""The bench's static-rule authorizer: declares in its handshake that openat
is allowed whatever its arguments (``allow=openat``), so the broker compiles
that into the seccomp filter and an openat never stops; anything else it is
asked about gets ``cont``."""
import sys

inp, out = sys.stdin.buffer, sys.stdout.buffer
inp.readline()  # the broker's greeting
out.write(b"hello 1 role=authorizer name=static trace=openat allow=openat\n")
out.flush()
for line in inp:
    if line.startswith(b"syscall "):
        out.write(line.split(b" ", 2)[1] + b" cont\n")
        out.flush()
