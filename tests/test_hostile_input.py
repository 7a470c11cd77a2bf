"""Hostile input: every DER length form OpenSSL reads, and only documented errors.

A certificate may use DER lengths that are not minimal (OpenSSL reads them; a
CA can sign one, and a handshake accepts it): its pins must still be read, as
encoded"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import PinConfigError, PinMismatchError, PinningAdapter, spki_pin
from requests_pinning._certs import spki_of_der_cert, split_der_certificates

from .conftest import PKI
from .servers import TLSServer
from .test_certs import OPENSSL, der_children, der_tlv, needs_openssl, openssl_spki_pin

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
SUBJECT = 5  # index of the subject among the TBSCertificate fields (with a version)

# -- certificates with non-minimal DER lengths -------------------------------------------


def long_form(tag: int, content: bytes, octets: int) -> bytes:
    """One element whose length is written in long form with ``octets`` octets (not minimal)."""
    return bytes([tag, 0x80 | octets]) + len(content).to_bytes(octets, "big") + content


def pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


def der_of_pem(data: bytes) -> bytes:
    return x509.load_pem_x509_certificate(data).public_bytes(DER)


def resign(cert_der: bytes, issuer: trustme.CA, octets: int) -> bytes:
    """``cert_der`` with its subject's length in ``octets`` octets, signed again by ``issuer``."""
    [(_, outer, _)] = der_children(cert_der)
    (_, tbs, _), (_, _, algorithm), _ = der_children(outer)
    fields = [element for _, _, element in der_children(tbs)]
    _, subject, _ = der_children(fields[SUBJECT])[0]
    fields[SUBJECT] = long_form(0x30, subject, octets)
    new_tbs = der_tlv(0x30, b"".join(fields))
    key = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    return der_tlv(0x30, new_tbs + algorithm + der_tlv(0x03, b"\x00" + signature))


def odd_leaf(leaf: trustme.LeafCert, issuer: trustme.CA, octets: int) -> trustme.LeafCert:
    """``leaf`` re-encoded with a non-minimal subject length and re-signed: servable."""
    der = resign(der_of_pem(leaf.cert_chain_pems[0].bytes()), issuer, octets)
    chain = [blob.bytes() for blob in leaf.cert_chain_pems[1:]]
    return trustme.LeafCert(leaf.private_key_pem.bytes(), pem(der), chain)


def spki_as_encoded(der: bytes) -> bytes:
    """The certificate's SPKI element, found by an independent reader (not the walker)."""
    [(_, outer, _)] = der_children(der)
    [(_, tbs, _), _, _] = der_children(outer)
    return der_children(tbs)[SUBJECT + 1][2]


# OpenSSL reads long-form lengths of any number of octets, leading zeros skipped
# (ASN1_get_object): 0x81 for a length under 128 is the classic non-minimal one.
LENGTH_OCTETS = [1, 2, 4, 5, 8, 16]


@pytest.mark.parametrize("octets", LENGTH_OCTETS)
def test_spki_pin_of_a_certificate_with_a_non_minimal_length(pki: PKI, octets: int) -> None:
    original = der_of_pem(pki.leaf.cert_chain_pems[0].bytes())
    der = resign(original, pki.intermediate, octets)
    assert der[: len(original)] != original[: len(der)]
    spki = spki_as_encoded(der)
    assert spki == spki_as_encoded(original)  # only the subject's length changed
    expected = "sha256/" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    assert spki_of_der_cert(der) == spki
    assert spki_pin(der) == spki_pin(pem(der)) == expected == pki.leaf_pin
    assert split_der_certificates(der + original) == [der, original]
    if os.access(OPENSSL, os.X_OK):
        assert openssl_spki_pin(pem(der)) == expected


