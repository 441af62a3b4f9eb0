"""Generate protocol/vectors/*.jsonl from hand-written lines; meanings come from the codec and are reviewed by hand."""
import json
from pathlib import Path

# run with the project venv: .venv/bin/python scripts/gen_vectors.py (writes protocol/vectors/)
from brokerd.protocol import ProtocolError, codec
from brokerd.protocol.vectorjson import to_json

PARSE = {"event": codec.parse_event, "reply": codec.parse_reply, "value": codec.parse_value, "call": codec.parse_call}
def FMT(d, x):
    if d == "event": return codec.format_event(x).decode()[:-1]
    if d == "reply": return codec.format_reply(x).decode()[:-1]
    if d == "value": return codec.format_value(x)
    return codec.format_call(x)

def strip_term(line):
    if line.endswith("\n"): line = line[:-1]
    if line.endswith("\r"): line = line[:-1]
    return line

def vec(d, line, note="", expect=None):
    if isinstance(line, bytes): line = line.decode("latin-1")
    raw = line.encode("latin-1")
    out = {"dir": d, "line": line}
    try:
        x = PARSE[d](raw)
    except ProtocolError as e:
        out["valid"] = False; out["error"] = e.code
        if expect not in (None, e.code): raise SystemExit(f"expected {expect} got {e.code} for {line[:80]!r}: {e}")
        if expect is None: raise SystemExit(f"unexpected error {e} for {line[:80]!r}")
    else:
        if expect is not None: raise SystemExit(f"expected error {expect} for {line[:80]!r}, got {x}")
        out["valid"] = True; out["meaning"] = to_json(x)
        c = FMT(d, x)
        if c != strip_term(line) or (d in ("value","call") and c != line): out["canonical"] = c
        # idempotence
        assert PARSE[d](c) == x, line
    if note: out["note"] = note
    return out

FILES = {}
def add(fname, *vs):
    FILES.setdefault(fname, []).extend(vs)

E, R, V, C = "event", "reply", "value", "call"
def ok(d, line, note=""): return vec(d, line, note)
def bad(d, line, code, note=""): return vec(d, line, note, expect=code)

