"""One pin: its spellings, its canonical form, and what it matches."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from ._certs import ALGORITHMS, cert_digest, format_fingerprint, format_spki_pin, spki_digest
from ._errors import safe_repr

__all__ = ["Pin"]

_ALGORITHM_NAMES = {name: name for name in ALGORITHMS}
_HEX_LENGTHS = {2 * size: name for name, size in ALGORITHMS.items()}
_HEX = re.compile(r"[0-9a-fA-F]+")
_COLON_HEX = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})+")


@dataclass(frozen=True, slots=True)
class Pin:
    """One pin: a hash of a certificate's public key (SPKI) or of the whole certificate.

    ``str(pin)`` is the canonical spelling: ``sha256/<base64>`` for SPKI pins,
    upper-case colon-separated hex for certificate fingerprints. Build one with
    :meth:`Pin.parse`.
    """

    kind: Literal["spki", "cert"]
    algorithm: str
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> Pin:
        """Parse any accepted spelling of a pin; raise ``ValueError`` saying what is wrong.

        SPKI pins: ``sha256/<base64>`` (also ``sha384/``, ``sha512/``, ``sha1/``),
        and curl's ``sha256//<base64>``. Fingerprints: hex of a SHA-1, SHA-256,
        SHA-384 or SHA-512 certificate hash, any case, with or without ``:``.
        """
        if not isinstance(text, str):
            raise ValueError(f"{safe_repr(text)} is a {type(text).__name__}, not a pin string")
        text = text.strip()
        if "/" in text:
            return cls._parse_spki(text)
        return cls._parse_fingerprint(text)

    @classmethod
    def _parse_spki(cls, text: str) -> Pin:
        prefix, rest = text.split("/", 1)
        # One shared string per algorithm (100,000-entry pin files add up).
        algorithm = _ALGORITHM_NAMES.get(prefix.lower(), "")
        if not algorithm:
            names = ", ".join(f"{name}/" for name in ALGORITHMS)
            raise ValueError(f"{text!r} has an unknown hash algorithm {prefix!r}: use {names}")
        size = ALGORITHMS[algorithm]
        # A standard base64 digest can itself start with "/" (about one pin in
        # 64), so the HPKP reading goes first and curl's "sha256//" second.
        candidates = [rest, rest[1:]] if rest.startswith("/") else [rest]
        for candidate in candidates:
            digest = _b64_digest(candidate, size)
            if digest is not None:
                return cls("spki", algorithm, digest)
        name = algorithm.upper().replace("SHA", "SHA-")  # SHA-256, as the standards write it
        raise ValueError(
            f"{text!r} is not base64 of a {size}-byte {name} digest"
            f" (expected {algorithm}/ followed by {4 * ((size + 2) // 3)} base64 characters)"
        )

    @classmethod
    def _parse_fingerprint(cls, text: str) -> Pin:
        if ":" in text and not _COLON_HEX.fullmatch(text):
            raise ValueError(
                f"{text!r} is not a fingerprint: write hex digits in pairs separated by ':'"
            )
        digits = text.replace(":", "")
        if not _HEX.fullmatch(digits):
            raise ValueError(
                f"{text!r} is neither an SPKI pin (sha256/<base64>) "
                "nor a hex certificate fingerprint"
            )
        if len(digits) == 32:
            raise ValueError(f"{text!r} looks like an MD5 fingerprint: MD5 pins are not accepted")
        algorithm = _HEX_LENGTHS.get(len(digits))
        if algorithm is None:
            raise ValueError(
                f"{text!r} has {len(digits)} hex digits: a fingerprint has 40 (SHA-1), "
                "64 (SHA-256), 96 (SHA-384) or 128 (SHA-512)"
            )
        return cls("cert", algorithm, bytes.fromhex(digits))

    def __str__(self) -> str:
        if self.kind == "spki":
            return format_spki_pin(self.algorithm, self.digest)
        return format_fingerprint(self.digest)

    def __repr__(self) -> str:
        return f"Pin({str(self)!r})"

    def matches(self, der: bytes) -> bool:
        """Does this pin match the DER certificate ``der``?"""
        if self.kind == "spki":
            return spki_digest(der, self.algorithm) == self.digest
        return cert_digest(der, self.algorithm) == self.digest


def _b64_digest(text: str, size: int) -> bytes | None:
    try:
        digest = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(digest) != size:
        return None
    # Canonical base64 only: a different text must not decode to the same pin
    # silently (non-zero padding bits would make two spellings of one digest).
    if base64.b64encode(digest).decode("ascii") != text:
        return None
    return digest
