"""Launch and attach: the handshake, kernel layers, spawn, seize, detach."""

from __future__ import annotations

import errno as E
import os
import signal
import time
from collections.abc import Callable, Sequence

from brokerd.decision.authorizer import EOF_GRACE, KILL_GRACE, Authorizer
from brokerd.decision.stack import Stack
from brokerd.decision.tether import PYTHON_IGNORED

from .. import auditlog, landlock, seccomp
from .. import layers as kernel_layers
from .. import ptrace as pt
from ..procfs import WRITE_GUARDED_FS, procfs_mounts
from .base import ShimBase, _symbolizer
from .consts import (
    OPTIONS,
    OPTIONS_NO_EXEC,
    TERMINAL_SIGNALS,
)
from .errors import LaunchError
from .libc import _libc
from .loop import EventLoop
from .thread import _Thread


def attach_refusal(pid: int, err: OSError) -> str:
    """Why PTRACE_SEIZE of ``pid`` failed, and what to do about it."""
    if err.errno == E.ESRCH:
        return f"no such process: {pid}"
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        status = {}
    tracer = status.get("TracerPid", "0").strip()
    if tracer not in ("0", ""):
        return f"cannot attach to {pid}: it is already traced by pid {tracer} (detach that tracer first)"
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        scope = ""
    if scope and scope != "0" and os.geteuid() != 0:
        return (f"cannot attach to {pid}: Yama ptrace_scope is {scope}; run as root or set "
                "/proc/sys/kernel/yama/ptrace_scope to 0")
    return (f"cannot attach to {pid}: {err.strerror} (you may only trace your own processes "
            "unless you are root)")


def greet(stack: Stack, loop: EventLoop, session: str, greeting_timeout: float | None) -> None:
    """Greet every authorizer and wait for its first answer, which says
    whether it speaks the handshake or is a plain line filter.  Needs only
    the loop: brokerctl greets before it chooses the backend and makes the shim."""
    loop.setup()
    now = time.monotonic()
    for a in stack:
        if greeting_timeout is not None:
            a.greeting_timeout = greeting_timeout
        a.greet(session, now)
    while not all(a.ready for a in stack):
        loop.poll_once(reap=False)
        if loop.stop_signal:
            return  # told to stop before anything started: the caller ends the session
    stack.forget()  # subscriptions are known now


def end_authorizers(stack: Stack, why: str) -> None:
    """Stop every authorizer: the end of its input first, so one that still
    has records to write (an audit journal) ends on its own within EOF_GRACE;
    then SIGTERM, and SIGKILL to one still there after KILL_GRACE."""
    procs: list[Authorizer] = []
    for a in stack:
        if a.mode == "dead":
            continue
        if isinstance(a, Authorizer):
            a.finish(why)
            procs.append(a)
        else:
            a.kill(why)
    deadline = time.monotonic() + EOF_GRACE
    for a in procs:
        if not a.exited(deadline):
            a.close()  # SIGTERM
    deadline = time.monotonic() + KILL_GRACE
    for a in stack:
        a.reap(deadline)


def program_path(name: str) -> str | None:
    """The file ``name`` runs: itself when it has a slash, else the first on
    $PATH (None: not found).  ``shutil`` is imported only then: it brings
    bz2, lzma and fnmatch, a noticeable part of brokerctl's start-up."""
    if "/" in name:
        return name
    import shutil

    return shutil.which(name)