# ---------------- events ----------------
add("events.jsonl",
 ok(E, 'syscall 7 4242 4242 x86_64 write 2, "this is data", 12', "the seed's line, as an event"),
 ok(E, 'syscall 8 4242 4243 x86_64 openat AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC ; path1="/etc/passwd"', "typical openat with the resolved-path note"),
 ok(E, 'syscall 9 1 1 x86_64 getpid', "a call without arguments"),
 ok(E, 'syscall 10 1 1 x86_64 getpid ; caller="libc.so.6:getpid+0x9"', "no arguments but a note"),
 ok(E, 'syscall 11 300 301 x86_64 openat AT_FDCWD, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC, 0644 ; path1="/tmp/x" caller="libc.so.6:open64+0x5e"', "octal mode, two notes"),
 ok(E, 'syscall 12 300 300 x86_64 connect 3, {AF_INET, 127.0.0.1:80}, 16', "IPv4 sockaddr"),
 ok(E, 'syscall 13 300 300 x86_64 connect 3, {AF_INET6, [::1]:443}, 28', "IPv6 sockaddr"),
 ok(E, 'syscall 14 300 300 x86_64 connect 3, {AF_UNIX, "/run/dbus/system_bus_socket"}, 110', "unix sockaddr as a struct with a string"),
 ok(E, 'syscall 15 300 300 x86_64 execve "/bin/ls", ["ls", "-l", "/tmp"], 0x7ffd2a10 ; path1="/usr/bin/ls"', "array of strings, pointer"),
 ok(E, 'syscall 16 300 300 x86_64 mmap NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0', "NULL, negative int"),
 ok(E, 'syscall 17 300 300 x86_64 read 0, 0x55d0c0a8e2a0, 4096', "an out-buffer is only an address at entry"),
 ok(E, 'syscall 18 300 300 x86_64 write 1, "\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03\\x00>\\x00\\x01\\x00\\x00\\x00\\x10\\x11\\x00\\x00\\x00\\x00\\x00\\x00@\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xd8\\x9a\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00@\\x008\\x00"...10485760, 10485760', "the seed's 10 MB write: a 64-byte prefix and the total"),
 ok(E, 'syscall 19 300 300 x86_64 openat AT_FDCWD, "/etc/passwd", O_RDONLY|0x80000', "symbols with leftover bits"),
 ok(E, 'syscall 20 300 300 x86_64 rt_sigprocmask SIG_BLOCK, [SIGINT, SIGRTMIN+3], NULL, 8', "symbol names may contain +"),
 ok(E, 'syscall 21 300 300 x86_64 clock_nanosleep CLOCK_MONOTONIC, 0, {tv_sec=1, tv_nsec=500000000}, NULL', "struct with named fields"),
 ok(E, 'syscall 22 300 300 x86_64 poll [{fd=3, events=POLLIN}, {fd=4, events=POLLIN|POLLOUT}], 2, -1', "array of structs"),
 ok(E, 'syscall 23 300 300 x86_64 foo {}, [], ""', "empty struct, array and string"),
 ok(E, 'syscall 24 300 300 i386 _llseek 3, 0, 1024, 0xffd0a000, SEEK_SET', "another ABI; names may start with _"),
 ok(E, 'syscall 25 300 300 x86_64 lseek 3, 18446744073709551615, SEEK_SET', "largest unsigned 64-bit decimal"),
 ok(E, 'syscall 26 300 300 x86_64 lseek 3, -9223372036854775808, SEEK_CUR', "smallest signed 64-bit decimal"),
 ok(E, 'syscall 27 300 300 x86_64 brk 0xffffffffffffffff', "largest pointer"),
 ok(E, 'syscall 28 300 300 x86_64 brk 0xFFFF', "hex digits are written lowercase"),
 ok(E, 'syscall 29 300 300 x86_64 brk 0x0', "a zero pointer is NULL"),
 ok(E, 'syscall 030 0300 0300 x86_64 getpid', "leading zeros in header numbers are decimal, dropped"),
 ok(E, 'syscall  31   300 300  x86_64   write 2,"a",1', "runs of spaces between fields, no space after a comma"),
 ok(E, 'syscall 32 300 300 x86_64 write 2 , "a" ,  1  ;  n=1   m=2  ', "spaces around separators and at the end"),
 ok(E, 'syscall 33 300 300 x86_64 write 2, "a", 1\n', "a trailing newline"),
 ok(E, 'syscall 34 300 300 x86_64 write 2, "a", 1\r\n', "a trailing CR LF"),
 ok(E, 'syscall 35 300 300 x86_64 setsockopt 3, SOL_SOCKET, SO_RCVTIMEO, {tv_sec=0, tv_usec=0x10}, 16 ; info={a=1, b=[2]} peer=10.0.0.1:53', "note values may be any value"),
 ok(E, 'syscall 36 300 300 x86_64 ioctl 1, TCGETS, {c_iflag=ICRNL|IXON, c_cc="\\x03\\x1c\\x7f\\x15\\x04\\x00\\x01\\x00"}', "field values of any kind"),
 ok(E, 'syscall 9223372036854775807 2147483647 2147483647 x86_64 getpid', "largest ID, PID, TID"),
 ok(E, 'syscall 0 0 0 x86_64 getpid', "zero ID, PID, TID"),
 ok(E, 'syscall 37 300 300 x86_64 kill 301, SIGTERM', "kill(2) as an event"),
 ok(E, 'syscall 38 300 300 x86_64 sendto 3, "\\x00\\x01\\x00\\x00"...512, 512, MSG_NOSIGNAL, {AF_INET, 8.8.8.8:53}, 16', "prefix of a datagram"),
 ok(E, 'syscall 39 300 300 x86_64 bind 3, {AF_INET6, [fe80::1%eth0]:5353}, 28', "IPv6 with a scope"),
 ok(E, 'syscall 40 300 300 x86_64 openat AT_FDCWD, "/home/u/a b;c,d{e}[f]", O_RDONLY ; path1="/home/u/a b;c,d{e}[f]"', "separators inside strings are data"),
)
add("events.jsonl",
 ok(E, 'sysret 17 300 300 x86_64 read ok 12', "result after step"),
 ok(E, 'sysret 17 300 300 x86_64 read fail EIO', "failure after step"),
 ok(E, 'sysret 17 300 300 x86_64 read fail 5', "errno numbers are written by name"),
 ok(E, 'sysret 17 300 300 x86_64 read fail EWOULDBLOCK', "an alias errno name is written by its canonical name"),
 ok(E, 'sysret 17 300 300 x86_64 read fail 4000', "an errno without a name stays a number"),
 ok(E, 'sysret 18 300 300 x86_64 mmap ok 0x7f3a5c000000', "pointer result"),
 ok(E, 'sysret 18 300 300 x86_64 mmap ok NULL', "NULL result"),
 ok(E, 'sysret 19 300 300 x86_64 lseek ok -1', "a negative result that is not an error"),
 ok(E, 'sysret 20 300 300 x86_64 read ok 12 ; buf2="hello world\\n"', "notes after the result (the out-buffer)"),
 ok(E, 'sysret 21 300 300 x86_64 gettimeofday ok 0 ; tv1={tv_sec=1700000000, tv_usec=250000}', "gettimeofday's out-struct in a note"),
)
add("events.jsonl",
 ok(E, 'signal 41 300 300 SIGTERM', "signal about to be delivered"),
 ok(E, 'signal 41 300 300 TERM', "SIG may be left out on input"),
 ok(E, 'signal 41 300 300 15', "signal numbers are written by name"),
 ok(E, 'signal 42 300 301 SIGRTMIN+2', "real-time signal names"),
 ok(E, 'signal 43 300 300 32', "a signal without a name stays a number"),
 ok(E, 'signal 44 300 300 SIGRTMAX', "the last signal, 64"),
)
add("events.jsonl",
 ok(E, 'proc 300 300 fork 301', "a child was forked"),
 ok(E, 'proc 300 300 vfork 302', "vfork"),
 ok(E, 'proc 300 300 clone 303, CLONE_VM|CLONE_THREAD', "clone with flags"),
 ok(E, 'proc 301 301 exec "/usr/bin/ls", ["ls", "-l"]', "exec with argv"),
 ok(E, 'proc 301 301 exit 0', "normal exit"),
 ok(E, 'proc 302 302 killed SIGKILL', "killed by a signal"),
 ok(E, 'proc 302 302 newkind', "unknown kinds parse; authorizers ignore them"),
)
add("events.jsonl",
 ok(E, 'hello 1 role=broker name=brokerd version=0.1.0 strsize=64 pathsize=4096', "the broker's greeting"),
 ok(E, 'hello 1,2 role=broker', "several versions offered"),
 ok(E, 'hello 1 role=broker host="build box 7" note="say \\"hi\\""', "quoted attribute values"),
 ok(E, 'hello 1 role=broker empty= x=""', "an empty value is written quoted"),
 ok(E, 'hello 1 name="caf\\xc3\\xa9"', "attribute values are UTF-8 text"),
 ok(E, 'hello 1 trace=openat,connect,execve events=fork,exec,exit a=b=c', "bare values may contain , and ="),
 ok(E, 'error line-too-long line of 70000 bytes discarded; default verdict applied', "error line with text"),
 ok(E, 'error unknown-syscall frobnicate', "unknown syscall in a rewrite"),
 ok(E, 'error version no common version', "version negotiation failed"),
 ok(E, 'error syntax', "error without text"),
 ok(E, 'error syntax    spaced   text  ', "text loses its surrounding spaces, keeps inner ones"),
 ok(E, 'error future-code some text', "unknown codes parse (forward compatible)"),
 ok(E, 'data 18 2 0 "\\x7fELF\\x02"', "answer to a fetch"),
 ok(E, 'data 18 2 64 "abc"...10485760', "answer with the buffer's total length"),
 ok(E, 'data 18 2 10485760 ""', "fetch at or past the end"),
)

