"""The entry pipeline: a call at its entry, decoded, walked through the stack, its decision applied."""

from __future__ import annotations

import errno as E
import os
import signal
import struct
import time
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any, cast

from brokerd.decision.audit import AuditRecord
from brokerd.decision.defaults import NEVER_DENIED
from brokerd.decision.member import SyncMember
from brokerd.decision.stack import Decision, EntryWalk, VerdictError
from brokerd.protocol import codec, lazyre
from brokerd.protocol.abi import Abi, SyscallSpec, abi_from_audit
from brokerd.protocol.args import encode_args, entry_decoder, entry_decoder_given, entry_decoders
from brokerd.protocol.types import (
    Call,
    Cont,
    Reply,
    Rewrite,
    SetMem,
    Str,
    SyscallEvent,
    SysretEvent,
)

from .. import ptrace as pt
from ..accel import accel
from ..guard import O_ACCMODE, O_PATH, OWNER_CALLS, PROC_OPEN_CALLS
from ..makers import maker
from ..resolve import ROOT_CALLS
from ..states import ASK, INJECT, RUN, move
from .base import ShimBase
from .consts import (
    MASK64,
    OPEN_CALLS,
    REGION_CALLS,
    TRACE_MARK,
    UFFD_USER_MODE_ONLY,
    USER_LIMIT,
)
from .pin import CREAT_FLAGS, FILTER_INSTALLS, HOW_ROOM, PIN_ARGS, PIN_FORMS, SYS_OPENAT2
from .rewrite import stable_positions
from .thread import PATH_READ, _Thread

#: the six argument registers of PTRACE_GET_SYSCALL_INFO as a tuple of ints: one
#: C call (``tuple()`` of the ctypes array made an int object per item: 1.5 us a call)
ARGS = struct.Struct("=6Q")
#: the longest path decoded (the limit the compiled stop reads with, PATH_READ, less its NUL)
PATHSIZE = PATH_READ - 1


