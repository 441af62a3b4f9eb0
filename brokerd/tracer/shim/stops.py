"""Stop dispatch: what each ptrace stop is (syscall, fork/clone, exec, exit, group-stop) and who handles it."""

from __future__ import annotations

import errno as E
import os
import signal
from collections.abc import Callable

from brokerd.protocol import codec
from brokerd.protocol.types import (
    Field,
    Int,
    ProcEvent,
    Str,
    Sym,
)
from brokerd.spin import machine_busy

from .. import ptrace as pt
from ..accel import accel
from ..guard import O_ACCMODE, O_PATH
from ..procfs import tgid_of
from ..scratch import mapped_in
from ..states import RUN, strays_text
from .base import ShimBase
from .consts import (
    EVENT_NAMES,
    OPTIONS,
    OPTIONS_NO_EXEC,
    STOP_SIGNALS,
    SYSCALL_STOP,
    TRACE_MARK,
)
from .entry import ARGS
from .loop import REAP_BATCH
from .thread import _Thread

#: the wait status of a PTRACE_EVENT_SECCOMP stop
SECCOMP_STOP = (((pt.EVENT_SECCOMP << 8) | signal.SIGTRAP) << 8) | 0x7F


class Stops(ShimBase):
    """Stop dispatch: what each ptrace stop is (syscall, fork/clone, exec, exit, group-stop) and who handles it."""

    #: the compiled loop's seccomp handler (Entry._make_fused), made at its first use
    _fused: Callable[..., None] | None = None

    def _thread(self, tid: int) -> _Thread:
        t = self.threads.get(tid)
        if t is None:
            t = _Thread(tid, tgid_of(tid))
            self.threads[tid] = t
        return t

    def _on_status(self, tid: int, status: int, info: tuple | None = None) -> None:
        """A stop (or exit) of ``tid``; ``info``: its seccomp information,
        fetched with the stop by the compiled wait (brokerd.tracer.accel)."""
        t = self.threads.get(tid)
        if status == SECCOMP_STOP and t is not None and t.saved_mask is None and not self._detaching:
            t.running = False  # the common stop, a known tracee's seccomp stop: one test, not a dozen
            self._on_seccomp(t, info)
            return
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._on_exit(tid, status)
            return
        if not os.WIFSTOPPED(status):
            return
        if tid not in self.threads and not self._is_tracee(tid):
            return
        t = self._thread(tid)
        t.running = False
        if t.saved_mask is not None and t.state != "inject":  # the interrupted call is back
            self._release_signals(t)
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if self._detaching and t.state in ("stopped", "run", "ask", "ret", "step") and event != pt.EVENT_STOP:
            # leaving: a signal-delivery stop keeps its signal, anything else just goes on
            self._detach_thread(tid, sig if not event and sig != SYSCALL_STOP else 0)
            return
        if event == pt.EVENT_SECCOMP:
            self._on_seccomp(t)
        elif sig == SYSCALL_STOP:
            self._on_syscall_stop(t)
        elif event in (pt.EVENT_FORK, pt.EVENT_VFORK, pt.EVENT_CLONE):
            if self.stops.on:
                self.stops.add(f"event:{EVENT_NAMES[event]}")
            child = pt.geteventmsg(tid)
            if child in self._gone_unannounced:  # it already ran, stopped and exited
                self._gone_unannounced.discard(child)
            else:
                if child not in self.threads:  # (its options are its parent's until its first stop)
                    self.threads[child] = _Thread(child, child if event != pt.EVENT_CLONE else tgid_of(child),
                                                  exec_events=t.exec_events)
                c = self.threads[child]
                c.announced = True
                if c.tgid == t.tgid:  # a second thread: an exec in this process may now change tids
                    self._set_exec_events(t, True)
                elif not c.execed and c.exec_events:
                    self._inherit_region(t, c)
                if t.tgid in self._own_filters:  # so are seccomp filters
                    self._own_filters.add(c.tgid)
            kind = EVENT_NAMES[event]
            self._proc_event(t, kind, (Int(child),))
            if t.state == "step":  # PTRACE_CONT would skip the exit stop: the stepper must hear the child's pid
                self._to_exit_stop(t)
            else:
                self._resume(tid)
        elif event == pt.EVENT_EXEC:
            if self.stops.on:
                self.stops.add("event:exec")
            self._on_exec(t)
        elif event == pt.EVENT_STOP:
            if self.stops.on:
                self.stops.add("event:stop")
            if t.startup or sig not in STOP_SIGNALS:
                if t.startup:
                    self._choose_exec_events(t)
                t.startup = False
                self._resume(tid)
            elif self._detaching:
                self._detach_thread(tid, 0)
            else:
                if t.state != "inject":  # mid-injection it stays so: its next call is ours (see _resume)
                    t.state = "stopped"
                self._mark_run(t)  # (a SIGCONT lets it run with no stop of ours)
                t.running = False
                pt.listen(tid)
                self._maybe_stop_self()
        elif event:
            self._resume(tid)
        else:
            t.startup = False
            if self.stops.on:
                self.stops.add(f"signal:{_signame(sig)}")
            self._on_signal(t, sig)

    def _on_seccomp_stop(self, tid: int, arch: int, nr: int, args: tuple[int, ...], ip: int, ret_data: int,
                         path: tuple[bytes, bool] | int | None, plain: bool | None = None) -> None:
        """The compiled loop's seccomp stop (``accel.reap``), fetched whole:
        :meth:`_on_status`'s common case without its tests, the rest to it.

        The fused entry (issue #13: frames, not their speed, are the cost):
        a call of a plan marked ``fused`` (Entry._ask_plan), from a running
        thread, marked by the broker's filter, with nothing to replay and no
        ``fail("deny")`` in force, goes straight to
        :meth:`Entry._ask_entry`: every branch of :meth:`Entry._seccomp_entry`
        and :meth:`Entry._on_entry` it skips is one that does nothing for it.
        The guard's only part then is an open for writing (Guard.quiet_reads:
        a read is none of its business), which it judges as ever.

        With the compiled road (``accel.fused_stop``, Entry._make_fused) this
        is what it hands every stop it does not work itself; ``plain`` False:
        it found the path not plain (Entry._ask_entry)."""
        t = self.threads.get(tid)
        if t is None or t.saved_mask is not None or self._detaching:
            self._on_status(tid, SECCOMP_STOP, (arch, nr, args, ip, ret_data, path))
            return
        t.running = False
        plan = self._action_cache.plans.get((arch, nr))
        if (plan is not None and plan.fused and ret_data == TRACE_MARK and t._state is RUN and t.replay is None
                and self.forced is None):
            if self.stops.on:
                self.stops.add(plan.spec.name)
            q = plan.quiet
            if q >= 0 and args[q] & O_ACCMODE and not args[q] & O_PATH:  # guard.writes(): for writing
                if self._guard_entry(t, plan, args):
                    return  # answered by the guard
            else:
                t.guard_exit = False
            if plan.ext is not None and type(path) is tuple and not t.guard_exit:
                if self._ask_ext(t, plan, args, path):
                    return  # asked, answered a plain cont and pinned in one compiled call (ext.py)
                if plan.ext.member.asked(self._next_id):
                    plain = True  # asked with its path judged plain: the walk goes on with that event
            self._ask_entry(t, plan, args, ip, path, plain)
            return
        self._seccomp_entry(t, arch, nr, args, ip, ret_data, path)

    def _inherit_region(self, t: _Thread, c: _Thread) -> None:
        """At ``t``'s fork/vfork/clone event: the child ``c`` (another process)
        shares its parent's scratch region only if it really maps it, sealed.
        Its mapping is the parent's at the moment of the fork, which need not
        be what the shim knows now: a thread may fork before another thread's
        injected mmap completes (the shim can see the mmap's exit first), or
        between that mmap and its mseal (an unsealed copy: the child could
        unmap it unstopped), and ``MADV_DONTFORK`` keeps the mapping from the
        child altogether.  So: the region was complete before ``t`` was last
        let run (so before the fork began), and the child's /proc/PID/maps
        shows the memfd there (it cannot change: the child has not run yet).
        Otherwise the child gets a region of its own on its first need."""
        region = self._regions.get(t.tgid)
        if region is None or region.ready is None or region.ready >= t.resumed:
            return
        if mapped_in(c.tid, region):
            self._regions[c.tgid] = region

    def _mark_run(self, t: _Thread) -> None:
        """Count one more resume and note it on ``t`` (see :meth:`_inherit_region`)."""
        self._resume_count += 1
        t.resumed = self._resume_count
        t.running = True

    def _resume(self, tid: int, sig: int = 0) -> None:
        """Let a stopped tracee go on: PTRACE_CONT when launched (the filter
        stops what matters), PTRACE_SYSCALL when attached, detach while detaching."""
        t = self.threads.get(tid)
        if t is not None:
            self._mark_run(t)
        if self._detaching:
            self._detach_thread(tid, sig)
        elif self.attached or (t is not None and t.state == "inject"):
            pt.syscall(tid, sig)  # (mid-injection, after a group-stop: the injected call's exit must stop)
        else:
            _cont(tid, sig)

    def _choose_exec_events(self, t: _Thread) -> None:
        """At a new tracee's first stop: does it need to stop at its exec?
        The exec event is what tells the shim that a process's scratch region
        (the mapping is gone) and its tids (an exec from a non-leader thread
        takes the leader's) changed; a single-threaded process with no region
        needs neither, unless someone wants exec events (or callers' symbols).
        A process that is given a region or a second thread later gets the
        event then (:meth:`_set_exec_events`, while that thread is stopped:
        every other thread of a process that has several already has it).
        A build: one stop fewer per process, a quarter of its stops."""
        if self.attached:
            return  # attach keeps its own options
        want = self.exec_everywhere or t.tid != t.tgid or bool(self._regions)
        pt.setoptions(t.tid, OPTIONS if want else OPTIONS_NO_EXEC)  # its parent's until now
        t.exec_events = want

    def _set_exec_events(self, t: _Thread, on: bool) -> None:
        """Give stopped tracee ``t`` the exec event (or take it away)."""
        if t.exec_events != on and not self.attached:
            pt.setoptions(t.tid, OPTIONS if on else OPTIONS_NO_EXEC)
            t.exec_events = on

    def _to_exit_stop(self, t: _Thread) -> None:
        """Resume to the syscall-exit stop of the current call."""
        self._mark_run(t)
        pt.syscall(t.tid)

    def _maybe_stop_self(self) -> None:
        """After a terminal stop request, stop the broker too once the main
        program is stopped, so the shell reports the job stopped and ``fg``
        (SIGCONT to the whole job) resumes both: job control as without tracing."""
        if not self._tty_stop:
            return
        main = [t for t in self.threads.values() if t.tgid == self.main_pid]
        if main and all(t.state == "stopped" for t in main):
            self._tty_stop = False
            os.kill(os.getpid(), signal.SIGSTOP)

    def _is_tracee(self, tid: int) -> bool:
        """A stop from a tid we do not know yet: a new child whose first stop
        came before its parent's fork event.  Authorizer processes never stop."""
        return all(a.pid != tid for a in self.stack)

    def _on_exit(self, tid: int, status: int) -> None:
        t = self.threads.pop(tid, None)
        self._roots.forget(tid)
        if t is None:
            return
        if not t.announced:
            self._gone_unannounced.add(tid)
        region = self._regions.get(t.tgid)
        if region is not None:
            if tid == t.tgid:
                del self._regions[t.tgid]
            self._release_slots(region, [tid])
        if tid == t.tgid:
            if os.WIFEXITED(status):
                self._proc_event(t, "exit", (Int(os.WEXITSTATUS(status)),))
            else:
                self._proc_event(t, "killed", (Int(os.WTERMSIG(status)),))
        if tid == self.main_pid:
            self.main_status = status

    def _gone(self, tid: int) -> None:
        t = self.threads.get(tid)
        if t is not None:
            t.walk = None
            t.state = "run"

    def _on_exec(self, t: _Thread) -> None:
        former = pt.geteventmsg(t.tid)
        if former != t.tid:
            # exec from a non-leader thread: it takes over the leader's tid, and
            # its record (maybe a stepped execve waiting for its result) with it
            old = self.threads.pop(former, None)
            if old is not None:
                old.tid = t.tid
                t = old
        self._roots.forget(former)
        self._roots.forget(t.tid)
        old_region = self._regions.pop(t.tgid, None)  # a new address space: the old mapping is gone
        if old_region is not None:  # (shared with the parent it was forked from, maybe)
            self._release_slots(old_region, [former, t.tid, *(x.tid for x in self.threads.values()
                                                               if x.tgid == t.tgid)])
        t.execed = True
        self.threads[t.tid] = t
        if self._symbolizer is not None:
            self._symbolizer.forget(t.tgid)
        if any("exec" in a.events for a in self.stack):
            self._proc_event(t, "exec", _exec_args(t.tid))
        if t.state in ("step", "verify"):
            self._to_exit_stop(t)  # a stepped or checked execve: its result comes at the exit stop
        else:
            t.state = "run"
            self._resume(t.tid)

    def _proc_event(self, t: _Thread, kind: str, args: tuple) -> None:
        subscribers = [a for a in self.stack if kind in a.events or (kind == "killed" and "exit" in a.events)]
        if not subscribers:
            return
        line = codec.format_event(ProcEvent(t.tgid, t.tid, kind, args))
        for a in subscribers:
            a.notify(line)

    def _on_syscall_stop(self, t: _Thread) -> None:
        info = pt.get_syscall_info(t.tid, self._info)
        if info.op == pt.INFO_ENTRY:
            if t.state == "inject":  # one of our injected calls (checked): on to its exit
                self._injected_entry(t, info.u.entry.nr, info.u.entry.args)
                return
            if t.state in ("step", "skip"):
                self._resume(t.tid)  # cannot happen; never strand a tracee
                return
            self._on_entry(t, info.arch, info.u.entry.nr, ARGS.unpack(info.u.entry.args), info.instruction_pointer)
            return
        if info.op != pt.INFO_EXIT:
            self._resume(t.tid)
            return
        if self.stops.on:
            self.stops.add(f"exit:{t.spec.name if t.spec is not None and t.state != 'inject' else t.state}")
        rval = info.u.exit.rval
        if t.state == "inject":
            step = t.inject.pop(0)
            step(t, rval, bool(info.u.exit.is_error))
            return
        if t.state == "skip":
            self._after_skip(t)
            return
        if t.sent_one is not None and t.state in ("verify", "step"):
            rval = self._sent_one(t, rval)  # (then on as any call: resumed, or its sysret)
        if t.guard_exit and t.state in ("verify", "step"):
            t.guard_exit = False
            if rval >= 0 and not self.guard.opened_ok(t.tid, t.tgid, rval):
                t.verify = None
                self._log(f"pid {t.tgid}: {t.spec.name if t.spec else 'open'} reached into a process outside "
                          "the session: closed, EACCES")
                self._undo_open(t, rval)
                return
            if t.state == "verify" and t.verify is None:
                t.state = "run"
                self._resume(t.tid)
                return
        if t.verify is not None and t.state in ("verify", "step"):
            expect, t.verify = t.verify, None
            if rval >= 0 and not self._opened_expected(t, rval, expect):
                what = t.spec.name if t.spec else "open"
                if expect[0] in ("exe", "absent-exe"):  # an exec cannot be undone: the process must not go on
                    self._log(f"pid {t.tgid}: {what} ran another program than the one judged "
                              "(a path component changed in between): killed")
                    os.kill(t.tgid, signal.SIGKILL)
                    return
                self._log(f"pid {t.tgid}: {what} opened another object than the one "
                          "judged (a path component changed in between): closed, EACCES")
                self._undo_open(t, rval)
                return
            if t.state == "verify":
                t.state = "run"
                self._resume(t.tid)
                return
        if t.state != "step" or t.decision is None or t.spec is None or t.abi is None:
            t.state = "run"
            self._resume(t.tid)
            return
        self._sysret(t, rval)

    # -- the session's run: the loop until every tracee is gone ---------------
    def run(self) -> int:
        """Trace until every tracee is gone; returns the main program's status
        the way a shell reports it (exit code, or 128+signal)."""
        self.loop.setup()
        self._reap()
        while self.threads or self.main_status is None:
            self.loop.poll_once(reap=True)
        self._roots.close()
        self._end_landlock_audit()
        if strays_text():
            self._log(f"internal: thread state moves outside the table (a bug, please report): {strays_text()}")
        self.end_authorizers("session ended")
        self.stops.report()
        return self.exit_code()

    def exit_code(self) -> int:
        st = self.main_status or 0
        if os.WIFEXITED(st):
            return os.WEXITSTATUS(st)
        if os.WIFSIGNALED(st):
            return 128 + os.WTERMSIG(st)
        return 1

    def _reap(self) -> None:
        """Handle the stops that are waiting, at most REAP_BATCH of them: a
        busy multi-threaded program decided in-process (or by an authorizer
        whose reply is read right after its question) always has another stop
        waiting, and draining until ``waitpid`` says "nothing" would never
        give the loop back its signals, other replies and deadlines.  With
        stops left, the loop comes back at once (``more_children``).  Once a
        stop was handled, the next is waited for in a short spin
        (:mod:`brokerd.spin`): a resumed tracee that makes its next judged
        call at once stops again within microseconds, and the shim's CPU
        need not go idle and be woken for it."""
        self.loop.more_children = False
        if self._compiled_loop:  # the same loop in one compiled call (accel.reap)
            assert accel is not None
            if self._fused is None:
                self._fused = self._make_fused()
            handled, more = accel.reap(self._path_reads, self._fused, self._on_status, self._tracee_failed,
                                       self._stop_spin, machine_busy, REAP_BATCH)
            self.stats["stops"] += handled
            self.loop.more_children = bool(more)
            return
        next_stop, on_status = self._next_stop, self._on_status
        for n in range(REAP_BATCH):
            try:  # after a stop handled (a tracee resumed), its next stop is often due in microseconds
                got = self._stop_spin.until(next_stop) if n else next_stop()
            except ChildProcessError:
                return
            if got is None:
                return
            self.stats["stops"] += 1
            try:  # _on_tracee(tid, self._on_status, *got) written out: one call less per stop
                on_status(*got)  # (tid, status[, seccomp info])
            except (OSError, ValueError, OverflowError) as e:
                self._tracee_failed(got[0], e)
        self.loop.more_children = True

    def _on_tracee(self, tid: int, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)``, which works on tracee ``tid`` (ptrace requests,
        /proc reads, its memory).  Every entry from the loop into per-tracee
        work goes through here (a stop, an authorizer's answer), because a
        tracee may be gone at any moment: SIGKILL from outside, the OOM
        killer, a sibling thread's exit_group or execve.  A gone tracee is
        forgotten quietly (its exit status comes later); any other failure
        on a live one kills its process rather than leave it stopped for ever
        or running unjudged (fail closed), and never ends the session."""
        try:
            fn(*args)
        except (OSError, ValueError, OverflowError) as e:
            self._tracee_failed(tid, e)

    def _tracee_failed(self, tid: int, e: Exception) -> None:
        """Handling tracee ``tid`` failed with ``e`` (see :meth:`_on_tracee`):
        forget it if it is gone, else kill its process (fail closed)."""
        t = self.threads.get(tid)
        if not (isinstance(e, OSError) and e.errno == E.ESRCH) and self._alive(tid):
            tgid = t.tgid if t is not None else tid
            self._log(f"pid {tgid}: cannot handle its stop ({e}): killed")
            try:
                os.kill(tgid, signal.SIGKILL)
            except OSError:
                pass
        self._gone(tid)

    @staticmethod
    def _alive(tid: int) -> bool:
        """Is ``tid`` still in a ptrace-stop (so still ours to resume)?"""
        try:
            pt.geteventmsg(tid)
        except OSError:
            return False
        return True

    def _answered(self, t: _Thread, fn: Callable[..., None], *args: object) -> None:
        """An authorizer's answer (or its default) about tracee ``t``."""
        self._on_tracee(t.tid, fn, *args)


#: PTRACE_CONT (the same request and OSError, compiled or through ctypes)
_cont: Callable[..., None] = accel.cont if accel is not None else pt.cont


def _exec_args(pid: int) -> tuple:
    """The exec event's facts: path, then ELF class, machine and interpreter."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    args: list = [Str(os.fsencode(exe))]
    from ..elfinfo import exec_facts  # pyelftools: only for sessions that asked for exec events

    facts = exec_facts(f"/proc/{pid}/exe")
    if facts is not None:
        args += [
            Field("class", Int(facts.elfclass)),
            Field("machine", Sym((facts.machine,))),
            Field("interp", Str(os.fsencode(facts.interp))),
        ]
    return tuple(args)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
