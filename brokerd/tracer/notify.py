"""The seccomp user-notification backend: the same stack and protocol as the
ptrace shim, without ptrace.

For a launched session whose authorizers only ever answer ``cont``,
``skip-fail`` or ``skip-ok`` (they say so in the handshake:
``verdicts=cont,skip-fail,skip-ok``), the filter returns
``SECCOMP_RET_USER_NOTIF`` instead of ``RET_TRACE``.  The kernel parks the
calling thread and hands the call to the broker through a listener
descriptor; the broker answers with ``SECCOMP_IOCTL_NOTIF_SEND``: continue,
or fail with an errno, or return a value.  One notification costs a fraction
of a ptrace stop, ``SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`` (Linux 6.6+) keeps
the wake-up on the same CPU, and the program stays free to be debugged with
gdb or strace.

Limits, by design of the kernel interface: no ``step``, rewrites or ``set``;
and ``SECCOMP_USER_NOTIF_FLAG_CONTINUE`` lets the kernel re-read the
arguments from user memory, so a path judged here can be changed by another
thread before the kernel uses it (seccomp_unotify(2)).  The automatic
backend choice therefore keeps sessions that judge path, string or sockaddr
arguments on ptrace, where they are made stable; ``--backend notify`` forces
this one and says so.  If the broker dies, the listener closes: calls that
needed an answer fail with ENOSYS, and static rules stay in the kernel.
"""

from __future__ import annotations

import _socket  # not socket: its wrapper makes an enum of every constant (5% of a run's start-up)
import ctypes
import errno as E
import fcntl
import os
import select
import signal
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from brokerd.decision.member import Member
from brokerd.decision.stack import Decision, Stack
from brokerd.protocol.abi import ABIS, abi_from_audit

from . import seccomp
from .procfs import pgrp_and_ppid
from .shim import LaunchError, Shim, _Thread

SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
#: Linux 5.19: once the broker has received a notification, only a fatal
#: signal interrupts the parked call (an interrupted one came back -ERESTARTSYS,
#: i.e. EINTR under a handler without SA_RESTART: fork() failed with EINTR)
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
IOCTL_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif)
IOCTL_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp)
IOCTL_ID_VALID = 0x40082102  # _IOW('!', 2, __u64)
IOCTL_SET_FLAGS = 0x40082104  # _IOW('!', 4, __u64)
NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, nr, arch, ip, args[6]
RESP = struct.Struct("=QqiI")  # id, val, error, flags
#: kinds whose judgement the kernel would re-read from tracee memory
UNSTABLE_KINDS = ("path", "str", "sockaddr", "inbuf", "argv", "envp", "open_how", "clone_args")
NOTIFY_VERDICTS = frozenset({"cont", "skip-fail", "skip-ok"})
#: calls whose judgement reads a struct in memory behind an opaque ``ptr`` (the destinations in
#: sendmsg's msghdr, which the network policy reads): the kernel would read it again too
UNSTABLE_CALLS = frozenset({"sendmsg", "sendmmsg"})
SYS_SENDMSG = ABIS["x86_64"].nr("sendmsg")  # the launched child is a 64-bit Python


def stack_allows_notify(stack: Stack, proc_checks: bool,
                        action: Callable[[str], tuple[str, int]]) -> tuple[bool, str]:
    """Whether a session may use this backend, and why not if it may not.
    ``proc_checks``: no Landlock wall (the guard checks opens at their exit);
    ``action``: what the ptrace session would do with a call (shim.rules)."""
    if proc_checks:
        return False, "there is no Landlock wall, and the broker's own open checks need ptrace's exit stop"
    for a in stack:
        declared = getattr(a, "verdicts", None)
        if not declared or not set(declared) <= NOTIFY_VERDICTS:
            return False, f"authorizer {a.name} did not declare verdicts=cont,skip-fail,skip-ok"
        if a.signals or a.events:
            return False, f"authorizer {a.name} wants signal or process events"
        if a.rules:
            return False, f"authorizer {a.name} has argument rules"
    names = stack.subscriptions()
    specs = ABIS["x86_64"].by_name
    judged = specs.keys() if names is None else names
    for n in judged:
        spec = specs.get(n)
        if spec is not None and action(n)[0] == "trace" and (n in UNSTABLE_CALLS or any(
                k.split(":")[0] in UNSTABLE_KINDS for k in spec.args)):
            return False, f"{n} has memory arguments the kernel would re-read (seccomp_unotify(2))"
    return True, ""