class Entry(ShimBase):
    """The entry pipeline: a call at its entry, decoded, walked through the stack, its decision applied."""

    _taken: tuple[Reply, str] | None = None  # a synchronous member's answer (_take)

    def _on_seccomp(self, t: _Thread, info: tuple | None = None) -> None:
        """A seccomp stop.  One PTRACE_GET_SYSCALL_INFO tells all: the call,
        and the filter's data (``ret_data``, what PTRACE_GETEVENTMSG would
        give: a second request per stop before).  With the compiled calls
        loaded, :meth:`_on_seccomp_accel` takes this method's place (below
        the class)."""
        si = pt.get_syscall_info(t.tid, self._info)
        if si.op != pt.INFO_SECCOMP:
            self._resume(t.tid)
            return
        sc = si.u.seccomp
        if t.state == "inject":  # one of our injected calls meets the filter: let it run
            self._injected_entry(t, sc.nr, sc.args)
            return
        if sc.ret_data != TRACE_MARK:
            self._foreign_trace(t)
            return
        self._on_entry(t, si.arch, sc.nr, ARGS.unpack(sc.args), si.instruction_pointer)

    def _on_seccomp_accel(self, t: _Thread, info: tuple | None = None) -> None:
        """:meth:`_on_seccomp` with the compiled calls (brokerd.tracer.accel):
        the stop's information, its arguments and the path a judged call's
        plan reads, in one C call (``info``: made with the wait already)."""
        assert accel is not None
        got = info if info is not None else accel.seccomp_info(t.tid, self._path_reads)
        if got is None:
            self._resume(t.tid)
            return
        self._seccomp_entry(t, *got)

    def _seccomp_entry(self, t: _Thread, arch: int, nr: int, args: tuple[int, ...], ip: int, ret_data: int,
                       path: tuple[bytes, bool] | int | None) -> None:
        """A seccomp stop's call, fetched by the compiled calls with the path
        its plan reads (``path``: see ``accel.seccomp_info``).  The path is
        handed to the decoder for this stop only (``_Mem.pre``), so nothing
        read here outlives it."""
        if t._state is INJECT:
            self._injected_entry(t, nr, args)
            return
        if ret_data != TRACE_MARK:
            self._foreign_trace(t)
            return
        if path is None:
            self._on_entry(t, arch, nr, args, ip)
            return
        mem = self._mem
        mem.pre = (t.tid, args[self._path_reads[nr] - 1], path)
        try:
            self._on_entry(t, arch, nr, args, ip)
        finally:
            mem.pre = None

    def _foreign_trace(self, t: _Thread) -> None:
        """A stop from the program's own RET_TRACE rule (newer filters' data
        wins): no tracer of its own, so ENOSYS as natively, and nobody judges
        a call that never runs."""
        regs = pt.getregs(t.tid, self._regs)
        regs.orig_rax = MASK64
        regs.rax = (-E.ENOSYS) & MASK64
        pt.setregs(t.tid, regs)
        t.state = "run"
        self._resume(t.tid)

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
        plan = self._action_cache.plans.get((arch, nr))
        if plan is None:
            plan = self._plan(arch, nr)
            if plan is None:  # the filter kills unknown arches; never misread one
                os.kill(t.tgid, signal.SIGKILL)
                return
        spec = plan.spec
        if self.stops.on:
            self.stops.add(spec.name)
        t.sent_one = None
        if plan.prepare is not None:
            prepared = plan.prepare(t, plan.abi, spec, rawargs)
            if prepared is None:
                return  # answered (denied), or the region is being made (the call comes back)
            rawargs = prepared
        t.guard_exit = False
        for check in plan.checks:  # the broker's own checks before anyone judges it
            if check(self, t, plan, rawargs):
                return  # answered here
        if plan.what != "trace":  # settled by static rules: no round trip (attach mode gets here)
            if plan.what == "allow":
                self._run_unasked(t, plan)
            else:
                t.raw = ()
                self._apply_entry(t, Decision("skip-fail" if plan.what == "deny" else "kill", Call(spec.name), plan.err))
            return
        order = plan.order
        if not order:
            self._run_unasked(t, plan)
            return
        if self.forced is not None and not plan.never_denied:
            self._apply_entry(t, Decision("skip-fail", Call(spec.name), self.forced.errno))
            return
        self._ask_entry(t, plan, rawargs, ip)

    def _run_unasked(self, t: _Thread, plan: _Plan) -> None:
        """Let a call nobody is asked about run; an open the guard checks
        (``guard_exit``: an open for writing, any open without the wall) to
        its exit stop, where what it opened is looked at."""
        if t.guard_exit or t.sent_one is not None:  # (the exit check's undo needs the call's ABI, not a stale one)
            t.abi, t.spec = plan.abi, plan.spec
            t.repointed = t.sent_one[1] if t.sent_one is not None else None
            t.state = "verify"
            self._to_exit_stop(t)
            return
        t.state = "run"
        self._resume(t.tid)

    def _ask_entry(self, t: _Thread, plan: _Plan, rawargs: Sequence[int], ip: int,
                   path: tuple[bytes, bool] | int | None = None, plain: bool | None = None) -> None:
        """A call someone must be asked about: its event (arguments decoded,
        notes made) starts its walk through the stack; when its members all
        answer synchronously (``plan.sync``) they are asked here and a plain
        ``cont`` applied at once (the fused entry, docs/shim.md: one frame
        for all of it but the members, the pin and the event's objects);
        members that are all processes (``plan.quick``) alike while each
        answers a plain ``cont`` with its question.
        ``path``: the compiled stop's read of argument ``plan.given`` (see
        ``accel.seccomp_info``), decoded here without the decoder's frames;
        ``plain``: False when the compiled road (``accel.fused_stop``) has
        found that path not plain already (:meth:`_pinned_notes` need not
        look again); True when the compiled question (ext.py) has asked
        about it as plain already: the event is that one, pinned as judged
        even if a component has been swapped for a symlink since
        (:meth:`_judged_plain`)."""
        abi, spec = plan.abi, plan.spec
        raw = tuple(rawargs) if plan.mask is None else tuple(a & plan.mask for a in rawargs)
        decode = plan.decode
        if decode is None:
            decode = self._ask_plan(plan)
        mem = self._mem
        mem.pid = t.tid
        if type(path) is tuple and path[1] and len(path[0]) <= PATHSIZE and plan.decode_given is not None:
            # what _cstr makes of a whole string the stop read: a Str of it (its decoders read only registers)
            args = plan.decode_given(raw, mem, self.strsize, PATHSIZE, _str(path[0], None))
        else:
            args = decode(raw, mem, self.strsize, PATHSIZE)  # (its decoders read only their registers)
        ev_id = self._next_id
        self._next_id = ev_id + 1
        t.verify = t.pin = t.repointed = None
        pin = plan.pin_form and self._may_pin(t, abi)
        notes: tuple | None
        if plain:
            notes = self._judged_plain(t, plan, raw, args)
        else:
            notes = self._pinned_notes(t, plan, raw, args) if pin and plain is None else None
        if notes is None:
            notes = _path_notes(t.tid, spec, raw, args, plan.paths) if plan.paths else ()
            if plan.real is not None and notes:
                t.verify, real = self._expected_object(t, spec, raw, args, pin)
                if real is not None:
                    notes += ((plan.real, Str(real)),)
        if self._symbolizer is not None:
            notes += (("caller", Str(self._symbolizer.caller(t.tgid, ip).encode())),)
        ev = _event(ev_id, t.tgid, t.tid, abi.name, _call(spec.name, args), notes)
        t.abi = abi
        t.spec = spec
        t.raw = raw
        t.event_id = ev_id
        # (RUN -> ASK is in states.MOVES: the property's check only for another state; State.ASK
        # is a lookup through the enum's class, 0.2 us: the module's names)
        t._state = ASK if t._state is RUN else move(t._state, "ask")
        if self.audit is not None or self._audit_tee is not None:  # (the record's duration)
            t.t0 = time.monotonic()
        if plan.sync and not self.stack.cache.replies:
            # the walk of members that all answer synchronously and have no argument rules, with no
            # cached answers about: while each says a plain cont (the common answer) nothing is kept;
            # the first other answer goes on as an EntryWalk from there (issue #13: the walk's
            # bookkeeping was a fifth of an in-process decision)
            for pos, ask in plan.sync:
                reply, reason = ask(ev)
                if type(reply.verdict) is not Cont or reason or reply.sets or reply.cache:
                    self._walk_from(t, plan, ev, pos, reply, reason)
                    return
        elif plan.quick and not self.stack.cache.replies:
            # members that are processes, the same way: while each answers a plain cont read right
            # after its question (Authorizer.ask_cont) not even a callback is kept; any other answer,
            # or one that comes later, goes on as an EntryWalk from that member (_walk_later)
            now = time.monotonic()
            for pos, ask_cont in plan.quick:
                if not ask_cont(ev, partial(self._walk_later, t, plan, ev, pos), now):
                    return
        else:
            t.walk = walk = EntryWalk(ev, plan.order)
            self._advance_entry(t, walk)
            return
        d = plan.cont or _decision("cont", ev.call, 0, (), (), None, False, True)
        if self.audit is None and self._audit_tee is None:
            self.stats["decisions"] += 1  # (_record's all, then)
        else:
            self._record(ev, d, t)
        # _apply_entry's pinned open, at once (t.pin: set by _pinned_notes, which mypy cannot see)
        if t.pin is not None and d.stabilize and not t.guard_exit:  # type: ignore[unreachable]
            t.decision = d  # type: ignore[unreachable]  # (a plain cont: no sets, no steppers)
            if self._pin_open(t, d) == "pinned":
                self._go_on(t, d)
            return  # (else resumed already, or the call comes back to _apply_entry)
        self._apply_entry(t, d)

    def _walk_later(self, t: _Thread, plan: _Plan, ev: SyscallEvent, pos: int) -> Callable[[Reply, str], None]:
        """Member ``pos`` of a quick walk (``plan.quick``) did not answer a
        plain cont with its question: an :class:`EntryWalk` from there (the
        ones before it said cont) and the answer callback any walk's member
        gets (:meth:`_advance_entry`)."""
        order = plan.order
        t.walk = walk = EntryWalk(ev, order, order.index(pos))
        return partial(self._on_tracee, t.tid, self._on_entry_answer, t, walk, pos)

    def _walk_from(self, t: _Thread, plan: _Plan, ev: SyscallEvent, pos: int, reply: Reply, reason: str) -> None:
        """The synchronous walk met an answer other than a plain cont, from
        member ``pos`` (the ones before it said cont): an :class:`EntryWalk`
        from there, the same code as any walk."""
        order = plan.order
        t.walk = walk = EntryWalk(ev, order, order.index(pos))
        self._take_entry_answer(t, walk, pos, reply, reason)
        self._advance_entry(t, walk)

    def _pin_and_go(self, t: _Thread, d: Decision) -> None:
        """A pinned plain cont's last steps (the compiled road's when it cannot pin itself)."""
        if self._pin_open(t, d) == "pinned":
            self._go_on(t, d)

    def _fast_plan(self, plan: _Plan) -> tuple | None:
        """``plan.fast``: what the compiled road (``accel.fused_stop``, the
        fused stop's section of _accel.c) needs to work a call of ``plan``
        itself, or None where it hands every call to :meth:`_ask_entry`.
        Only for the common judged open: fused, x86_64, pinnable (stable
        arguments), its path read with the stop, every member an in-process
        policy that can be asked without its Python wrappers (the order
        of the tuple is the C's, FP_* and FM_*).  Its decoder is given as
        its parts (args.entry_decoders: per argument its memo, if any, and
        its function), which the C calls as args._joined's function does."""
        if (fused_stop is None or not plan.fused or not plan.sync or not plan.pin_form or not plan.stabilize
                or plan.mask is not None or plan.abi.name != "x86_64" or plan.decode_given is None
                or plan.real is None or not plan.paths):
            return None
        pidx, fidx, midx = PIN_ARGS[plan.spec.name]
        if pidx != plan.given:
            return None
        members = []
        for pos, _ in plan.sync:
            parts = getattr(self.stack.members[pos], "fused_parts", None)
            got = parts() if parts is not None else None
            if got is None:
                return None
            members.append((pos, self.stack.members[pos], *got))
        decode = tuple(None if i == pidx else (*getattr(f, "memo", (-1, None)), f)
                       for i, f in enumerate(entry_decoders(plan.spec)))
        return (plan.spec.name, plan.abi.name, plan.abi, plan.spec, decode, plan.paths[0][1], plan.real,
                -1 if fidx is None else fidx, CREAT_FLAGS, midx, plan.abi.arg_regs,
                plan.spec.nr | plan.abi.nr_bit, tuple(members), plan.quiet)

    def _make_fused(self) -> Callable[..., None]:
        """The compiled loop's seccomp handler: ``accel.fused_stop`` with
        this shim's state (the order of the tuple is the C's, FS_*), which
        hands what it does not work itself to :meth:`Stops._on_seccomp_stop`;
        that method itself without the compiled road."""
        fallback = cast(Any, self)._on_seccomp_stop
        if (fused_stop is None or os.environ.get("BROKERD_CSTOP", "") == "0"  # (=0: the Python road, to compare)
                or _descriptors(type(self), _SHIM_FIELDS)):
            return fallback
        return fused_stop((
            self, fallback, self.threads, self._action_cache.plans, self._own_filters, self.stats,
            self._roots.kept, self._mem, self.stops, self.stack.cache.replies, self._regions, pt, _str, _call, _event, _decision,
            ASK, RUN, Cont, TRACE_MARK, O_ACCMODE, O_PATH, PATHSIZE, _Plan, _Thread, SYS_OPENAT2))

    def _ask_plan(self, plan: _Plan) -> Callable[[Sequence[int], Any, int, int], tuple]:
        """The parts of ``plan`` only a judged call needs, worked out at its
        first one: its decoder, whether its members can be walked as
        :meth:`_ask_entry` does, whether its cont copies its strings into the
        scratch region; its decoder returned."""
        members = [(pos, self.stack.members[pos]) for pos in plan.order]
        if all(m.sync and not m.rules for _, m in members):
            plan.sync = tuple((pos, cast(SyncMember, m).ask_entry) for pos, m in members)
        elif all(not m.rules and callable(getattr(m, "ask_cont", None)) for _, m in members):
            plan.quick = tuple((pos, cast(Any, m).ask_cont) for pos, m in members)
        plan.stabilize = self.stable_args and stable_positions(plan.spec) != ((), ())
        # a plain cont of a call whose strings are not copied: nothing in it differs per call
        plan.cont = None if plan.stabilize else Decision("cont", Call(plan.spec.name))
        plan.decode = decode = entry_decoder(plan.spec)
        if plan.given >= 0:
            plan.decode_given = entry_decoder_given(plan.spec, plan.given)
        quiet = self.guard.quiet_reads(plan.spec.name) if plan.checks == (Entry._guard_entry,) else None
        plan.quiet = -1 if not plan.checks else quiet if quiet is not None else -2
        # the compiled stop may hand this call straight to _ask_entry (Stops._on_seccomp_stop)
        plan.fused = bool(plan.sync or plan.quick) and plan.prepare is None and plan.quiet != -2
        plan.fast = self._fast_plan(plan)
        plan.ext = self._ext_plan(plan)  # (the compiled external question's, ext.py)
        return decode

    def _note_filter_entry(self, t: _Thread, plan: _Plan, rawargs: Sequence[int]) -> bool:
        """A filter being installed: no more pinned opens in that process (pin.py)."""
        self._note_filter(t, plan.spec.name, rawargs)
        return False

    def _root_entry(self, t: _Thread, plan: _Plan, rawargs: Sequence[int]) -> bool:
        """A call that may change a root: resolve from /proc/TID/root from now on (resolve.RootFds)."""
        if self._roots.on:
            self._roots.off()
        return False

    def _userfaultfd_entry(self, t: _Thread, plan: _Plan, rawargs: Sequence[int]) -> bool:
        """userfaultfd outside user mode (attach mode: no filter tests the flag): EPERM."""
        if rawargs[0] & UFFD_USER_MODE_ONLY:
            return False
        t.raw = ()
        self._apply_entry(t, Decision("skip-fail", Call(plan.spec.name), E.EPERM))
        return True

    def _guard_entry(self, t: _Thread, plan: _Plan, rawargs: Sequence[int]) -> bool:
        """The guard's calls (docs/security.md): one aimed at the broker (or
        outside the session) is answered here; True when it was."""
        name = plan.spec.name
        # (a generator over the six registers was 1.3 us of every guarded call: only a 32-bit ABI masks)
        raw = tuple(rawargs) if plan.mask is None else tuple(a & plan.mask for a in rawargs)
        verdict, t.guard_exit = self.guard.judge_entry(name, raw, t.tid, t.tgid)
        if verdict is not None:
            what, value = verdict
            t.raw = ()
            target = "a process outside the session" if name in PROC_OPEN_CALLS else "the broker"
            self._log(f"pid {t.tgid}: {name} aimed at {target}: "
                      + ("denied" if what == "deny" else "sent to the rest of the group only"))
            self._apply_entry(t, Decision("skip-fail" if what == "deny" else "skip-ok", Call(name), value))
            return True
        return False  # (guard_exit: what was opened is checked at the exit stop)

    def _plan(self, arch: int, nr: int) -> _Plan | None:
        """What the entry of call ``nr`` of ``arch`` needs, worked out once
        (kept until the stack's static answers change, :class:`.base.Answers`):
        at every entry a dozen name tests, the stack's action and order were
        a fifth of the broker's own time per decision (issue #13).  None: an
        unknown arch."""
        abi = abi_from_audit(arch, nr)
        if abi is None:
            return None
        spec = abi.spec(nr)
        name = spec.name
        what, err = self.stack_action(name)
        if what == "allow" and self.stack.guards(name):
            what = "trace"  # allowed behind argument rules: the walk applies them (attach; a rule the filter cannot test)
        checks = tuple(check for names, check in _ENTRY_CHECKS if name in names)
        if name in self._guarded:
            checks += (Entry._guard_entry,)
        plan = _Plan(abi, spec, self._preparer(name, what), checks, what, err,
                     self.stack.order(name) if what == "trace" else ())
        if self.stable_args and name in OPEN_CALLS:
            plan.real = f"real{OPEN_CALLS[name][0] + 1}"
            plan.pin_form = name in PIN_FORMS
        if len(self._action_cache.plans) < _PLANS_KEPT:
            self._action_cache.plans[(arch, nr)] = plan
        if plan.paths and plan.order and plan.mask is None and 0 <= nr < len(self._path_reads):
            self._path_reads[nr] = plan.paths[0][0] + 1  # the compiled stop reads this path (accel)
            plan.given = plan.paths[0][0]
        return plan

    def _preparer(self, name: str, what: str) -> Callable[[_Thread, Abi, SyscallSpec, Sequence[int]],
                                                           Sequence[int] | None] | None:
        """The broker's own step for call ``name`` (``what`` the stack does
        with it) before it is judged, which may change the arguments judged
        (None: the call was answered, or comes back): CLONE_UNTRACED
        stripped, clone3's and owner commands' memory copied, the structs a
        policy reads from memory copied for a call someone judges
        (:data:`JUDGED_COPIES`), calls that could reach the scratch region checked."""
        if name == "clone" and self.backend == "ptrace":
            return lambda t, abi, spec, raw: self._strip_untraced(t, abi, raw)
        if name == "clone3" and self._copies_clone3:
            return lambda t, abi, spec, raw: self._stable_clone3(t, abi, raw)
        if name in JUDGED_COPIES and self._copies_clone3 and what == "trace":
            copy = getattr(self, JUDGED_COPIES[name])
            return lambda t, abi, spec, raw: copy(t, abi, raw)
        if name in OWNER_CALLS and self._copies_clone3 and self.guard.owner_checks:
            return lambda t, abi, spec, raw: self._stable_owner(t, abi, name, raw)
        if name in REGION_CALLS:
            return lambda t, abi, spec, raw: (self._guard_region(t, abi, spec, raw) if t.tgid in self._regions
                                              else raw)
        return None

    def _advance_entry(self, t: _Thread, walk: EntryWalk) -> None:
        """Ask the next member of the walk (answers the broker knows for it
        are fed without asking; an in-process member's answer is taken here
        and now, without a callback), or apply the decision once it is made."""
        stack = self.stack
        members = stack.members
        while (nxt := walk.next()) is not None:
            pos, ev = nxt
            member = members[pos]
            if member.rules or stack.cache.replies:  # (neither: nothing the broker could know for it)
                known = stack.known_answer(pos, ev, t.abi)
                if known is not None:  # its own argument rule, or its cached verdict for this very call
                    walk.feed(known.verdict, known.sets)
                    continue
            if member.sync:  # it answers inside ask(): no partial, no second trip through _on_tracee
                try:
                    member.ask(ev, self._take, time.monotonic())
                finally:
                    taken, self._taken = self._taken, None  # (None between questions, whatever ask did)
                if taken is None:
                    raise ValueError(f"authorizer {member.name} did not answer")  # (_on_tracee: killed, fail closed)
                self._take_entry_answer(t, walk, pos, *taken)
                continue
            # (its answer comes through _on_tracee, which keeps a gone tracee quiet)
            member.ask(ev, partial(self._on_tracee, t.tid, self._on_entry_answer, t, walk, pos), time.monotonic())
            return
        d = walk.decision
        assert d is not None
        t.walk = None
        self._record(walk.event, d, t)
        if d.action != "cont" or d.rewritten:  # a rewritten path is the authorizer's own choice
            t.verify = t.pin = None
        elif self.stable_args and t.spec is not None and stable_positions(t.spec) != ((), ()):
            d.stabilize = True
        self._apply_entry(t, d)

    def _take(self, reply: Reply, reason: str) -> None:
        """A synchronous member's answer (Member.sync), read back by _advance_entry."""
        self._taken = (reply, reason)

    def _on_entry_answer(self, t: _Thread, walk: EntryWalk, pos: int, reply: Reply, reason: str) -> None:
        if t.walk is not walk or self.threads.get(t.tid) is not t:
            return  # the tracee died meanwhile
        self._take_entry_answer(t, walk, pos, reply, reason)
        self._advance_entry(t, walk)

    def _take_entry_answer(self, t: _Thread, walk: EntryWalk, pos: int, reply: Reply, reason: str) -> None:
        """Member ``pos``'s answer (or its default, ``reason`` saying why) fed to the walk."""
        verdict = reply.verdict
        if type(verdict) is Cont and not reason and not reply.sets and not reply.cache:
            walk.feed(verdict)  # the common answer: nothing to check, nothing to keep
            return
        a = self.stack.members[pos]
        if reason:
            self._log(f"{reason}: {a.name}'s default applies to {walk.event.call.name} (pid {t.tgid})")
        try:
            if isinstance(verdict, Rewrite):
                self._check_rewrite(t, verdict)
            if reply.sets:
                self._check_sets(t, reply.sets)
            if reply.cache and not reason:
                step = walk.next()
                assert step is not None  # the walk is waiting for this very answer
                self.stack.remember(pos, step[1], reply)  # the event as this authorizer saw it (the key)
            walk.feed(verdict, reply.sets)
        except VerdictError as e:
            a.report_error(e.code, str(e))
            walk.feed(a.default, ())

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
        if d.action != "cont" or d.rewritten:
            t.sent_one = None  # (a sendmmsg made sendmsg runs so only as judged: _stable_mmsghdr)
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
        if t.pin is not None and d.stabilize and not d.steppers and not (
                t.guard_exit and not self.guard.pin_suffices(t.tid, t.pin[HOW_ROOM:-1])):
            t.guard_exit = False  # (an open for writing pinned to a path on no procfs: nothing to check)
            pinned = self._pin_open(t, d)
            if pinned != "pinned":
                return  # resumed already, or scratch memory is being injected, or a slot awaited (the call comes back)
        elif d.rewritten or d.stabilize:
            if not self._rewrite(t, d):
                return  # scratch memory is being injected; the call comes back
        self._go_on(t, d)

    def _go_on(self, t: _Thread, d: Decision) -> None:
        """The end of :meth:`_apply_entry` for a call that runs: resumed, or
        to its exit stop when someone stepped it or what it opens is checked."""
        if t.sent_one is not None:  # a signal's restart gets the program's own sendmmsg back
            t.repointed = t.sent_one[1]
        if d.steppers:
            t.state = "step"
            self._to_exit_stop(t)
        elif (t.verify is not None or t.guard_exit or t.sent_one is not None) and d.action == "cont":
            t.state = "verify"
            self._to_exit_stop(t)
        else:
            t.state = "run"
            self._resume(t.tid)

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


