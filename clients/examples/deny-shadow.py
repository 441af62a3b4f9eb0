"""A complete brokerd authorizer with the Python library (handshake mode).
Deny opening /etc/shadow with EACCES; allow everything else.

    brokerctl run -a 'python3 clients/examples/deny-shadow.py' -- cat /etc/hostname /etc/shadow
"""

from brokerd.clients.authorizer import Authorizer, cont, skip_fail

az = Authorizer("deny-shadow")


@az.on("openat", "open")
def opening(call):
    path = call.path(call.path_args()[0])
    return skip_fail("EACCES") if path == "/etc/shadow" else cont()


if __name__ == "__main__":
    az.main()