class NotifyShim(Shim):
    """A launched session served through a seccomp listener, not ptrace.
    Chosen before it is made (:func:`choose_backend`, :func:`make_shim`):
    a shim never changes its backend."""

    backend = "notify"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        # nothing to strip or guard by register: the broker is not a tracer here,
        # but kill/ptrace of the broker is still judged (with deny answers)
        from .guard import CONTROL, GUARDED

        self.internal_trace = GUARDED | CONTROL
        self.guard.in_session = self._in_session  # the notify meaning of "in the session" (below)
        # no exit stop: an open for writing is checked at its notification only, on the path then
        self.guard.exit_stops = False
        self._action_cache.clear()
        self._listener = -1
        self._recv = ctypes.create_string_buffer(NOTIF.size)
        self._pending: dict[int, int] = {}  # tid -> notification id

    def _in_session(self, tgid: int) -> bool:
        """Not a tracer, so no fork event names the session's processes: a
        process that made a notified call, or a descendant of the program
        (one reparented away from it counts as outside: refused, never let through)."""
        if super()._in_session(tgid):
            return True
        pid, hops = tgid, 0
        while pid > 1 and hops < 4096:
            if pid == self.main_pid:
                return True
            st = pgrp_and_ppid(pid)
            if st is None:
                return False
            pid, hops = st[1], hops + 1
        return False

    def _maybe_stop_self(self) -> None:
        # not a tracer: Ctrl-Z stopped the program itself; follow it at once
        if self._tty_stop:
            self._tty_stop = False
            os.kill(os.getpid(), signal.SIGSTOP)

    def launch(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        nonce = int.from_bytes(os.urandom(8), "little") | 1
        insns = self.build_filter(stop=seccomp.RET_USER_NOTIF, guard_region=False, handoff=nonce)
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)

        def prepare(go: int) -> None:
            ours.close()
            hand_over = _HandOver(theirs.fileno(), nonce)
            try:
                fd = seccomp.install(insns, flags=SECCOMP_FILTER_FLAG_NEW_LISTENER
                                     | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
            except OSError as e:  # before 5.19: calls a signal interrupts may fail with EINTR
                if e.errno != E.EINVAL:
                    raise
                fd = seccomp.install(insns, flags=SECCOMP_FILTER_FLAG_NEW_LISTENER)
            hand_over.send(fd)  # the one call the filter lets through: nothing else may run before it
            os.read(go, 1)  # until the broker is ready (this read may itself be notified)
            os.close(fd)

        pid, go = self._spawn(argv, env, prepare)
        theirs.close()
        try:
            self._listener = _receive_listener(ours)
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            os.close(go)
            raise LaunchError(1, f"cannot take the seccomp listener: {e.strerror} (--backend ptrace needs none)") from e
        finally:
            ours.close()
        try:  # wake the parked thread on the CPU that answers (Linux 6.6+)
            fcntl.ioctl(self._listener, IOCTL_SET_FLAGS, struct.pack("=Q", SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP))
        except OSError:
            pass
        self._listener_poll = select.poll()
        self._listener_poll.register(self._listener, select.POLLIN)
        self.add_reader(self._listener, self._on_notify)
        self._started(pid, go)
        return pid

    # -- the program's processes are its children, not tracees ---------------
    def _on_status(self, tid: int, status: int, info: tuple | None = None) -> None:
        if tid == self.main_pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
            self.main_status = status
            self.threads.pop(tid, None)
            self._pending.pop(tid, None)

    def _on_notify(self) -> None:
        # RECV blocks whatever O_NONBLOCK says: take one, and more only while poll says so
        poller = self._listener_poll
        while True:
            ready = poller.poll(0)
            if not ready:
                return
            if not ready[0][1] & select.POLLIN:  # HUP: no process uses the filter any more
                self.remove_reader(self._listener)
                return
            ctypes.memset(self._recv, 0, NOTIF.size)
            try:
                fcntl.ioctl(self._listener, IOCTL_RECV, self._recv)
            except OSError as e:
                if e.errno in (E.ENOENT, E.EINTR):  # the caller went away meanwhile
                    continue
                return
            nid, tid, _flags, nr, arch, ip, *args = NOTIF.unpack(self._recv.raw)
            t = self.threads.get(tid)
            if t is None:
                t = _Thread(tid, _tgid(tid), startup=False)
                self.threads[tid] = t
            self._pending[tid] = nid
            t.state = "ask"
            abi = abi_from_audit(arch, nr & 0xFFFFFFFF)
            if abi is None:
                self._send(t, 0, -E.ENOSYS, 0)
                continue
            self._on_entry(t, arch, nr & 0xFFFFFFFF, args, ip)

    def _id_valid(self, nid: int) -> bool:
        try:
            fcntl.ioctl(self._listener, IOCTL_ID_VALID, struct.pack("=Q", nid))
            return True
        except OSError:
            return False

    def _send(self, t: _Thread, val: int, error: int, flags: int) -> None:
        nid = self._pending.pop(t.tid, None)
        t.state = "run"
        if t.tid != self.main_pid:
            self.threads.pop(t.tid, None)
        if nid is None:
            return
        try:
            fcntl.ioctl(self._listener, IOCTL_SEND, RESP.pack(nid, val, error, flags))
        except OSError:
            pass  # the caller died (ENOENT) or was interrupted by a signal: nothing to answer

    # -- the stack's decisions, applied through the listener ------------------
    def _resume(self, tid: int, sig: int = 0) -> None:
        t = self.threads.get(tid)
        if t is not None:
            self._send(t, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)

    def _apply_entry(self, t: _Thread, d: Decision) -> None:
        t.decision = d
        if d.action == "kill":
            # the fatal signal first: the parked thread must never see the answer run
            os.kill(t.tgid, signal.SIGKILL)
            self._send(t, 0, -E.EPERM, 0)
        elif d.action == "skip-fail":
            self._send(t, 0, -d.value, 0)
        elif d.action == "skip-ok":
            self._send(t, d.value, 0, 0)
        elif d.rewritten or d.steppers or d.sets:
            # promised away in the handshake; a fail-safe answer, never a silent allow
            self._log(f"pid {t.tgid}: {d.call.name}: step, rewrite and set need the ptrace backend; denied")
            self._send(t, 0, -E.EPERM, 0)
        else:
            self._send(t, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)

    def _check_rewrite(self, t: _Thread, verdict: object) -> None:
        from brokerd.decision.stack import VerdictError
        from brokerd.protocol.types import Rewrite, Step

        if isinstance(verdict, Rewrite | Step):
            raise VerdictError("not-allowed", "this session uses the seccomp-notify backend: no step or rewrite")

    def run(self) -> int:
        code = super().run()
        if self._listener >= 0:
            os.close(self._listener)
        return code


def choose_backend(stack: Stack, want: str, log: Callable[[str], None], *, allow_io_uring: bool = False,
                   stable_args: bool = True, use_landlock: bool = True) -> str:
    """After the handshake, before the shim is made: "ptrace" or "notify".
    ``want`` is auto (notify when the stack allows it and the kernel has
    SECCOMP_USER_NOTIF_FLAG_CONTINUE, 5.5+), ptrace or notify (forced); the
    options are the shim's own (they decide which calls stop)."""
    if want == "ptrace":
        return "ptrace"
    from . import landlock
    from .kernel import _version
    from .shim.rules import ptrace_action

    proc_checks = not (use_landlock and landlock.abi_version())
    action = ptrace_action(stack, allow_io_uring=allow_io_uring, stable_args=stable_args, proc_checks=proc_checks)
    ok, why = stack_allows_notify(stack, proc_checks, action)
    if _version() < (5, 5):
        if want == "notify":
            log("this kernel lacks SECCOMP_USER_NOTIF_FLAG_CONTINUE (Linux 5.5+): using the ptrace backend")
        return "ptrace"
    if want == "auto":
        if not ok:
            return "ptrace"
    elif not ok:
        log(f"--backend notify although {why}: such decisions are advisory on this backend")
    refused = listener_refused()
    if refused is not None:
        if want == "notify":
            log(f"cannot make a seccomp listener here ({refused}: a filter with a listener is already above "
                "brokerctl, e.g. a container runtime's): using the ptrace backend")
        return "ptrace"
    return "notify"


#: the shim class of each backend (make_shim)
BACKENDS: dict[str, type[Shim]] = {"ptrace": Shim, "notify": NotifyShim}


def make_shim(backend: str, stack: Sequence[Member], **kw: Any) -> Shim:
    """The session's shim, of the backend :func:`choose_backend` chose
    (``kw``: Shim's keyword arguments, e.g. the ``loop`` the handshake ran on)."""
    return BACKENDS[backend](stack, **kw)


def listener_refused() -> str | None:
    """Why no seccomp listener can be made here, or None.  The kernel allows
    one listener per filter chain (EBUSY), and a container runtime that
    answers some calls in user space holds one above us.  Probed in a
    throwaway thread: a filter binds only the thread that installs it."""
    why: list[str] = []

    def probe() -> None:
        try:
            os.close(seccomp.install([(0x06, 0, 0, seccomp.RET_ALLOW)], flags=SECCOMP_FILTER_FLAG_NEW_LISTENER,
                                     no_new_privs=True))
        except OSError as e:
            why.append(e.strerror or str(e))

    t = threading.Thread(target=probe, name="brokerd-listener-probe")
    t.start()
    t.join()
    return why[0] if why else None


def _tgid(tid: int) -> int:
    from .procfs import tgid_of

    return tgid_of(tid)


class _HandOver:
    """The launched child's sendmsg of its listener to the broker (SCM_RIGHTS
    over a socketpair; no pidfd_getfd, which container profiles refuse).

    Between installing the filter and this call the child may make no other
    system call the filter could notify: the broker cannot answer before it
    holds the listener.  So everything is built beforehand, and the filter lets
    exactly this sendmsg through: its 4th argument register, which sendmsg
    ignores, carries a 64-bit nonce the program never sees."""

    def __init__(self, sock: int, nonce: int) -> None:
        self.sock, self.nonce = sock, nonce
        self.byte = ctypes.create_string_buffer(b"L", 1)
        self.iov = ctypes.create_string_buffer(struct.pack("=QQ", ctypes.addressof(self.byte), 1), 16)
        self.cmsg = ctypes.create_string_buffer(struct.pack("=QiiiI", 20, _socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                            -1, 0), 24)
        self.msg = ctypes.create_string_buffer(struct.pack(
            "=QI4xQQQQi4x", 0, 0, ctypes.addressof(self.iov), 1, ctypes.addressof(self.cmsg), 24, 0), 56)
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.args = (ctypes.c_long(SYS_SENDMSG), ctypes.c_long(sock), ctypes.c_void_p(ctypes.addressof(self.msg)),
                     ctypes.c_long(0), ctypes.c_ulong(nonce))

    def send(self, fd: int) -> None:
        struct.pack_into("=i", self.cmsg, 16, fd)
        if self.libc.syscall(*self.args) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"sendmsg of the seccomp listener: {os.strerror(err)}")


def _receive_listener(sock: _socket.socket, timeout: float = 10.0) -> int:
    """The listener the child sends (see _HandOver): ``socket.recv_fds`` of one."""
    sock.settimeout(timeout)
    try:
        _msg, ancdata, _flags, _addr = sock.recvmsg(1, _socket.CMSG_LEN(4))
    except TimeoutError:
        raise OSError(E.ETIMEDOUT, "the program did not hand over its seccomp listener") from None
    fds = [int.from_bytes(data[:4], sys.byteorder, signed=True) for level, kind, data in ancdata
           if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4]
    if not fds:
        raise OSError(E.ESRCH, "the program died before its filter was installed")
    return fds[0]
