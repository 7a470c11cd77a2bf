"""truststore: a context that validates outside the handshake must show a chain that holds.

``truststore.inject_into_ssl()`` makes every context that urllib3, requests
and httpx build truststore's, and rebinds the name ``ssl.SSLContext`` to
truststore's class. On macOS and Windows, truststore handshakes with
``CERT_NONE`` and validates the served chain with the platform afterwards, so
OpenSSL's "verified" chain is then built from whatever the peer sent: a rogue
leaf that names the genuine intermediate as its issuer, served with that
intermediate, gets a "verified" chain holding the pinned certificate. The
pin check must not believe it.

These tests run on Linux, where truststore validates with OpenSSL in the
handshake. The macOS path is reproduced with truststore's own code: its
macOS context hook (``CERT_NONE`` for the handshake, the settings back
afterwards) is put in place, and the platform's validation is played by
cryptography's verifier with a store of two roots, the genuine one and a
mis-issuing CA that the platform trusts. Real servers, real handshakes, and
real validation on both sides; only where the platform's answer comes from
is changed.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import trustme
import truststore
import truststore._api as truststore_api
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from requests_pinning import PinMismatchError, PinningAdapter
from requests_pinning._tls import may_misreport
from requests_pinning.httpx import PinMismatchError as HttpxPinMismatchError
from requests_pinning.httpx import PinningTransport

from .conftest import PKI
from .servers import TLSServer


@pytest.fixture
def injected() -> Iterator[None]:
    truststore.inject_into_ssl()
    try:
        yield
    finally:
        truststore.extract_from_ssl()


def _session(pki: PKI) -> requests.Session:
    session = requests.Session()
    session.mount("https://", PinningAdapter({"127.0.0.1": [pki.intermediate_pin]}))
    return session


def _get(session: requests.Session, server: TLSServer, pki: PKI) -> requests.Response:
    return session.get(f"https://127.0.0.1:{server.port}/", verify=pki.bundle, timeout=10)


# -- Linux: truststore validates in the handshake ------------------------------------------


def test_under_truststore_the_pinned_chain_passes(
    pki: PKI, good: TLSServer, injected: None
) -> None:
    assert ssl.SSLContext is truststore.SSLContext
    response = _get(_session(pki), good, pki)
    assert response.status_code == 200 and good.bytes_received > 0


def test_twin_under_truststore_a_chain_without_the_pin_is_refused(
    pki: PKI, rogue: TLSServer, injected: None
) -> None:
    with pytest.raises(PinMismatchError):
        _get(_session(pki), rogue, pki)  # the rogue root is in the bundle: it validates
    rogue.wait_idle()
    assert rogue.handshakes == 1 and rogue.bytes_received == 0


def test_the_inner_context_of_truststore_is_judged_as_one_that_may_misreport(
    pki: PKI, injected: None
) -> None:
    # truststore's TLS objects carry its inner context: of ssl's own class,
    # with truststore's socket and object classes. The name ssl.SSLContext
    # is truststore's class now, so nothing may be compared with it.
    outer = ssl.create_default_context(cafile=pki.bundle)
    inner = outer._ctx  # type: ignore[attr-defined]
    assert type(inner) is not ssl.SSLContext
    assert may_misreport(inner) and may_misreport(outer)


def test_twin_a_plain_context_is_believed() -> None:
    context = ssl.create_default_context()
    assert not may_misreport(context)
    context.sslsocket_class = type("Wrapped", (ssl.SSLSocket,), {})
    assert may_misreport(context)  # what wraps the handshake may validate elsewhere
    assert not may_misreport(object())


# -- macOS and Windows: a CERT_NONE handshake, then the platform ---------------------------


def _certificate(cert: trustme.CA | trustme.LeafCert) -> x509.Certificate:
    pem = cert.cert_pem if isinstance(cert, trustme.CA) else cert.cert_chain_pems[0]
    return x509.load_pem_x509_certificate(pem.bytes())


def _leaf(cert: trustme.LeafCert) -> bytes:
    return _certificate(cert).public_bytes(serialization.Encoding.DER)


def _mis_issued(pki: PKI) -> tuple[x509.Certificate, trustme.LeafCert]:
    """A CA the platform trusts, named as the genuine intermediate, and a leaf it issued.

    The CA copies the genuine intermediate's subject and key identifier, so
    OpenSSL, building a chain without validating it, takes the genuine
    intermediate the server sends as the leaf's issuer. The server sends
    the leaf and the genuine intermediate.
    """
    genuine = _certificate(pki.intermediate)
    skid = genuine.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(genuine.subject)
        .issuer_name(genuine.subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(skid, critical=False)
        .add_extension(usage, critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(genuine.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(skid), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    served = trustme.LeafCert(
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        leaf.public_bytes(pem),
        [pki.intermediate.cert_pem.bytes()],
    )
    return ca, served


@contextlib.contextmanager
def _handshake_without_validation(ctx: ssl.SSLContext) -> Iterator[None]:
    # truststore's _macos._configure_context (and _windows'), line for line.
    from truststore._ssl_constants import _set_ssl_context_verify_mode

    check_hostname, verify_mode = ctx.check_hostname, ctx.verify_mode
    ctx.check_hostname = False
    _set_ssl_context_verify_mode(ctx, ssl.CERT_NONE)
    try:
        yield
    finally:
        ctx.check_hostname = check_hostname
        _set_ssl_context_verify_mode(ctx, verify_mode)


@pytest.fixture
def mis_issued(pki: PKI) -> tuple[x509.Certificate, trustme.LeafCert]:
    return _mis_issued(pki)


@pytest.fixture
def impostor(mis_issued: tuple[x509.Certificate, trustme.LeafCert]) -> Iterator[TLSServer]:
    with TLSServer(mis_issued[1]) as server:
        yield server


@pytest.fixture
def platform(
    pki: PKI,
    mis_issued: tuple[x509.Certificate, trustme.LeafCert],
    injected: None,
    monkeypatch: pytest.MonkeyPatch,
) -> list[bytes]:
    """truststore as on macOS, whose platform trusts the mis-issuing CA: the leaves it passed."""
    from OpenSSL import crypto

    roots = [crypto.X509.from_cryptography(_certificate(pki.root))]
    roots.append(crypto.X509.from_cryptography(mis_issued[0]))
    validated: list[bytes] = []

    def validate(context: Any, chain: list[bytes], server_hostname: str | None = None) -> None:
        # The platform's path building, signatures checked, by OpenSSL
        # through pyOpenSSL, on the chain the server sent. A platform tries
        # other paths when one fails; OpenSSL does not, and both roots
        # claim one issuer name, so each root is tried on its own. (The
        # name is left to the handshake; the impostor's leaf is for it.)
        certs = [crypto.X509.from_cryptography(x509.load_der_x509_certificate(d)) for d in chain]
        for root in roots:
            store = crypto.X509Store()
            store.add_cert(root)
            try:
                crypto.X509StoreContext(store, certs[0], certs[1:]).verify_certificate()
            except crypto.X509StoreContextError:
                continue
            validated.append(chain[0])
            return
        raise ssl.SSLCertVerificationError("the platform trusts no path for this chain")

    monkeypatch.setattr(truststore_api, "_configure_context", _handshake_without_validation)
    monkeypatch.setattr(truststore_api, "_verify_peercerts_impl", validate)
    return validated


def test_a_chain_validated_after_a_cert_none_handshake_must_hold_on_its_own(
    pki: PKI,
    mis_issued: tuple[x509.Certificate, trustme.LeafCert],
    impostor: TLSServer,
    platform: list[bytes],
) -> None:
    # The platform accepts the impostor (its CA is trusted), and OpenSSL's
    # chain holds the pinned intermediate; but that intermediate never
    # signed the leaf, so the pin vouches for nothing.
    with pytest.raises(PinMismatchError) as info:
        _get(_session(pki), impostor, pki)
    assert set(platform) == {_leaf(mis_issued[1])}  # the platform passed it
    assert "does not hold on its own" in str(info.value)
    impostor.wait_idle()
    assert impostor.handshakes == 1 and impostor.bytes_received == 0


def test_twin_the_genuine_chain_passes_the_same_way(
    pki: PKI, good: TLSServer, platform: list[bytes]
) -> None:
    response = _get(_session(pki), good, pki)
    assert response.status_code == 200 and set(platform) == {_leaf(pki.leaf)}


def _httpx_get(server: TLSServer, pki: PKI) -> int:
    # httpx's own default context: truststore's, once injected.
    transport = PinningTransport({"127.0.0.1": [pki.intermediate_pin]})
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"https://127.0.0.1:{server.port}/").status_code


def test_httpx_a_chain_validated_after_a_cert_none_handshake_must_hold_on_its_own(
    pki: PKI,
    mis_issued: tuple[x509.Certificate, trustme.LeafCert],
    impostor: TLSServer,
    platform: list[bytes],
) -> None:
    with pytest.raises(HttpxPinMismatchError, match="does not hold on its own"):
        _httpx_get(impostor, pki)
    impostor.wait_idle()
    assert set(platform) == {_leaf(mis_issued[1])}
    assert impostor.handshakes == 1 and impostor.bytes_received == 0


def test_twin_httpx_the_genuine_chain_passes_the_same_way(
    pki: PKI, good: TLSServer, platform: list[bytes]
) -> None:
    assert _httpx_get(good, pki) == 200 and set(platform) == {_leaf(pki.leaf)}


# -- found by the attack pass of round 7 ----------------------------------------------


def test_under_truststore_contexts_are_not_shared(
    pki: PKI, good: TLSServer, injected: None
) -> None:
    # truststore's context holds one lock through every handshake: shared, it
    # put every handshake of a configuration in one queue, so a host that
    # never answered held up requests to healthy hosts until its timeout.
    adapter = PinningAdapter({"127.0.0.1": [pki.intermediate_pin]})
    with requests.Session() as session:
        session.mount("https://", adapter)
        for _ in range(2):
            assert _get(session, good, pki).status_code == 200
    assert adapter._contexts is not None
    assert adapter._contexts.built == 0
    # The twin: extracted again, the same adapter shares one context.
    truststore.extract_from_ssl()
    with requests.Session() as session:
        session.mount("https://", adapter)
        for _ in range(2):
            headers = {"Connection": "close"}
            response = session.get(
                f"https://127.0.0.1:{good.port}/", verify=pki.bundle, headers=headers
            )
            assert response.status_code == 200
    assert adapter._contexts.built == 1
