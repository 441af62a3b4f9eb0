"""A small server/client pair in one process (tests/test_learn_net.py):
a TCP server and its client, a UDP receiver fed by sendto and sendmsg, an
AF_UNIX datagram socket fed by sendto.  argv: TCP_PORT UDP_PORT SOCK_PATH,
then optionally the addresses to send to instead (TCP_PORT2 UDP_PORT2
SOCK_PATH2): a changed client.  Prints what each step received or its errno."""

import errno
import os
import socket
import sys

tcp, udp, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
to_tcp, to_udp, to_path = (int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]) if len(sys.argv) > 4 else (tcp, udp, path)


def step(name, fn):
    try:
        print(name, fn(), flush=True)
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno), flush=True)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", tcp))
srv.listen()
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", udp))
rx.settimeout(5)
if os.path.exists(path):
    os.unlink(path)
ux = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ux.bind(path)
ux.settimeout(5)


def tcp_roundtrip():
    c = socket.create_connection(("127.0.0.1", to_tcp), timeout=5)
    c.sendall(b"tcp")
    return srv.accept()[0].recv(3).decode()


tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
us = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
step("tcp", tcp_roundtrip)
step("sendto", lambda: (tx.sendto(b"udp", ("127.0.0.1", to_udp)), rx.recv(3).decode())[1])
step("sendmsg", lambda: (tx.sendmsg([b"msg"], [], 0, ("127.0.0.1", to_udp)), rx.recv(3).decode())[1])
step("unix", lambda: (us.sendto(b"unix", to_path), ux.recv(4).decode())[1])
os.unlink(path)
