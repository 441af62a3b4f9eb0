"""``brokerctl policy explain POLICY [SYSCALL...]``: where each call is decided.

The policy is built and greeted in this process exactly as ``brokerctl run
--policy`` does (its handshake is the truth about it), its kernel layer compiled for
this kernel, and every syscall of the x86_64 table sorted into where it is
decided: the seccomp filter (runs or fails with no stop), the policy's
Landlock layer (no stop, decided by the kernel), an argument rule the broker
evaluates, or the authorizer (a round trip).  What the running kernel lacks
(Landlock rights of later ABIs) is named with the calls it keeps per call.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from brokerd.decision.inproc import InProcess
from brokerd.decision.rules import register_tests, static_verdict
from brokerd.protocol.abi import ABIS, names_in
from brokerd.protocol.layers import LayerSpec, layer_attrs, settled_calls
from brokerd.tracer import landlock
from brokerd.tracer import layers as kernel_layers

#: the newest Landlock ABI brokerd knows: what a policy's layer could settle
NEWEST_ABI = 7


def where(a: InProcess, name: str, rule_names: frozenset[str]) -> str:
    """Where syscall ``name`` is decided for this authorizer alone."""
    what, err = a.action(name)
    layer = getattr(a, "layer", None)
    if name in a.settled and layer is not None and name in layer.unjudged:
        return "unjudged while the layer is in force (no stop)"
    if name in a.settled:
        return "Landlock layer (kernel, no stop)"
    if what == "allow" and name in rule_names:
        spec = ABIS["x86_64"].by_name[name]
        rules = [r for r in a.rules if r.name == name]
        if all(register_tests(r, spec.args, ABIS["x86_64"].reg_mask) is not None and static_verdict(r) is not None
               for r in rules):
            return "seccomp filter: argument rules, then runs (no stop)"
        return "argument rule in the broker (stops), else runs"
    if what == "allow":
        return "seccomp filter: runs (no stop)"
    if what == "deny":
        return f"seccomp filter: fails with {errno.errorcode.get(err, err)} (no stop)"
    if what == "kill":
        return "seccomp filter: kills the process"
    if name in rule_names:
        return "argument rule in the broker, else the authorizer"
    return "the authorizer (per call)"


#: a directory with more rule paths than this directly in it is summed up (readonly's /dev)
LISTED = 6
#: the entries named first when a directory is summed up (the ones people look for)
FIRST = {n: i for i, n in enumerate(("null", "pts", "tty", "zero", "urandom", "random"))}


def layer_lines(spec: LayerSpec) -> list[str]:
    """The layer for people: its attributes on one line, then one line per
    set of rights with the paths it is granted beneath, where many files of
    one directory (every character device in /dev) are counted, a few named."""
    attrs = [(k, v) for k, v in layer_attrs(spec) if k != "fs"]
    lines = ["kernel layer: " + " ".join(f'{k}="{v}"' if " " in v else f"{k}={v}" for k, v in attrs)]
    by_rights: dict[str, list[str]] = {}
    for k, v in layer_attrs(spec):
        if k == "fs":
            rights, _, path = v.partition(" ")
            by_rights.setdefault(rights, []).append(path)
    for rights, paths in by_rights.items():
        lines.append(f"    {rights} beneath: {_paths_text(paths)}")
    return lines


def _paths_text(paths: list[str]) -> str:
    by_dir: dict[str, list[str]] = {}
    for p in paths:
        by_dir.setdefault(os.path.dirname(p) or "/", []).append(p)
    parts = []
    for d, ps in by_dir.items():
        if len(ps) <= LISTED:
            parts += ps
            continue
        names = sorted((os.path.basename(p) for p in ps), key=lambda n: (n not in FIRST, FIRST.get(n, 0), n))
        parts.append(f"{len(ps)} entries of {d} ({', '.join(names[:LISTED])}, ...)")
    return ", ".join(parts)


def explain(a: InProcess, abi: int, names: Iterable[str], out: Callable[[str], None]) -> None:
    """Print the report for a greeted authorizer on Landlock ABI ``abi``."""
    spec: LayerSpec | None = getattr(a, "layer", None)
    plan = kernel_layers.plan([(a.name, spec)], abi, out)
    a.settled = plan.settled[0]
    out(f"policy {a.name} ({'handshake' if a.mode == 'hello' else a.mode + ' mode'}); "
        f"Landlock ABI here: {abi or 'none'}")
    if spec is not None:
        for line in layer_lines(spec):
            out(line)
    rule_names = frozenset(r.name for r in a.rules)
    groups: dict[str, list[str]] = {}
    wanted = list(names) or sorted(ABIS["x86_64"].by_name)
    for n in wanted:
        groups.setdefault(where(a, n, rule_names), []).append(n)
    for place, calls in sorted(groups.items()):
        out(f"{place}: {len(calls)}")
        out("    " + " ".join(calls))
    everything: dict[str, list[str]] = {}
    for n in sorted(ABIS["x86_64"].by_name):
        everything.setdefault(where(a, n, rule_names), []).append(n)
    layer: LayerSpec | None = getattr(a, "layer", None)
    floor = settled_calls(replace(layer, settle="all", _settle_names=None), NEWEST_ABI) - a.settled if layer else set()
    _tracer(a, everything, frozenset(floor), out)
    if spec is not None:
        lacking = spec.missing(abi) if abi else ("Landlock (or --no-landlock)",)
        later = sorted(settled_calls(spec, NEWEST_ABI) - a.settled)
        if lacking:
            out(f"this kernel lacks: {', '.join(lacking)}" + (f"; so per call: {' '.join(later)}" if later else ""))
        else:
            out("this kernel lacks nothing the layer uses")


#: why a call class stays per call under a Landlock layer (what the kernel's ABI cannot say)
BEYOND_LANDLOCK = (
    (names_in("fs-write") | names_in("fs-read"),
     "path calls no Landlock right covers (a file's mode, owner, times, extended attributes; inotify)"),
    (names_in("fd-write"), "changing the file behind a descriptor opened before the layer, or outside it"),
    (names_in("signal-send"), "signals, judged by target (Landlock's signal scope only knows its domain)"),
    (names_in("mknod"), "mknod: the node's type (devices) is judged per call"),
    (names_in("network"), "sockets: AF_UNIX paths, UDP and addresses (Landlock knows TCP ports only)"),
)
PER_CALL = ("the authorizer (per call)", "argument rule in the broker, else the authorizer",
            "argument rule in the broker (stops), else runs")


def _tracer(a: InProcess, groups: dict[str, list[str]], floor: frozenset[str], out: Callable[[str], None]) -> None:
    """Say whether the policy could run with no tracer (the kernel alone,
    docs/security.md "Kernel-only sessions"), and if not, what keeps it
    traced (``floor``: calls its layer could settle but the policy keeps)."""
    per_call = sorted(n for place in PER_CALL for n in groups.get(place, ()))
    if a.signals or a.events:
        out("tracer: needed (the policy wants signals or process events)")
    elif not per_call:
        out("tracer: none needed: brokerctl run enforces this policy with the kernel alone")
    else:
        out(f"tracer: needed for the {len(per_call)} calls decided per call:")
        rest = set(per_call)
        kept = sorted(rest & floor)
        if kept:
            out(f"    the layer could settle them, the policy keeps them per call (its own answer or check, "
                f"e.g. EROFS; the layer is a floor there): {' '.join(kept)}")
            rest -= floor
        for names, why in BEYOND_LANDLOCK:
            hit = sorted(rest & names)
            if hit:
                out(f"    {why}: {' '.join(hit)}")
                rest -= names
        if rest:
            out(f"    decided by the policy's own code: {' '.join(sorted(rest))}")


def run(a: InProcess, names: Iterable[str], out: Callable[[str], None] = print, *, landlock_on: bool = True) -> int:
    """Greet member ``a`` (a policy in this process) and print where each call is decided."""
    a.greet("explain", time.monotonic())
    try:
        if not a.ready or a.mode == "dead":
            out(f"brokerctl: the policy did not complete its handshake ({a.dead_reason or 'no answer'})")
            return 1
        explain(a, landlock.abi_version() if landlock_on else 0, names, out)
        return 0
    finally:
        a.kill("explained")
        a.reap(time.monotonic() + 2.0)