# ---------------- replies ----------------
add("replies.jsonl",
 ok(R, 'cont', "proceed"),
 ok(R, 'step', "proceed and report the result"),
 ok(R, 'kill', "kill the traced process"),
 ok(R, 'suppress', "drop the signal"),
 ok(R, 'deliver', "deliver the signal"),
 ok(R, 'deliver SIGTERM', "deliver another signal instead"),
 ok(R, 'deliver 15', "signal number, written by name"),
 ok(R, 'deliver TERM', "SIG may be left out"),
 ok(R, 'skip-fail EIO', "the seed's skip-fail"),
 ok(R, 'skip-fail 5', "errno by number"),
 ok(R, 'skip-fail EACCES', ""),
 ok(R, 'skip-fail EPERM', "the default deny verdict"),
 ok(R, 'skip-fail 4095', "the largest errno"),
 ok(R, 'skip-ok 12', "the seed's skip-ok"),
 ok(R, 'skip-ok -1', "negative value"),
 ok(R, 'skip-ok 0', ""),
 ok(R, 'skip-ok 0x7f', "hex input, written in decimal"),
 ok(R, 'skip-ok 18446744073709551615', "largest unsigned value"),
 ok(R, 'skip-ok -9223372036854775808', "smallest signed value"),
 ok(R, 'ok 12', "result replacement after step"),
 ok(R, 'ok 0x7f00', "pointer result"),
 ok(R, 'ok NULL', ""),
 ok(R, 'fail EIO', "turn the result into a failure"),
 ok(R, 'fail 13', "errno by number"),
 ok(R, 'write 4, "this is data", 12', "the seed's rewrite"),
 ok(R, 'write 4, "this is da"...12, 12', "a truncated string in a rewrite means: keep the original buffer"),
 ok(R, 'getpid', "rewrite to a call without arguments"),
 ok(R, 'kill 4242, SIGTERM', "kill followed by arguments is the kill(2) call"),
 ok(R, 'openat AT_FDCWD, "/dev/null", O_RDONLY', "redirect an open"),
 ok(R, 'connect 3, {AF_INET, 127.0.0.1:8080}, 16', "redirect a connection"),
 ok(R, '7 cont', "ID prefix (handshake mode)"),
 ok(R, '7 skip-fail EPERM', ""),
 ok(R, '12 write 4, "x", 1', "ID prefix on a rewrite"),
 ok(R, '9223372036854775807 step', "largest ID"),
 ok(R, '007 cont', "leading zeros in the ID"),
 ok(R, 'cont ; set 1 "data"', "write memory, then proceed"),
 ok(R, 'ok 0 ; set 1 "\\x00\\xf1Se\\x00\\x00\\x00\\x00" ; set 1+8 "\\x90\\xd0\\x03\\x00\\x00\\x00\\x00\\x00"', "change gettimeofday's result: two sets"),
 ok(R, '7 step ; set 2 "x"', "ID, verdict and set"),
 ok(R, 'skip-ok 5 ; set 2 "hello"', "fake a read: skip it, fill the buffer"),
 ok(R, 'cont ; set 6+0 ""', "offset 0 is written without +0; empty data"),
 ok(R, 'cont;set 1 "a";set 2 "b"', "spaces around ; are optional on input"),
 ok(R, 'kill ; set 1 "x"', "kill is a verdict before ;"),
 ok(R, 'fetch 7 2 64 4096', "ask for more of a buffer"),
 ok(R, 'fetch 7 2 0 0', ""),
 ok(R, 'hello 1 role=authorizer name=sandbox trace=openat,connect events=fork,exec,exit signals=yes strsize=256 default=deny', "handshake"),
 ok(R, 'hello 1,2 role=authorizer name="my policy"', ""),
 ok(R, 'error bad-hello strsize must be a number', "an authorizer may send errors too"),
 ok(R, '  cont  ', "surrounding spaces are ignored"),
 ok(R, 'cont\n', "trailing newline"),
 ok(R, 'cont\r\n', "trailing CR LF"),
 ok(R, '7  skip-fail  EIO', "runs of spaces"),
)

