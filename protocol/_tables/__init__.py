"""Generated syscall tables (see scripts/gen_syscalls.py)."""
