"""Stacked authorizers in the embedded broker: order, rewrites accumulating,
step results flowing back, and failures of one authorizer (hang, death,
garbage) getting the default verdict while the rest carry on."""

from __future__ import annotations

from conftest import brokerctl

HOST = '*openat *"/etc/hostname"*'


def test_each_sees_the_call_as_the_previous_left_it(cprog, rules, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.write_text("file a\n")
    b.write_text("file b\n")
    first = rules(f'{HOST} => openat AT_FDCWD, "{a}", O_RDONLY')
    second = rules(f'*openat *"{a}"* => openat AT_FDCWD, "{b}", O_RDONLY')
    r = brokerctl("run", "-e", "trace=openat", "-a", first, "-a", second, "--", str(cprog("opener")), "/etc/hostname")
    assert r.stdout.strip() == "/etc/hostname ok file b", r.stderr
    # the other order: the second rule sees the original path and does nothing
    r = brokerctl("run", "-e", "trace=openat", "-a", second, "-a", first, "--", str(cprog("opener")), "/etc/hostname")
    assert r.stdout.strip() == "/etc/hostname ok file a", r.stderr


def test_denial_anywhere_wins_and_ends_the_walk(cprog, rules, tmp_path):
    log = tmp_path / "seen"
    spy = f"sh -c 'while read -r l; do echo \"$l\" >> {log}; echo cont; done'"
    deny = rules(f"{HOST} => skip-fail EACCES")
    r = brokerctl("run", "-e", "trace=openat", "-a", rules(), "-a", deny, "-a", spy,
                  "--", str(cprog("opener")), "/etc/hostname", "/etc/os-release")
    lines = r.stdout.splitlines()
    assert lines[0] == "/etc/hostname EACCES"
    assert lines[1].startswith("/etc/os-release ok")
    seen = log.read_text()
    assert "/etc/os-release" in seen
    assert "/etc/hostname" not in seen  # the walk ended at the denial


def test_step_results_flow_back_in_reverse(cprog, rules):
    # Both step getppid; the lower one (nearest the kernel) replaces the result
    # first, and the upper one sees that replaced result and adds to it.
    upper = rules("syscall * getppid* => step", "sysret * getppid ok 1000 => ok 2000")
    lower = rules("syscall * getppid* => step", "sysret * getppid ok * => ok 1000")
    r = brokerctl("run", "-e", "trace=getppid", "-a", upper, "-a", lower, "--", str(cprog("calls")), "getppid")
    assert r.stdout.strip() == "getppid ok 2000", r.stderr


def test_hung_authorizer_gets_default_after_deadline(cprog, rules):
    hang = "sh -c 'read -r greeting; echo cont; sleep 1000'"
    r = brokerctl("run", "-e", "trace=openat", "--timeout", "0.5", "-a", hang,
                  "--", str(cprog("opener")), "/etc/hostname", timeout=60)
    # every openat (the loader's too) is denied by default: the program cannot even load
    assert r.returncode != 0
    assert "did not answer within 0.5s" in r.stderr


def test_hung_authorizer_with_allow_default(cprog):
    hang = "sh -c 'read -r greeting; echo cont; sleep 1000'"
    r = brokerctl("run", "-e", "trace=getppid", "--timeout", "0.3", "--default", "allow", "-a", hang,
                  "--", str(cprog("calls")), "getppid", "write:done\n")
    assert "getppid ok" in r.stdout and "done" in r.stdout


def _files(tmp_path, *names):
    paths = []
    for n in names:
        p = tmp_path / n
        p.write_text(n + "\n")
        paths.append(str(p))
    return paths


def test_authorizer_dies_mid_session(cprog, tmp_path):
    # it answers until it sees "two", then exits: the calls after get the
    # default (deny), and nothing hangs
    one, two, three = _files(tmp_path, "one", "two", "three")
    dies = ("sh -c 'read -r g; echo cont; while read -r l; do case \"$l\" in *two*) exit 0;; esac; "
            "echo cont; done'")
    r = brokerctl("run", "-e", "trace=openat", "-a", dies, "--", str(cprog("opener")), one, two, three)
    assert r.stdout.splitlines() == [f"{one} ok one", f"{two} EPERM", f"{three} EPERM"]
    assert "closed its output" in r.stderr


def test_garbage_gets_error_and_default_others_carry_on(cprog, rules, tmp_path):
    one, two = _files(tmp_path, "one", "two")
    garbage = ("sh -c 'read -r g; echo cont; while read -r l; do case \"$l\" in *one*) "
               "echo \"frobnicate the \\\"call\";; *) echo cont;; esac; done'")
    r = brokerctl("run", "-e", "trace=openat", "-a", garbage, "-a", rules(),
                  "--", str(cprog("opener")), one, two)
    assert r.stdout.splitlines() == [f"{one} EPERM", f"{two} ok two"]
    assert "bad line" in r.stderr  # the problem is named


def test_unsubscribed_authorizer_is_not_asked(cprog, tmp_path):
    log = tmp_path / "seen"
    spy = f"sh -c 'while read -r l; do echo \"$l\" >> {log}; echo cont; done'"
    r = brokerctl("run", "-e", "trace=getppid", "-a", spy, "--", str(cprog("opener")), "/etc/hostname")
    assert r.returncode == 0
    assert "openat" not in log.read_text()


def test_default_never_stops_a_program_from_exiting(cprog):
    # an authorizer that never answers: every call gets the deny default,
    # except exit_group, so the program still ends (and does not crash)
    hang = "sh -c 'read -r greeting; echo cont; sleep 1000'"
    r = brokerctl("run", "-e", "trace=exit_group,getppid", "--timeout", "0.3", "-a", hang,
                  "--", str(cprog("calls")), "exit:4")
    assert r.returncode == 4, r.stderr


STEP_EXEC = r'''
import sys
sys.stdin.readline()
print("hello 1 role=authorizer name=x trace=execve", flush=True)
for line in sys.stdin:
    if line.startswith("syscall"):
        print(line.split()[1], "step", flush=True)
    elif line.startswith("sysret"):
        sys.stderr.write("SAW " + line)
        print(line.split()[1], "cont", flush=True)
'''


def test_stepped_execve_reports_its_result(authz, cprog):
    r = brokerctl("run", "-a", authz(STEP_EXEC), "--", "sh", "-c", f"exec {cprog('calls')} thread-exec:hi; true")
    assert r.stdout == "hi\n", r.stderr
    saw = [line for line in r.stderr.splitlines() if line.startswith("SAW")]
    # the launch of sh, sh's exec, then the exec from a non-leader thread: all report ok 0
    assert len(saw) == 3 and all(line.endswith("execve ok 0") for line in saw), r.stderr
