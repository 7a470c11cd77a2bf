"""DER helpers: the SubjectPublicKeyInfo as encoded, fingerprints, names for messages.

An SPKI pin is a hash over the certificate's SubjectPublicKeyInfo *exactly as it
is encoded in the certificate* (RFC 7469, section 2.4). Parsing the key and
encoding it again is not the same thing: for some keys (explicit EC
parameters, RSA-PSS parameters, non-minimal encodings) the two differ, and a
pin computed from a re-encoding would never match what HPKP, OkHttp, curl and
openssl compute. So the SPKI is cut out of the DER with a small TLV walker.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import hashlib
import re
from collections.abc import Iterator

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from ._errors import PinConfigError, printable

__all__ = ["ALGORITHMS", "CertInput", "cert_fingerprint", "spki_pin"]

#: Digest algorithms a pin may use, with their digest sizes in bytes.
ALGORITHMS: dict[str, int] = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}

CertInput = str | bytes | x509.Certificate

_SEQUENCE = 0x30
_INTEGER = 0x02
_VERSION = 0xA0  # [0] EXPLICIT Version, optional in TBSCertificate
_BIT_STRING = 0x03
_OID = 0x06

_PEM_BEGIN = b"-----BEGIN "
_PEM_END = b"-----END "
# A label cannot contain "-": so no two label scans overlap, and a scan is linear.
_PEM_LABEL = re.compile(rb"([A-Z0-9 #]+)-----")


def _tlv(data: bytes, offset: int, expected_tag: int) -> tuple[int, int]:
    """Read one DER element at ``offset``; return (start of contents, end of element)."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    if data[offset] != expected_tag:
        raise ValueError(f"expected DER tag 0x{expected_tag:02x}, found 0x{data[offset]:02x}")
    first = data[offset + 1]
    start = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        # BER's indefinite length: never valid in DER, and this reader does not
        # look for end-of-contents octets. Refused, so the check fails closed.
        raise ValueError("indefinite DER length")
    else:
        # The long form, with 1 to 127 length octets. DER wants the fewest
        # octets, but OpenSSL (ASN1_get_object) also takes non-minimal lengths,
        # leading zero octets and all, so a CA can sign such a certificate and
        # a handshake accepts it: its pins must still be readable, or the
        # check could not decide. The length must still fit in the data.
        count = first & 0x7F
        if start + count > len(data):
            raise ValueError("truncated DER")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER")
    return start, end


def _skip(data: bytes, offset: int, tag: int) -> int:
    return _tlv(data, offset, tag)[1]


def split_der_certificates(data: bytes) -> list[bytes]:
    """The DER certificates of a file of concatenated ones (a DER chain), in order.

    Raises ``ValueError`` when ``data`` is anything else; empty data has none.
    """
    certs = []
    offset = 0
    while offset < len(data):
        end = _skip(data, offset, _SEQUENCE)
        der = data[offset:end]
        check_certificate(der)
        certs.append(der)
        offset = end
    return certs


def check_certificate(der: bytes) -> None:
    """Raise ``ValueError`` unless ``der`` is one certificate whose SPKI can be cut out.

    cryptography reads strict DER only. A certificate that it refuses but that
    OpenSSL reads (a non-minimal length, say) is accepted when its structure
    is whole, as :func:`_check_structure` says, so that what a server can
    present in a handshake is also what can be pinned.
    """
    try:
        x509.load_der_x509_certificate(der)
    except (x509.InvalidVersion, ValueError):
        # InvalidVersion: cryptography reads v1 and v3 only; OpenSSL also v2.
        _check_structure(der)
    spki_of_der_cert(der)


def _check_structure(der: bytes) -> None:
    """Raise ``ValueError`` unless ``der`` has the shape of one X.509 certificate.

    That is: SEQUENCE { TBSCertificate, AlgorithmIdentifier, BIT STRING } and
    nothing after it, a version of v1 to v3, and an SPKI of an
    AlgorithmIdentifier and a BIT STRING. Lengths in any form OpenSSL reads.
    """
    start, end = _tlv(der, 0, _SEQUENCE)
    if end != len(der):
        raise ValueError("trailing data after the certificate")
    tbs_start, tbs_end = _tlv(der, start, _SEQUENCE)
    if _skip(der, _skip(der, tbs_end, _SEQUENCE), _BIT_STRING) != end:
        raise ValueError("not a certificate: data after its signature")
    if tbs_start < tbs_end and der[tbs_start] == _VERSION:
        inner, version_end = _tlv(der, tbs_start, _VERSION)
        number, number_end = _tlv(der, inner, _INTEGER)
        if number_end != version_end or der[number:number_end] not in (b"\0", b"\1", b"\2"):
            raise ValueError("not a certificate of version 1, 2 or 3")
    spki = spki_of_der_cert(der)
    spki_start, spki_end = _tlv(spki, 0, _SEQUENCE)
    if _skip(spki, _skip(spki, spki_start, _SEQUENCE), _BIT_STRING) != spki_end:
        raise ValueError("not a SubjectPublicKeyInfo")


