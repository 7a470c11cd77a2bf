"""The check's two shortcuts, against real servers: each would let a connection through if wrong.

- Whether a handshake validated the chain is read from ``check_hostname``
  when ssl keeps it on (it cannot be on with ``CERT_NONE``), else from
  ``verify_mode``. A context switched to ``CERT_NONE`` must still be judged
  unverified, and a context of another class is asked through its own
  ``verify_mode``, whatever its ``check_hostname`` says.
- A pin list remembers the certificate an SPKI pin matched last, as
  ``_ssl.Certificate`` (3.10 to 3.12) or DER (3.13), and the next chain's
  certificate is compared with it (``==``) instead of converted and hashed.
  A different certificate, even one with the same subject (the same
  ``__hash__``), must not pass for it; nor may a connection without
  validation borrow it.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from requests_pinning import PinMismatchError, PinningPolicy, PinningPoolManager, PinSet
from requests_pinning._tls import peer_chain

from .conftest import PKI
from .servers import TLSServer


def _connect(context: ssl.SSLContext, server: TLSServer) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _client(pki: PKI) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.bundle)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


def _policy(pki: PKI) -> PinningPolicy:
    return PinningPolicy(PinSet({"127.0.0.1": [pki.intermediate_pin]}))


def test_a_validating_context_is_judged_verified_with_or_without_check_hostname(
    pki: PKI, good: TLSServer
) -> None:
    context = _client(pki)
    with _connect(context, good) as sock:
        chain = peer_chain(sock)
        assert chain.verified and chain.size == 3
        assert _policy(pki).check(["127.0.0.1"], good.port, chain) is None
    context.check_hostname = False  # verify_mode stays CERT_REQUIRED: still validated
    with _connect(context, good) as sock:
        chain = peer_chain(sock)
        assert chain.verified and chain.size == 3


def test_twin_a_context_switched_to_cert_none_is_judged_unverified(
    pki: PKI, good: TLSServer
) -> None:
    context = _client(pki)
    policy = _policy(pki)
    with _connect(context, good) as sock:  # the pin matches, and is remembered
        assert policy.check(["127.0.0.1"], good.port, peer_chain(sock)) is None
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with _connect(context, good) as sock:
        chain = peer_chain(sock)
        assert not chain.verified
        assert chain.checked == (sock.getpeercert(binary_form=True),)  # the leaf only
        failure = policy.check(["127.0.0.1"], good.port, chain)
    assert failure is not None and "only the leaf is checked" in failure.reason
    context.verify_mode = ssl.CERT_REQUIRED  # and back
    with _connect(context, good) as sock:
        assert peer_chain(sock).verified


class _ClaimsHostnameChecks(ssl.SSLContext):
    """A context class whose check_hostname says yes whatever it does."""

    @property
    def check_hostname(self) -> bool:
        return True

    @check_hostname.setter
    def check_hostname(self, value: bool) -> None:
        base: Any = ssl.SSLContext.check_hostname  # _ssl's own attribute
        base.__set__(self, value)


def test_a_context_of_another_class_is_asked_for_its_verify_mode(
    pki: PKI, untrusted: TLSServer
) -> None:
    context = _ClaimsHostnameChecks(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # in fact
    context.verify_mode = ssl.CERT_NONE
    assert context.check_hostname is True
    with _connect(context, untrusted) as sock:
        chain = peer_chain(sock)
    assert not chain.verified and chain.size == 1


def _same_subject_intermediate(pki: PKI) -> trustme.LeafCert:
    """A leaf under a second intermediate with the genuine one's subject, signed by the root.

    Its subject hash (``_ssl.Certificate.__hash__``) is the genuine intermediate's;
    its key is not.
    """
    root_cert = x509.load_pem_x509_certificate(pki.root.cert_pem.bytes())
    root_key = serialization.load_pem_private_key(pki.root.private_key_pem.bytes(), None)
    genuine = x509.load_pem_x509_certificate(pki.intermediate.cert_pem.bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    twin = (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "twin leaf")]))
        .issuer_name(twin.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return trustme.LeafCert(
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        leaf.public_bytes(pem),
        [twin.public_bytes(pem)],
    )


@pytest.fixture
def twin(pki: PKI) -> Iterator[TLSServer]:
    """A server whose chain validates, under an intermediate that only shares the subject."""
    with TLSServer(_same_subject_intermediate(pki)) as server:
        yield server


def test_the_remembered_certificate_passes_only_for_itself(
    pki: PKI, good: TLSServer, twin: TLSServer, rogue: TLSServer, appended: TLSServer
) -> None:
    context = _client(pki)
    policy = _policy(pki)
    for server, passes in ((good, True), (twin, False), (good, True), (rogue, False)):
        with _connect(context, server) as sock:
            chain = peer_chain(sock)
            assert chain.verified and chain.comparable
            failure = policy.check(["127.0.0.1"], server.port, chain)
        assert (failure is None) is passes, server
    # The twin's intermediate is a different certificate, with the same hash
    # as an _ssl.Certificate (3.10 to 3.12; 3.13 gives DER).
    with _connect(context, good) as first, _connect(context, twin) as second:
        genuine, other = peer_chain(first).raw(1), peer_chain(second).raw(1)
        again = peer_chain(first).raw(1)
    assert genuine != other and genuine == again and genuine is not again
    assert isinstance(genuine, bytes) or hash(genuine) == hash(other)


def test_twin_a_connection_without_validation_cannot_borrow_the_remembered_match(
    pki: PKI, good: TLSServer
) -> None:
    policy = _policy(pki)
    url = f"https://127.0.0.1:{good.port}/"
    with PinningPoolManager(policy, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle) as manager:
        assert manager.request("GET", url).status == 200  # the intermediate is remembered
    with (
        PinningPoolManager(policy, cert_reqs="CERT_NONE", retries=False) as manager,
        pytest.raises(PinMismatchError, match="only the leaf is checked"),
    ):
        manager.request("GET", url)