class Launch(ShimBase):
    """Launch and attach: the handshake, kernel layers, spawn, seize, detach."""

    def handshake(self) -> None:
        """Greet every authorizer (:func:`greet`), then take in what they said."""
        greet(self.stack, self.loop, self.session, self.greeting_timeout)
        if not self.stop_signal:  # else the caller ends the session (end_authorizers)
            self.greeted()

    @property
    def stop_signal(self) -> int:
        """A signal that came before there was a program (EventLoop.stop_signal)."""
        return self.loop.stop_signal

    def end_authorizers(self, why: str) -> None:
        end_authorizers(self.stack, why)

    def greeted(self) -> None:
        """The stack's handshakes are done (here, or by :func:`greet` before
        this shim was made): signal order, string size, fetches, layers."""
        self._signal_order = self.stack.signal_order()
        self.guard.protected_groups |= {a.pid for a in self.stack if a.pid}
        # their wardens, which kill those groups should the broker die (tether.ward)
        self.guard.protected_groups |= {w.group for a in self.stack if (w := getattr(a, "ward", None))}
        if self.stack:  # one decode serves every authorizer: the largest prefix any wants
            self.strsize = max(a.strsize if a.strsize is not None else self.strsize for a in self.stack)
        for a in self.stack:
            if hasattr(a, "on_fetch"):
                a.on_fetch = self._fetch
        if self._symbolizer is None and any(a.caller for a in self.stack):
            self._symbolizer = _symbolizer()
        self._plan_layers()

    def _plan_layers(self) -> None:
        """Compile the authorizers' kernel layers for this kernel (applied by
        the launched child, after the wall): each authorizer stops being asked
        about the calls its layer settles (PROTOCOL.md 7.6)."""
        specs = [(a.name, getattr(a, "layer", None)) for a in self.stack]
        self.layer_plan = kernel_layers.plan(specs, self.landlock_abi, self._log)
        for a, settled in zip(self.stack, self.layer_plan.settled, strict=True):
            if hasattr(a, "settled"):
                a.settled = settled
        procfs_at = _procfs_mounts() if self.guard.write_checks and self.layer_plan.layers else None
        if procfs_at is not None and kernel_layers.bars_procfs_writes(self.layer_plan.layers, procfs_at):
            self.guard.write_checks = False  # the kernel refuses every /proc and cgroup write: opens need not stop
            self._guarded = self.guard.calls()
        self._action_cache.clear()
        self.stack.forget()

    def _no_layers(self, why: str) -> None:
        """Nothing can be given to the program (attach): every call per call."""
        if any(getattr(a, "layer", None) for a in self.stack):
            self._log(f"{why}: kernel layers are not applied; their calls are decided per call")
        self.layer_plan = kernel_layers.Plan()
        for a in self.stack:
            if hasattr(a, "settled"):
                a.settled = frozenset()
        self._action_cache.clear()
        self.stack.forget()

    def launch(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Fork, let the tracer seize the child, install the filter, exec ``argv``."""
        insns = self.build_filter()
        self.exec_everywhere = self._symbolizer is not None or any("exec" in a.events for a in self.stack)

        def prepare(go: int) -> None:
            os.read(go, 1)  # wait until we are seized
            seccomp.install(insns)

        pid, go = self._spawn(argv, env, prepare)
        try:
            pt.seize(pid, OPTIONS if self.exec_everywhere else OPTIONS_NO_EXEC)
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            os.close(go)
            raise LaunchError(1, f"cannot trace the program: {e.strerror}") from e
        self._started(pid, go)
        return pid

    def _spawn(self, argv: Sequence[str], env: dict[str, str] | None,
               prepare: Callable[[int], None]) -> tuple[int, int]:
        """Fork the program.  The child restores the signal state the broker
        changed, runs ``prepare(go)`` (wait on the pipe ``go`` for the broker,
        install the filter: the order is the backend's) and execs.  Returns the
        pid and the pipe's write end, for :meth:`_started`."""
        if not argv:
            raise LaunchError(2, "no program given")
        path = program_path(argv[0])
        if path is None:
            raise LaunchError(127, f"{argv[0]}: command not found")
        self.loop.setup()
        if self.wall is None and self.use_landlock:
            self._log("no Landlock here (not in this kernel, or refused by a seccomp profile): the broker's "
                      "own checks guard its processes instead (every open stops once more; docs/security.md)")
        env = dict(os.environ) if env is None else env
        for s in TERMINAL_SIGNALS:
            self._saved_dispositions[s] = signal.getsignal(s)
        r, w = os.pipe()
        # the child must be dumpable for a non-root broker to seize it or take
        # its listener (the broker itself is not, see EventLoop.setup)
        _libc().prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
        pid = os.fork()
        if pid != 0:
            _libc().prctl(4, 0, 0, 0, 0)
        if pid == 0:  # the child: becomes the program
            try:
                os.close(w)
                for s, disp in self._saved_dispositions.items():
                    signal.signal(s, signal.SIG_DFL if disp in (None, signal.default_int_handler) else disp)
                for s in PYTHON_IGNORED:
                    signal.signal(s, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, self.loop.old_mask)
                if self.wall is not None:
                    try:
                        landlock.restrict(self.wall)
                    except OSError as e:  # fail closed: the program never runs outside the wall
                        os.write(2, f"brokerctl: cannot apply the Landlock wall: {e.strerror} "
                                    "(--no-landlock runs without it)\n".encode())
                        os._exit(127)
                # the authorizers' layers, in stack order (each only narrows); before the
                # filter, whose own answers (a policy's ENOSYS) must not reach these calls
                for layer in self.layer_plan.layers:
                    try:
                        landlock.restrict(layer)
                    except OSError as e:  # fail closed: its settled calls are asked nobody
                        os.write(2, f"brokerctl: cannot apply a policy's Landlock layer: {e.strerror} "
                                    "(--no-landlock decides its calls per call)\n".encode())
                        os._exit(127)
                prepare(r)
                os.close(r)
                os.execve(path, list(argv), env)
            except OSError as e:
                code = 126 if e.errno in (E.EACCES, E.ENOEXEC) else 127
                try:  # the write itself may be denied (a policy that sees every call)
                    os.write(2, f"brokerctl: {argv[0]}: {e.strerror}\n".encode())
                finally:
                    os._exit(code)
            finally:  # whatever happened, the child never returns into the broker's code
                os._exit(127)
        os.close(r)
        return pid, w

    def _started(self, pid: int, go: int) -> None:
        """The broker holds the program: record it and let it exec."""
        self.main_pid = pid
        self.threads[pid] = _Thread(pid, pid, startup=False, announced=True, exec_events=self.exec_everywhere)
        self._watch_landlock_audit()
        os.write(go, b"go")
        os.close(go)

    def _watch_landlock_audit(self) -> None:
        """Put the program's Landlock denials into the journal: with a journal,
        a Landlock domain, root and audit on, read the kernel's audit records
        (brokerd.tracer.auditlog) as one more source of the loop; before the
        program runs, so its first denial is seen.  Otherwise nothing changes."""
        if (self.audit is None and self._audit_tee is None) or (self.wall is None and not self.layer_plan.layers):
            return
        sock = auditlog.open_readlog()
        if sock is None:
            return
        corr = auditlog.Correlator(lambda pid: pid == self.main_pid or self._in_session(pid))
        self._landlock_audit = (sock, corr)
        self.loop.add_reader(sock.fileno(), lambda: self._landlock_records(auditlog.read_records(sock)))

    def _landlock_records(self, records: list[tuple[int, str]]) -> None:
        """Records in; the session's denials out to the journal (local, then the daemon's copy)."""
        assert self._landlock_audit is not None
        corr = self._landlock_audit[1]
        for rtype, text in records:
            self._journal(corr.feed(rtype, text))

    def _journal(self, denials: list[auditlog.LandlockDenial]) -> None:
        for rec in denials:
            if self.audit is not None:
                self.audit(rec)  # type: ignore[arg-type]
            if self._audit_tee is not None:
                self._audit_tee(rec)  # type: ignore[arg-type]

    def _end_landlock_audit(self) -> None:
        """The session is over: the records the kernel has still to deliver
        (briefly), then those that had no SYSCALL record; the socket closed."""
        if self._landlock_audit is None:
            return
        sock, corr = self._landlock_audit
        auditlog.drain(sock, lambda t, text: self._journal(corr.feed(t, text)))
        self._journal(corr.flush())
        self.loop.remove_reader(sock.fileno())
        sock.close()
        self._landlock_audit = None

    def attach(self, pid: int, follow: bool = False, exit_kill: bool = True) -> list[int]:
        """PTRACE_SEIZE every thread of ``pid`` (re-reading /proc/PID/task
        until no new thread appears), then interrupt each so that syscall
        stops begin.  New threads are always followed (a thread is the same
        process); ``follow`` also follows children forked from now on.
        ``exit_kill``: the kernel kills the tracees if the broker dies (an
        enforcing attach fails closed); without it they go on untraced, as
        after ``strace -p`` (a watch-only attach must never harm)."""
        options = pt.O_TRACESYSGOOD | pt.O_TRACECLONE | pt.O_TRACEEXEC | pt.O_TRACESECCOMP
        if exit_kill:
            options |= pt.O_EXITKILL
        if follow:
            options |= pt.O_TRACEFORK | pt.O_TRACEVFORK
        self.loop.setup()
        self.attached = True
        # no domain can be given to a running process: the guard's own checks, for the broker's processes
        self._guard_without_wall(True, True, emulate=False)
        self._no_layers("attach gives a running process no Landlock domain")
        seized: list[int] = []
        while True:
            try:
                tids = {int(x) for x in os.listdir(f"/proc/{pid}/task")}
            except FileNotFoundError:
                if not seized:
                    raise LaunchError(1, f"no such process: {pid}") from None
                break
            new = sorted(tids - set(seized))
            if not new:
                break
            for tid in new:
                try:
                    pt.seize(tid, options)
                except ProcessLookupError:
                    continue
                except OSError as e:
                    if not seized:
                        raise LaunchError(1, attach_refusal(pid, e)) from e
                    continue
                self.threads[tid] = _Thread(tid, pid, startup=False, announced=True)
                seized.append(tid)
                pt.interrupt(tid)
        self.main_pid = pid
        self.main_status = 0  # do not wait for an exit status: end when detached or gone
        return seized

    def request_detach(self) -> None:
        """Leave every tracee as it was: stopped tracees are released now,
        running ones are interrupted and released at their next stop, with
        any signal they were about to receive."""
        if self._detaching:
            return
        self._detaching = True
        self.detached_cleanly = True
        for tid, t in list(self.threads.items()):
            if t.running or t.state == "stopped":
                # a running tracee, or one listening in a group-stop, must be
                # brought to a ptrace-stop before it can be detached
                try:
                    pt.interrupt(tid)
                except ProcessLookupError:
                    self.threads.pop(tid, None)
            elif t.state in ("ask", "ret", "run", "slotwait"):
                self._detach_thread(tid, 0)

    def leave(self, dying: bool) -> None:
        """The attached broker is going away: the operator's Ctrl-C detaches;
        dying (SIGTERM, SIGHUP, its output lost) does what ``on_leave`` says."""
        if dying and self.on_leave == "kill":
            self.kill_all()
        else:
            self.request_detach()

    def _detach_thread(self, tid: int, sig: int) -> None:
        t = self.threads.pop(tid, None)
        if t is not None:
            t.walk = None
        try:
            if t is not None:
                self._release_signals(t)
            pt.detach(tid, sig)
        except ProcessLookupError:
            pass


def _procfs_mounts() -> tuple[str, ...] | None:
    """Where procfs and cgroup file systems are mounted (with their files bound elsewhere), as this
    process and the program it launches see it; None if unknown (unreadable)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return procfs_mounts(f.read(), WRITE_GUARDED_FS)
    except OSError:
        return None

