"""The launched session's seccomp filter, built from the stack's static answers and the broker's own rules."""

from __future__ import annotations

import errno as E

from brokerd.decision.rules import ALLOW, RegisterTest, register_tests, static_verdict
from brokerd.decision.stack import Stack
from brokerd.protocol.abi import ABIS, Abi, SyscallSpec
from brokerd.protocol.args import WHO_TARGETS

from .. import seccomp
from ..guard import (
    CONTROL,
    O_ACCMODE,
    OPEN_ACCESS,
    OWNER_BY_CALL,
    OWNER_CALLS,
    OWNER_CMD_BIT,
    OWNER_KIND,
    PID_AS_CGROUP,
    PID_MEANS_ALL,
    WALL_BLIND,
)
from .base import ShimBase
from .consts import (
    CLONE_UNTRACED,
    HANDOFF_ARG,
    INJECT_ARG,
    INJECTED_CALLS,
    MAP_FIXED,
    TRACE_MARK,
    UFFD_USER_MODE_ONLY,
    UNTRACED_TESTED,
    nonce_parts,
)
from .pin import FILTER_INSTALLS


class Filter(ShimBase):
    """The launched session's seccomp filter, built from the stack's static answers and the broker's own rules."""

    def stack_action(self, name: str) -> tuple[str, int]:
        """What the whole stack does with syscall ``name`` before any argument
        is seen: allow, trace, deny(errno) or kill, the broker's own rules
        last (see decision.rules.combine)."""
        act = self._action_cache.get(name)
        if act is None:
            internal = self.internal.action(name, name in self.internal_trace)
            act = self.stack.action(name, internal)
            self._action_cache[name] = act
        return act

    def build_filter(self, stop: int = seccomp.trace(TRACE_MARK), guard_region: bool = True,
                     handoff: int | None = None, control_outside: int | None = None) -> list[tuple[int, int, int, int]]:
        """The launched session's seccomp mask: ``stop`` (RET_TRACE, or
        RET_USER_NOTIF for the notification backend) for calls someone must
        decide, the stack's static answers (ALLOW, ERRNO, KILL_PROCESS) for
        the rest, so those hold in the kernel whatever happens to us.
        ``control_outside``: for a session with no broker left to judge the
        calls that reach other processes (a kernel-only session), what those
        calls get unless they name the caller itself (:func:`_kernel_only`)."""
        kernel = {
            "allow": lambda e: seccomp.RET_ALLOW,
            "trace": lambda e: stop,
            "deny": seccomp.ret_errno,
            "kill": lambda e: seccomp.RET_KILL_PROCESS,
        }
        unknown = self.stack.unknown()
        rules: dict[str, seccomp.AbiRules] = {}
        for abi_name, abi in ABIS.items():
            default = kernel[unknown[0]](unknown[1])
            acts: dict[int, seccomp.Action] = {}
            for name, spec in abi.by_name.items():
                what, err = self.stack_action(name)
                if what == "trace" and name in UNTRACED_TESTED and name in self.internal_trace:
                    # the broker's own stop is needed only for CLONE_UNTRACED: a flag test
                    what, err = self.stack.action(name, self.internal.action(name, False))
                    untraced = what == "allow" and self.backend == "ptrace"
                    what, err = ("allow", 0) if untraced else ("trace", 0)
                else:
                    untraced = False
                action: seccomp.Action = kernel[what](err)
                if untraced:
                    action = seccomp.FlagTest(0, CLONE_UNTRACED, stop, action)
                if not guard_region or self.seals or action != seccomp.RET_ALLOW or name not in ("mmap", "mmap2"):
                    pass
                elif spec.args[3:4] == ("mmap_flags",):
                    # a MAP_FIXED mapping could replace the scratch region: it stops (and is checked)
                    action = seccomp.FlagTest(3, MAP_FIXED, stop, seccomp.RET_ALLOW)
                else:
                    action = stop  # i386's old mmap passes its flags in memory
                action = self._flag_rule(name, action, stop, installs_stop=guard_region and self._pins_opens())
                if name in CONTROL and action == stop and self._stops_for_guard_only(name):
                    # prlimit64(0, ...) (glibc's getrlimit), sched_setaffinity(0, ...),
                    # setpriority(PRIO_PROCESS, 0, ...): the caller itself
                    action = _self_only(spec, stop)
                if control_outside is not None and action == seccomp.RET_ALLOW:
                    action = _kernel_only(name, spec, control_outside, walled=self.wall is not None)
                if what == "allow":  # the members' argument rules, in front of the broker's own tests
                    action = self._behind_rules(abi, spec, kernel, stop, action)
                if handoff is not None and name == "sendmsg" and isinstance(action, int):
                    action = seccomp.ArgEquals(HANDOFF_ARG, handoff, seccomp.RET_ALLOW, action)
                if (guard_region and name in INJECTED_CALLS and isinstance(action, int)
                        and action not in (seccomp.RET_ALLOW, stop)):
                    action = self._injected_rule(abi, action, stop)
                if action != default:
                    acts[spec.nr | abi.nr_bit] = action
            rules[abi_name] = seccomp.AbiRules(acts, default)
        names = self.stack.subscriptions()
        if names is not None:
            known = set(ABIS["x86_64"].by_name) | set(ABIS["i386"].by_name)
            unknown_names = names - known
            for a in self.stack:
                for n in a.static.allow | a.static.kill | {n for n, _ in a.static.deny}:
                    if n not in known:
                        unknown_names.add(n)
            if unknown_names:
                self._log(f"unknown syscall names ignored: {', '.join(sorted(unknown_names))}")
        x32_rules = rules["x32"]
        x32: seccomp.AbiRules | None = None  # nobody cares about x32: the filter kills it
        if x32_rules.default != seccomp.RET_ALLOW or x32_rules.actions:
            x32 = seccomp.AbiRules({**x32_rules.actions, 0xFFFFFFFF: seccomp.RET_ALLOW}, x32_rules.default)
        return seccomp.compile_filter(rules["x86_64"], rules["i386"], x32)

    def _stops_for_guard_only(self, name: str) -> bool:
        """Would the stack let ``name`` run without the broker's own stop?"""
        return self.stack.action(name, self.internal.action(name, False))[0] == "allow"
    def _behind_rules(self, abi: Abi, spec: SyscallSpec, kernel: dict, stop: int,
                      allowed: seccomp.Action) -> seccomp.Action:
        """An allowed call in the filter, behind the argument rules of the
        members that let it run unasked (``Stack.guards``): each member's
        rules in order, first match wins, no match (or ``cont``) goes on to
        the next member, then ``allowed`` (the call runs, or meets the
        broker's own tests).  A rule the filter cannot test makes the call
        stop, and the broker applies it."""
        if self.rules_need_stop(abi, spec):
            return stop
        action = allowed
        for _, rules in reversed(self.stack.guards(spec.name)):
            rest = action
            for rule in reversed(rules):
                tests, verdict = register_tests(rule, spec.args, abi.reg_mask), static_verdict(rule)
                assert tests is not None and verdict is not None
                node = rest if verdict == ALLOW else kernel[verdict[0]](verdict[1])
                for t in reversed(tests):
                    node = _filter_test(t, node, action)
                action = node
        return action

    def rules_need_stop(self, abi: Abi, spec: SyscallSpec) -> bool:
        return rules_need_stop(self.stack, abi, spec)

    def _injected_rule(self, abi: Abi, action: int, stop: int) -> seccomp.ArgEquals:
        """Take the broker's injected call out of a static rule: it carries the
        session nonce in argument registers the call ignores (one 64-bit one,
        or two 32-bit ones for i386).  The program can read the nonce (the
        injecting thread's /proc/self/task/TID/syscall), so it only makes the
        call stop (``stop``), never run: the shim lets it run for a thread
        mid-injection, and gives any other thread the static answer
        (``_on_entry``).  The first injected call, set at a seccomp stop, is
        checked again by the kernel, which lets a RET_TRACE through then."""
        test: int | seccomp.ArgEquals = stop
        parts = nonce_parts(self._inject_nonce, abi.reg_bits)
        for i in reversed(range(len(parts))):  # the low half is tested first
            test = seccomp.ArgEquals(INJECT_ARG + i, parts[i], test, action)
        assert isinstance(test, seccomp.ArgEquals)
        return test

    def _flag_rule(self, name: str, action: seccomp.Action, stop: int,
                   installs_stop: bool = False) -> seccomp.Action:
        """The filter's argument tests for the broker's own rules: a program's
        own seccomp listener would see its calls before us (USER_NOTIF outranks
        TRACE), so creating one fails with EBUSY, as when a listener exists;
        where opens are pinned (``installs_stop``), installing a filter of its
        own stops (``seccomp``/``prctl``: pin.py); without Landlock's signal
        scope, fcntl's owner commands stop for the guard; opens for writing
        stop for it (O_WRONLY/O_RDWR by a flag test; creat and openat2, whose
        flags are in memory, always), which no domain keeps from another
        process's /proc/PID/oom_score_adj and the like (procfs.PROC_WRITABLE)."""
        if not isinstance(action, int) or action not in (seccomp.RET_ALLOW, stop):
            return action
        rest: seccomp.Action = action
        if installs_stop and name in FILTER_INSTALLS and action == seccomp.RET_ALLOW:
            rest = seccomp.ArgEquals(0, FILTER_INSTALLS[name], stop, action, low32=True)
        if name == "seccomp":
            return seccomp.FlagTest(1, seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER, seccomp.ret_errno(E.EBUSY), rest)
        if name in FILTER_INSTALLS:
            return rest
        if name == "userfaultfd":  # only the user-mode kind: see UFFD_USER_MODE_ONLY
            return seccomp.FlagTest(0, UFFD_USER_MODE_ONLY, action, seccomp.ret_errno(E.EPERM))
        if name in OWNER_CALLS and self.guard.owner_checks and action == seccomp.RET_ALLOW:
            return self._owner_rule(name, stop, action)
        if name in OPEN_ACCESS and self.guard.write_checks and action == seccomp.RET_ALLOW:
            form, at = OPEN_ACCESS[name]
            return seccomp.FlagTest(at, O_ACCMODE, stop, action) if form == "reg" else stop
        return action

    @staticmethod
    def _owner_rule(name: str, stop: int, action: int) -> seccomp.Action:
        """Stop only an owner call's owner commands: fcntl's F_SETOWN(_EX)
        by a bit, ioctl's FIOSETOWN/SIOCSPGRP by their (32-bit) values."""
        bit = OWNER_CMD_BIT.get(OWNER_KIND[name])
        if bit is not None:
            return seccomp.FlagTest(1, bit, stop, action)
        rule: int | seccomp.ArgEquals = action
        for cmd in sorted(OWNER_BY_CALL[name]):
            rule = seccomp.ArgEquals(1, cmd, stop, rule, low32=True)
        return rule