#: the broker's own checks at a call's entry, by the calls they are for, in order (the guard's last)
_ENTRY_CHECKS: tuple[tuple[Collection[str], Callable[[Entry, _Thread, _Plan, Sequence[int]], bool]], ...] = (
    (FILTER_INSTALLS, Entry._note_filter_entry),
    (ROOT_CALLS, Entry._root_entry),
    (("userfaultfd",), Entry._userfaultfd_entry),
)
if accel is not None:  # the compiled stop's handler is _on_seccomp itself: one Python call less per stop
    Entry._on_seccomp = Entry._on_seccomp_accel  # type: ignore[method-assign]

#: the compiled road of the common judged open (None: not built, or built before it had one)
fused_stop: Callable[[tuple], Callable[..., None]] | None = getattr(accel, "fused_stop", None)

#: the shim's attributes the compiled road reads and writes in its __dict__ (accel.fused_stop):
#: no class of its may make one a descriptor (Entry._make_fused); a thread's are its slots
_SHIM_FIELDS = ("_detaching", "forced", "audit", "_audit_tee", "_symbolizer", "_pin_ok", "main_pid", "strsize",
                "_next_id", "_resume_count")


def _descriptors(cls: type, names: Sequence[str]) -> bool:
    """Does ``cls`` (or a base) make any of ``names`` a data descriptor (a property, a slot)?"""
    return any(hasattr(type(getattr(cls, n, None)), "__set__") for n in names)

