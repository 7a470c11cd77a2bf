"""Where the ``requests-pinning`` command gets certificates: hosts and files.

A target is an https:// URL or ``host[:port]``, parsed with the pin file's own
host rules, or a file. A host is asked for its chain with a stdlib TLS
handshake, read off the socket exactly as the library reads it; a file is read
for every certificate and public key in it (PEM, DER, PKCS#7, keys, requests).
Either way the result is a :class:`Chain` of :class:`Item` to show and to pin.
"""

from __future__ import annotations

import binascii
import os
import re
import socket
import ssl
import sys
import urllib.parse
from dataclasses import dataclass

import requests.utils
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7

from .._certs import (
    check_certificate,
    decode_pem_body,
    iter_pem_blocks,
    sha256_pin,
    spki_algorithm_oid,
    spki_of_der_cert,
    spki_pin,
    split_der_certificates,
)
from .._errors import PinConfigError
from .._pinset import _parse_pattern, read_at_most
from .._tls import may_misreport, peer_chain, vouched
from .._verify import PeerChain
from ._errors import EXIT_FAILED, PROG, UserError, show

__all__ = [
    "Chain",
    "Endpoint",
    "Item",
    "Network",
    "Unreachable",
    "backup_pin",
    "classify",
    "gather",
    "handshake",
    "parse_endpoint",
    "tls_context",
]


# -- targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A host to connect to: ``host`` normalised (A-labels, lower case, bare IPv6).

    ``zone``: an IPv6 address's zone id (``%eth0``), needed to connect to a
    link-local address but not part of its pin-file key, as lookups drop it.
    """

    target: str
    host: str
    port: int
    zone: str = ""

    @property
    def label(self) -> str:
        """``host:port``, with IPv6 in brackets (and its zone id)."""
        if ":" in self.host:
            return f"[{self.host}{self.zone}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """The pin-file key for this endpoint: the host for port 443, else host:port."""
        if self.port == 443:
            return self.host
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(target: str) -> Endpoint:
    """Parse an ``https://`` URL or ``host[:port]``, with the pin file's own host rules."""
    hostport = target
    if "://" in target:
        hostport = _url_hostport(target)
    # A zone id is for connecting, not for the key (which refuses it).
    zone = ""
    bracketed = _BRACKETED_ZONE.fullmatch(hostport)
    if bracketed is not None:
        address, zone, after = bracketed.groups()
        hostport = f"[{address}]{after}"
    elif "%" in hostport and "[" not in hostport:  # a bare IPv6 address, no port
        address, percent, rest = hostport.partition("%")
        if ":" in address and ":" not in rest:
            hostport, zone = address, percent + rest
    if "://" in target and zone.startswith("%25"):
        zone = "%" + zone[3:]  # a URL's zone id is escaped (RFC 6874)
    if zone and not _ZONE_ID.fullmatch(zone):
        # Handed to the resolver as part of the address: an interface name
        # or number, nothing the name encoder could refuse.
        raise UserError(
            f"target {target!r}: {zone!r} is not a zone id (an interface's name or number)"
        )
    try:
        kind, host, port = _parse_pattern(hostport, None)
    except PinConfigError as exc:
        why = str(exc).removeprefix(f"host pattern {hostport!r}: ")
        raise UserError(
            f"target {target!r} is not an https:// URL, host[:port] or a file: {why}"
        ) from None
    if kind != "exact":
        raise UserError(f"target {target!r}: a wildcard cannot be connected to; name a host")
    if zone and ":" not in host:  # "%" after an IPv4 address, or a name
        raise UserError(f"target {target!r}: only an IPv6 address has a zone id")
    return Endpoint(target, host, 443 if port is None else port, zone)


# An IPv6 literal with a zone id in brackets; groups: the address, the zone id
# with its "%", what follows the bracket. (Linear: no group can end two ways.)
_BRACKETED_ZONE = re.compile(r"\[([^\]%]*)(%[^\]]*)\](.*)", re.DOTALL)
# An interface's name or number, as the resolver takes it after "%".
_ZONE_ID = re.compile(r"%[A-Za-z0-9_.~-]{1,64}")


