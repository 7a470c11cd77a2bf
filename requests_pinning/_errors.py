"""The exceptions requests-pinning raises.

::

    ValueError
     └── PinConfigError              a pin, a host pattern or a pin file is wrong

    OSError
     └── requests.exceptions.RequestException
          └── requests.exceptions.ConnectionError
               └── requests.exceptions.SSLError
                    └── PinMismatchError    (also a urllib3.exceptions.SSLError)

``PinMismatchError`` is both a requests and a urllib3 ``SSLError``, so code that
already handles certificate failures from either library keeps handling it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests.exceptions
import urllib3.exceptions

__all__ = ["PinConfigError", "PinMismatchError"]


class PinConfigError(ValueError):
    """A pin, a host pattern or a pin file cannot be understood.

    The message names the host key and the offending value, says what is wrong
    and what would be right. Nothing is ever loaded partially: when this is
    raised, no pin set was made.
    """

    def __init__(self, message: str) -> None:
        # Messages quote the offending value, and a configuration can hold a
        # 10 MB string: keep the start (which key) and the end (what is wrong).
        if len(message) > _MAX_MESSAGE:
            message = f"{message[: _MAX_MESSAGE - 300]} [...] {message[-300:]}"
        super().__init__(message)


_MAX_MESSAGE = 1000


def safe_repr(value: object) -> str:
    """``repr(value)`` for an error message, whatever ``value`` is.

    A configuration given from Python can hold anything: a list nested 100,000
    deep (``RecursionError``), an int of 5,000 digits (``ValueError``), an object
    whose ``__repr__`` raises. None of that may replace the error being reported.
    """
    try:
        return repr(value)
    except Exception:  # any error of a repr is the value's, not ours: say what it is
        return f"<{type(value).__name__} that cannot be shown>"


class PinMismatchError(requests.exceptions.SSLError, urllib3.exceptions.SSLError):
    """The server's certificate chain did not satisfy the pins for its host.

    Raised before a single byte of the request was sent; the connection was
    closed and never pooled.

    Attributes:
        host: the name whose pins failed, normalised: the origin's (as the URL
            spelled it, or a name it was validated as), or an HTTPS proxy's
            when the TLS session with the proxy failed its pins.
        port: that host's port.
        pattern: the pin-set entry that applied, or ``None`` when the host has none.
        pinned: the pins that applied, in their canonical spelling.
        denied: the deny pins that applied (a deny match is a failure).
        served: ``sha256/`` SPKI pins of the certificates the server presented,
            leaf first.
        checked: ``sha256/`` SPKI pins of the certificates the check looked at:
            the verified chain, or only the leaf when CA validation was off.
        checked_chain: the DER certificates behind ``checked``.
        verified: whether CA validation was on for the connection.
        reason: one line saying why the check failed.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str,
        port: int,
        pattern: str | None = None,
        pinned: Sequence[str] = (),
        denied: Sequence[str] = (),
        served: Sequence[str] = (),
        checked: Sequence[str] = (),
        checked_chain: Sequence[bytes] = (),
        verified: bool = False,
        reason: str = "",
        **kwargs: Any,
    ) -> None:
        # requests' RequestException takes request= and response=; keep them working.
        super().__init__(message, **kwargs)
        self.host = host
        self.port = port
        self.pattern = pattern
        self.pinned = list(pinned)
        self.denied = list(denied)
        self.served = list(served)
        self.checked = list(checked)
        self.checked_chain = list(checked_chain)
        self.verified = verified
        self.reason = reason

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # OSError's default pickling would lose the keyword-only fields.
        fields = {
            "host": self.host,
            "port": self.port,
            "pattern": self.pattern,
            "pinned": self.pinned,
            "denied": self.denied,
            "served": self.served,
            "checked": self.checked,
            "checked_chain": self.checked_chain,
            "verified": self.verified,
            "reason": self.reason,
        }
        return (_rebuild_mismatch, (str(self), fields))


def _rebuild_mismatch(message: str, fields: dict[str, Any]) -> PinMismatchError:
    return PinMismatchError(message, **fields)