#: calls whose struct argument a policy reads from memory (flags, a destination), copied once
#: into the read-only slot before anyone judges a call of theirs (Stable)
JUDGED_COPIES = {"openat2": "_stable_open_how", "sendmsg": "_stable_msghdr", "sendmmsg": "_stable_mmsghdr"}

#: entry plans kept at most (numbers no table names get one each: bounded)
_PLANS_KEPT = 4096

#: the objects every judged call makes (see maker)
_str = maker(Str)
_call = maker(Call)
_event = maker(SyscallEvent)
_decision = maker(Decision)


class _Plan:
    """What the entry of one call (an ABI's syscall number) needs, worked out
    once (:meth:`Entry._plan`): its spec, the broker's own steps, the stack's
    static answer and who must be asked."""

    __slots__ = ("abi", "spec", "prepare", "checks", "what", "err", "order", "mask", "nargs", "paths",
                 "never_denied", "real", "pin_form", "decode", "sync", "stabilize", "cont", "given",
                 "decode_given", "quiet", "fused", "quick", "ext", "fast")

    def __init__(self, abi: Abi, spec: SyscallSpec,
                 prepare: Callable[[_Thread, Abi, SyscallSpec, Sequence[int]], Sequence[int] | None] | None,
                 checks: tuple[Callable[[Entry, _Thread, _Plan, Sequence[int]], bool], ...],
                 what: str, err: int, order: tuple[int, ...]) -> None:
        self.abi = abi
        self.spec = spec
        self.prepare = prepare
        self.checks = checks
        self.what = what
        self.err = err
        self.order = order
        #: the upper halves of a 32-bit ABI's registers are not its arguments
        self.mask = abi.reg_mask if abi.reg_bits < 64 else None
        self.nargs = len(spec.args)
        #: the path arguments: (position, their pathN note's name)
        self.paths = tuple((i, f"path{i + 1}") for i, kind in enumerate(spec.args) if kind == "path")
        self.never_denied = spec.name in NEVER_DENIED  # not even by fail("deny")
        self.real: str | None = None  # an open whose object is resolved first: its realN note's name
        self.pin_form = False  # an open that may be pinned (pin.py)
        # worked out at the first judged call (Entry._ask_plan):
        #: decode_args of the spec as one function (None: not worked out yet)
        self.decode: Callable[[Sequence[int], Any, int, int], tuple] | None = None
        #: when every member asked answers synchronously and has no rules: their
        #: (position, ask_entry) in order (Entry._ask_entry); else ()
        self.sync: tuple[tuple[int, Callable[[SyscallEvent], tuple[Reply, str]]], ...] = ()
        #: else, when every member asked is a process (Authorizer.ask_cont) and has no rules:
        #: their (position, ask_cont) in order (Entry._ask_entry); else ()
        self.quick: tuple[tuple[int, Callable[..., bool]], ...] = ()
        self.stabilize = False  # a cont copies the judged strings/paths into the scratch region first
        #: when it does not: the Decision of every plain cont, shared (read only; its call is
        #: the name only: a cont that is not rewritten runs the call as the program made it)
        self.cont: Decision | None = None
        #: the argument the compiled stop reads with the stop (x86_64, accel.seccomp_info), or -1
        self.given = -1
        #: the decoder taking that argument as its fifth argument (args.entry_decoder_given)
        self.decode_given: Callable[..., tuple] | None = None
        #: the guard's part: -1 none (no checks at all), else the flags register of an open
        #: whose reads it leaves alone (Guard.quiet_reads; opens for writing go to
        #: _guard_entry), -2 any other check (no fused entry)
        self.quiet = -2
        #: the compiled stop hands this call straight to _ask_entry when nothing else is
        #: to be done first (Stops._on_seccomp_stop): all members synchronous, no preparer,
        #: no check but the guard's quiet reads
        self.fused = False
        #: the compiled road works this call itself (Entry._fast_plan; None: it does not)
        self.fast: tuple | None = None
        #: a fused quick plan's compiled external question (ext.ExtPlan), or None
        self.ext: Any = None


