"""The entry pipeline: a call at its entry, decoded, walked through the stack, its decision applied."""

from __future__ import annotations

import errno as E
import os
import signal
import time
from collections.abc import Sequence
from functools import partial

from brokerd.decision.audit import AuditRecord
from brokerd.decision.defaults import NEVER_DENIED
from brokerd.decision.stack import Decision, EntryWalk, VerdictError
from brokerd.protocol import codec
from brokerd.protocol.abi import SyscallSpec, abi_from_audit
from brokerd.protocol.args import (
    decode_args,
    encode_args,
)
from brokerd.protocol.types import (
    Call,
    Reply,
    Rewrite,
    SetMem,
    Str,
    SyscallEvent,
    SysretEvent,
)

from .. import ptrace as pt
from ..guard import OWNER_CALLS, PROC_OPEN_CALLS
from ..resolve import ROOT_CALLS
from .base import ShimBase
from .consts import (
    MASK64,
    OPEN_CALLS,
    REGION_CALLS,
    TRACE_MARK,
    UFFD_USER_MODE_ONLY,
    USER_LIMIT,
)
from .pin import FILTER_INSTALLS, PIN_FORMS
from .rewrite import stable_positions
from .thread import _Thread


class Entry(ShimBase):
    """The entry pipeline: a call at its entry, decoded, walked through the stack, its decision applied."""

    def _on_seccomp(self, t: _Thread) -> None:
        if t.state == "inject":  # one of our injected calls meets the filter: let it run
            sc = pt.get_syscall_info(t.tid, self._info).u.seccomp
            self._injected_entry(t, sc.nr, sc.args)
            return
        if pt.geteventmsg(t.tid) != TRACE_MARK:
            # the program's own RET_TRACE rule (newer filters' data wins): no
            # tracer of its own, so ENOSYS as natively, and nobody judges a call that never runs
            regs = pt.getregs(t.tid, self._regs)
            regs.orig_rax = MASK64
            regs.rax = (-E.ENOSYS) & MASK64
            pt.setregs(t.tid, regs)
            t.state = "run"
            self._resume(t.tid)
            return
        info = pt.get_syscall_info(t.tid, self._info)
        if info.op != pt.INFO_SECCOMP:
            self._resume(t.tid)
            return
        sc = info.u.seccomp
        self._on_entry(t, info.arch, sc.nr, sc.args, info.instruction_pointer)

    def _on_entry(self, t: _Thread, arch: int, nr: int, rawargs: Sequence[int], ip: int) -> None:
        """A call at its entry (seccomp stop when launched, syscall-entry stop
        when attached): decode it and start its walk through the stack."""
        if t.replay is not None:  # the call our injected mmap interrupted, back again
            d, t.replay = t.replay, None
            if (arch, nr, tuple(rawargs), ip) != t.replay_key:  # its code was changed under it
                self._log(f"pid {t.tgid}: made another call than the one the broker had judged (its code was "
                          "changed under it): killed")
                os.kill(t.tgid, signal.SIGKILL)
                return
            self._apply_entry(t, d)
            return
        abi = abi_from_audit(arch, nr)
        if abi is None:  # the filter kills unknown arches; never misread one
            os.kill(t.tgid, signal.SIGKILL)
            return
        spec = abi.spec(nr)
        self.stops.add(spec.name)
        if spec.name == "clone" and self.backend == "ptrace":
            rawargs = self._strip_untraced(t, abi, rawargs)
        elif spec.name == "clone3" and self._copies_clone3:
            copied = self._stable_clone3(t, abi, rawargs)
            if copied is None:
                return  # the region is being made (the call comes back), or it failed
            rawargs = copied
        elif spec.name in OWNER_CALLS and self._copies_clone3 and self.guard.owner_checks:
            owned = self._stable_owner(t, abi, spec.name, rawargs)
            if owned is None:
                return  # answered, or the region is being made (the call comes back)
            rawargs = owned
        elif spec.name in REGION_CALLS and t.tgid in self._regions:
            checked = self._guard_region(t, abi, spec, rawargs)
            if checked is None:
                return  # denied: it would reach the region
            rawargs = checked
        t.guard_exit = False
        if spec.name in FILTER_INSTALLS:
            self._note_filter(t, spec.name, rawargs)
        elif spec.name in ROOT_CALLS and self._roots.on:
            self._roots.off()  # a root may change: resolve from /proc/TID/root from now on
        if spec.name == "userfaultfd" and not rawargs[0] & UFFD_USER_MODE_ONLY:  # attach mode (no filter)
            t.raw = ()
            self._apply_entry(t, Decision("skip-fail", Call(spec.name), E.EPERM))
            return
        if spec.name in self._guarded:
            mask = abi.reg_mask
            verdict = self.guard.judge(spec.name, tuple(a & mask for a in rawargs), t.tid, t.tgid)
            if verdict is not None:
                what, value = verdict
                t.raw = ()
                target = "a process outside the session" if spec.name in PROC_OPEN_CALLS else "the broker"
                self._log(f"pid {t.tgid}: {spec.name} aimed at {target}: "
                          + ("denied" if what == "deny" else "sent to the rest of the group only"))
                self._apply_entry(t, Decision("skip-fail" if what == "deny" else "skip-ok", Call(spec.name), value))
                return
            t.guard_exit = spec.name in PROC_OPEN_CALLS  # what was opened is checked at the exit stop
        what, err = self.stack_action(spec.name)
        if what == "allow" and self.stack.guards(spec.name):
            what = "trace"  # allowed behind argument rules: the walk applies them (attach; a rule the filter cannot test)
        if what != "trace":  # settled by static rules: no round trip (attach mode gets here)
            if what == "allow":
                t.state = "run"
                self._resume(t.tid)
            else:
                t.raw = ()
                self._apply_entry(t, Decision("skip-fail" if what == "deny" else "kill", Call(spec.name), err))
            return
        order = self.stack.order(spec.name)
        if order and self.forced is not None and spec.name not in NEVER_DENIED:
            self._apply_entry(t, Decision("skip-fail", Call(spec.name), self.forced.errno))
            return
        if not order:
            if t.guard_exit:
                t.state = "verify"
                self._to_exit_stop(t)
                return
            t.state = "run"
            self._resume(t.tid)
            return
        raw = tuple(rawargs)
        if abi.reg_bits < 64:  # the upper halves of a 32-bit ABI's registers are not its arguments
            mask = abi.reg_mask
            raw = tuple(a & mask for a in raw)
        self._mem.pid = t.tid
        args = decode_args(spec, raw[: len(spec.args)], self._mem, strsize=self.strsize)
        ev_id = self._next_id
        self._next_id += 1
        notes = _path_notes(t.tid, spec, raw, args) if "path" in spec.args else ()
        t.verify = t.pin = t.repointed = None
        if self.stable_args and spec.name in OPEN_CALLS and notes:
            t.verify, real = self._expected_object(t, spec, raw, args, spec.name in PIN_FORMS and self._may_pin(t, abi))
            if real is not None:
                notes += ((f"real{OPEN_CALLS[spec.name][0] + 1}", Str(real)),)
        if self._symbolizer is not None:
            notes += (("caller", Str(self._symbolizer.caller(t.tgid, ip).encode())),)
        ev = SyscallEvent(ev_id, t.tgid, t.tid, abi.name, Call(spec.name, args), notes)
        t.abi, t.spec, t.raw, t.event_id, t.state = abi, spec, raw, ev_id, "ask"
        t.t0 = time.monotonic()
        t.walk = EntryWalk(ev, order)
        self._advance_entry(t, t.walk)

    def _advance_entry(self, t: _Thread, walk: EntryWalk) -> None:
        nxt = walk.next()
        if nxt is None:
            assert walk.decision is not None
            t.walk = None
            d = walk.decision
            self._record(walk.event, d, t)
            if self.stable_args and d.action == "cont" and not d.rewritten and t.spec is not None and (
                    stable_positions(t.spec) != ((), ())):
                d.stabilize = True
            if d.action != "cont" or d.rewritten:  # a rewritten path is the authorizer's own choice
                t.verify = t.pin = None
            self._apply_entry(t, d)
            return
        pos, ev = nxt
        known = self.stack.known_answer(pos, ev, t.abi)
        if known is not None:  # its own argument rule, or its cached verdict for this very call
            walk.feed(known.verdict, known.sets)
            self._advance_entry(t, walk)
            return
        self.stack[pos].ask(ev, partial(self._answered, t, partial(self._on_entry_answer, t, walk, pos)), time.monotonic())

    def _on_entry_answer(self, t: _Thread, walk: EntryWalk, pos: int, reply: Reply, reason: str) -> None:
        if t.walk is not walk or self.threads.get(t.tid) is not t:
            return  # the tracee died meanwhile
        a = self.stack[pos]
        if reason:
            self._log(f"{reason}: {a.name}'s default applies to {walk.event.call.name} (pid {t.tgid})")
        verdict = reply.verdict
        try:
            self._check_rewrite(t, verdict)
            self._check_sets(t, reply.sets)
            if reply.cache and not reason:
                step = walk.next()
                assert step is not None  # the walk is waiting for this very answer
                self.stack.remember(pos, step[1], reply)  # the event as this authorizer saw it (the key)
            walk.feed(verdict, reply.sets)
        except VerdictError as e:
            a.report_error(e.code, str(e))
            walk.feed(a.default, ())
        self._advance_entry(t, walk)

    def _check_rewrite(self, t: _Thread, verdict: object) -> None:
        if isinstance(verdict, Rewrite):
            assert t.abi is not None
            if verdict.call.name not in t.abi.by_name:
                raise VerdictError("unknown-syscall", f"no syscall {verdict.call.name!r} in the {t.abi.name} ABI")
            spec = t.abi.by_name[verdict.call.name]
            if len(verdict.call.args) > len(spec.args) and len(verdict.call.args) > 6:
                raise VerdictError("bad-value", f"{spec.name} takes {len(spec.args)} arguments")
            try:
                encode_args(spec, verdict.call.args, t.raw)
            except ValueError as e:
                raise VerdictError("bad-value", f"cannot encode {spec.name}: {e}") from e

    def _check_sets(self, t: _Thread, sets: Sequence[SetMem]) -> None:
        """A `set` must name an argument of the call and land inside the
        address space; grammar-valid offsets can be any size."""
        for s in sets:
            if not 1 <= s.argn <= len(t.raw):
                raise VerdictError("bad-value", f"set {s.argn}: the call has no argument {s.argn}")
            addr = t.raw[s.argn - 1] + s.offset
            limit = USER_LIMIT[t.abi.reg_bits if t.abi is not None else 64]
            if s.offset < 0 or addr + len(s.data) > limit:
                raise VerdictError("bad-value", f"set {s.argn}+{s.offset}: outside the address space")

    def _record(self, event: SyscallEvent | SysretEvent, d: Decision, t: _Thread) -> None:
        self.stats["decisions"] += 1
        if self.audit is None and self._audit_tee is None:
            return
        by = self.stack[d.decided_by].name if d.decided_by is not None else ""
        verdict = d.action if d.action in ("cont", "kill") else f"{d.action} {d.value}"
        if d.rewritten:
            verdict += " (rewritten) " + codec.format_call(d.call)
        rec = AuditRecord(event, verdict, by, time.monotonic() - t.t0)
        if self.audit is not None:
            self.audit(rec)
        if self._audit_tee is not None:  # the daemon's copy (Control.tee_audit)
            self._audit_tee(rec)

    def _apply_entry(self, t: _Thread, d: Decision) -> None:
        tid = t.tid
        t.decision = d
        for s in d.sets:
            self._set_memory(t, s)
        if d.action == "kill":
            t.state = "run"
            os.kill(t.tgid, signal.SIGKILL)
            return
        if d.action in ("skip-fail", "skip-ok"):
            regs = pt.getregs(tid, self._regs)
            regs.orig_rax = MASK64
            regs.rax = (-d.value if d.action == "skip-fail" else d.value) & MASK64
            pt.setregs(tid, regs)
            if self.attached:
                t.state = "skip"  # the exit stop comes; the value is set again there
                self._to_exit_stop(t)
            else:
                t.state = "run"
                self._resume(tid)
            return
        if t.pin is not None and d.stabilize and not d.steppers and not t.guard_exit:
            if not self._pin_open(t, d):
                return  # scratch memory is being injected, or a slot awaited; the call comes back
        elif d.rewritten or d.stabilize:
            if not self._rewrite(t, d):
                return  # scratch memory is being injected; the call comes back
        if d.steppers:
            t.state = "step"
            self._to_exit_stop(t)
        elif (t.verify is not None or t.guard_exit) and d.action == "cont":
            t.state = "verify"
            self._to_exit_stop(t)
        else:
            t.state = "run"
            self._resume(tid)

    def _fetch(self, event_id: int, argn: int, offset: int, length: int) -> bytes:
        """More of a buffer argument of a call still waiting for its verdict
        (the seed's 10 MB write: only what an authorizer asks for is copied)."""
        for t in self.threads.values():
            if t.event_id == event_id and t.state in ("ask", "ret"):
                if not 1 <= argn <= len(t.raw):
                    raise ValueError(f"argument {argn} does not exist")
                return pt.read_memory(t.tid, t.raw[argn - 1] + offset, length)
        raise LookupError(f"no call with id {event_id} is waiting")

    def _set_memory(self, t: _Thread, s: SetMem) -> None:
        if not 1 <= s.argn <= len(t.raw):
            self._log(f"set {s.argn}: no such argument; ignored")
            return
        try:
            pt.write_memory(t.tid, t.raw[s.argn - 1] + s.offset, s.data)
        except OSError as e:
            self._log(f"set {s.argn}: cannot write tracee memory: {e}")


