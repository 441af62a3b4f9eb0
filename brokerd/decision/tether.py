"""Start a process that dies with the thread that started it.

An authorizer is a separate program in any language.  If the broker that
spawned it is SIGKILLed (or OOM-killed), its input pipe closes, but an
authorizer stuck in a loop, or one that ignores EOF and SIGTERM, would live on
for ever as an orphan.  ``PR_SET_PDEATHSIG`` set in the child before exec is
the language-neutral tie: the kernel sends SIGKILL when the parent dies,
whatever the child runs, and the setting survives exec (it is cleared only by
a set-uid/set-gid exec or a credential change, neither of which an authorizer
started by us does).

Two caveats the callers honour:

* the signal fires when the parent *thread* exits, not the process; so a
  process is only spawned from a thread that lives as long as its session
  (brokerctl's and ``brokerctl serve``'s main thread);
* the parent may die between ``fork`` and ``prctl``: the child then checks that
  its parent is still the one that forked it, and exits if not.

The tie covers the process exec'd, and so :func:`sh_argv` makes a command
that is one simple command (``python3 policy.py --strict``) run as
``sh -c 'exec CMD'``: the shell becomes the authorizer, instead of forking it
as Debian's dash does (the tie would then hold the shell, and the authorizer
would outlive it).  What that process forks is not tied (the kernel clears
the setting in a forked child): the processes of a compound command
(``a | b``, ``x; y``), or the workers a policy starts.  They keep its process
group, which the broker kills at the end of a session; for the broker's
death, :func:`ward` starts a *warden*: a shell, outside the broker's process
group and session, blocked reading a pipe only the broker holds.  When the
broker lets go of it (at the end of the session) or dies, whatever kills it,
the kernel closes the pipe and the warden SIGKILLs the whole group.
:func:`spawn_warded` is both, the way authorizers are started.

A process group is only what its members choose: a child that calls
``setsid()`` (or ``setpgid``), as every daemonizing program does, leaves it
and outlived the session.  Where this process may make cgroups (cgroup v2
with ``cgroup.kill``, Linux 5.14+, writable here: as root, or a delegated
subtree), each warded process is started in a cgroup of its own beneath
ours (:func:`cell`), which no descendant can leave without the privilege
to write cgroup files; the warden then kills the cgroup (``cgroup.kill``:
every process in it, in one step, also those forking meanwhile) besides
the group, and removes it.  Elsewhere the group is all there is (a limit
docs/security.md states).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shlex
import signal
from collections.abc import Iterable, Mapping, Sequence

PR_SET_PDEATHSIG = 1
#: the signals Python ignores at start-up (SIG_IGN survives exec): whatever the
#: broker starts gets them back at their default action, as subprocess's
#: ``restore_signals`` does, or ``yes | head -1`` says "Broken pipe"
PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)
#: first words that make ``exec CMD`` mean something else than ``CMD``: the
#: shell's keywords and builtins (``exit 3`` must stay the shell's own exit)
NOT_A_PROGRAM = frozenset("""
    if while until for case { ! function select time
    break : . continue eval exec exit export readonly return set shift times trap unset
    alias bg cd command false fg getopts hash jobs kill local newgrp pwd read source true type
    ulimit umask unalias wait echo printf test [
""".split())

_libc = ctypes.CDLL(None, use_errno=True)


def spawn_tied(path: str, argv: Sequence[str], env: Mapping[str, str], *,
               fds: Iterable[tuple[int, int]] = (),
               sigdef: Iterable[signal.Signals] = (), cgroup: str | None = None) -> int:
    """Fork and exec ``path`` as a process SIGKILLed when the calling thread
    dies, in a process group of its own, with an empty signal mask and the
    ``sigdef`` signals at their default action.  ``fds`` are (source, target)
    descriptors dup'ed in order; ``cgroup``: a cgroup directory it moves
    itself into before exec (:func:`cell`).  Returns the pid; exits 127 in
    the child if anything fails before exec (the parent sees it exit)."""
    fds, sigdef = list(fds), list(sigdef)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe work until exec
        try:
            _child(parent, path, argv, env, fds, sigdef, cgroup)
        finally:
            os._exit(127)
    try:  # both sides set the group, so a kill of it cannot race the child's own setpgid
        os.setpgid(pid, pid)
    except OSError:
        pass  # it already exec'd (EACCES) or died (ESRCH): it set its group itself
    return pid


#: the warden: a background subshell (so the broker never waits for it, and it
#: is nobody's child but init's) that blocks on descriptor 3 until EOF, then
#: SIGKILLs process group $1 (fd 3: a background job's stdin is /dev/null)
#: and, given one ($2), every process of a cgroup, which it then removes once
#: they are gone (a cgroup with processes cannot be removed: 10 s at most)
WARDEN = ('(read _ <&3; exec 3<&-; kill -s KILL -- "-$1" 2>/dev/null; [ -z "$2" ] && exit; '
          'echo 1 > "$2/cgroup.kill"; i=0; '
          'while ! rmdir "$2" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done) &')
#: where cells are made: the cgroup-v2 directory this process is in ("" once it proved unusable)
_cells_under: str | None = None
_cell_names = itertools.count()


class Ward:
    """A warden over one process group: :meth:`release` (or the broker's
    death) makes it SIGKILL the group."""

    fd: int  #: the pipe's only write end
    group: int  #: the warden's own process group (for the guard to protect)

    def __init__(self, fd: int, group: int) -> None:
        self.fd = fd
        self.group = group

    def release(self) -> None:
        """Let go: the warden kills the group now (what is left of it)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def cell() -> str | None:
    """A new, empty cgroup beneath this process's own (cgroup v2, with
    ``cgroup.kill``) for one warded process and all it will ever fork, or
    None where none can be made (no cgroup v2, not writable here: not root
    and no delegation, or a kernel before 5.14); asked once per process."""
    global _cells_under
    if _cells_under is None:
        _cells_under = _own_cgroup2() or ""
    if not _cells_under:
        return None
    path = os.path.join(_cells_under, f"brokerd-{os.getpid()}-{next(_cell_names)}")
    try:
        os.mkdir(path)
    except OSError:
        _cells_under = ""
        return None
    if not os.path.exists(os.path.join(path, "cgroup.kill")):
        _remove(path)
        _cells_under = ""
        return None
    return path


def _remove(cgroup: str) -> None:
    """Remove an empty cell (one nothing was started in)."""
    try:
        os.rmdir(cgroup)
    except OSError:
        pass


def _own_cgroup2() -> str | None:
    """The directory of this process's cgroup in the cgroup-v2 hierarchy, if mounted."""
    try:
        with open("/proc/self/mountinfo") as f:
            mount = next((ln.split(" - ")[0].split()[4] for ln in f if " - cgroup2 " in ln), None)
        with open("/proc/self/cgroup") as f:
            own = next((ln[3:].strip() for ln in f if ln.startswith("0::")), None)
    except OSError:
        return None
    if mount is None or own is None or not own.startswith("/"):
        return None
    path = mount + own.rstrip("/")
    # a move needs write access to the source's cgroup.procs too (here: ours)
    return path if os.access(path, os.W_OK) and os.access(os.path.join(path, "cgroup.procs"), os.W_OK) else None


def ward(pgid: int, cgroup: str | None = None) -> Ward:
    """Start a warden that SIGKILLs process group ``pgid`` (and, given one,
    every process in ``cgroup``, then removes it) once the returned
    :class:`Ward` is released or this process dies (however: the kernel
    closes the pipe).  It runs in a session of its own, so Ctrl-C and a
    hang-up at the broker's terminal do not end it."""
    r, w = os.pipe()
    try:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", WARDEN, "brokerd-warden", str(pgid), cgroup or ""], {},
                             file_actions=[(os.POSIX_SPAWN_DUP2, r, 3),
                                           (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                           (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                           (os.POSIX_SPAWN_DUP2, 1, 2)],
                             setsid=True, setsigmask=())
    except OSError:
        os.close(w)
        raise
    finally:
        os.close(r)
    os.waitpid(pid, 0)  # the shell that started the warden in the background: gone at once
    return Ward(w, pid)


def spawn_warded(path: str, argv: Sequence[str], env: Mapping[str, str], *,
                 fds: Iterable[tuple[int, int]] = (),
                 sigdef: Iterable[signal.Signals] = ()) -> tuple[int, Ward]:
    """:func:`spawn_tied`, and a :func:`ward` over the process group it leads
    and its :func:`cell` where there is one: the process dies with the
    calling thread, and everything it forked (that kept its group, or any
    of it where there is a cell) with this process."""
    cgroup = cell()
    try:
        pid = spawn_tied(path, argv, env, fds=fds, sigdef=sigdef, cgroup=cgroup)
    except OSError:
        if cgroup is not None:
            _remove(cgroup)
        raise
    try:
        return pid, ward(pid, cgroup)
    except OSError:
        os.killpg(pid, signal.SIGKILL)  # fail closed: nothing runs untied
        raise


def sh_argv(command: str) -> list[str]:
    """``sh -c COMMAND``, with ``exec`` in front when COMMAND is one simple
    command (no operators, no newline, no leading assignment or keyword), so
    that the tied process is the program itself."""
    if "\n" in command:
        return ["sh", "-c", command]
    try:
        words = list(shlex.shlex(command, posix=True, punctuation_chars=True))
    except ValueError:  # unbalanced quotes: the shell says so itself
        return ["sh", "-c", command]
    simple = words and words[0] not in NOT_A_PROGRAM and "=" not in words[0] and not any(
        w and all(c in "();<>|&" for c in w) for w in words)
    return ["sh", "-c", f"exec {command}" if simple else command]


def _child(parent: int, path: str, argv: Sequence[str], env: Mapping[str, str],
           fds: list[tuple[int, int]], sigdef: list[signal.Signals], cgroup: str | None) -> None:
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # the parent died before the tie was made
        return
    os.setpgid(0, 0)
    if cgroup is not None:  # before exec: nothing it forks is ever outside
        try:
            fd = os.open(os.path.join(cgroup, "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError:
            pass  # not movable after all: its process group is what the warden kills
    for src, dst in fds:
        if src == dst:
            os.set_inheritable(dst, True)
        else:
            os.dup2(src, dst)
    for s in sigdef:
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.execve(path, list(argv), dict(env))


__all__ = ["Ward", "cell", "sh_argv", "spawn_tied", "spawn_warded", "ward"]
