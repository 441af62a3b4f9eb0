"""Generate protocol/vectors/layers.jsonl: handshake lines declaring kernel
layers (PROTOCOL.md 7.6), what they mean, their canonical attributes, and
the bad ones (error bad-hello).  Run: .venv/bin/python scripts/gen_layer_vectors.py"""
import json
from pathlib import Path

from brokerd.protocol import codec
from brokerd.protocol.layers import layer_attrs, layer_to_json, parse_layer

LINES = [
    ('hello 1 role=authorizer name=plain', "no layer attributes: no layer"),
    ('hello 1 role=authorizer fs="read,execute /usr" fs="all /home/box"', "fs-handled defaults to the union"),
    ('hello 1 role=authorizer fs-handled=all fs="read,execute /usr" fs="all /home/sandbox"', "the seed's sandbox"),
    ('hello 1 role=authorizer fs-handled=write,create,remove,truncate fs="write /dev/null"', "read-only world"),
    ('hello 1 role=authorizer fs-handled=write,create,remove,truncate', "handled, nothing allowed"),
    ('hello 1 role=authorizer fs="read /etc/dir with spaces"', "the path is the rest of the value"),
    ('hello 1 role=authorizer net="connect 80,443" net="bind 8080"', "TCP ports"),
    ('hello 1 role=authorizer net-handled=bind,connect', "no TCP at all"),
    ('hello 1 role=authorizer scope=signal,abstract-unix', "scoping only"),
    ('hello 1 role=authorizer fs="ioctl-dev,truncate /dev/tty" settle=!%link', "settle in strace syntax"),
    ('hello 1 role=authorizer fs-handled=read settle=none', "a floor only: every call still asked"),
    ('hello 1 role=authorizer fs="all /box" unjudged=%stat,readlink', "metadata look-ups unasked under the layer"),
]
BAD = [
    ('hello 1 role=authorizer fs="read usr"', "relative path"),
    ('hello 1 role=authorizer fs="read"', "no path"),
    ('hello 1 role=authorizer fs="reed /usr"', "unknown right"),
    ('hello 1 role=authorizer fs-handled=read fs="write /tmp"', "allows what it does not handle"),
    ('hello 1 role=authorizer net="connect 70000"', "port out of range"),
    ('hello 1 role=authorizer net="connect http"', "port not a number"),
    ('hello 1 role=authorizer net="send 80"', "unknown network right"),
    ('hello 1 role=authorizer scope=ptrace', "unknown scope"),
    ('hello 1 role=authorizer settle=%nosuchclass', "settle names nothing"),
    ('hello 1 role=authorizer settle=all', "handles nothing"),
    ('hello 1 role=authorizer fs="all /box" unjudged=all', "unjudged must name calls"),
    ('hello 1 role=authorizer fs="all /box" unjudged=stat,nosuchcall', "unjudged names an unknown call"),
]


def main() -> None:
    out = []
    for line, note in LINES:
        hello = codec.parse_reply(line)
        spec = parse_layer(hello.attrs)
        canon = " ".join(f"{k}={codec.format_reply(type(hello)((1,), ((k, v),))).decode().split('=', 1)[1].strip()}"
                         for k, v in layer_attrs(spec))
        out.append({"dir": "layer", "line": line, "valid": True, "meaning": layer_to_json(spec),
                    "canonical": canon, "note": note})
    for line, note in BAD:
        try:
            parse_layer(codec.parse_reply(line).attrs)
        except ValueError:
            out.append({"dir": "layer", "line": line, "valid": False, "error": "bad-hello", "note": note})
        else:
            raise SystemExit(f"{line!r} should be refused")
    path = Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "layers.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in out), encoding="ascii")


if __name__ == "__main__":
    main()