def _path_notes(tid: int, spec: SyscallSpec, raw: tuple[int, ...], args: tuple) -> tuple:
    """``pathN`` notes: each path argument made absolute against the caller's
    cwd or dirfd, ``.`` and ``..`` folded lexically (symlinks not followed).
    Advisory: the kernel resolves again when the call runs."""
    notes = []
    kinds = spec.args
    for i, kind in enumerate(kinds):
        if kind != "path" or i >= len(args):
            continue
        v = args[i]
        if not isinstance(v, Str) or v.truncated or not v.data:
            continue
        path = _absolute(tid, kinds, raw, i, v.data)
        if path is not None:
            notes.append((f"path{i + 1}", Str(os.path.normpath(path).replace(b"//", b"/"))))
    return tuple(notes)


def _absolute(tid: int, kinds: tuple[str, ...], raw: tuple[int, ...], i: int, path: bytes) -> bytes | None:
    """Path argument ``i`` made absolute against the caller's cwd or its
    dirfd argument, not folded (``a/link/..`` is not ``a``)."""
    if path.startswith(b"/"):
        return path
    base = f"/proc/{tid}/cwd"
    if i > 0 and kinds[i - 1] == "dirfd" and (raw[i - 1] & 0xFFFFFFFF) != 0xFFFFFF9C:  # not AT_FDCWD
        base = f"/proc/{tid}/fd/{raw[i - 1] & 0xFFFFFFFF}"
    try:
        where = os.fsencode(os.readlink(base))
    except OSError:
        return None
    if where.endswith(b" (deleted)") or not where.startswith(b"/"):
        return None  # a removed directory (or no directory): no path leads there
    return where + b"/" + path
