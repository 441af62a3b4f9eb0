"""The bench's in-process policy (``-a py:inproc_cont:az``, run from this
directory): one clients.authorizer handler answering ``cont`` to every openat,
decided inside the broker's process (brokerd.decision.inproc)."""
from brokerd.clients.authorizer import Authorizer, cont

az = Authorizer("inproc-cont")


@az.on("openat")
def openat(call):
    return cont()
