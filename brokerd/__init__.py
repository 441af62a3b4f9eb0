"""brokerd: a user-space syscall broker for Linux."""

import os as _os

# Imported straight from a source checkout (``python3 -m brokerd.clients...``
# run in the checkout, where the current directory's brokerd/ comes first):
# find protocol/ and clients/ beside it, as the installed package has them
# inside (pyproject's package-dir).  An installed copy has them already.
_here = _os.path.dirname(__file__)
_checkout = _os.path.dirname(_here)
if not _os.path.isdir(_os.path.join(_here, "protocol")) and _os.path.isfile(
        _os.path.join(_checkout, "protocol", "__init__.py")):
    __path__.append(_checkout)  # noqa: F821 - a package's own __path__