def _kernel_only(name: str, spec: SyscallSpec, other: int, walled: bool) -> seccomp.Action:
    """An allowed call in a session no broker will judge (kernel-only): the
    calls the guard would keep inside the session (the process-control
    class, and under the wall the calls it is blind to: ``WALL_BLIND``) may
    name only the caller; a call aimed at every process or a cgroup gets
    ``other`` whatever the wall (:func:`_one_process_only`).  Without the
    wall (``--no-landlock``: the user let the program reach outside
    processes) the blind calls run as the policy says."""
    if name in CONTROL or walled and name in WALL_BLIND:
        return _one_process_only(name, spec, other, _self_only(spec, other))
    return _one_process_only(name, spec, other)


def _one_process_only(name: str, spec: SyscallSpec, other: int,
                      action: seccomp.Action = seccomp.RET_ALLOW) -> seccomp.Action:
    """``other`` for a call aimed at a cgroup (its pid argument a descriptor)
    or at every process (pid -1), where the guard would refuse it
    (perf_event_open: it samples other sessions' brokers too, and no
    Landlock domain looks at it); ``action`` otherwise."""
    if name in PID_MEANS_ALL:
        action = seccomp.ArgEquals(spec.args.index("pid"), 0xFFFFFFFF, other, action, low32=True)
    if name in PID_AS_CGROUP:
        flags, bit = PID_AS_CGROUP[name]
        action = seccomp.FlagTest(flags, bit, other, action)
    return action


