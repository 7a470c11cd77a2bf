"""The ``requests-pinning`` command: find, check and lint pins, and a demo.

Errors go to stderr as one line (``requests-pinning: error: ...``); no
tracebacks for user errors. ``--json`` output is the JSON alone on stdout;
warnings and reminders go to stderr. Nothing is fetched from the network
except the targets named on the command line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import os
import re
import socket
import ssl
import sys
import textwrap
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NoReturn

import requests.utils
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7

from . import _demo
from ._certs import cert_digest, describe_name, format_fingerprint, sha256_pin, spki_pin
from ._errors import PinConfigError
from ._pins import Pin
from ._pinset import HostPins, PinSet, _parse_pattern
from ._suffixes import is_public_suffix
from ._urllib3 import peer_chain
from ._verify import PeerChain, evaluate

__all__ = ["main"]

PROG = "requests-pinning"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_EPILOG = """\
examples:
  requests-pinning pins https://api.example.com/          show the chain and its pins
  requests-pinning pins --json --backup spare.pub api.example.com > pins.json
  requests-pinning pins fullchain.pem                     pins of a certificate file
  requests-pinning check pins.json api.example.com        does the server match its pins?
  requests-pinning lint pins.json                         single pins, expiry, mistakes
  requests-pinning demo                                   see pinning stop a rogue CA, offline

