"""spki_pin and cert_fingerprint: every input form, every key type, openssl as the oracle.

The certificates and keys are made once per module (key generation is the slow
part); hypothesis then feeds arbitrary and mutated input to both functions.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
import subprocess
from collections.abc import Callable

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from requests_pinning import Pin, PinConfigError, cert_fingerprint, spki_pin

OPENSSL = "/usr/bin/openssl"
needs_openssl = pytest.mark.skipif(
    not os.access(OPENSSL, os.X_OK), reason=f"{OPENSSL} is not installed"
)

KEY_TYPES = ("rsa2048", "p256", "p384", "ed25519", "ed448")
ALGORITHMS = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
PIN_RE = {
    "sha1": re.compile(r"sha1/[A-Za-z0-9+/]{27}="),
    "sha256": re.compile(r"sha256/[A-Za-z0-9+/]{43}="),
    "sha384": re.compile(r"sha384/[A-Za-z0-9+/]{64}"),
    "sha512": re.compile(r"sha512/[A-Za-z0-9+/]{86}=="),
}
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2034, 1, 1, tzinfo=datetime.timezone.utc)
DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
SPKI_FORMAT = serialization.PublicFormat.SubjectPublicKeyInfo

# Bounded so that hypothesis examples on cryptography's parsers stay fast.
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# cryptography warns (rather than fails) on a zero or negative serial number; a
# mutated certificate can have one. The property is about exceptions.
ignore_serial_warning = pytest.mark.filterwarnings(
    "ignore::cryptography.utils.CryptographyDeprecationWarning"
)


# -- helpers ---------------------------------------------------------------------------


def generate_key(kind: str) -> CertificateIssuerPrivateKeyTypes:
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    raise AssertionError(kind)


def self_signed(key: CertificateIssuerPrivateKeyTypes, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
    )
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return builder.sign(key, None)
    return builder.sign(key, hashes.SHA256())


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(DER)


def pem_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(PEM)


def spki_der_of(cert: x509.Certificate) -> bytes:
    """cryptography's re-encoding of the certificate's public key."""
    return cert.public_key().public_bytes(DER, SPKI_FORMAT)


def pin_of(data: bytes, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}/{base64.b64encode(digest).decode('ascii')}"


def der_tlv(tag: int, content: bytes) -> bytes:
    """Encode one DER element (definite length, minimal length octets)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def der_children(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split concatenated DER elements into (tag, content, whole element) triples.

    Written independently of the library's walker: it reads every element of a
    level instead of skipping a fixed list of fields.
    """
    elements = []
    pos = 0
    while pos < len(data):
        tag, first = data[pos], data[pos + 1]
        head = 2
        if first < 0x80:
            size = first
        else:
            count = first & 0x7F
            size = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
            head += count
        end = pos + head + size
        assert end <= len(data), "test DER parser ran off the end"
        elements.append((tag, data[pos + head : end], data[pos:end]))
        pos = end
    return elements


def tbs_fields(der: bytes) -> list[tuple[int, bytes, bytes]]:
    [(outer_tag, outer, _)] = der_children(der)
    assert outer_tag == 0x30
    (tbs_tag, tbs, _), _signature_algorithm, _signature = der_children(outer)
    assert tbs_tag == 0x30
    return der_children(tbs)


def rebuild_cert(der: bytes, fields: list[bytes]) -> bytes:
    """The certificate ``der`` with its TBSCertificate fields replaced (signature kept)."""
    [(_, outer, _)] = der_children(der)
    _, signature_algorithm, signature = der_children(outer)
    tbs = der_tlv(0x30, b"".join(fields))
    return der_tlv(0x30, tbs + signature_algorithm[2] + signature[2])


def spki_of(der: bytes) -> bytes:
    """The SubjectPublicKeyInfo element of a DER certificate, byte for byte."""
    fields = tbs_fields(der)
    if fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    tag, _, element = fields[5]
    assert tag == 0x30
    return element


def run_openssl(*args: str, data: bytes) -> bytes:
    result = subprocess.run(
        [OPENSSL, *args], input=data, capture_output=True, check=True, timeout=60
    )
    return result.stdout


def openssl_spki_pin(pem: bytes, algorithm: str = "sha256") -> str:
    """openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -binary."""
    public_key_pem = run_openssl("x509", "-pubkey", "-noout", data=pem)
    spki = run_openssl("pkey", "-pubin", "-outform", "der", data=public_key_pem)
    digest = run_openssl("dgst", f"-{algorithm}", "-binary", data=spki)
    assert len(digest) == ALGORITHMS[algorithm]
    return f"{algorithm}/{base64.b64encode(digest).decode('ascii')}"


def openssl_fingerprint(pem: bytes, algorithm: str) -> str:
    out = run_openssl("x509", "-noout", "-fingerprint", f"-{algorithm}", data=pem).decode()
    # e.g. "sha256 Fingerprint=AB:CD:..." (the label's case varies between versions)
    return out.strip().split("=", 1)[1]


def assert_valid_pin(pin: str, algorithm: str = "sha256") -> None:
    assert PIN_RE[algorithm].fullmatch(pin), pin
    assert len(base64.b64decode(pin.split("/", 1)[1])) == ALGORITHMS[algorithm]


# -- fixtures (made once per module) -----------------------------------------------------


@pytest.fixture(scope="module")
def certs() -> dict[str, x509.Certificate]:
    """One self-signed certificate per key type."""
    return {kind: self_signed(generate_key(kind), f"test {kind}") for kind in KEY_TYPES}


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ec_cert(ec_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return self_signed(ec_key, "ec")


@pytest.fixture(scope="module")
def other_cert() -> x509.Certificate:
    return self_signed(ec.generate_private_key(ec.SECP256R1()), "other")


@pytest.fixture(scope="module")
def trustme_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def rsa_key_1024() -> rsa.RSAPrivateKey:
    # Only to make PKCS#1 encodings; size does not matter.
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


# -- spki_pin: against openssl and against the DER, for every key type -----------------


@needs_openssl
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("kind", KEY_TYPES)
def test_spki_pin_equals_the_openssl_pipeline(
    certs: dict[str, x509.Certificate], kind: str, algorithm: str
) -> None:
    cert = certs[kind]
    pin = spki_pin(pem_of(cert), algorithm)
    assert pin == openssl_spki_pin(pem_of(cert), algorithm)
    assert_valid_pin(pin, algorithm)


@pytest.mark.parametrize("kind", KEY_TYPES)
def test_spki_pin_hashes_the_spki_cut_out_of_the_der(
    certs: dict[str, x509.Certificate], kind: str
) -> None:
    der = der_of(certs[kind])
    spki = spki_of(der)
    assert spki_pin(der) == pin_of(spki)
    # For keys cryptography itself encoded, re-encoding gives the same bytes, so
    # the cut-out element is the public key and nothing else.
    assert spki == spki_der_of(certs[kind])
    assert spki in certs[kind].tbs_certificate_bytes


def test_spki_pin_hashes_the_spki_as_encoded_not_a_re_encoding(
    ec_key: ec.EllipticCurvePrivateKey, ec_cert: x509.Certificate
) -> None:
    # Replace the uncompressed EC point in the certificate's SPKI by the
    # compressed one: still a valid, parseable key, but cryptography (and any
    # parse-and-re-encode implementation) would hash the uncompressed form.
    der = der_of(ec_cert)
    fields = tbs_fields(der)
    spki_index = 6  # after version, serial, signature, issuer, validity, subject
    assert fields[spki_index][2] == spki_der_of(ec_cert)
    algorithm_identifier = der_children(fields[spki_index][1])[0][2]
    compressed = ec_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    encoded_spki = der_tlv(0x30, algorithm_identifier + der_tlv(0x03, b"\x00" + compressed))
    elements = [element for _, _, element in fields]
    elements[spki_index] = encoded_spki
    odd_der = rebuild_cert(der, elements)

    odd_cert = x509.load_der_x509_certificate(odd_der)
    re_encoded = spki_der_of(odd_cert)
    assert re_encoded != encoded_spki  # the point of the exercise
    assert re_encoded == spki_der_of(ec_cert)  # same key

    assert spki_pin(odd_der) == pin_of(encoded_spki)
    assert spki_pin(odd_cert) == pin_of(encoded_spki)
    assert spki_pin(odd_der) != pin_of(re_encoded)
    assert spki_pin(odd_der) != spki_pin(ec_cert)
    # The SPKI as a bare public key gives the same pin as the certificate.
    assert spki_pin(encoded_spki) == pin_of(encoded_spki)
    if os.access(OPENSSL, os.X_OK):
        assert spki_pin(odd_der) == openssl_spki_pin(odd_cert.public_bytes(PEM))


def test_spki_pin_of_a_version_1_certificate(ec_cert: x509.Certificate) -> None:
    # A v1 certificate has no [0] version field before the serial number.
    der = der_of(ec_cert)
    fields = tbs_fields(der)
    assert fields[0][0] == 0xA0
    v1_der = rebuild_cert(der, [element for _, _, element in fields[1:]])
    v1_cert = x509.load_der_x509_certificate(v1_der)
    assert v1_cert.version == x509.Version.v1
    assert spki_pin(v1_der) == pin_of(spki_der_of(ec_cert)) == spki_pin(ec_cert)
    if os.access(OPENSSL, os.X_OK):
        assert spki_pin(v1_der) == openssl_spki_pin(v1_cert.public_bytes(PEM))


@pytest.mark.parametrize("version", [1, 0, 2, 3])
def test_a_certificate_of_every_version_openssl_validates_can_be_pinned(
    ec_cert: x509.Certificate, version: int
) -> None:
    # OpenSSL validates v2 certificates (version INTEGER 1) in a chain, and
    # the handshake check pins them: so must the tools, though cryptography
    # reads v1 and v3 only. A version past v3 is no X.509 certificate.
    der = der_of(ec_cert)
    fields = [element for _, _, element in tbs_fields(der)]
    fields[0] = der_tlv(0xA0, der_tlv(0x02, bytes([version])))
    other = rebuild_cert(der, fields)
    if version < 3:
        assert spki_pin(other) == spki_pin(ec_cert)
        assert cert_fingerprint(other) == hashlib.sha256(other).digest().hex(":").upper()
    else:
        with pytest.raises(PinConfigError, match="neither a DER certificate"):
            spki_pin(other)


# -- spki_pin: input forms ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KEY_TYPES)
def test_spki_pin_is_the_same_for_every_input_form(
    certs: dict[str, x509.Certificate], kind: str
) -> None:
    cert = certs[kind]
    public_key = cert.public_key()
    forms: list[str | bytes | x509.Certificate] = [
        cert,
        der_of(cert),
        pem_of(cert),
        pem_of(cert).decode("ascii"),
        public_key.public_bytes(DER, SPKI_FORMAT),
        public_key.public_bytes(PEM, SPKI_FORMAT),
        public_key.public_bytes(PEM, SPKI_FORMAT).decode("ascii"),
    ]
    expected = pin_of(spki_der_of(cert))
    assert [spki_pin(form) for form in forms] == [expected] * len(forms)


def test_spki_pin_accepts_bytearray_and_memoryview(ec_cert: x509.Certificate) -> None:
    der = der_of(ec_cert)
    expected = spki_pin(der)
    assert spki_pin(bytearray(der)) == expected  # type: ignore[arg-type]
    assert spki_pin(memoryview(der)) == expected  # type: ignore[arg-type]


def test_spki_pin_of_a_pem_with_surrounding_text_and_a_private_key(
    ec_key: ec.EllipticCurvePrivateKey, ec_cert: x509.Certificate
) -> None:
    private_pem = ec_key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    text = b"subject=CN=ec\n" + pem_of(ec_cert) + private_pem
    assert spki_pin(text) == spki_pin(ec_cert)


def test_spki_pin_of_a_backup_key_without_a_certificate(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    backup = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = backup.public_bytes(PEM, SPKI_FORMAT)
    pin = spki_pin(pem)
    assert pin == pin_of(backup.public_bytes(DER, SPKI_FORMAT))
    assert pin != spki_pin(ec_key.public_key().public_bytes(PEM, SPKI_FORMAT))


def test_spki_pin_of_trustme_certificates(trustme_ca: trustme.CA) -> None:
    leaf = trustme_ca.issue_cert("example.com")
    leaf_pem = leaf.cert_chain_pems[0].bytes()
    ca_pem = trustme_ca.cert_pem.bytes()
    leaf_cert = x509.load_pem_x509_certificate(leaf_pem)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    assert spki_pin(leaf_pem) == pin_of(spki_der_of(leaf_cert))
    assert spki_pin(ca_pem) == pin_of(spki_der_of(ca_cert))
    assert spki_pin(leaf_pem) != spki_pin(ca_pem)
    if os.access(OPENSSL, os.X_OK):
        assert spki_pin(leaf_pem) == openssl_spki_pin(leaf_pem)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_spki_pin_spelling_for_each_algorithm(ec_cert: x509.Certificate, algorithm: str) -> None:
    pin = spki_pin(ec_cert, algorithm)
    assert pin.startswith(f"{algorithm}/")
    assert_valid_pin(pin, algorithm)
    assert pin == pin_of(spki_der_of(ec_cert), algorithm)
    parsed = Pin.parse(pin)
    assert (parsed.kind, parsed.algorithm, str(parsed)) == ("spki", algorithm, pin)
    assert parsed.matches(der_of(ec_cert))


def test_spki_pin_defaults_to_sha256(ec_cert: x509.Certificate) -> None:
    assert spki_pin(ec_cert) == spki_pin(ec_cert, "sha256")
    assert spki_pin(ec_cert) != spki_pin(ec_cert, "sha384")


def test_pin_error_is_a_value_error() -> None:
    assert issubclass(PinConfigError, ValueError)


# -- spki_pin: bad input --------------------------------------------------------------------


NEITHER = r"^the input is neither a DER certificate nor a DER SubjectPublicKeyInfo$"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^cannot pin empty input$"),
        ("", r"^cannot pin empty input$"),
        (bytearray(), r"^cannot pin empty input$"),
        (b"\x00", NEITHER),
        (b"garbage, not a certificate", NEITHER),
        ("garbage, not a certificate", NEITHER),
        (b"\x30\x00", NEITHER),
        (b"\x30\x80\x00\x00", NEITHER),  # BER indefinite length
        (b"\x30\x03\x02\x01\x01", NEITHER),
        ("-----BEGIN CERTIFICATE-----\nMIIB", r"found: no complete PEM block\)$"),
        (
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END PUBLIC KEY-----\n",
            r"found: no complete PEM block\)$",
        ),
        (
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            r"^the PEM CERTIFICATE block is not valid base64$",
        ),
        (
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            r"^not a valid DER certificate: ",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
            r"^not a valid DER certificate: ",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END PUBLIC KEY-----\n",
            r"^not a valid DER public key: ",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
            r"^no CERTIFICATE or PUBLIC KEY block in the PEM input \(found: PRIVATE KEY\)$",
        ),
        ("caf\u00e9", r"^a PEM string must be ASCII$"),
    ],
)
def test_spki_pin_rejects_bad_input(data: str | bytes, message: str) -> None:
    with pytest.raises(PinConfigError, match=message):
        spki_pin(data)


@pytest.mark.parametrize("value", [None, 42, ["pem"], object()])
def test_spki_pin_rejects_other_types(value: object) -> None:
    name = type(value).__name__
    with pytest.raises(PinConfigError, match=rf"^cannot pin a {name}: pass PEM text, DER bytes"):
        spki_pin(value)  # type: ignore[arg-type]


def test_spki_pin_rejects_a_pem_with_two_certificates(
    ec_cert: x509.Certificate, other_cert: x509.Certificate
) -> None:
    two = pem_of(ec_cert) + pem_of(other_cert)
    with pytest.raises(PinConfigError, match=r"holds 2 certificates or keys: pass one at a time"):
        spki_pin(two)
    with pytest.raises(PinConfigError, match=r"holds 2 certificates or keys: pass one at a time"):
        spki_pin(two.decode("ascii"))


def test_spki_pin_rejects_a_trustme_chain(trustme_ca: trustme.CA) -> None:
    chain = trustme_ca.create_child_ca().issue_cert("example.com")
    pem = b"".join(blob.bytes() for blob in chain.cert_chain_pems)
    with pytest.raises(PinConfigError, match=r"holds 2 certificates or keys: pass one at a time"):
        spki_pin(pem)
    # Each certificate on its own is fine.
    assert spki_pin(chain.cert_chain_pems[0].bytes()) != spki_pin(chain.cert_chain_pems[1].bytes())


def test_spki_pin_rejects_a_pem_with_a_certificate_and_a_public_key(
    ec_cert: x509.Certificate, other_cert: x509.Certificate
) -> None:
    mixed = pem_of(ec_cert) + other_cert.public_key().public_bytes(PEM, SPKI_FORMAT)
    with pytest.raises(PinConfigError, match=r"holds 2 certificates or keys"):
        spki_pin(mixed)


@pytest.mark.parametrize("cut", [1, 2, 10, 100])
def test_spki_pin_rejects_a_truncated_der(certs: dict[str, x509.Certificate], cut: int) -> None:
    der = der_of(certs["rsa2048"])
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(der[:-cut])
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(der[:cut])


def test_spki_pin_rejects_trailing_data(ec_cert: x509.Certificate) -> None:
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(der_of(ec_cert) + b"\x00")
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(spki_der_of(ec_cert) + b"\x00")


def test_spki_pin_rejects_a_truncated_pem(ec_cert: x509.Certificate) -> None:
    pem = pem_of(ec_cert)
    lines = pem.splitlines(keepends=True)
    shortened = lines[0] + b"".join(lines[2:])  # one base64 line missing
    with pytest.raises(PinConfigError, match=r"^not a valid DER certificate: |not valid base64"):
        spki_pin(shortened)


@pytest.mark.parametrize("algorithm", ["md5", "SHA256", "sha-256", "sha3_256", "", "sha256 "])
def test_spki_pin_rejects_an_unknown_algorithm(ec_cert: x509.Certificate, algorithm: str) -> None:
    message = rf"^unknown hash algorithm {re.escape(repr(algorithm))}: use one of sha1, sha256,"
    with pytest.raises(PinConfigError, match=message):
        spki_pin(ec_cert, algorithm)
    with pytest.raises(PinConfigError, match=message):
        cert_fingerprint(ec_cert, algorithm)


def test_spki_pin_rejects_a_pkcs1_rsa_public_key(rsa_key_1024: rsa.RSAPrivateKey) -> None:
    # A bare RSAPublicKey is not a SubjectPublicKeyInfo: hashing it would give a
    # pin that no server can ever match.
    public_key = rsa_key_1024.public_key()
    pkcs1_der = public_key.public_bytes(DER, serialization.PublicFormat.PKCS1)
    pkcs1_pem = public_key.public_bytes(PEM, serialization.PublicFormat.PKCS1)
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(pkcs1_der)
    with pytest.raises(PinConfigError, match=r"\(found: RSA PUBLIC KEY\)$"):
        spki_pin(pkcs1_pem)
    disguised = pkcs1_pem.replace(b"RSA PUBLIC KEY", b"PUBLIC KEY")
    with pytest.raises(PinConfigError, match=r"^not a valid DER public key: not a Subject"):
        spki_pin(disguised)
    # The same key as an SPKI is fine.
    assert spki_pin(public_key.public_bytes(DER, SPKI_FORMAT)) == pin_of(
        public_key.public_bytes(DER, SPKI_FORMAT)
    )


def test_spki_pin_rejects_a_public_key_of_an_unknown_algorithm() -> None:
    oid = der_tlv(0x06, bytes([0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x01, 0x02, 0x03]))
    spki = der_tlv(0x30, der_tlv(0x30, oid) + der_tlv(0x03, b"\x00" + b"\x01" * 32))
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(spki)
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(spki) + b"-----END PUBLIC KEY-----\n"
    with pytest.raises(PinConfigError, match=r"^not a valid DER public key: .*1\.3\.6\.1\.4\.1"):
        spki_pin(pem)


def test_spki_pin_rejects_a_certificate_with_an_invalid_version(
    ec_cert: x509.Certificate,
) -> None:
    der = der_of(ec_cert)
    fields = [element for _, _, element in tbs_fields(der)]
    assert fields[0] == bytes.fromhex("a003020102")  # v3
    fields[0] = bytes.fromhex("a003020105")  # "v6"
    bad = rebuild_cert(der, fields)
    with pytest.raises(PinConfigError, match=NEITHER):
        spki_pin(bad)
    with pytest.raises(PinConfigError, match=NEITHER):
        cert_fingerprint(bad)


# -- spki_pin: properties ---------------------------------------------------------------------


def check_pin_or_config_error(function: Callable[[bytes | str], str], data: bytes | str) -> None:
    try:
        result = function(data)
    except PinConfigError as exc:
        assert str(exc)
        return
    if result.startswith("sha256/"):
        assert_valid_pin(result)
    else:
        assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2}){31}", result), result


@FUZZ
@given(data=st.binary(max_size=512))
def test_spki_pin_of_arbitrary_bytes_is_a_pin_or_a_config_error(data: bytes) -> None:
    check_pin_or_config_error(spki_pin, data)
    check_pin_or_config_error(cert_fingerprint, data)


@FUZZ
@given(text=st.text(max_size=200))
def test_spki_pin_of_arbitrary_text_is_a_pin_or_a_config_error(text: str) -> None:
    check_pin_or_config_error(spki_pin, text)


@FUZZ
@given(
    label=st.sampled_from(["CERTIFICATE", "X509 CERTIFICATE", "PUBLIC KEY", "PRIVATE KEY", "X"]),
    body=st.binary(max_size=200),
    count=st.integers(min_value=1, max_value=2),
)
def test_spki_pin_of_pem_framed_garbage_is_a_config_error(
    label: str, body: bytes, count: int
) -> None:
    block = (
        f"-----BEGIN {label}-----\n".encode()
        + base64.encodebytes(body)
        + f"-----END {label}-----\n".encode()
    )
    with pytest.raises(PinConfigError):
        spki_pin(block * count)


@ignore_serial_warning
@FUZZ
@given(data=st.data())
def test_spki_pin_of_mutated_ders_is_a_pin_or_a_config_error(
    certs: dict[str, x509.Certificate], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(KEY_TYPES))
    source = data.draw(st.sampled_from(["certificate", "spki"]))
    der = bytearray(der_of(certs[kind]) if source == "certificate" else spki_der_of(certs[kind]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        if not der:
            break
        position = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
        action = data.draw(st.sampled_from(["set", "truncate", "insert", "delete"]))
        if action == "set":
            der[position] = data.draw(st.integers(min_value=0, max_value=255))
        elif action == "truncate":
            del der[position:]
        elif action == "insert":
            der.insert(position, data.draw(st.integers(min_value=0, max_value=255)))
        else:
            del der[position]
    check_pin_or_config_error(spki_pin, bytes(der))
    check_pin_or_config_error(cert_fingerprint, bytes(der))


@FUZZ
@given(algorithm=st.text(max_size=10))
def test_spki_pin_algorithm_is_one_of_four_or_a_config_error(
    ec_cert: x509.Certificate, algorithm: str
) -> None:
    if algorithm in ALGORITHMS:
        assert_valid_pin(spki_pin(ec_cert, algorithm), algorithm)
    else:
        with pytest.raises(PinConfigError, match=r"^unknown hash algorithm"):
            spki_pin(ec_cert, algorithm)


# -- cert_fingerprint ---------------------------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("kind", ["rsa2048", "p256", "ed25519"])
def test_cert_fingerprint_equals_openssl(
    certs: dict[str, x509.Certificate], kind: str, algorithm: str
) -> None:
    cert = certs[kind]
    fingerprint = cert_fingerprint(pem_of(cert), algorithm)
    assert fingerprint == openssl_fingerprint(pem_of(cert), algorithm)
    size = ALGORITHMS[algorithm]
    assert re.fullmatch(rf"[0-9A-F]{{2}}(:[0-9A-F]{{2}}){{{size - 1}}}", fingerprint)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_cert_fingerprint_is_the_hash_of_the_der(ec_cert: x509.Certificate, algorithm: str) -> None:
    der = der_of(ec_cert)
    expected = ":".join(f"{b:02X}" for b in hashlib.new(algorithm, der).digest())
    forms: list[str | bytes | x509.Certificate] = [
        ec_cert,
        der,
        pem_of(ec_cert),
        pem_of(ec_cert).decode("ascii"),
    ]
    assert [cert_fingerprint(form, algorithm) for form in forms] == [expected] * 4
    pin = Pin.parse(expected)
    assert (pin.kind, pin.algorithm, str(pin)) == ("cert", algorithm, expected)
    assert pin.matches(der)


def test_cert_fingerprint_defaults_to_sha256_and_differs_between_certs(
    ec_cert: x509.Certificate, other_cert: x509.Certificate
) -> None:
    assert cert_fingerprint(ec_cert) == cert_fingerprint(ec_cert, "sha256")
    assert len(cert_fingerprint(ec_cert)) == 32 * 3 - 1
    assert cert_fingerprint(ec_cert) != cert_fingerprint(other_cert)


def test_cert_fingerprint_rejects_public_keys(ec_cert: x509.Certificate) -> None:
    public_key = ec_cert.public_key()
    message = r"^a public key has no certificate fingerprint: use spki_pin\(\)$"
    for form in (
        public_key.public_bytes(PEM, SPKI_FORMAT),
        public_key.public_bytes(PEM, SPKI_FORMAT).decode("ascii"),
        public_key.public_bytes(DER, SPKI_FORMAT),
    ):
        with pytest.raises(PinConfigError, match=message):
            cert_fingerprint(form)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^cannot pin empty input$"),
        (b"junk", NEITHER),
        ("-----BEGIN X-----\nAAAA\n-----END X-----\n", r"\(found: X\)$"),
    ],
)
def test_cert_fingerprint_rejects_bad_input(data: str | bytes, message: str) -> None:
    with pytest.raises(PinConfigError, match=message):
        cert_fingerprint(data)


def test_cert_fingerprint_rejects_two_certificates(
    ec_cert: x509.Certificate, other_cert: x509.Certificate
) -> None:
    with pytest.raises(PinConfigError, match=r"holds 2 certificates or keys: pass one"):
        cert_fingerprint(pem_of(ec_cert) + pem_of(other_cert))