# ---------------- values ----------------
allbytes = "".join(codec._ESCAPES.get(i, chr(i)) for i in range(256))
add("values.jsonl",
 ok(V, '0', ""), ok(V, '12', ""), ok(V, '-12', ""), ok(V, '-0', "minus zero is 0"),
 ok(V, '0x1f', "hex is a ptr"), ok(V, 'NULL', "NULL is ptr 0"), ok(V, '0x0', ""), ok(V, '0x00000000000000000001', "leading zeros do not count toward the range"),
 ok(V, '0644', "octal"), ok(V, '00', "octal zero"), ok(V, '01777777777777777777777', "largest octal"),
 ok(V, 'AT_FDCWD', ""), ok(V, 'O_RDONLY|O_CLOEXEC', ""), ok(V, 'O_RDONLY|0x80000', ""), ok(V, 'O_RDONLY|0x0', "a zero rest is dropped"),
 ok(V, '_x|y1|SIGRTMIN+3', ""), ok(V, 'NULL|O_X', "NULL inside a set is a name"),
 ok(V, '"this is data"', ""), ok(V, '""', ""), ok(V, '"a\\\\b\\"c"', "backslash and quote"),
 ok(V, '"\\n\\r\\t"', "named escapes"), ok(V, '"\\x0a\\x0D\\x09"', "hex escapes of named characters are written by name"),
 ok(V, '"\\x41\\x20\\x7e"', "printable characters are never escaped"), ok(V, '"\\xFF\\xAb"', "hex is written lowercase"),
 ok(V, '"\\x00\\x7f\\x80\\xff"', ""), ok(V, '"' + allbytes + '"', "every byte value 0..255, canonical"),
 ok(V, '"' + "".join(f"\\x{i:02X}" for i in range(256)) + '"', "every byte value as an uppercase hex escape"),
 ok(V, '"abc"...4096', "truncated: prefix and total"), ok(V, '""...0', "empty, total 0"), ok(V, '"abc"...3', "total equal to the prefix length is kept"),
 ok(V, '"a"...0018', "leading zeros in the total"),
 ok(V, '127.0.0.1:80', ""), ok(V, '0.0.0.0:0', ""), ok(V, '255.255.255.255:65535', ""),
 ok(V, '[::1]:443', ""), ok(V, '[2001:db8::8:800:200c:417a]:8080', ""), ok(V, '[::]:0', ""), ok(V, '[::ffff:192.0.2.1]:80', "embedded IPv4 is kept as written"),
 ok(V, 'tv_sec=12', "a field"), ok(V, 'a=b=1', "a field whose value is a field"), ok(V, 'x={y=[1, {}]}', ""),
 ok(V, '{AF_INET, 127.0.0.1:80}', ""), ok(V, '{ 1 ,2 }', "spaces inside brackets"), ok(V, '[]', ""), ok(V, '{}', ""), ok(V, '[[[]]]', ""),
 ok(V, "{" * 32 + "}" * 32, "32 levels of nesting is the limit"),
 ok(V, "a=" * 31 + "[1]", "fields count as levels"),
 ok(V, '  12  ', "spaces around a value are ignored"),
)
add("calls.jsonl",
 ok(C, 'write 2, "this is data", 12', "the seed's call line"),
 ok(C, 'write 4, "this is data", 12', "the seed's rewritten call"),
 ok(C, 'getpid', ""),
 ok(C, 'openat AT_FDCWD, "/etc/shadow", O_RDONLY', ""),
 ok(C, 'execve "/bin/sh", ["sh", "-c", "echo hi"], NULL', ""),
 ok(C, 'write 2,"x",1', "canonical separator is comma space"),
)