exit status: 0 success, 1 a check failed / lint warned / a target was
unreachable, 2 usage or configuration error.
"""

_PINS_EPILOG = """\
A TARGET is an https:// URL, host[:port] (IPv6: [2001:db8::1]:8443), or a
file: a PEM or DER certificate or chain (also PKCS#7), a PEM or DER public
key, a certificate request, or an unencrypted private key, of which only the
public half is used (private material is never printed). A TARGET naming an
existing file is read as that file; write https://NAME to mean the host.

For a host, the connection is made with CA validation on, against
--ca-bundle, else $REQUESTS_CA_BUNDLE, else $CURL_CA_BUNDLE, else the bundle
requests uses by default; the verified chain, root included, is printed.

--json prints a pin-file entry that PinSet.load accepts. It pins the
intermediate and root keys, not the leaf (the certificate that changes most
often); where there is nothing else (a self-signed certificate, a key, or
--insecure) it pins the leaf and says so. Always add a backup pin: the key of
a spare key pair kept offline (--backup). The entry's key is the host for
port 443 and host:port otherwise; for a file, give it with --host.

examples:
  requests-pinning pins https://api.example.com/
  requests-pinning pins api.example.com:8443 [2001:db8::1]:443
  requests-pinning pins --json --backup spare-key.pem api.example.com > pins.json
  requests-pinning pins --json --host api.example.com fullchain.pem
  requests-pinning pins --insecure self-signed.internal:8443

exit status: 0 success, 1 a host was unreachable or failed CA validation,
2 usage error or unreadable file.
"""

_CHECK_EPILOG = """\
Each TARGET (an https:// URL or host[:port]) is checked as requests-pinning
would check it if its entry in PINFILE were enforced: report-only and
expired entries are checked anyway, and their state is shown. A target with
no entry, an unreachable target and a failed CA validation all fail.

--json prints a list with one object per target: target, host, port, ok,
status ("matched", "failed", or "unreachable" / "tls_error" when there was
no usable handshake), reason, pattern, matched, pinned, denied, verified,
checked and served (each a list of {pin, subject}), expires,
expires_in_days, report_only, expired, report_uri.

examples:
  requests-pinning check pins.json api.example.com https://cdn.example.com/
  requests-pinning check --json pins.json api.example.com | your-monitoring
  requests-pinning check --ca-bundle corp-ca.pem pins.json intranet.example:8443

exit status: 0 every target passed, 1 any target failed, 2 usage error or a
pin file that does not load.
"""

_LINT_EPILOG = """\
PINFILE is loaded exactly as the library loads it; if that fails, the error
is printed and the exit status is 2. Then each of these is one warning, one
line on stdout:

  single-pin      an entry with only one pin: no backup pin, the most common
                  cause of bricked clients (entries of deny pins only are fine)
  expired         an entry that has expired (it is no longer enforced, and
                  broader entries do not apply to its hosts either)
  expires-soon    an entry that expires within --warn-days days
  public-suffix   a *. or **. (include_subdomains) entry over a public suffix,
                  such as *.com or **.co.uk (a built-in list of common ones)
  override        a more specific entry that takes precedence over a broader
                  one where both apply, and lacks some of its pins (or deny
                  pins): its pins replace, not add to, the broader entry's.
                  (No entry can be shadowed completely: the same pattern
                  twice is a load error, and any other entry is still the
                  one that applies to some host or port. An override is the
                  shadowing that bites.)
  duplicate-pin   a pin listed twice in one entry, also in two spellings
                  (sha256/X and sha256//X), or in both pins and deny
  sha1-pin        a SHA-1 pin (sha1/... or a 40-digit fingerprint)

examples:
  requests-pinning lint pins.json
  requests-pinning lint --warn-days 60 --json pins.json
  requests-pinning lint --warnings-ok pins.json     # report, but exit 0

exit status: 0 no warnings (or --warnings-ok), 1 warnings, 2 the file does
not load.
"""

_DEMO_EPILOG = """\
examples:
  requests-pinning demo
  python -m requests_pinning demo
"""


class _UserError(Exception):
    """A problem to report as one line on stderr, and the exit status it means."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class _Unreachable(Exception):
    """No usable TLS handshake with a target; ``status`` is the check status to show."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in the command's one-line format."""

    def error(self, message: str) -> NoReturn:
        _error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# -- targets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    """A host to connect to: ``host`` normalised (A-labels, lower case, bare IPv6)."""

    target: str
    host: str
    port: int

    @property
    def label(self) -> str:
        """``host:port``, with IPv6 in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """The pin-file key for this endpoint: the host for port 443, else host:port."""
        if self.port == 443:
            return self.host
        return self.label


def _parse_endpoint(target: str) -> _Endpoint:
    """Parse an ``https://`` URL or ``host[:port]``, with the pin file's own host rules."""
    hostport = target
    if "://" in target:
        hostport = _url_hostport(target)
    try:
        kind, host, port = _parse_pattern(hostport, None)
    except PinConfigError as exc:
        why = str(exc).removeprefix(f"host pattern {hostport!r}: ")
        raise _UserError(
            f"target {target!r} is not an https:// URL, host[:port] or a file: {why}"
        ) from None
    if kind != "exact":
        raise _UserError(f"target {target!r}: a wildcard cannot be connected to; name a host")
    return _Endpoint(target, host, 443 if port is None else port)


def _url_hostport(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "https":
        raise _UserError(f"target {url!r}: only https:// URLs have certificates to pin")
    try:
        port = parts.port
    except ValueError:
        raise _UserError(f"target {url!r}: the port is not a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise _UserError(f"target {url!r}: the URL has no host")
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _classify(target: str) -> _Endpoint | str:
    """A file path (str) when ``target`` names an existing file, else an endpoint."""
    if "://" not in target and os.path.isfile(target):
        return target
    if "://" not in target and (os.sep in target or "/" in target):
        why = "not a file" if os.path.exists(target) else "no such file"
        raise _UserError(f"cannot read {target!r}: {why}")
    return _parse_endpoint(target)


# -- TLS --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Network:
    """The network options shared by the commands that connect."""

    ca_bundle: str | None
    timeout: float
    insecure: bool


def _network(args: argparse.Namespace) -> _Network:
    return _Network(args.ca_bundle, args.timeout, args.insecure)


def _default_ca_bundle() -> str:
    """What requests trusts by default: its environment variables, else its bundle."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )


def _tls_context(net: _Network) -> ssl.SSLContext:
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
        raise _UserError(f"cannot load CA bundle {bundle!r}: {exc.reason or exc}") from None
    except OSError as exc:
        raise _UserError(f"cannot read CA bundle {bundle!r}: {exc.strerror or exc}") from None
    return context


def _handshake(endpoint: _Endpoint, context: ssl.SSLContext, timeout: float) -> PeerChain:
    """Connect, handshake, and read the chains as the library reads them; then close."""
    label = endpoint.label
    try:
        # The handshake is done inside the `with`, so a failed one still closes
        # the TLS socket (wrap_socket's own handshake could leak it).
        with (
            socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw,
            context.wrap_socket(
                raw, server_hostname=endpoint.host, do_handshake_on_connect=False
            ) as tls,
        ):
            tls.do_handshake()
            return _read_chain(tls)
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or exc.reason or str(exc)
        raise _Unreachable("tls_error", f"CA validation failed for {label}: {why}") from None
    except ssl.SSLError as exc:
        why = exc.reason or str(exc)
        raise _Unreachable("tls_error", f"TLS handshake with {label} failed: {why}") from None
    except TimeoutError:
        raise _Unreachable("unreachable", f"{label}: timed out after {timeout:g} s") from None
    except socket.gaierror as exc:
        why = exc.strerror or str(exc)
        raise _Unreachable("unreachable", f"cannot resolve {endpoint.host}: {why}") from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise _Unreachable("unreachable", f"cannot connect to {label}: {why}") from None


def _read_chain(tls: ssl.SSLSocket) -> PeerChain:
    try:
        return peer_chain(tls)
    except ValueError as exc:
        # As in the library: a connection whose chain cannot be read fails.
        verified = tls.context.verify_mode != ssl.CERT_NONE
        return PeerChain(served=(), checked=(), verified=verified, problem=str(exc))


# -- certificates and keys --------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """A certificate, or a public key without one, to show and to pin."""

    pin: str
    key: str
    cert: x509.Certificate | None = None
    der: bytes = b""  # the certificate's DER; empty for a bare key
    source: str = "certificate"  # or: public key, private key, certificate request
    note: str = ""


def _cert_item(der: bytes, note: str = "") -> _Item:
    cert = x509.load_der_x509_certificate(der)
    return _Item(sha256_pin(der), _key_text(cert.public_key()), cert, der, note=note)


def _key_item(key: PublicKeyTypes, source: str) -> _Item:
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _Item(spki_pin(spki), _key_text(key), source=source)


def _spki_item(spki: bytes) -> _Item:
    """A DER SubjectPublicKeyInfo, pinned exactly as encoded (as spki_pin does)."""
    key = serialization.load_der_public_key(spki)
    try:
        pin = spki_pin(spki)
    except PinConfigError:  # a bare PKCS#1 key: pin its SubjectPublicKeyInfo
        return _key_item(key, "public key")
    return _Item(pin, _key_text(key), source="public key")


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


def _private_key_item(der: bytes, path: str) -> _Item:
    """The public half of a private key. Private material never reaches a message."""
    try:
        private = serialization.load_der_private_key(der, password=None)
    except TypeError:
        raise _UserError(_encrypted(path)) from None
    except (ValueError, UnsupportedAlgorithm):
        # cryptography's message is not shown: nothing derived from the key may leak.
        raise _UserError(f"{path!r}: the private key cannot be read") from None
    return _key_item(private.public_key(), "private key")


def _encrypted(path: str) -> str:
    return (
        f"{path!r}: the private key is encrypted; give its certificate or its public "
        "key instead (openssl pkey -in KEY -pubout)"
    )


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----(.*?)-----END \1-----", re.DOTALL)
_CERT_LABELS = ("CERTIFICATE", "X509 CERTIFICATE")
_PRIVATE_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY")
_CSR_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")


def _read_items(path: str) -> list[_Item]:
    """Every certificate and public key in a PEM or DER file, in file order."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise _UserError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN " in data:
        return _pem_items(path, data)
    return _der_items(path, data)


def _pem_items(path: str, data: bytes) -> list[_Item]:
    items: list[_Item] = []
    labels = []
    for match in _PEM_BLOCK.finditer(data):
        label = match.group(1).decode("ascii")
        labels.append(label)
        body = match.group(2)
        if "ENCRYPTED" in label or (b"Proc-Type:" in body and b"ENCRYPTED" in body):
            raise _UserError(_encrypted(path))
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise _UserError(f"{path!r}: the PEM {label} block is not valid base64") from None
        items.extend(_pem_block_items(path, label, der))
    if not items:
        found = ", ".join(labels) or "no complete PEM block"
        raise _UserError(f"{path!r}: no certificate or key to pin (found: {found})")
    return items


def _pem_block_items(path: str, label: str, der: bytes) -> list[_Item]:
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
            return [_cert_item(_der(cert)) for cert in pkcs7.load_der_pkcs7_certificates(der)]
    except (ValueError, UnsupportedAlgorithm):
        raise _UserError(f"{path!r}: the PEM {label} block cannot be read") from None
    return []  # other blocks (CRLs, parameters...) have nothing to pin


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _der_items(path: str, data: bytes) -> list[_Item]:
    certs = _split_der_certs(data)
    if certs:
        return [_cert_item(der) for der in certs]
    try:
        return [_spki_item(data)]
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise _UserError(_encrypted(path)) from None
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        return [_private_key_item(data, path)]
    try:
        return [_cert_item(_der(cert)) for cert in pkcs7.load_der_pkcs7_certificates(data)]
    except (ValueError, UnsupportedAlgorithm):
        pass
    raise _UserError(
        f"{path!r} is neither a PEM or DER certificate or chain, nor a public or private key"
    )


def _split_der_certs(data: bytes) -> list[bytes] | None:
    """Concatenated DER certificates, or None when ``data`` is anything else."""
    certs = []
    offset = 0
    while offset < len(data):
        end = _der_end(data, offset)
        if end is None:
            return None
        try:
            x509.load_der_x509_certificate(data[offset:end])
        except ValueError:
            return None
        certs.append(data[offset:end])
        offset = end
    return certs or None


def _der_end(data: bytes, offset: int) -> int | None:
    """Where the DER SEQUENCE starting at ``offset`` ends, or None."""
    if offset + 2 > len(data) or data[offset] != 0x30:
        return None
    first, start = data[offset + 1], offset + 2
    length = first
    if first >= 0x80:
        count = first & 0x7F
        if not 1 <= count <= 4 or start + count > len(data):
            return None
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    return end if end <= len(data) else None


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return _self_issued(cert)  # an old root without extensions
    except ValueError:
        return False


# -- pins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chain:
    """What one target of ``pins`` yielded."""

    name: str
    items: tuple[_Item, ...]
    endpoint: _Endpoint | None = None  # None for a file
    verified: bool = False


def _gather(source: _Endpoint | str, net: _Network, context: ssl.SSLContext | None) -> _Chain:
    if isinstance(source, str):
        return _Chain(source, tuple(_read_items(source)))
    assert context is not None
    try:
        chain = _handshake(source, context, net.timeout)
    except _Unreachable as exc:
        raise _UserError(str(exc), EXIT_FAILED) from None
    if chain.problem is not None:
        raise _UserError(f"{source.label}: {chain.problem}", EXIT_FAILED)
    if net.insecure:
        _insecure_warning(source.label)
    certs = chain.checked if chain.verified else chain.served
    items = []
    for position, der in enumerate(certs):
        note = "from the trust store" if position and der not in chain.served else ""
        try:
            items.append(_cert_item(der, note))
        except ValueError:
            raise _UserError(
                f"{source.label}: certificate #{position} cannot be parsed", EXIT_FAILED
            ) from None
    return _Chain(source.label, tuple(items), source, chain.verified)


def _insecure_warning(label: str) -> None:
    print(
        f"{PROG}: WARNING: --insecure: CA validation is OFF for {label}. Its chain was "
        "NOT verified: anyone on the network path could have sent it. Only the leaf "
        "is meaningful (it is all requests-pinning checks when verify=False), and only "
        "once you have compared its pin with one obtained another way.",
        file=sys.stderr,
    )


def _role(chain: _Chain, position: int, item: _Item) -> str:
    if item.cert is None:
        if item.source == "public key":
            return "public key"
        return f"public key of a {item.source} (only the public half is shown)"
    cert = item.cert
    if chain.endpoint is not None and position == 0:
        role = "leaf, self-signed" if _self_issued(cert) else "leaf"
    elif not _is_ca(cert):
        role = "leaf"
    else:
        role = "root" if _self_issued(cert) else "intermediate"
    return f"{role}, {item.note}" if item.note else role


def _print_chain(chain: _Chain, now: datetime) -> None:
    if chain.endpoint is None:
        header = f"{chain.name}: {len(chain.items)} certificate(s) or key(s), in file order"
    elif chain.verified:
        header = f"{chain.name}: verified chain, leaf first (CA validation on)"
    else:
        header = f"{chain.name}: UNVERIFIED chain as served, leaf first (CA validation OFF)"
    print(header)
    for position, item in enumerate(chain.items):
        print()
        print(f"  #{position}  {_role(chain, position, item)}")
        for label, value in _item_rows(item, now):
            print(f"      {label:<12} {value}")


def _item_rows(item: _Item, now: datetime) -> list[tuple[str, str]]:
    rows = []
    if item.cert is not None:
        cert = item.cert
        rows += [
            ("subject", describe_name(item.der)),
            ("issuer", _name_text(cert.issuer)),
            ("expires", _expiry_text(cert.not_valid_after_utc, now)),
        ]
    rows += [("key", item.key), ("spki pin", item.pin)]
    if item.cert is not None:
        rows.append(("cert sha256", format_fingerprint(cert_digest(item.der))))
    return rows


def _name_text(name: x509.Name) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(list(name.rdns))) or "(empty)"


def _days_until(moment: datetime, now: datetime) -> int:
    return math.floor((moment - now).total_seconds() / 86400)


def _expiry_text(moment: datetime, now: datetime) -> str:
    when = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    days = _days_until(moment, now)
    if moment < now:
        return f"{when} (EXPIRED {-days} days ago)"
    return f"{when} (in {days} days)"


def _entry_pins(chain: _Chain) -> tuple[list[str], str | None]:
    """The pins ``--json`` proposes for one target, and a warning when only the leaf fits."""
    items = list(chain.items)
    if chain.endpoint is not None and not chain.verified:
        # --insecure: the intermediates were never verified, and the library
        # checks only the leaf when verify=False; pinning the unverified rest
        # would pin whatever was sent, and could never match anyway.
        return [items[0].pin], (
            f"{chain.name}: pinned the leaf only: without CA validation requests-pinning "
            "checks only the leaf (verify=False); a new key on renewal breaks this pin"
        )
    if chain.endpoint is not None:
        rest = items[1:]
    else:
        rest = [item for item in items if item.cert is not None and _is_ca(item.cert)]
    if rest:
        return [item.pin for item in rest], None
    return [item.pin for item in items], (
        f"{chain.name}: no CA certificate to pin (a self-signed certificate or a bare key): "
        "pinned the leaf itself, which changes whenever its key is replaced"
    )


def _backup_pin(path: str) -> tuple[str, str]:
    """``(path, pin)`` of a spare key: a PEM public or private key, or a certificate."""
    items = _read_items(path)
    if len(items) != 1:
        raise _UserError(
            f"--backup {path!r}: holds {len(items)} certificates or keys; give a file with one"
        )
    return path, items[0].pin


def _pins_json(
    chains: list[_Chain], host: str | None, backups: list[tuple[str, str]]
) -> dict[str, Any]:
    entries: dict[str, list[str]] = {}
    for chain in chains:
        key = host or (chain.endpoint.key if chain.endpoint else chain.name)
        pins, warning = _entry_pins(chain)
        if warning:
            _warn(warning)
        known = entries.setdefault(key, [])
        known += [pin for pin in pins if pin not in known]
    for key, pins in entries.items():
        for path, pin in backups:
            if pin in pins:
                _warn(f"--backup {path!r} is already pinned for {key}: a backup must be unused")
            else:
                pins.append(pin)
    return {key: {"pins": pins} for key, pins in entries.items()}


def _cmd_pins(args: argparse.Namespace) -> int:
    sources = [_classify(target) for target in args.targets]
    if args.json and args.host is None and any(isinstance(s, str) for s in sources):
        raise _UserError("pins --json needs --host NAME for a file target (the entry's key)")
    if args.host is not None:
        PinSet.from_dict({args.host: [_DUMMY_PIN]})  # a PinConfigError says what is wrong
    backups = [_backup_pin(path) for path in args.backup]
    net = _network(args)
    needs_tls = any(isinstance(source, _Endpoint) for source in sources)
    context = _tls_context(net) if needs_tls else None
    chains = [_gather(source, net, context) for source in sources]
    if args.json:
        config = _pins_json(chains, args.host, backups)
        PinSet.from_dict(config)  # what is printed must load
        print(json.dumps(config, indent=2))
        if not backups:
            _reminder()
        return EXIT_OK
    now = datetime.now(timezone.utc)
    for index, chain in enumerate(chains):
        if index:
            print()
        _print_chain(chain, now)
    if backups:
        print()
        print("backup pins:")
        for path, pin in backups:
            print(f"  {pin}  ({path})")
    return EXIT_OK


def _reminder() -> None:
    print(
        f"{PROG}: reminder: add a backup pin (--backup KEYFILE): the public key of a spare "
        "key pair kept offline, so that clients keep working when the pinned keys change",
        file=sys.stderr,
    )


_DUMMY_PIN = "sha256/" + base64.b64encode(bytes(32)).decode("ascii")


# -- check ------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    pinset = PinSet.from_json(args.pinfile)
    endpoints = [_parse_endpoint(target) for target in args.targets]
    net = _network(args)
    context = _tls_context(net)
    if net.insecure:
        _warn(
            "--insecure: CA validation is OFF: only the leaf certificate is checked, as "
            "the library does with verify=False; intermediate and root pins cannot match"
        )
    now = datetime.now(timezone.utc)
    records = [_check_one(pinset, endpoint, context, net.timeout, now) for endpoint in endpoints]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        _print_checks(records)
    return EXIT_OK if all(record["ok"] for record in records) else EXIT_FAILED


def _check_one(
    pinset: PinSet, endpoint: _Endpoint, context: ssl.SSLContext, timeout: float, now: datetime
) -> dict[str, Any]:
    """Check one target as if its entry were enforced; the result as a JSON-able record."""
    entry = pinset.match(endpoint.host, endpoint.port)
    try:
        chain = _handshake(endpoint, context, timeout)
    except _Unreachable as exc:
        reason = str(exc)
        if entry is None:
            reason += f"; and no pins are configured for {endpoint.label}"
        return _record(endpoint, entry, None, exc.status, reason, None, now)
    if entry is None:
        reason = f"no pins configured for {endpoint.label}"
        return _record(endpoint, None, chain, "failed", reason, None, now)
    # Report-only and expired entries are judged as if enforced: monitoring
    # must see a breakage before the entry is switched on, or renewed.
    verdict = evaluate(entry, chain, allow_unpinned=False, now=now, ignore_expiry=True)
    return _record(endpoint, entry, chain, verdict.status, verdict.reason, verdict.matched, now)


def _record(
    endpoint: _Endpoint,
    entry: HostPins | None,
    chain: PeerChain | None,
    status: str,
    reason: str,
    matched: Pin | None,
    now: datetime,
) -> dict[str, Any]:
    expires = entry.expires if entry is not None else None
    checked = chain.checked if chain is not None else ()
    matched_der = next((der for der in checked if matched and matched.matches(der)), None)
    return {
        "target": endpoint.target,
        "host": endpoint.host,
        "port": endpoint.port,
        "ok": status not in ("failed", "unreachable", "tls_error"),
        "status": status,
        "reason": reason,
        "pattern": entry.pattern if entry is not None else None,
        "matched": str(matched) if matched is not None else None,
        "matched_subject": describe_name(matched_der) if matched_der else None,
        "pinned": [str(pin) for pin in entry.pins] if entry is not None else [],
        "denied": [str(pin) for pin in getattr(entry, "deny", ())],
        "verified": chain.verified if chain is not None else None,
        "checked": _described(checked),
        "served": _described(chain.served if chain is not None else ()),
        "expires": expires.isoformat() if expires is not None else None,
        "expires_in_days": _days_until(expires, now) if expires is not None else None,
        "report_only": bool(entry is not None and entry.report_only),
        "expired": bool(entry is not None and entry.is_expired(now)),
        "report_uri": getattr(entry, "report_uri", None),
    }


def _described(chain: Iterable[bytes]) -> list[dict[str, str]]:
    result = []
    for der in chain:
        try:
            pin = sha256_pin(der)
        except ValueError:
            pin = "(unparseable certificate)"
        result.append({"pin": pin, "subject": describe_name(der)})
    return result


def _print_checks(records: list[dict[str, Any]]) -> None:
    for record in records:
        target = _Endpoint(record["target"], record["host"], record["port"]).label
        print(f"PASS  {target}" if record["ok"] else f"FAIL  {target}: {record['reason']}")
        for label, value in _check_rows(record):
            print(f"      {label:<9} {value}")
        if not record["ok"] and record["checked"]:
            state = "verified chain" if record["verified"] else "leaf only: CA validation is off"
            print(f"      the server presents ({state}, leaf first):")
            for cert in record["checked"]:
                print(f"        {cert['pin']}  {cert['subject']}")
    passed = sum(1 for record in records if record["ok"])
    print(f"{len(records)} target(s): {passed} passed, {len(records) - passed} failed")


def _check_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if record["matched"]:
        rows.append(("matched", f"{record['matched']}  {record['matched_subject'] or ''}"))
    if record["pattern"] is not None:
        rows.append(("entry", f"{record['pattern']} ({_entry_state(record)})"))
    if not record["ok"]:
        rows += [("pinned", pin) for pin in record["pinned"]]
        rows += [("denied", pin) for pin in record["denied"]]
    return rows


def _entry_state(record: dict[str, Any]) -> str:
    if record["expired"]:
        state = "EXPIRED: not enforced by the library"
    elif record["report_only"]:
        state = "report-only: failures are logged, connections proceed"
    else:
        state = "enforced"
    if record["expires"] is None:
        return f"{state}; no expiry"
    days = record["expires_in_days"]
    when = record["expires"][:10]
    if record["expired"]:
        return f"{state}; expired {when}, {-days} days ago"
    return f"{state}; expires {when}, in {days} days"


# -- lint -------------------------------------------------------------------------------


_PatternKey = tuple[str, str, int | None]  # (kind, host, port), as _parse_pattern says


@dataclass(frozen=True)
class _LintWarning:
    code: str
    pattern: str
    message: str


def _cmd_lint(args: argparse.Namespace) -> int:
    pinset = PinSet.from_json(args.pinfile)  # exactly as the library loads it
    now = datetime.now(timezone.utc)
    found = [
        *_lint_entries(pinset, now, args.warn_days),
        *_lint_raw(args.pinfile),
        *_lint_overrides(pinset),
    ]
    order = {entry.pattern: index for index, entry in enumerate(pinset)}
    found.sort(key=lambda warning: order.get(warning.pattern, len(order)))
    if args.json:
        report = {
            "file": args.pinfile,
            "entries": len(pinset),
            "ok": not found,
            "warnings": [vars(warning) for warning in found],
        }
        print(json.dumps(report, indent=2))
    else:
        for warning in found:
            print(f"{args.pinfile}: {warning.pattern}: {warning.message} [{warning.code}]")
        print(f"{args.pinfile}: {len(pinset)} entries, {len(found)} warning(s)")
    return EXIT_FAILED if found and not args.warnings_ok else EXIT_OK


def _lint_entries(pinset: PinSet, now: datetime, warn_days: int) -> Iterator[_LintWarning]:
    for entry in pinset:
        yield from _single_pin(entry)
        yield from _expiry(entry, now, warn_days)
        yield from _public_suffix(entry)
        yield from _sha1(entry)


def _single_pin(entry: HostPins) -> Iterator[_LintWarning]:
    # An entry with deny pins only has nothing to brick: it is not warned about.
    if len(entry.pins) == 1:
        yield _LintWarning(
            "single-pin",
            entry.pattern,
            "only one pin: add a backup pin (the key of a spare key pair kept offline, "
            "or another CA key of the chain), or clients break when that key changes",
        )


def _expiry(entry: HostPins, now: datetime, warn_days: int) -> Iterator[_LintWarning]:
    if entry.expires is None:
        return
    when = entry.expires.strftime("%Y-%m-%d %H:%M:%S UTC")
    days = _days_until(entry.expires, now)
    if entry.is_expired(now):
        yield _LintWarning(
            "expired",
            entry.pattern,
            f"expired {when} ({-days} days ago): it is no longer enforced, and broader "
            "entries do not apply to its hosts either",
        )
    elif entry.expires - now <= timedelta(days=warn_days):
        yield _LintWarning(
            "expires-soon",
            entry.pattern,
            f"expires {when} (in {days} days): renew it, or its hosts lose pinning",
        )


def _public_suffix(entry: HostPins) -> Iterator[_LintWarning]:
    kind, host, _port = _parse_pattern(entry.pattern, None)
    if kind != "exact" and is_public_suffix(host):
        yield _LintWarning(
            "public-suffix",
            entry.pattern,
            f"a wildcard over the public suffix {host!r}: it pins every site registered "
            "under it, not only yours",
        )


def _sha1(entry: HostPins) -> Iterator[_LintWarning]:
    deny: tuple[Pin, ...] = getattr(entry, "deny", ())
    for pin in (*entry.pins, *deny):
        if pin.algorithm == "sha1":
            what = "SPKI pin" if pin.kind == "spki" else "certificate fingerprint"
            yield _LintWarning(
                "sha1-pin",
                entry.pattern,
                f"SHA-1 {what} {pin}: SHA-1 is broken; use a sha256/ SPKI pin",
            )


def _lint_raw(path: str) -> Iterator[_LintWarning]:
    """Duplicate pins, seen in the file itself: loading merges them silently."""
    with open(path, "rb") as file:  # it just loaded: it can be read
        config = json.loads(file.read().decode("utf-8-sig"))
    for raw_key, value in config.items():
        pattern = next(iter(PinSet.from_dict({raw_key: value}))).pattern
        lists = {"pins": value} if isinstance(value, list) else value
        yield from _duplicates(pattern, {name: lists.get(name) for name in ("pins", "deny")})


def _duplicates(pattern: str, lists: dict[str, Any]) -> Iterator[_LintWarning]:
    seen: dict[Pin, tuple[str, str]] = {}
    for name, texts in lists.items():
        for text in texts if isinstance(texts, list) else ():
            try:
                pin = Pin.parse(text)
            except ValueError:
                continue
            if pin not in seen:
                seen[pin] = (name, text)
                continue
            first_name, first_text = seen[pin]
            if first_name != name:
                message = f"pin {pin} is in both pins and deny"
            elif first_text.strip() == text.strip():
                message = f"pin {pin} is listed twice"
            else:
                message = f"pin {pin} is listed twice, as {first_text!r} and {text!r}"
            yield _LintWarning("duplicate-pin", pattern, message)


def _lint_overrides(pinset: PinSet) -> Iterator[_LintWarning]:
    """More specific entries whose pins replace some of a broader entry's, where both apply.

    Precedence is asked of the library itself: for each pair of entries whose
    host sets may overlap, sample hosts and ports from both patterns and see
    which entry ``PinSet.match`` picks where both would apply.
    """
    entries = list(pinset)
    keys: dict[str, _PatternKey] = {
        entry.pattern: _parse_pattern(entry.pattern, None) for entry in entries
    }
    alone = {entry.pattern: PinSet.from_dict({entry.pattern: [_DUMMY_PIN]}) for entry in entries}
    by_name: dict[str, list[HostPins]] = {}
    for entry in entries:
        by_name.setdefault(keys[entry.pattern][1], []).append(entry)
    done: set[frozenset[str]] = set()
    for entry in entries:
        for name in _parents(keys[entry.pattern][1]):
            for other in by_name.get(name, ()):
                pair = frozenset((entry.pattern, other.pattern))
                if other is entry or pair in done:
                    continue
                done.add(pair)
                yield from _override(entry, other, keys, alone)


def _parents(name: str) -> Iterator[str]:
    """``name`` and each of its parent domains."""
    while name:
        yield name
        name = name.partition(".")[2]


def _override(
    a: HostPins,
    b: HostPins,
    keys: dict[str, _PatternKey],
    alone: dict[str, PinSet],
) -> Iterator[_LintWarning]:
    winner = _winner(a, b, keys, alone)
    if winner is None:
        return
    loser = b if winner is a else a
    lost = [pin for pin in loser.pins if pin not in winner.pins]
    winner_deny: tuple[Pin, ...] = getattr(winner, "deny", ())
    lost_deny = [pin for pin in getattr(loser, "deny", ()) if pin not in winner_deny]
    if not lost and not lost_deny:
        return
    parts = []
    if lost:
        parts.append(f"{len(lost)} of its {len(loser.pins)} pins are not accepted there")
    if lost_deny:
        parts.append(f"{len(lost_deny)} of its deny pins are not applied there")
    yield _LintWarning(
        "override",
        winner.pattern,
        f"overrides {loser.pattern} where both apply, and its pins replace, not add to, "
        f"those of {loser.pattern}: {'; '.join(parts)}",
    )


def _winner(
    a: HostPins,
    b: HostPins,
    keys: dict[str, _PatternKey],
    alone: dict[str, PinSet],
) -> HostPins | None:
    """The entry ``PinSet.match`` picks where both apply, or None if they never overlap."""
    (_, name_a, port_a), (_, name_b, port_b) = keys[a.pattern], keys[b.pattern]
    names = {name_a, name_b, f"sample.{name_a}", f"sample.{name_b}"}
    ports = {port for port in (port_a, port_b) if port is not None}
    ports.add(next(port for port in (443, 8443, 4443) if port not in ports))
    both = PinSet.from_dict({a.pattern: [_DUMMY_PIN], b.pattern: [_DUMMY_PIN]})
    for name in sorted(names):
        for port in sorted(ports):
            if alone[a.pattern].match(name, port) and alone[b.pattern].match(name, port):
                found = both.match(name, port)
                return a if found is not None and found.pattern == a.pattern else b
    return None


# -- the command line -------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _network_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("network options")
    group.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="trust the CAs in FILE (PEM; or a directory of hashed certificates) instead "
        "of requests' default ($REQUESTS_CA_BUNDLE, $CURL_CA_BUNDLE, or its bundle)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="for connecting and the TLS handshake (default: 10)",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="turn CA validation off: the chain is then unverified and only the leaf "
        "is meaningful (as with verify=False)",
    )
    return parent


def _subparser(
    commands: Any, name: str, help_text: str, description: str, epilog: str, **kwargs: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=textwrap.fill(description, 79),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def _add_pins(commands: Any, network: argparse.ArgumentParser) -> None:
    parser = _subparser(
        commands,
        "pins",
        "show the certificate chain of hosts or files, and their pins",
        "Show the certificate chain of each TARGET, leaf first, with each "
        "certificate's subject, issuer, expiry, sha256/ SPKI pin and SHA-256 "
        "fingerprint; or, with --json, a pin-file entry to start from.",
        _PINS_EPILOG,
        parents=[network],
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="URL, host[:port] or file")
    parser.add_argument("--json", action="store_true", help="print a pin-file entry as JSON")
    parser.add_argument(
        "--host",
        metavar="NAME",
        help="the host pattern to use as the entry's key in --json output "
        "(required for file targets)",
    )
    parser.add_argument(
        "--backup",
        action="append",
        default=[],
        metavar="KEYFILE",
        help="also pin this spare key (PEM public or private key, or a certificate); "
        "may be repeated",
    )
    parser.set_defaults(handler=_cmd_pins)


def _add_check(commands: Any, network: argparse.ArgumentParser) -> None:
    parser = _subparser(
        commands,
        "check",
        "check that servers match their pins in a pin file",
        "Handshake with each TARGET and report whether its chain matches the pins "
        "that PINFILE configures for it, which pin matched or what the server "
        "presents instead, and when the entry expires.",
        _CHECK_EPILOG,
        parents=[network],
    )
    parser.add_argument("pinfile", metavar="PINFILE", help="a JSON pin file")
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="URL or host[:port]")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=_cmd_check)


def _add_lint(commands: Any) -> None:
    parser = _subparser(
        commands,
        "lint",
        "find risky or mistaken entries in a pin file",
        "Load PINFILE as the library does and warn, one line each, about entries "
        "that can brick clients or do not do what they seem to.",
        _LINT_EPILOG,
    )
    parser.add_argument("pinfile", metavar="PINFILE", help="a JSON pin file")
    parser.add_argument(
        "--warn-days",
        type=_days,
        default=30,
        metavar="DAYS",
        help="warn about entries that expire within DAYS days (default: 30)",
    )
    parser.add_argument(
        "--warnings-ok", action="store_true", help="exit 0 even when there are warnings"
    )
    parser.add_argument("--json", action="store_true", help="print the warnings as JSON")
    parser.set_defaults(handler=_cmd_lint)


def _cmd_demo(args: argparse.Namespace) -> int:
    return _demo.run(sys.stdout)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Find, check and lint TLS certificate pins for requests-pinning.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    network = _network_options()
    _add_pins(commands, network)
    _add_check(commands, network)
    _add_lint(commands)
    demo = _subparser(
        commands,
        "demo",
        "show pinning stop a mis-issued certificate, offline",
        "Make a throwaway PKI, start a genuine HTTPS server and an impostor on "
        "loopback, and show that pinning refuses the impostor before sending it a byte.",
        _DEMO_EPILOG,
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 failed or warned, 2 usage)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except _UserError as exc:
        _error(str(exc))
        return exc.status
    except PinConfigError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _error(f"{exc.strerror or exc}" + (f": {exc.filename!r}" if exc.filename else ""))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