# Certificates in use are a few kilobytes. The caches below keep each one's
# DER as their key: one that a server makes large (OpenSSL takes chains of up
# to 100 KiB) is worked out anew each time instead of being kept, or 3,072 of
# them, new on every connection, would hold 300 MB.
_CACHED_DER_BYTES = 16 * 1024


def spki_of_der_cert(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER certificate, byte for byte as encoded.

    Cached (bounded): the same intermediate and root certificates come back on
    every handshake, and cutting them out again is wasted work.
    """
    if len(der) > _CACHED_DER_BYTES:
        return _spki_of(der)
    return _cached_spki_of(der)


def _spki_of(der: bytes) -> bytes:
    start, end = _tlv(der, 0, _SEQUENCE)
    if end != len(der):
        raise ValueError("trailing data after the certificate")
    pos, tbs_end = _tlv(der, start, _SEQUENCE)  # TBSCertificate
    if pos < tbs_end and der[pos] == _VERSION:
        pos = _skip(der, pos, _VERSION)
    pos = _skip(der, pos, _INTEGER)  # serialNumber
    for _field in ("signature", "issuer", "validity", "subject"):
        pos = _skip(der, pos, _SEQUENCE)
    spki_end = _skip(der, pos, _SEQUENCE)
    if spki_end > tbs_end:
        raise ValueError("the SubjectPublicKeyInfo runs past the TBSCertificate")
    return der[pos:spki_end]


_cached_spki_of = functools.lru_cache(maxsize=1024)(_spki_of)


def spki_algorithm_oid(spki: bytes) -> str:
    """The dotted OID of a SubjectPublicKeyInfo's algorithm (``1.2.840.10045.2.1``).

    For describing a key that cryptography cannot load: the pin never needs it.
    Raises ``ValueError`` when ``spki`` does not open with an OID.
    """
    start, _ = _tlv(spki, 0, _SEQUENCE)
    start, _ = _tlv(spki, start, _SEQUENCE)  # AlgorithmIdentifier
    start, end = _tlv(spki, start, _OID)
    arcs: list[int] = []
    value = 0
    for byte in spki[start:end]:
        value = (value << 7) | (byte & 0x7F)
        if value >> 128:  # no real arc is this long; unbounded, it would be quadratic
            raise ValueError("an OID arc is too long")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or spki[end - 1] & 0x80:
        raise ValueError("not an OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def spki_digest(der: bytes, algorithm: str = "sha256") -> bytes:
    """Digest of a DER certificate's SPKI; cached (bounded) for the per-handshake path."""
    if len(der) > _CACHED_DER_BYTES:
        return hashlib.new(algorithm, _spki_of(der)).digest()
    return _cached_spki_digest(der, algorithm)


@functools.lru_cache(maxsize=2048)
def _cached_spki_digest(der: bytes, algorithm: str) -> bytes:
    return hashlib.new(algorithm, _cached_spki_of(der)).digest()


def cert_digest(der: bytes, algorithm: str = "sha256") -> bytes:
    """Digest of a whole DER certificate (a fingerprint, as bytes)."""
    return hashlib.new(algorithm, der).digest()


def format_spki_pin(algorithm: str, digest: bytes) -> str:
    """``sha256/<base64>``: the spelling HPKP and OkHttp use."""
    return f"{algorithm}/{base64.b64encode(digest).decode('ascii')}"


def format_fingerprint(digest: bytes) -> str:
    """Upper-case colon-separated hex, as ``openssl x509 -fingerprint`` prints it."""
    return ":".join(f"{byte:02X}" for byte in digest)


def sha256_pin(der: bytes) -> str:
    """The ``sha256/`` SPKI pin of a DER certificate."""
    return format_spki_pin("sha256", spki_digest(der, "sha256"))


#: The most of a subject that :func:`describe_name` shows. A server chooses its
#: names, up to OpenSSL's 100 KiB limit on a chain, and an unprintable
#: character takes up to 12 characters escaped: a message, log line or report
#: would otherwise carry 4.5 times what the server sent, on every connection.
SHOWN_NAME = 256


def describe_name(der: bytes) -> str:
    """The certificate's subject, most specific part first: ``CN=R3, O=Let's Encrypt``.

    A subject longer than :data:`SHOWN_NAME` characters is cut there, and
    says how many characters were left out.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        text = format_name(cert.subject) or "(empty subject)"
    except Exception:  # used in failure messages, which must be built whatever the input
        return "(unparseable certificate)"
    return shorten(text, SHOWN_NAME)


# One unit that a cut must not split: a character's escaped UTF-8 (\E2\80\AE),
# another hex escape (\0A), an RFC 4514 escape of a special character (\,),
# or one character.
_NAME_UNIT = re.compile(r"\\[C-F][0-9A-F](?:\\[89AB][0-9A-F])*|\\[0-9A-F]{2}|\\.|.", re.DOTALL)


def shorten(text: str, limit: int) -> str:
    """``text``, or its whole escapes and characters up to ``limit`` and the count left out."""
    if len(text) <= limit:
        return text
    end = 0
    for unit in _NAME_UNIT.finditer(text):
        if unit.end() > limit:
            break
        end = unit.end()
    return f"{text[:end]}... ({len(text) - end} more characters)"


def format_name(name: x509.Name) -> str:
    r"""A name, most specific part first (``CN=R3, O=Let's Encrypt``); empty for no parts.

    A character that is not printable is escaped as RFC 4514 allows for any
    character, a backslash before each byte of its UTF-8 in hex (a line break:
    ``\0A``; ESC: ``\1B``). The name is the server's own text, shown in
    terminals and logs: with a line break or a terminal escape sequence left
    in, a certificate could forge lines of the output around it, or erase them.
    """
    text = ", ".join(rdn.rfc4514_string() for rdn in reversed(list(name.rdns)))
    return printable(text, escape_hex)


def escape_hex(char: str) -> str:
    """``char`` as RFC 4514 escapes any character: ``\\`` and hex, for each byte of its UTF-8."""
    return "".join(f"\\{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def _check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        names = ", ".join(ALGORITHMS)
        raise PinConfigError(f"unknown hash algorithm {algorithm!r}: use one of {names}")
    return algorithm


def iter_pem_blocks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Each complete PEM block in ``data``, in order: its label and its body, still base64.

    A block runs from ``-----BEGIN L-----`` to the first ``-----END L-----``
    after it; a BEGIN without its END is skipped. Linear time: every END line
    is found once, up front, and each BEGIN looks up the first END of its
    label after it, so many unterminated BEGIN lines cannot make the scan
    search the rest of the input once each.
    """
    ends: dict[bytes, list[int]] = {}
    for start, label, _ in _pem_markers(data, _PEM_END):
        ends.setdefault(label, []).append(start)
    resume = 0
    for start, label, body_start in _pem_markers(data, _PEM_BEGIN):
        if start < resume:
            continue  # inside the previous block
        positions = ends.get(label, [])
        index = bisect.bisect_left(positions, body_start)
        if index == len(positions):
            continue
        body_end = positions[index]
        yield label.decode("ascii"), data[body_start:body_end].strip()
        resume = body_end + len(_PEM_END) + len(label) + len(b"-----")


def _pem_markers(data: bytes, marker: bytes) -> Iterator[tuple[int, bytes, int]]:
    """``(start, label, end)`` of each ``MARKER LABEL-----`` line in ``data``."""
    position = data.find(marker)
    while position >= 0:
        match = _PEM_LABEL.match(data, position + len(marker))
        if match is not None:
            yield position, match.group(1), match.end()
        position = data.find(marker, position + 1)


def decode_pem_body(body: bytes) -> bytes:
    """The DER in a PEM block's body; ``binascii.Error`` when it is not base64."""
    return base64.b64decode(b"".join(body.split()), validate=True)


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    blocks = []
    for label, body in iter_pem_blocks(data):
        try:
            blocks.append((label, decode_pem_body(body)))
        except binascii.Error:
            raise PinConfigError(f"the PEM {label} block is not valid base64") from None
    return blocks


def _load(cert: object) -> tuple[str, bytes]:
    """Return ("certificate", DER) or ("public key", DER SPKI) for any accepted input."""
    if isinstance(cert, x509.Certificate):
        return "certificate", cert.public_bytes(serialization.Encoding.DER)
    if isinstance(cert, str):
        try:
            data = cert.encode("ascii")
        except UnicodeEncodeError:
            raise PinConfigError("a PEM string must be ASCII") from None
    elif isinstance(cert, bytes | bytearray | memoryview):
        data = bytes(cert)
    else:
        raise PinConfigError(
            f"cannot pin a {type(cert).__name__}: pass PEM text, DER bytes "
            "or a cryptography x509.Certificate"
        )
    if b"-----BEGIN" in data:
        blocks = _pem_blocks(data)
        certs = [body for label, body in blocks if label in ("CERTIFICATE", "X509 CERTIFICATE")]
        keys = [body for label, body in blocks if label == "PUBLIC KEY"]
        if len(certs) + len(keys) > 1:
            raise PinConfigError(
                f"the PEM input holds {len(certs) + len(keys)} certificates or keys: pass "
                "one at a time ('requests-pinning pins FILE' lists a whole chain)"
            )
        if certs:
            return _validated("certificate", certs[0])
        if keys:
            return _validated("public key", keys[0])
        labels = ", ".join(label for label, _ in blocks) or "no complete PEM block"
        raise PinConfigError(
            f"no CERTIFICATE or PUBLIC KEY block in the PEM input (found: {labels})"
        )
    if not data:
        raise PinConfigError("cannot pin empty input")
    try:
        return _validated("certificate", data)
    except PinConfigError:
        pass
    try:
        return _validated("public key", data)
    except PinConfigError:
        raise PinConfigError(
            "the input is neither a DER certificate nor a DER SubjectPublicKeyInfo"
        ) from None


def _validated(kind: str, der: bytes) -> tuple[str, bytes]:
    """Parse ``der`` before hashing it (see :func:`check_certificate`): garbage is never hashed."""
    try:
        if kind == "certificate":
            check_certificate(der)
        else:
            key: PublicKeyTypes = serialization.load_der_public_key(der)
            del key
            # load_der_public_key also takes a bare PKCS#1 RSAPublicKey, which is
            # not what a pin hashes: an SPKI opens with an AlgorithmIdentifier.
            if der[_tlv(der, 0, _SEQUENCE)[0] :][:1] != bytes([_SEQUENCE]):
                raise ValueError("not a SubjectPublicKeyInfo (a PKCS#1 RSA key?)")
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise PinConfigError(f"not a valid DER {kind}: {exc}") from None
    return kind, der


def spki_pin(cert: CertInput, algorithm: str = "sha256") -> str:
    """Return the SPKI pin of a certificate or public key, e.g. ``"sha256/r/mIkG3...="``.

    ``cert`` may be a PEM string or bytes, DER bytes, a
    ``cryptography.x509.Certificate``, or a ``PUBLIC KEY`` (PEM) /
    SubjectPublicKeyInfo (DER) of a key that has no certificate yet, such as a
    backup key. The hash covers the SubjectPublicKeyInfo exactly as it is
    encoded, which is what HPKP, OkHttp, curl ``--pinnedpubkey`` and the openssl
    pipeline ``openssl x509 -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64`` compute.

    ``algorithm`` is ``"sha256"`` (the default), ``"sha384"``, ``"sha512"`` or
    the legacy ``"sha1"``. Raises :class:`PinConfigError` for input that is not
    exactly one certificate or public key. A certificate with the non-minimal
    DER lengths that OpenSSL (though not cryptography) reads is accepted, and
    its key needs no known algorithm: only the SPKI's bytes are hashed.
    """
    _check_algorithm(algorithm)
    kind, der = _load(cert)
    spki = spki_of_der_cert(der) if kind == "certificate" else der
    return format_spki_pin(algorithm, hashlib.new(algorithm, spki).digest())


def cert_fingerprint(cert: CertInput, algorithm: str = "sha256") -> str:
    """Return the fingerprint of a whole certificate as upper-case colon-separated hex.

    This is what ``openssl x509 -noout -fingerprint -sha256`` prints after the
    ``=``, and it can be used as a pin. Accepts the same inputs as
    :func:`spki_pin` except public keys, which have no certificate to hash.
    """
    _check_algorithm(algorithm)
    kind, der = _load(cert)
    if kind != "certificate":
        raise PinConfigError("a public key has no certificate fingerprint: use spki_pin()")
    return format_fingerprint(hashlib.new(algorithm, der).digest())