@needs_openssl
@pytest.mark.parametrize("octets", LENGTH_OCTETS)
def test_openssl_verifies_the_re_signed_certificates(pki: PKI, tmp_path: Path, octets: int) -> None:
    # The oracle for "OpenSSL accepts it": a verified signature and chain.
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(
        pem(resign(der_of_pem(pki.leaf.cert_chain_pems[0].bytes()), pki.intermediate, octets))
    )
    untrusted = tmp_path / "intermediate.pem"
    untrusted.write_bytes(pki.intermediate.cert_pem.bytes())
    result = subprocess.run(
        [OPENSSL, "verify", "-CAfile", pki.bundle, "-untrusted", str(untrusted), str(leaf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x30\x80\x00\x00", "indefinite DER length"),  # BER only: refused (fails closed)
        (b"\x30\x85\x00\x00\x00\x10\x00" + bytes(15), "truncated DER"),  # past the end
        (b"\x30\x84\x00\x00", "truncated DER"),  # the length octets themselves are cut
        (b"\x31\x00", "expected DER tag 0x30, found 0x31"),
        (b"\x30", "truncated DER"),
    ],
)
def test_the_walker_refuses_what_it_cannot_read(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=f"^{why}$"):
        spki_of_der_cert(data)
    with pytest.raises(ValueError, match=f"^{why}$"):
        split_der_certificates(data)


@given(st.binary(max_size=600))
def test_the_walker_raises_only_value_error(data: bytes) -> None:
    for function in (spki_of_der_cert, split_der_certificates):
        try:
            function(data)
        except ValueError as exc:
            assert str(exc)


@st.composite
def tlv_soup(draw: st.DrawFn) -> bytes:
    """Bytes made of plausible DER headers (every length form) and random contents."""
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        tag = draw(st.sampled_from([0x30, 0xA0, 0x02, 0x03, 0x06, 0x31, 0x80]))
        size = draw(st.integers(0, 300))
        form = draw(st.sampled_from(["short", "long", "indefinite", "huge"]))
        if form == "short":
            head = bytes([tag, size & 0x7F])
        elif form == "long":
            octets = draw(st.integers(2, 127))
            head = bytes([tag, 0x80 | octets]) + size.to_bytes(octets, "big")
        elif form == "indefinite":
            head = bytes([tag, 0x80])
        else:
            head = bytes([tag, 0xFF]) + b"\xff" * 127
        parts.append(head + draw(st.binary(max_size=40)))
    return b"".join(parts)


@given(tlv_soup())
def test_the_walker_raises_only_value_error_on_der_like_input(data: bytes) -> None:
    for function in (spki_of_der_cert, split_der_certificates):
        try:
            function(data)
        except ValueError as exc:
            assert str(exc)
    try:
        spki_pin(data)
    except PinConfigError as exc:
        assert str(exc)


@settings(max_examples=30, deadline=None)
@given(zeros=st.integers(0, 100), extra=st.integers(0, 25))
def test_any_number_of_leading_zero_length_octets_reads_the_same_spki(
    pki: PKI, zeros: int, extra: int
) -> None:
    # The signature is not looked at by the walker: no need to re-sign here.
    original = der_of_pem(pki.leaf.cert_chain_pems[0].bytes())
    [(_, outer, _)] = der_children(original)
    (_, tbs, _), (_, _, algorithm), (_, _, signature) = der_children(outer)
    fields = [element for _, _, element in der_children(tbs)]
    _, subject, _ = der_children(fields[SUBJECT])[0]
    octets = zeros + extra + 2  # the TBSCertificate needs two
    fields[SUBJECT] = long_form(0x30, subject, octets)
    der = long_form(0x30, long_form(0x30, b"".join(fields), octets) + algorithm + signature, 4)
    assert spki_of_der_cert(der) == spki_as_encoded(original)
    assert spki_pin(der) == pki.leaf_pin


# -- the same certificates in a real handshake -------------------------------------------


def pinned_session(pins: list[str]) -> requests.Session:
    session = requests.Session()
    session.mount("https://", PinningAdapter({"localhost": pins}))
    return session


@pytest.mark.parametrize("octets", [1, 5, 8])
def test_a_server_with_a_non_minimal_length_gets_a_clean_pin_decision(
    pki: PKI, octets: int
) -> None:
    genuine = odd_leaf(pki.leaf, pki.intermediate, octets)
    rogue = odd_leaf(pki.rogue_leaf, pki.rogue_root, octets)
    with TLSServer(genuine) as good, TLSServer(rogue) as bad:
        # The right pin: a pass, with the leaf's own pin too (the SPKI as encoded).
        for pin in (pki.intermediate_pin, pki.leaf_pin):
            response = pinned_session([pin]).get(
                f"https://localhost:{good.port}/", verify=pki.bundle, timeout=10
            )
            assert response.status_code == 200
        # The failing twin: a rogue CA's certificate in the same form is refused
        # as a pin failure (before: a ValueError escaped from connect()).
        with pytest.raises(PinMismatchError) as info:
            pinned_session([pki.intermediate_pin]).get(
                f"https://localhost:{bad.port}/", verify=pki.bundle, timeout=10
            )
        assert info.value.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
        bad.wait_idle()
        assert bad.bytes_received == 0
