"""PinMismatchError: the error of the requests and urllib3 faces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests.exceptions
import urllib3.exceptions

from ._errors import MismatchFields, failure_fields
from ._report import PinFailure

__all__ = ["PinMismatchError"]


class PinMismatchError(MismatchFields, requests.exceptions.SSLError, urllib3.exceptions.SSLError):
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
        self._set_fields(
            host=host,
            port=port,
            pattern=pattern,
            pinned=pinned,
            denied=denied,
            served=served,
            checked=checked,
            checked_chain=checked_chain,
            verified=verified,
            reason=reason,
        )

    @classmethod
    def from_failure(cls, failure: PinFailure) -> PinMismatchError:
        """The error for ``failure``, as the decision returned it."""
        return cls(failure.message, **failure_fields(failure))

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # OSError's default pickling would lose the keyword-only fields.
        return (_rebuild_mismatch, (str(self), self._fields()))


def _rebuild_mismatch(message: str, fields: dict[str, Any]) -> PinMismatchError:
    return PinMismatchError(message, **fields)
