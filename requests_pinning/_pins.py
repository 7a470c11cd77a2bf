"""One pin: its spellings, its canonical form, and what it matches."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Literal

from ._certs import ALGORITHMS, cert_digest, format_fingerprint, format_spki_pin, spki_digest
from ._errors import safe_repr

__all__ = ["Pin"]

_ALGORITHM_NAMES = {name: name for name in ALGORITHMS}
_HEX_LENGTHS = {2 * size: name for name, size in ALGORITHMS.items()}
_SIZES = {size: name for name, size in ALGORITHMS.items()}
_HEX = re.compile(r"[0-9a-fA-F]+")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Separators between hex digits: ':' anywhere (urllib3's assert_fingerprint
# strips every one) and white space (macOS and Windows show fingerprints so).
_HEX_SEPARATORS = re.compile(r"[:\s]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# "pin-sha256="<base64>"": HPKP's header directive, and what violation reports
# list in known-pins.
_HPKP = re.compile(r'pin-([A-Za-z0-9-]*)\s*=\s*("?)([^"]*)\2', re.IGNORECASE)
# openssl x509 -fingerprint: "SHA256 Fingerprint=AB:CD:..." (openssl 1.x
# upper case, 3.x lower case); and "sha256:<hex>".
_NAMED_HEX = re.compile(
    r"(sha-?(?:1|256|384|512)|md5)(?:\s+fingerprint\s*=|\s*:)\s*(.*)", re.IGNORECASE | re.DOTALL
)
# Names that are meant as a hash algorithm, so "md5/..." is an unknown algorithm
# and not bare base64 that happens to contain a "/".
_ALGORITHM_LIKE = re.compile(r"(?:md|sha|sha-|sha3-|blake2[bs]?)[0-9]*", re.IGNORECASE)
# The canonical spelling of a SHA-256 SPKI pin, the one str(pin) writes and
# large pin files are made of: read directly, as the general reading would.
_CANONICAL_SHA256 = re.compile(r"sha256/[A-Za-z0-9+/]{43}=")


@dataclass(frozen=True, slots=True)
class Pin:
    """One pin: a hash of a certificate's public key (SPKI) or of the whole certificate.

    ``str(pin)`` is the canonical spelling: ``sha256/<base64>`` for SPKI pins,
    upper-case colon-separated hex for certificate fingerprints. Build one with
    :meth:`Pin.parse`. Two spellings of one digest are the same (equal) pin.
    """

    kind: Literal["spki", "cert"]
    algorithm: str
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> Pin:
        """Parse any accepted spelling of a pin; raise ``ValueError`` saying what is wrong.

        SPKI pins: ``sha256/<base64>`` (also ``sha384/``, ``sha512/``, ``sha1/``),
        curl's ``sha256//<base64>``, HPKP's ``pin-sha256="<base64>"``, and bare
        base64 of a 32-byte digest (TrustKit, Android), read as a SHA-256 SPKI
        pin. Base64 with non-zero padding bits is accepted (as OkHttp, Android
        and TrustKit do) and canonicalised. Fingerprints: hex of a SHA-1,
        SHA-256, SHA-384 or SHA-512 certificate hash, any case, with ``:`` or
        white space anywhere, optionally after openssl's ``SHA256
        Fingerprint=`` or ``sha256:``; the algorithm follows from the length.
        """
        if not isinstance(text, str):
            raise ValueError(f"{safe_repr(text)} is a {type(text).__name__}, not a pin string")
        if _CANONICAL_SHA256.fullmatch(text):
            return cls("spki", "sha256", binascii.a2b_base64(text[7:]))
        text = text.strip()
        try:
            return cls._parse(text)
        except _Refused as refused:
            raise ValueError(f"{text!r} {refused.why}") from None

    @classmethod
    def _parse(cls, text: str) -> Pin:
        if ";" in text:
            return cls._parse_list(text)
        hpkp = _HPKP.fullmatch(text)
        if hpkp is not None:
            name, _, rest = hpkp.groups()
            return cls._parse_spki(name, rest, f'pin-{name}="')
        named = _NAMED_HEX.fullmatch(text)
        if named is not None:
            name, rest = named.groups()
            return cls._parse_fingerprint(rest, name.lower().replace("-", ""))
        prefix, slash, rest = text.partition("/")
        if slash and prefix.lower().replace("-", "") in _ALGORITHM_NAMES:
            return cls._parse_spki(prefix, rest, f"{prefix}/")
        if slash and _ALGORITHM_LIKE.fullmatch(prefix):
            # An unknown algorithm ("md5/..."), unless the whole text is bare
            # base64 of a SHA-256 digest that merely starts like one ("mD/A..."):
            # no spelling with an algorithm is 44 characters, so that reading
            # cannot take the place of one.
            digest = _b64_digest(text) if _BASE64.fullmatch(text) else None
            if digest is None or len(digest) != ALGORITHMS["sha256"]:
                return cls._parse_spki(prefix, rest, f"{prefix}/")
        if _BASE64.fullmatch(text) and not _HEX.fullmatch(text):
            pin = cls._parse_bare(text)
            if pin is not None:
                return pin
        if slash:
            # Neither an algorithm nor bare base64 before the "/".
            raise _Refused(f"has an unknown hash algorithm {prefix!r}: use {_NAMES}")
        return cls._parse_fingerprint(text, None)

    @classmethod
    def _parse_list(cls, text: str) -> Pin:
        # curl's --pinnedpubkey list, or an HPKP header with several directives.
        parts = [part.strip() for part in text.split(";") if part.strip()]
        if len(parts) == 1:
            return cls._parse(parts[0])  # a trailing ";", as in a header
        spelled = []
        for part in parts:
            try:
                spelled.append(str(cls._parse(part)))
            except _Refused:
                spelled.append(part)
        items = ", ".join(f'"{item}"' for item in spelled)
        raise _Refused(
            f"holds {len(parts)} items separated by ';' (curl's list spelling): "
            f"give one pin per list item: [{items}]"
        )

    @classmethod
    def _parse_spki(cls, prefix: str, rest: str, spelled: str) -> Pin:
        # One shared string per algorithm (100,000-entry pin files add up).
        algorithm = _ALGORITHM_NAMES.get(prefix.lower().replace("-", ""), "")
        if not algorithm:
            raise _Refused(f"has an unknown hash algorithm {prefix!r}: use {_NAMES}")
        size = ALGORITHMS[algorithm]
        # A standard base64 digest can itself start with "/" (about one pin in
        # 64), so the HPKP reading goes first and curl's "sha256//" second.
        candidates = [rest, rest[1:]] if rest.startswith("/") and spelled.endswith("/") else [rest]
        for candidate in candidates:
            digest = _b64_digest(candidate)
            if digest is not None and len(digest) == size:
                return cls("spki", algorithm, digest)
        raise _Refused(
            f"is not base64 of a {size}-byte {_display(algorithm)} digest"
            f" (expected {spelled} followed by {_b64_length(size)} base64 characters)"
        )

    @classmethod
    def _parse_bare(cls, text: str) -> Pin | None:
        """Bare base64: a SHA-256 SPKI digest (TrustKit, Android's <pin digest="SHA-256">).

        Only 32 bytes are read bare. A 64-digit hex string would be base64 of
        48 bytes too, and it is a SHA-256 certificate fingerprint; 44
        characters of base64 ending in "=" are never hex, so this reading
        cannot take a fingerprint's place.
        """
        digest = _b64_digest(text)
        if digest is not None and len(digest) == ALGORITHMS["sha256"]:
            return cls("spki", "sha256", digest)
        algorithm = _SIZES.get(len(digest)) if digest is not None else None
        # Base64 of a SHA-384 digest is 64 characters without '=', and often
        # without '+' or '/' either: as long as a SHA-256 fingerprint in hex.
        # Read as base64 only when it looks like base64 of a digest: upper
        # and lower case mixed, and mostly not hex (42 of 64 characters on
        # average; 16 or fewer about once in 10^10). A fingerprint with a typo
        # ('O' for '0', "0x" before it) is a fingerprint mistyped, and no
        # guess at a SHA-384 pin.
        looks_like_base64 = (
            "=" in text
            or "+" in text
            or "/" in text
            or 40 <= len(text) <= 48
            or (
                algorithm is not None
                and not text.islower()
                and not text.isupper()
                and sum(char not in _HEX_DIGITS for char in text) > 16
            )
        )
        if not looks_like_base64:
            return None  # say "neither" below, not a guess at base64
        if digest is not None and algorithm is not None:
            raise _Refused(
                f"is bare base64 of a {len(digest)}-byte digest: only a SHA-256 SPKI pin "
                "(32 bytes) may be written without its algorithm; did you mean "
                f"{format_spki_pin(algorithm, digest)!r}?"
            )
        # Two slips with an exact fix: the '=' left behind, or the algorithm.
        for guess in (text + "=" * (-len(text) % 4), text[1:]):
            fixed = _b64_digest(guess)
            if fixed is not None and len(fixed) == ALGORITHMS["sha256"]:
                raise _Refused(f"is not a pin; did you mean {format_spki_pin('sha256', fixed)!r}?")
        raise _Refused(
            "is not a pin: bare base64 is read as a SHA-256 SPKI digest, "
            f"{_b64_length(32)} characters ending in '=' (this is {len(text)} characters); "
            "other digests need their algorithm, as in sha384/<base64>"
        )

    @classmethod
    def _parse_fingerprint(cls, text: str, named: str | None) -> Pin:
        digits = _HEX_SEPARATORS.sub("", text)
        if not _HEX.fullmatch(digits):
            spki = _b64_digest(digits) if named in ALGORITHMS else None
            if named is not None and spki is not None and len(spki) == ALGORITHMS[named]:
                raise _Refused(
                    f"is not a fingerprint ('{named}:' takes hex digits); for an SPKI pin, "
                    f"did you mean {format_spki_pin(named, spki)!r}?"
                )
            raise _Refused(
                "is neither an SPKI pin (sha256/<base64>, or its 44 characters of bare "
                "base64) nor a hex certificate fingerprint"
            )
        if named == "md5" or (named is None and len(digits) == 32):
            raise _Refused("looks like an MD5 fingerprint: MD5 pins are not accepted")
        algorithm = _HEX_LENGTHS.get(len(digits))
        if algorithm is None:
            raise _Refused(
                f"has {len(digits)} hex digits: a fingerprint has 40 (SHA-1), "
                "64 (SHA-256), 96 (SHA-384) or 128 (SHA-512)"
            )
        if named is not None and named != algorithm:
            # Ambiguous: the name and the length disagree. Refuse, never guess.
            raise _Refused(
                f"says {_display(named)} but has {len(digits)} hex digits, "
                f"the length of {_display(algorithm)}"
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


class _Refused(Exception):
    """Why a spelling is refused; Pin.parse puts the text in front (as ValueError)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


_NAMES = ", ".join(f"{name}/" for name in ALGORITHMS)


def _display(algorithm: str) -> str:
    return algorithm.upper().replace("SHA", "SHA-")  # SHA-256, as the standards write it


def _b64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _b64_digest(text: str) -> bytes | None:
    """Standard, padded base64; None for anything else.

    Non-zero padding bits are accepted, as OkHttp, Android, TrustKit and
    Python's base64 accept them: the digest is what counts, ``str(pin)``
    writes the canonical text, and two spellings of one digest are one pin.
    The shape is checked here, not left to ``b64decode``, whose strictness
    about padding differs between Python versions; once it is checked,
    ``binascii`` decodes without validating it a second time.
    """
    if len(text) % 4 or not _BASE64.fullmatch(text):
        return None
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError):
        return None
