"""``requests-pinning demo``: pinning stopping a mis-issued certificate, offline, step by step.

It makes a throwaway PKI (a genuine root, intermediate and leaf, and a second
"rogue" CA that the client also trusts, playing a CA that mis-issues a
certificate for our host), starts a genuine HTTPS server and an impostor on
loopback, and shows that plain requests accepts the impostor while the
pinned session accepts only the genuine server, and that the impostor
received nothing. The command's parser and help are at the end.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._adapter import PinningAdapter
from .._certs import spki_pin
from .._mismatch import PinMismatchError
from ._options import subparser

_HOST = "localhost"
_Key = ec.EllipticCurvePrivateKey


def _cert(
    subject: str, key: _Key, issuer: x509.Certificate | None, issuer_key: _Key, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        # Key identifiers and usages: Python 3.13's default context is strict (X509_STRICT).
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(_HOST)]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class _Server:
    """A one-response HTTPS server that counts what it receives after the handshake."""

    chain: list[x509.Certificate]
    key: _Key
    received: int = 0
    handshakes: int = 0
    finished: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_finished(self, count: int) -> None:
        """Wait until ``count`` connections have been handled, so the counts are final."""
        with self.changed:
            self.changed.wait_for(lambda: self.finished >= count, timeout=10)

    def start(self, directory: str, name: str) -> int:
        cert_path = os.path.join(directory, f"{name}.pem")
        with open(cert_path, "wb") as file:
            file.write(
                self.key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            for cert in self.chain:
                file.write(cert.public_bytes(serialization.Encoding.PEM))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(10)
        threading.Thread(target=self._serve, args=(listener, context), daemon=True).start()
        return int(listener.getsockname()[1])

    def _serve(self, listener: socket.socket, context: ssl.SSLContext) -> None:
        with listener:
            while True:
                try:
                    raw, _ = listener.accept()
                except OSError:
                    return
                self._answer(raw, context)

    def _answer(self, raw: socket.socket, context: ssl.SSLContext) -> None:
        try:
            raw.settimeout(10)
            with context.wrap_socket(raw, server_side=True) as tls:
                self.handshakes += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    self.received += len(chunk)
                if data:
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()
            with self.changed:
                self.finished += 1
                self.changed.notify_all()


class _Records(logging.Handler):
    """The library's log records of the demo's own thread, to show in its own words."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Run in a process doing other work, the library logs for that too.
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


def run(out: TextIO | None = None) -> int:
    """Run the demo, printing to ``out`` (default: stdout); return 0 when it all happened."""
    out = out if out is not None else sys.stdout
    # The refusal is logged at WARNING: shown as a line of the demo, not as
    # Python's bare fallback output on stderr, in the middle of step 3.
    records = _Records()
    logger = logging.getLogger("requests_pinning")
    logger.addHandler(records)
    try:
        return _run(out, records)
    finally:
        logger.removeHandler(records)


def _run(out: TextIO, records: _Records) -> int:
    say: Callable[[str], object] = lambda text: print(text, file=out, flush=True)  # noqa: E731
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(5)]
    root = _cert("Demo Root CA", keys[0], None, keys[0], ca=True)
    intermediate = _cert("Demo Intermediate CA", keys[1], root, keys[0], ca=True)
    leaf = _cert(_HOST, keys[2], intermediate, keys[1], ca=False)
    rogue_root = _cert("Rogue CA (mis-issues certificates)", keys[3], None, keys[3], ca=True)
    rogue_leaf = _cert(_HOST, keys[4], rogue_root, keys[3], ca=False)
    ok = True
    with tempfile.TemporaryDirectory(prefix="requests-pinning-demo-") as directory:
        bundle = os.path.join(directory, "trusted-roots.pem")
        with open(bundle, "wb") as file:
            for cert in (root, rogue_root):
                file.write(cert.public_bytes(serialization.Encoding.PEM))
        genuine = _Server([leaf, intermediate], keys[2])
        impostor = _Server([rogue_leaf], keys[4])
        genuine_url = f"https://{_HOST}:{genuine.start(directory, 'genuine')}/"
        impostor_url = f"https://{_HOST}:{impostor.start(directory, 'impostor')}/"
        pin = spki_pin(intermediate)
        say("requests-pinning demo: a throwaway PKI on loopback, nothing leaves this machine.\n")
        say("The client trusts two root CAs: the genuine one, and a rogue CA that has")
        say(f"mis-issued a certificate for {_HOST!r}. CA validation alone cannot tell them apart.")
        say(f"  genuine server: {genuine_url}  (chain: leaf <- Demo Intermediate CA <- Demo Root)")
        say(f"  impostor:       {impostor_url}  (chain: leaf <- Rogue CA)\n")

        say("1. Plain requests, CA validation on, talks to the impostor:")
        # Offline as promised: no proxy from the environment (HTTPS_PROXY),
        # which would be asked to reach this machine's servers, for any session.
        plain = requests.Session()
        plain.trust_env = False
        response = plain.get(impostor_url, verify=bundle, timeout=10)
        plain.close()
        impostor.wait_finished(1)
        say(f"   -> HTTP {response.status_code}; the impostor received {impostor.received} bytes")
        ok &= response.status_code == 200 and impostor.received > 0

        session = requests.Session()
        session.trust_env = False
        session.mount("https://", PinningAdapter({_HOST: [pin]}))
        say(f"\n2. A pinned session ({_HOST} pinned to the intermediate key {pin}):")
        response = session.get(genuine_url, verify=bundle, timeout=10)
        say(f"   -> genuine server: HTTP {response.status_code}, {response.text.strip()!r}")
        ok &= response.status_code == 200
        session.close()

        say("\n3. The pinned session and the impostor:")
        before = impostor.received
        try:
            session.get(impostor_url, verify=bundle, timeout=10)
            say("   -> the request went through: PINNING DID NOT WORK")
            ok = False
        except PinMismatchError as error:
            impostor.wait_finished(2)
            say("   -> refused with PinMismatchError:")
            say("      " + str(error).replace("\n", "\n      "))
        logged = [message.split(": ", 1)[0] for message in records.messages]
        if logged:  # unless the program set the library's logger above WARNING
            say(f"   -> logged at WARNING by the logger 'requests_pinning': {', '.join(logged)}")
        leaked = impostor.received - before
        say(f"   -> bytes the impostor received from the pinned session: {leaked} bytes")
        ok &= leaked == 0 and impostor.handshakes == 2
    say("\n" + ("Demo passed." if ok else "Demo FAILED: see above."))
    return 0 if ok else 1


# -- the command line -------------------------------------------------------------------

_DEMO_EPILOG = """\
examples:
  requests-pinning demo
  python -m requests_pinning demo
"""


def _cmd_demo(args: argparse.Namespace) -> int:
    return run(sys.stdout)


def add_parser(commands: Any) -> None:
    parser = subparser(
        commands,
        "demo",
        "show pinning stop a mis-issued certificate, offline",
        "Make a throwaway PKI, start a genuine HTTPS server and an impostor on "
        "loopback, and show that pinning refuses the impostor before sending it a byte.",
        _DEMO_EPILOG,
    )
    parser.set_defaults(handler=_cmd_demo)
