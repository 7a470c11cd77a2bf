"""TLS certificate and public-key pinning for requests and urllib3.

Use a :class:`PinningSession` (or mount a :class:`PinningAdapter` on
``"https://"`` of a ``requests.Session``, or use :class:`PinningPoolManager`
with urllib3) and every new TLS connection is
checked against the pins configured for its host, after the handshake and
before a single byte of the request is sent. :func:`inject_into_urllib3` does
the same for every urllib3 connection in the process.
"""

import importlib.metadata as _metadata

from ._adapter import PinningAdapter
from ._certs import cert_fingerprint, spki_pin
from ._errors import PinConfigError
from ._inject import extract_from_urllib3, inject_into_urllib3
from ._mismatch import PinMismatchError
from ._pins import Pin
from ._pinset import HostOptions, HostPins, PinSet, PinSource
from ._report import PinFailure
from ._session import PinningMountWarning, PinningSession
from ._urllib3 import PinningPoolManager, PinningProxyManager
from ._verify import PinningPolicy

try:
    __version__ = _metadata.version("requests-pinning")
except _metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "HostOptions",
    "HostPins",
    "Pin",
    "PinConfigError",
    "PinFailure",
    "PinMismatchError",
    "PinSet",
    "PinSource",
    "PinningAdapter",
    "PinningMountWarning",
    "PinningPolicy",
    "PinningPoolManager",
    "PinningProxyManager",
    "PinningSession",
    "cert_fingerprint",
    "extract_from_urllib3",
    "inject_into_urllib3",
    "spki_pin",
]