def _path_notes(tid: int, spec: SyscallSpec, raw: tuple[int, ...], args: tuple,
                paths: tuple[tuple[int, str], ...]) -> tuple:
    """``pathN`` notes: each path argument (``paths``: its position and note
    name) made absolute against the caller's cwd or dirfd, ``.`` and ``..``
    folded lexically (symlinks not followed).  Advisory: the kernel resolves
    again when the call runs."""
    notes: tuple = ()
    for i, key in paths:
        if i >= len(args):
            continue
        v = args[i]
        if type(v) is not Str:
            continue
        data = v.data
        if not data or (v.total is not None and v.truncated):
            continue
        if data[0] == 0x2F and v.total is None and _UNFOLDED.search(data) is None:
            notes += ((key, v),)  # absolute, nothing to fold: the note is the (immutable) argument itself
            continue
        path = data if data[0] == 0x2F else _absolute(tid, spec.args, raw, i, data)  # (0x2F: "/")
        if path is not None:
            notes += ((key, Str(_fold(path).replace(b"//", b"/"))),)
    return notes


#: what folding an absolute path changes: a ``.`` or ``..`` component (or a name
#: beginning with a dot: a false alarm, folded for nothing), an empty one, a trailing ``/``
_UNFOLDED = lazyre.compile(rb"/\.|//|/\Z")


def _fold_bytes(path: bytes) -> bytes:
    """``os.path.normpath`` of a bytes path without its four Python-level
    calls (fspath, fsdecode, fsencode: 0.3 us of every judged open): the C
    normpath on the path read as latin-1, one character per byte, so any
    bytes come back as they were and only ``/`` and ``.`` (ASCII) matter."""
    return _path_normpath(path.decode("latin-1")).encode("latin-1") or b"."


_fold: Callable[[bytes], bytes]
try:
    from posix import _path_normpath  # type: ignore[attr-defined]  # (CPython 3.11+, private)
except ImportError:  # pragma: no cover - another Python: the public one
    _fold = os.path.normpath
else:
    _fold = _fold_bytes


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