# ---------------- invalid ----------------
long_ok = 'syscall 1 1 1 x86_64 write 1, "' + "a" * (65535 - len('syscall 1 1 1 x86_64 write 1, ""...99999')) + '"...99999'
assert len(long_ok) == 65535
add("limits.jsonl",
 ok(E, long_ok, "65535 characters: the longest valid line without its newline"),
 ok(E, long_ok + "\n", "65536 bytes with the newline: still valid"),
 bad(E, long_ok + "a", "line-too-long", "65536 characters before the newline"),
 bad(E, long_ok + "\r\n", "line-too-long", "a CR counts toward the limit"),
 bad(R, "cont" + " " * 65600, "line-too-long", "trailing spaces count too"),
 bad(V, "{" * 33 + "}" * 33, "too-deep", "33 levels"),
 bad(V, "[" * 33 + "]" * 33, "too-deep", ""),
 bad(V, "a=" * 33 + "1", "too-deep", "a chain of 33 fields"),
 bad(E, 'syscall 1 1 1 x86_64 f ' + "{" * 33 + "}" * 33, "too-deep", ""),
 bad(E, 'syscall 1 1 1 x86_64 f ' + "[" * 5000, "too-deep", "unbounded nesting is cut at 33"),
 bad(E, 'syscall 9223372036854775808 1 1 x86_64 getpid', "bad-number", "ID above 2^63-1"),
 bad(E, 'syscall 1 2147483648 1 x86_64 getpid', "bad-number", "PID above 2^31-1"),
 bad(E, 'syscall 1 1 99999999999999999999999 x86_64 getpid', "bad-number", ""),
 bad(V, '18446744073709551616', "bad-value", "2^64"),
 bad(V, '-9223372036854775809', "bad-value", "below -2^63"),
 bad(V, '0x10000000000000000', "bad-value", "17 hex digits"),
 bad(V, '02000000000000000000000', "bad-value", "octal 2^64"),
 bad(V, 'A|0x10000000000000000', "bad-value", "rest above 64 bits"),
 bad(V, '"a"...9223372036854775808', "bad-value", "total above 2^63-1"),
 bad(V, '1.2.3.4:65536', "bad-value", "port out of range"),
 bad(V, '9' * 5000, "bad-value", "a very long number"),
 bad(R, 'skip-fail 0', "bad-errno", "errno 0"),
 bad(R, 'skip-fail 4096', "bad-errno", "above 4095"),
 bad(R, 'deliver 0', "bad-signal", ""),
 bad(R, 'deliver 65', "bad-signal", ""),
 bad(R, 'fetch 1 0 0 1', "bad-number", "ARGN is 1..6"),
 bad(R, 'fetch 1 7 0 1', "bad-number", ""),
 bad(R, 'cont ; set 7 "x"', "bad-number", "ARGN is 1..6"),
 bad(R, 'cont ; set 0 "x"', "bad-number", ""),
 bad(R, '9223372036854775808 cont', "bad-number", "reply ID above 2^63-1"),
 bad(R, 'skip-ok 18446744073709551616', "bad-value", ""),
)
add("invalid.jsonl",
 bad(E, '', "syntax", "empty line"), bad(R, '', "syntax", "empty line"), bad(R, '   ', "syntax", "only spaces"), bad(E, '\n', "syntax", "just a newline"),
 bad(E, 'syscall 1 1 1 x86_64 write 2,\t"x", 1', "not-ascii", "a tab"),
 bad(E, 'syscall 1 1 1 x86_64 write 2, "\x00", 1', "not-ascii", "a raw NUL"),
 bad(E, 'syscall 1 1 1 x86_64 write 2, "caf\xc3\xa9", 1', "not-ascii", "raw UTF-8"),
 bad(R, 'cont\x7f', "not-ascii", "DEL"),
 bad(R, 'cont\xff', "not-ascii", ""),
 bad(R, 'co\rnt', "not-ascii", "a CR that does not end the line"),
 bad(R, 'cont\nstep', "not-ascii", "two lines in one"),
 bad(R, 'cont\r\r\n', "not-ascii", "only one CR is removed"),
 bad(E, 'frobnicate 1 2 3', "unknown-verb", ""), bad(E, 'cont', "unknown-verb", "a reply sent as an event"),
 bad(E, 'SYSCALL 1 1 1 x86_64 getpid', "unknown-verb", "verbs are lowercase"),
 bad(R, 'skip-foo EIO', "unknown-verb", ""), bad(R, '+1', "unknown-verb", ""), bad(R, 'syscall,1', "unknown-verb", ""),
 bad(R, '7 skip-maybe', "unknown-verb", "after an ID"), bad(R, '; set 1 "x"', "unknown-verb", "no verdict"),
 bad(E, 'syscall', "syntax", "nothing after the verb"),
 bad(E, 'syscall 1 1 1', "syntax", "no ABI"),
 bad(E, 'syscall 1 1 1 x86_64', "syntax", "no name"),
 bad(E, 'syscall 1 1 1 x86-64 getpid', "syntax", "bad ABI"),
 bad(E, 'syscall 1 1 1 x86_64 9p', "syntax", "a name cannot start with a digit"),
 bad(E, 'syscall 1 1 1 x86_64 getpid ;', "syntax", "; without notes"),
 bad(E, 'syscall 1 1 1 x86_64 getpid ; x', "syntax", "a note without ="),
 bad(E, 'syscall 1 1 1 x86_64 getpid ; 1=2', "syntax", "a note key is a name"),
 bad(E, 'sysret 1 1 1 x86_64 read maybe 3', "syntax", "neither ok nor fail"),
 bad(E, 'sysret 1 1 1 x86_64 read ok', "syntax", "ok without a value"),
 bad(E, 'sysret 1 1 1 x86_64 read ok 1 2', "syntax", "extra field"),
 bad(E, 'signal 1 1 1', "syntax", "no signal"),
 bad(E, 'signal 1 1 1 SIGINT extra', "syntax", ""),
 bad(E, 'proc 1 1 exit 0 ; x=1', "syntax", "proc events have no notes"),
 bad(E, 'hello', "syntax", "no versions"),
 bad(E, 'hello 1 role', "syntax", "attribute without ="),
 bad(E, 'hello 1 a="x"b', "syntax", "junk after a quoted value"),
 bad(E, 'error', "syntax", "no code"),
 bad(E, 'error Bad code', "syntax", "codes are lowercase"),
 bad(E, 'data 1 1 0 abc', "syntax", "data must be quoted"),
 bad(E, 'data 1 1 0', "syntax", ""),
 bad(E, 'data 1 1 0 "a" b', "syntax", ""),
 bad(R, 'set 1 "x"', "syntax", "set must follow a verdict"),
 bad(R, 'cont extra', "syntax", ""), bad(R, 'step 1', "syntax", ""), bad(R, 'suppress SIGINT', "syntax", ""),
 bad(R, '7', "syntax", "an ID alone"), bad(R, '7 fetch 1 1 0 1', "syntax", "fetch takes no ID prefix"),
 bad(R, '7 hello 1', "syntax", ""),
 bad(R, 'cont ; kill', "syntax", "only set clauses after ;"),
 bad(R, 'cont ;', "syntax", ""),
 bad(R, 'cont ; set 1 x', "syntax", "set data must be quoted"),
 bad(R, 'cont ; set 1', "syntax", ""),
 bad(R, 'cont ; set 1 "x" "y"', "syntax", ""),
 bad(R, 'skip-fail', "syntax", "no errno"),
 bad(R, 'skip-ok', "syntax", ""),
 bad(R, 'fetch 1 1 0', "syntax", "no length"),
 bad(R, 'fetch 1 1 0 1 2', "syntax", ""),
 bad(E, 'syscall x 1 1 x86_64 getpid', "bad-number", "ID not a number"),
 bad(E, 'syscall 1 -1 1 x86_64 getpid', "bad-number", "negative PID"),
 bad(E, 'signal 1 1 0x1 SIGINT', "bad-number", "header numbers are decimal"),
 bad(E, 'hello x', "bad-number", ""), bad(E, 'hello 0', "bad-number", "version 0"), bad(E, 'hello 1,,2', "bad-number", ""),
 bad(R, 'cont ; set x "a"', "bad-number", ""), bad(R, 'cont ; set 1+x "a"', "bad-number", ""),
 bad(R, 'fetch 1 1 -1 5', "bad-number", ""),
 bad(V, '08', "bad-value", "leading zero but not octal"),
 bad(V, '-012', "bad-value", "no negative octal"),
 bad(V, '0x', "bad-value", ""), bad(V, '0X1F', "bad-value", "the x is lowercase"),
 bad(V, '1 2', "bad-value", ""), bad(V, '12abc', "bad-value", ""), bad(V, '-', "bad-value", ""),
 bad(V, '1.2.3.256:80', "bad-value", "octet above 255"), bad(V, '01.2.3.4:80', "bad-value", "octet with a leading zero"),
 bad(V, '1.2.3.4:080', "bad-value", "port with a leading zero"), bad(V, '1.2.3.4', "bad-value", "address without a port"),
 bad(V, '[::g]:1', "bad-value", ""), bad(V, '[1:2]:3', "bad-value", "not an IPv6 address"),
 bad(V, 'O_X|', "bad-value", ""), bad(V, 'O_X|0x1|O_Y', "bad-value", "the hex term comes last"), bad(V, '0x1|O_X', "bad-value", ""),
 bad(V, '{1, 2', "bad-value", "unclosed"), bad(V, '[1, 2', "bad-value", ""), bad(V, '{1 2}', "bad-value", "missing comma"),
 bad(V, '{1,}', "bad-value", "trailing comma"), bad(V, '{,}', "bad-value", ""), bad(V, '}', "bad-value", ""),
 bad(V, 'a=', "bad-value", "field without a value"), bad(V, 'a= 1', "bad-value", ""), bad(V, 'a+b=1', "bad-value", "field names have no +"),
 bad(V, '"abc"...2', "bad-value", "total below the prefix length"), bad(V, '"abc"...', "bad-value", "no total"),
 bad(V, '"abc"..5', "bad-value", ""), bad(V, '', "bad-value", "no value"),
 bad(E, 'syscall 1 1 1 x86_64 write 1,', "bad-value", "trailing comma"),
 bad(E, 'syscall 1 1 1 x86_64 write 1,, 2', "bad-value", ""),
 bad(E, 'syscall 1 1 1 x86_64 write 1 2', "bad-value", "missing comma"),
 bad(R, 'skip-ok abc', "bad-value", ""), bad(R, 'skip-ok 012', "bad-value", "no leading zeros"), bad(R, 'skip-ok NULL', "bad-value", ""),
 bad(R, 'ok 0644', "bad-value", "octal is not a result"), bad(R, 'ok "x"', "bad-value", ""), bad(R, 'ok AT_FDCWD', "bad-value", ""),
 bad(R, 'cont ; set 1 "x"...5', "bad-value", "set data cannot be truncated"),
 bad(E, 'hello 1 a="x"...5', "bad-value", "hello values cannot be truncated"),
 bad(V, '"abc', "bad-string", "unterminated"), bad(V, '"abc\\"', "bad-string", "escaped closing quote"),
 bad(V, '"\\q"', "bad-string", ""), bad(V, '"\\0"', "bad-string", "no octal escapes"), bad(V, '"\\x4"', "bad-string", "two hex digits"),
 bad(V, '"\\xg0"', "bad-string", ""), bad(V, '"\\X41"', "bad-string", ""), bad(V, '"\\a"', "bad-string", ""),
 bad(V, '"\\\\\\q"', "bad-string", "a bad escape after an escaped backslash"),
 bad(E, 'hello 1 name="\\xff"', "bad-string", "hello values must be UTF-8"),
 bad(R, 'skip-fail EFOO', "bad-errno", ""), bad(R, 'fail EFOO', "bad-errno", ""), bad(R, 'skip-fail eio', "bad-errno", "names are case-sensitive"),
 bad(E, 'sysret 1 1 1 x86_64 read fail 0', "bad-errno", ""),
 bad(E, 'signal 1 1 1 SIGFOO', "bad-signal", ""), bad(R, 'deliver SIGFOO', "bad-signal", ""), bad(E, 'signal 1 1 1 sigint', "bad-signal", ""),
)
vv = [
 ok(V, '"\\\\\\\\"', "two escaped backslashes"),
 ok(V, '"\\\\q"', "escaped backslash then q"),
]
add("values.jsonl", *vv)
for b in range(256):
    pass
# per-byte escapes
add("escapes.jsonl", *[ok(V, '"' + f"\\x{i:02x}" + '"', f"byte {i}") for i in range(256)])

total = 0
for fname, vs in FILES.items():
    with open(Path(__file__).resolve().parent.parent / "protocol" / "vectors" / fname, "w") as f:
        for v in vs:
            f.write(json.dumps(v, ensure_ascii=True) + "\n")
    total += len(vs)
    print(fname, len(vs))
print("total", total)
