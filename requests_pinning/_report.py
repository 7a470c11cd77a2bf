"""PinFailure: what ``on_failure`` callbacks receive, and its RFC 7469 violation report."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["OnFailure", "PinFailure"]


@dataclass(frozen=True)
class PinFailure:
    """One failed pin check, enforced or report-only.

    Attributes:
        host: the origin's host, normalised.
        port: the origin's port.
        pattern: the pin-set entry that applied, or ``None`` when the host has none.
        pinned: the pins that applied, canonical spellings.
        denied: the deny pins that applied.
        served: ``sha256/`` SPKI pins of the certificates the server presented, leaf first.
        checked: ``sha256/`` SPKI pins of the certificates the check looked at.
        verified: whether CA validation was on.
        report_only: ``True`` when the connection was allowed to proceed.
        date_time: when the check failed (aware, UTC).
        reason: one line saying why the check failed.
        served_chain: the DER certificates behind ``served``.
        checked_chain: the DER certificates behind ``checked``.
        include_subdomains: whether the entry covers subdomains.
        expires: the entry's expiry, or ``None``.
        report_uri: where a violation report for this failure goes, or ``None``.
    """

    host: str
    port: int
    pattern: str | None
    pinned: tuple[str, ...]
    served: tuple[str, ...]
    checked: tuple[str, ...]
    verified: bool
    report_only: bool
    date_time: datetime
    reason: str
    served_chain: tuple[bytes, ...] = ()
    checked_chain: tuple[bytes, ...] = ()
    denied: tuple[str, ...] = ()
    include_subdomains: bool = False
    expires: datetime | None = None
    report_uri: str | None = None

    def to_report(self) -> dict[str, Any]:
        """The failure as an RFC 7469 section 3 violation report (JSON-serialisable).

        Fields that do not apply are ``None`` (JSON ``null``), such as
        ``effective-expiration-date`` for an entry without ``expires``.
        """
        return {
            "date-time": _iso(self.date_time),
            "hostname": self.host,
            "port": self.port,
            "effective-expiration-date": _iso(self.expires) if self.expires else None,
            "include-subdomains": self.include_subdomains,
            "noted-hostname": self.pattern,
            "served-certificate-chain": [_pem(der) for der in self.served_chain],
            "validated-certificate-chain": (
                [_pem(der) for der in self.checked_chain] if self.verified else []
            ),
            "known-pins": [_known_pin(pin) for pin in self.pinned],
        }


#: The type of ``on_failure`` callbacks.
OnFailure = Callable[[PinFailure], object]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _known_pin(pin: str) -> str:
    # RFC 7469 spells known pins as they appear in the header: pin-sha256="...".
    if "/" in pin:
        algorithm, digest = pin.split("/", 1)
        return f'pin-{algorithm}="{digest}"'
    return pin