def _self_only(spec: SyscallSpec, other: int) -> seccomp.Action:
    """Allow a process-control call (prlimit64, sched_*, setpriority,
    ioprio_set) or perf_event_open only where it names the caller itself
    (pid 0, or which=process with who 0); ``other`` for any other target,
    and always for a call naming its target by a pidfd (process_madvise: a
    filter cannot tell whose process a descriptor is).  No Landlock domain
    covers these calls and a kernel-only session has no guard, so the
    filter cannot tell the session's own processes from the rest: only the
    caller is sure to be inside."""
    if "pid" in spec.args:
        return seccomp.ArgEquals(spec.args.index("pid"), 0, seccomp.RET_ALLOW, other, low32=True)
    which = next((i for i, k in enumerate(spec.args[:-1]) if k in WHO_TARGETS), None)
    if which is None:
        return other
    process = next(v for v, what in WHO_TARGETS[spec.args[which]].items() if what == "process")
    who_self = seccomp.ArgEquals(which + 1, 0, seccomp.RET_ALLOW, other, low32=True)
    return seccomp.ArgEquals(which, process, who_self, other, low32=True)

def _filter_test(t: RegisterTest, hit: seccomp.Action, miss: seccomp.Action) -> seccomp.Action:
    """One argument-rule matcher as a filter test (``hit`` when it matches)."""
    if t.op == "eq":
        return seccomp.ArgEquals(t.index, t.value, hit, miss, low32=not t.wide)
    if t.op == "any":
        return seccomp.FlagTest(t.index, t.value, hit, miss)
    return seccomp.FlagTest(t.index, t.value, miss, hit)


def rules_need_stop(stack: Stack, abi: Abi, spec: SyscallSpec) -> bool:
    """Does an argument rule guarding this allowed call need the broker
    (a path, an argument in memory, a verdict only the broker carries out)?"""
    return any(register_tests(r, spec.args, abi.reg_mask) is None or static_verdict(r) is None
               for _, rules in stack.guards(spec.name) for r in rules)
