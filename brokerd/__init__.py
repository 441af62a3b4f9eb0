"""brokerd: a user-space syscall broker for Linux."""