def _url_hostport(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname  # a ValueError for a bad [IPv6] literal
    except ValueError as exc:
        raise UserError(f"target {url!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() != "https":
        raise UserError(f"target {url!r}: only https:// URLs have certificates to pin")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"target {url!r}: the port is not a number from 1 to 65535") from None
    if not host:
        raise UserError(f"target {url!r}: the URL has no host")
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def classify(target: str) -> Endpoint | str:
    """A file path (str) when ``target`` names an existing file, else an endpoint."""
    if "://" not in target and os.path.isfile(target):
        return target
    if "://" not in target and (os.sep in target or "/" in target):
        why = "not a file" if os.path.exists(target) else "no such file"
        raise UserError(f"cannot read {target!r}: {why}")
    return parse_endpoint(target)


# -- TLS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    """The network options shared by the commands that connect."""

    ca_bundle: str | None
    timeout: float
    insecure: bool


class Unreachable(Exception):
    """No usable TLS handshake with a target; ``status`` is the check status to show.

    ``str()`` names the target (``cannot connect to localhost:1: ...``) for a
    message of its own; ``detail`` does not (``cannot connect: ...``), for a
    line that names the target already, as ``check`` prints them.
    """

    def __init__(self, status: str, message: str, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _default_ca_bundle() -> str:
    """What requests trusts by default: its environment variables, else its bundle."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )


def tls_context(net: Network) -> ssl.SSLContext:
    """A client context that validates against the chosen trust store, or nothing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if net.insecure:
        # Asked for explicitly. Without CA validation anyone on the path can
        # present any chain: only the leaf is what the server (or an attacker)
        # chose to present, and nothing about the rest is proven. The library
        # checks only the leaf when verify=False, and so does `check`.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = net.ca_bundle or _default_ca_bundle()
    try:
        if os.path.isdir(bundle):
            context.load_verify_locations(capath=bundle)
        else:
            context.load_verify_locations(cafile=bundle)
    except ssl.SSLError as exc:
        raise UserError(f"cannot load CA bundle {bundle!r}: {exc.reason or exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read CA bundle {bundle!r}: {exc.strerror or exc}") from None
    return context


def handshake(
    endpoint: Endpoint, context: ssl.SSLContext, timeout: float, *, validating: bool = True
) -> PeerChain:
    """Connect, handshake, and read the chains as the library reads them; then close.

    ``validating``: whether ``context`` was made to validate (not --insecure).
    Raises :class:`Unreachable` when there is no usable handshake.
    """
    label = endpoint.label
    try:
        # The handshake is done inside the `with`, so a failed one still closes
        # the TLS socket (wrap_socket's own handshake could leak it).
        with (
            socket.create_connection(
                (endpoint.host + endpoint.zone, endpoint.port), timeout=timeout
            ) as raw,
            context.wrap_socket(
                raw, server_hostname=endpoint.host, do_handshake_on_connect=False
            ) as tls,
        ):
            tls.do_handshake()
            return _read_chain(tls, endpoint.host, validating)
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or exc.reason or str(exc)
        raise Unreachable(
            "tls_error", f"CA validation failed for {label}: {why}", f"CA validation failed: {why}"
        ) from None
    except ssl.SSLError as exc:
        why = exc.reason or str(exc)
        raise Unreachable(
            "tls_error", f"TLS handshake with {label} failed: {why}", f"TLS handshake failed: {why}"
        ) from None
    except TimeoutError:
        why = f"timed out after {timeout:g} s"
        raise Unreachable("unreachable", f"{label}: {why}", why) from None
    except socket.gaierror as exc:
        why = exc.strerror or str(exc)
        raise Unreachable(
            "unreachable", f"cannot resolve {endpoint.host}: {why}", f"cannot resolve: {why}"
        ) from None
    except UnicodeError as exc:  # the resolver's name encoder refused the address
        why = str(exc)
        raise Unreachable(
            "unreachable", f"cannot resolve {label}: {why}", f"cannot resolve: {why}"
        ) from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise Unreachable(
            "unreachable", f"cannot connect to {label}: {why}", f"cannot connect: {why}"
        ) from None


def _read_chain(tls: ssl.SSLSocket, host: str, validating: bool) -> PeerChain:
    # As the library reads it: a context that may misreport whether its
    # handshake validated (truststore's, also what the name ssl.SSLContext
    # makes once truststore.inject_into_ssl() ran) is not asked, and its
    # chain must hold on its own before a pin on it counts.
    doubt = may_misreport(tls.context)
    try:
        chain = peer_chain(tls, asked=validating and doubt)
        served = chain.served  # read now: the library reads it lazily, and the socket closes
    except ValueError as exc:
        # As in the library: a connection whose chain cannot be read fails.
        return PeerChain(served=(), checked=(), verified=validating, problem=str(exc))
    if doubt:
        proven = vouched(chain, [host])
        if proven is not chain:
            return PeerChain(checked=(), verified=False, served=served, problem=proven.problem)
    return chain


# -- what a target yielded --------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A certificate, or a public key without one, to show and to pin."""

    pin: str
    key: str
    cert: x509.Certificate | None = None
    der: bytes = b""  # the certificate's DER; empty for a bare key
    source: str = "certificate"  # or: public key, private key, certificate request
    note: str = ""


@dataclass(frozen=True)
class Chain:
    """What one target of ``pins`` yielded."""

    name: str
    items: tuple[Item, ...]
    endpoint: Endpoint | None = None  # None for a file
    verified: bool = False


def gather(source: Endpoint | str, net: Network, context: ssl.SSLContext | None) -> Chain:
    """The certificates of a file, or the chain of a host (verified unless --insecure)."""
    if isinstance(source, str):
        return Chain(source, tuple(_read_items(source)))
    assert context is not None
    try:
        chain = handshake(source, context, net.timeout, validating=not net.insecure)
    except Unreachable as exc:
        raise UserError(str(exc), EXIT_FAILED) from None
    if chain.problem is not None:
        raise UserError(f"{source.label}: {chain.problem}", EXIT_FAILED)
    if net.insecure:
        _insecure_warning(source.label)
    certs = chain.checked if chain.verified else chain.served
    items = []
    for position, der in enumerate(certs):
        note = "from the trust store" if position and der not in chain.served else ""
        try:
            items.append(_cert_item(der, note))
        except ValueError:
            raise UserError(
                f"{source.label}: certificate #{position} cannot be parsed", EXIT_FAILED
            ) from None
    return Chain(source.label, tuple(items), source, chain.verified)


def _insecure_warning(label: str) -> None:
    show(
        f"{PROG}: WARNING: --insecure: CA validation is OFF for {label}. Its chain was "
        "NOT verified: anyone on the network path could have sent it. Only the leaf "
        "is meaningful (it is all requests-pinning checks when verify=False), and only "
        "once you have compared its pin with one obtained another way.",
        sys.stderr,
    )


def backup_pin(path: str) -> tuple[str, str]:
    """``(path, pin)`` of a spare key: a PEM public or private key, or a certificate."""
    items = _read_items(path)
    if len(items) != 1:
        raise UserError(
            f"--backup {path!r}: holds {len(items)} certificates or keys; give a file with one"
        )
    return path, items[0].pin


# -- certificates and keys --------------------------------------------------------------


def _cert_item(der: bytes, note: str = "") -> Item:
    """A certificate to show and pin; ``ValueError`` when ``der`` is not one."""
    check_certificate(der)  # as OpenSSL reads it, also where cryptography refuses
    try:
        cert: x509.Certificate | None = x509.load_der_x509_certificate(der)
    except x509.InvalidVersion:  # v2: OpenSSL reads it, cryptography does not
        cert = None
        note = ", ".join(filter(None, [note, "X.509 v2: cryptography cannot parse it"]))
    except ValueError:  # not strict DER: only what the DER walker reads is shown
        cert = None
        note = ", ".join(filter(None, [note, "not strict DER: cryptography cannot parse it"]))
    return Item(sha256_pin(der), _spki_text(spki_of_der_cert(der)), cert, der, note=note)


#: Key algorithms cryptography reads: RSA, RSASSA-PSS, EC, DSA, X25519, X448,
#: Ed25519, Ed448, DH (PKCS #3 and X9.42).
_KNOWN_KEY_OIDS = frozenset(
    {
        "1.2.840.113549.1.1.1",
        "1.2.840.113549.1.1.10",
        "1.2.840.10045.2.1",
        "1.2.840.10040.4.1",
        "1.3.101.110",
        "1.3.101.111",
        "1.3.101.112",
        "1.3.101.113",
        "1.2.840.113549.1.3.1",
        "1.2.840.10046.2.1",
    }
)


def _spki_text(spki: bytes) -> str:
    """What key an SPKI holds. The pin hashes the SPKI as encoded and never needs
    the key, so a key that cryptography cannot load is still pinned, and named
    by its algorithm's OID."""
    try:
        return _key_text(serialization.load_der_public_key(spki))
    except (ValueError, UnsupportedAlgorithm) as exc:
        try:
            oid = spki_algorithm_oid(spki)
        except ValueError:
            return "a key that cannot be read"
        # cryptography before 48 raises ValueError, not UnsupportedAlgorithm,
        # for an algorithm it does not know: the OID tells the two apart.
        if isinstance(exc, UnsupportedAlgorithm) or oid not in _KNOWN_KEY_OIDS:
            return f"unknown key algorithm OID {oid}"
        return f"a key that cannot be read (algorithm OID {oid})"


def _key_item(key: PublicKeyTypes, source: str) -> Item:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Item(spki_pin(spki), _key_text(key), source=source)


def _spki_item(spki: bytes) -> Item:
    """A DER SubjectPublicKeyInfo, pinned exactly as encoded (as spki_pin does)."""
    key = serialization.load_der_public_key(spki)
    try:
        pin = spki_pin(spki)
    except PinConfigError:  # a bare PKCS#1 key: pin its SubjectPublicKeyInfo
        return _key_item(key, "public key")
    return Item(pin, _key_text(key), source="public key")


def _key_text(key: PublicKeyTypes) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}-bit"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}-bit"
    return type(key).__name__


def _private_key_item(der: bytes, path: str) -> Item:
    """The public half of a private key. Private material never reaches a message."""
    try:
        private = serialization.load_der_private_key(der, password=None)
    except TypeError:
        raise UserError(_encrypted(path)) from None
    except (ValueError, UnsupportedAlgorithm):
        # cryptography's message is not shown: nothing derived from the key may leak.
        raise UserError(f"{path!r}: the private key cannot be read") from None
    return _key_item(private.public_key(), "private key")


def _encrypted(path: str) -> str:
    return (
        f"{path!r}: the private key is encrypted; give its certificate or its public "
        "key instead (openssl pkey -in KEY -pubout)"
    )


# -- files ------------------------------------------------------------------------------

_CERT_LABELS = ("CERTIFICATE", "X509 CERTIFICATE")
# What cryptography raises for bytes it cannot read (InvalidVersion is no ValueError).
_UNREADABLE = (ValueError, UnsupportedAlgorithm, x509.InvalidVersion)
_PRIVATE_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY")
_CSR_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")


# Certificate and key files read at most (certifi's whole bundle is 0.3 MiB):
# a device such as /dev/zero given as one is refused, not read until memory ends.
_MAX_CERT_FILE_BYTES = 16 * 1024 * 1024


def _read_items(path: str) -> list[Item]:
    """Every certificate and public key in a PEM or DER file, in file order."""
    try:
        with open(path, "rb") as file:
            data = read_at_most(file, _MAX_CERT_FILE_BYTES)
    except OSError as exc:
        raise UserError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a name open() refuses: a NUL, a lone surrogate
        raise UserError(f"cannot read {path!r}: {exc}") from None
    if data is None:
        raise UserError(
            f"{path!r} is larger than {_MAX_CERT_FILE_BYTES >> 20} MiB: "
            "not a certificate or key file"
        )
    if b"-----BEGIN " in data:
        return _pem_items(path, data)
    return _der_items(path, data)


def _pem_items(path: str, data: bytes) -> list[Item]:
    items: list[Item] = []
    labels = []
    for label, body in iter_pem_blocks(data):
        labels.append(label)
        # An encrypted key is refused before its body is decoded: legacy
        # encrypted PEM carries headers that are not base64.
        if "ENCRYPTED" in label or (b"Proc-Type:" in body and b"ENCRYPTED" in body):
            raise UserError(_encrypted(path))
        try:
            der = decode_pem_body(body)
        except binascii.Error:
            raise UserError(f"{path!r}: the PEM {label} block is not valid base64") from None
        items.extend(_pem_block_items(path, label, der))
    if not items:
        found = ", ".join(labels) or "no complete PEM block"
        raise UserError(f"{path!r}: no certificate or key to pin (found: {found})")
    return items


def _pem_block_items(path: str, label: str, der: bytes) -> list[Item]:
    try:
        if label in _CERT_LABELS:
            return [_cert_item(der)]
        if label == "PUBLIC KEY":
            return [_spki_item(der)]
        if label == "RSA PUBLIC KEY":
            return [_key_item(serialization.load_der_public_key(der), "public key")]
        if label in _PRIVATE_LABELS:
            return [_private_key_item(der, path)]
        if label in _CSR_LABELS:
            request = x509.load_der_x509_csr(der)
            return [_key_item(request.public_key(), "certificate request")]
        if label == "PKCS7":
            return _pkcs7_items(der)
    except _UNREADABLE:
        raise UserError(f"{path!r}: the PEM {label} block cannot be read") from None
    return []  # other blocks (CRLs, parameters...) have nothing to pin


def _pkcs7_items(der: bytes) -> list[Item]:
    certs = pkcs7.load_der_pkcs7_certificates(der)
    return [_cert_item(cert.public_bytes(serialization.Encoding.DER)) for cert in certs]


def _der_items(path: str, data: bytes) -> list[Item]:
    try:
        certs = split_der_certificates(data)
    except ValueError:
        certs = []
    if certs:
        return [_cert_item(der) for der in certs]
    try:
        return [_spki_item(data)]
    except _UNREADABLE:
        pass
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise UserError(_encrypted(path)) from None
    except _UNREADABLE:
        pass
    else:
        return [_private_key_item(data, path)]
    try:
        return _pkcs7_items(data)
    except _UNREADABLE:
        pass
    raise UserError(
        f"{path!r} is neither a PEM or DER certificate or chain, nor a public or private key"
    )
