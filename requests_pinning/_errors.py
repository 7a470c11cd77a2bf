"""The exceptions requests-pinning raises, and what every face's pin error carries.

::

    ValueError
     └── PinConfigError              a pin, a host pattern or a pin file is wrong

    OSError
     └── requests.exceptions.RequestException
          └── requests.exceptions.ConnectionError
               └── requests.exceptions.SSLError
                    └── PinMismatchError            the requests and urllib3 faces
                                                    (also a urllib3.exceptions.SSLError)
    Exception
     └── httpx.TransportError
          └── httpx.NetworkError
               └── httpx.ConnectError
                    └── requests_pinning.httpx.PinMismatchError     the httpx face

The decision returns a :class:`PinFailure` and raises nothing; each face turns
it into the error its callers already handle for a TLS failure, with the same
fields and message (:class:`MismatchFields`), in one place per face. This
module imports no HTTP client: the client-specific classes live with their faces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._report import PinFailure

__all__ = ["MismatchFields", "PinConfigError"]


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


def printable(text: str, escape: Callable[[str], str] | None = None) -> str:
    r"""``text`` with every character that is not printable written as its escape.

    For text that comes from outside (a server's certificate, an error raised
    while reading one, a collector's answer) on its way to a terminal or a
    log: a line break, an ANSI escape sequence or a bidirectional override in
    it could otherwise forge lines, erase the line above, or reorder what is
    shown. Escapes are written as ``repr`` writes them (a line break as
    ``\n``, ESC as ``\x1b``, U+202E as ``\u202e``), or by ``escape``.
    """
    if text.isprintable():
        return text
    if escape is None:
        escape = _repr_escape
    return "".join(char if char.isprintable() else escape(char) for char in text)


def _repr_escape(char: str) -> str:
    return repr(char)[1:-1]


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


class MismatchFields:
    """The fields of a pin failure, as every face's error carries them.

    Attributes:
        host: the name whose pins failed, normalised: the origin's (as the URL
            spelled it, or a name it was validated as), or an HTTPS proxy's
            when the TLS session with the proxy failed its pins. As it is:
            the message shows it escaped (:func:`printable`).
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

    host: str
    port: int
    pattern: str | None
    pinned: list[str]
    denied: list[str]
    served: list[str]
    checked: list[str]
    checked_chain: list[bytes]
    verified: bool
    reason: str

    def _set_fields(
        self,
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
    ) -> None:
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

    def _fields(self) -> dict[str, Any]:
        """The keyword arguments that rebuild these fields (for pickling)."""
        return {
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


def failure_fields(failure: PinFailure) -> dict[str, Any]:
    """The error fields of ``failure``: what each face passes to its error class."""
    return {
        "host": failure.host,
        "port": failure.port,
        "pattern": failure.pattern,
        "pinned": failure.pinned,
        "denied": failure.denied,
        "served": failure.served,
        "checked": failure.checked,
        "checked_chain": failure.checked_chain,
        "verified": failure.verified,
        "reason": failure.reason,
    }
