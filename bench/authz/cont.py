"""The bench's plain authorizer: answers every line (the hello greeting
included) with ``cont``."""
import sys

inp, out = sys.stdin.buffer, sys.stdout.buffer
for _line in inp:
    out.write(b"cont\n")
    out.flush()
