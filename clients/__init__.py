"""brokerd.clients: the authorizer library and the shipped policies.

Import it as ``brokerd.clients``, never as ``clients`` (see
brokerd.protocol._namecheck: the folder name would load every module twice).
"""

from brokerd.protocol._namecheck import require

require(__name__, "brokerd.clients")
