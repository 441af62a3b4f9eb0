"""The policies that ship with brokerd.

Each is a module runnable as an authorizer (``python3 -m
brokerd.clients.policies.NAME ARGS``) and by name with ``brokerctl run
--policy NAME[:ARG,ARG...]``.  See docs/policies.md.
"""

from __future__ import annotations

#: --policy name -> (module, one-line description)
POLICIES: dict[str, tuple[str, str]] = {
    "sandbox": ("brokerd.clients.policies.sandbox",
                "files only under the given directories; links denied; unknown syscalls ENOSYS"),
    "readonly": ("brokerd.clients.policies.readonly",
                 "every write to the file system fails with EROFS"),
    "network": ("brokerd.clients.policies.network",
                "connect/bind/sendto/sendmsg only to listed addresses (CIDR:PORT, unix:PATH)"),
    "audit": ("brokerd.clients.policies.audit",
              "allow everything, log every call and its result as JSON lines"),
    "fakeid": ("brokerd.clients.policies.fakeid",
               "getuid & co. report 0 (or the given uid,gid)"),
    "timeshift": ("brokerd.clients.policies.timeshift",
                  "clock_gettime/gettimeofday/time syscalls shifted by an offset"),
    "strict": ("brokerd.clients.policies.strict",
               "seccomp strict mode as a policy: read/write/exit only, anything else kills"),
    "file": ("brokerd.clients.policies.rulefile",
             "a declarative TOML policy file"),
}


def build_shipped(spec: str):
    """``NAME[:ARG,ARG...]`` -> the shipped policy built in this process (a
    :class:`brokerd.clients.authorizer.Authorizer`): what a policy file's
    ``base`` names.  ValueError, one line, for an unknown name or bad arguments."""
    import contextlib
    import importlib
    import io

    name, _, rest = spec.partition(":")
    if name not in POLICIES or name in ("file", "audit"):
        raise ValueError(f"{spec!r}: no shipped policy {name!r} to build on "
                         f"(one of {', '.join(sorted(set(POLICIES) - {'file', 'audit'}))})")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return importlib.import_module(POLICIES[name][0]).build([a for a in rest.split(",") if a])
    except SystemExit:  # its argument parser said why
        why = err.getvalue().strip().splitlines()
        raise ValueError(f"{spec!r}: {why[-1] if why else 'bad arguments'}") from None
