"""Pin.parse: every accepted spelling, every rejected one, canonical str(), round trips."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import re
from typing import Literal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import Pin, _pins

SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
HEX_LENGTHS = {40: "sha1", 64: "sha256", 96: "sha384", 128: "sha512"}
B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
PROPERTY = settings(max_examples=300, deadline=None)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


DIGEST = bytes(range(1, 33))  # 32 bytes; base64 "AQIDBAUG..." (no leading "/")
PIN = f"sha256/{b64(DIGEST)}"
# 0xFC.. puts six one-bits first: the base64 text starts with "/".
SLASH_DIGEST = b"\xfc" + bytes(range(31))
SLASH_B64 = b64(SLASH_DIGEST)
PLUS_B64 = b64(b"\xfb" * 32)  # "+" in it: for the urlsafe alphabet


@pytest.fixture(scope="module")
def der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pins")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(2034, 1, 1, tzinfo=datetime.timezone.utc))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


# -- SPKI pins ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(SIZES))
def test_spki_pin_of_each_algorithm(algorithm: str) -> None:
    digest = bytes(range(SIZES[algorithm]))
    text = f"{algorithm}/{b64(digest)}"
    pin = Pin.parse(text)
    assert (pin.kind, pin.algorithm, pin.digest) == ("spki", algorithm, digest)
    assert str(pin) == text
    assert repr(pin) == f"Pin({text!r})"


@pytest.mark.parametrize("algorithm", sorted(SIZES))
def test_curl_spelling_is_the_same_pin(algorithm: str) -> None:
    digest = bytes(range(100, 100 + SIZES[algorithm]))
    hpkp = Pin.parse(f"{algorithm}/{b64(digest)}")
    curl = Pin.parse(f"{algorithm}//{b64(digest)}")
    assert curl == hpkp
    assert hash(curl) == hash(hpkp)
    assert str(curl) == f"{algorithm}/{b64(digest)}"  # canonical: one slash


def test_digest_whose_base64_starts_with_a_slash_keeps_it() -> None:
    assert SLASH_B64.startswith("/")
    text = f"sha256/{SLASH_B64}"  # looks like curl's "sha256//" but is not
    pin = Pin.parse(text)
    assert pin.digest == SLASH_DIGEST
    assert str(pin) == text
    assert str(pin).startswith("sha256//")
    # curl's spelling of the same pin has three slashes; it must mean the same.
    assert Pin.parse(f"sha256//{SLASH_B64}") == pin


@given(rest=st.binary(min_size=31, max_size=31), first=st.integers(0xFC, 0xFF))
def test_every_slash_leading_digest_loads_in_both_spellings(rest: bytes, first: int) -> None:
    digest = bytes([first]) + rest
    assert b64(digest).startswith("/")
    hpkp = Pin.parse(f"sha256/{b64(digest)}")
    curl = Pin.parse(f"sha256//{b64(digest)}")
    assert hpkp.digest == curl.digest == digest
    assert str(hpkp) == f"sha256/{b64(digest)}"


@pytest.mark.parametrize(
    ("text", "size", "name"),
    [
        ("sha256/abc", 32, "SHA-256"),
        (f"sha256/{b64(bytes(31))}", 32, "SHA-256"),
        (f"sha256/{b64(bytes(33))}", 32, "SHA-256"),
        (f"sha256/{b64(bytes(48))}", 32, "SHA-256"),  # a SHA-384 digest under sha256/
        (f"sha384/{b64(bytes(32))}", 48, "SHA-384"),
        (f"sha512/{b64(bytes(48))}", 64, "SHA-512"),
        (f"sha1/{b64(bytes(32))}", 20, "SHA-1"),
        ("sha256/", 32, "SHA-256"),
        ("sha256//", 32, "SHA-256"),
        (f"sha256/{b64(DIGEST)[:-1]}", 32, "SHA-256"),  # padding missing
        (f"sha256/{b64(DIGEST).rstrip('=')}", 32, "SHA-256"),
        (f"sha256/{b64(DIGEST)}=", 32, "SHA-256"),  # extra padding
        (f"sha256/ {b64(DIGEST)}", 32, "SHA-256"),
        (f"sha256/{b64(DIGEST)[:20]} {b64(DIGEST)[20:]}", 32, "SHA-256"),
        (f"sha256/{b64(SLASH_DIGEST).replace('/', '_')}", 32, "SHA-256"),  # urlsafe
        (f"sha256/{PLUS_B64.replace('+', '-')}", 32, "SHA-256"),
        (f"sha256///{b64(DIGEST)}", 32, "SHA-256"),  # two extra slashes
        (f"sha256/{b64(DIGEST)}/", 32, "SHA-256"),
        (f"sha256/{b64(DIGEST)[:-1]}\u00e9", 32, "SHA-256"),
    ],
)
def test_spki_pin_with_a_bad_digest_is_rejected(text: str, size: int, name: str) -> None:
    message = rf"^{re.escape(repr(text))} is not base64 of a {size}-byte {name} digest"
    with pytest.raises(ValueError, match=message):
        Pin.parse(text)


def test_bad_digest_message_says_what_is_expected() -> None:
    with pytest.raises(ValueError) as info:
        Pin.parse("sha256/abc")
    assert str(info.value) == (
        "'sha256/abc' is not base64 of a 32-byte SHA-256 digest"
        " (expected sha256/ followed by 44 base64 characters)"
    )


@pytest.mark.parametrize(
    "text", [f"md5/{b64(bytes(16))}", f"sha224/{b64(bytes(28))}", "sha3-256/abc", "x y/z"]
)
def test_unknown_hash_algorithm_is_rejected(text: str) -> None:
    prefix = text.split("/", 1)[0]
    message = rf"has an unknown hash algorithm {re.escape(repr(prefix))}: use sha1/, sha256/"
    with pytest.raises(ValueError, match=message):
        Pin.parse(text)


# -- certificate fingerprints ----------------------------------------------------------------


@pytest.mark.parametrize(("length", "algorithm"), sorted(HEX_LENGTHS.items()))
def test_fingerprint_algorithm_follows_from_its_length(length: int, algorithm: str) -> None:
    digest = bytes(range(0xA0, 0xA0 + length // 2))
    canonical = colon_hex(digest)
    spellings = [
        canonical,
        canonical.lower(),
        canonical.replace(":", ""),
        canonical.replace(":", "").lower(),
        digest.hex()[:10].upper() + digest.hex()[10:],  # mixed case
    ]
    for spelling in spellings:
        pin = Pin.parse(spelling)
        assert (pin.kind, pin.algorithm, pin.digest) == ("cert", algorithm, digest)
        assert str(pin) == canonical


def test_md5_fingerprints_are_rejected() -> None:
    for text in ("ab" * 16, ":".join(["AB"] * 16)):
        with pytest.raises(ValueError, match=r"looks like an MD5 fingerprint: MD5 pins are not"):
            Pin.parse(text)


@pytest.mark.parametrize("length", [2, 30, 38, 42, 62, 66, 94, 98, 126, 130, 256])
def test_fingerprints_of_other_lengths_are_rejected(length: int) -> None:
    text = "a" * length
    message = rf"^'{text}' has {length} hex digits: a fingerprint has 40 \(SHA-1\), 64 \(SHA-256\)"
    with pytest.raises(ValueError, match=message):
        Pin.parse(text)


@pytest.mark.parametrize(
    "text",
    ["ABC:DEF", "AB:CD:", ":AB:CD", "AB::CD", "A:BC", "AB:CD:E", "AB:CD EF"],
)
def test_short_fingerprints_are_rejected_whatever_their_separators(text: str) -> None:
    # ':' and white space may be anywhere (urllib3 strips every ':'): what
    # counts is the number of digits.
    digits = len(text.replace(":", "").replace(" ", ""))
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(text))} has {digits} hex digits: "):
        Pin.parse(text)


def test_hyphens_do_not_separate_hex_digits() -> None:
    with pytest.raises(ValueError, match=r"^'AB-CD' is neither an SPKI pin"):
        Pin.parse("AB-CD")


@pytest.mark.parametrize(
    "text", ["", "   ", "zz" * 32, "0x" + "ab" * 31, "g" * 64, "\u0660" * 64, "AB CX"]
)
def test_non_hex_text_is_neither_kind_of_pin(text: str) -> None:
    message = r"is neither an SPKI pin \(sha256/<base64>, or its 44 characters of bare base64\) nor"
    with pytest.raises(ValueError, match=message):
        Pin.parse(text)


@pytest.mark.parametrize("value", [None, 42, b"sha256/abc", ["sha256/abc"]])
def test_non_string_is_rejected_with_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match=rf"is a {type(value).__name__}, not a pin string$"):
        Pin.parse(value)  # type: ignore[arg-type]


# -- identity ----------------------------------------------------------------------------------


def test_spki_pin_and_fingerprint_with_one_digest_are_different_pins() -> None:
    spki = Pin.parse(PIN)
    cert = Pin.parse(DIGEST.hex())
    assert spki.digest == cert.digest
    assert spki != cert
    assert len({spki, cert, Pin.parse(f"sha256//{b64(DIGEST)}"), Pin.parse(colon_hex(DIGEST))}) == 2


def test_pins_are_immutable() -> None:
    pin = Pin.parse(PIN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pin.digest = bytes(32)  # type: ignore[misc]
    assert str(pin) == PIN


def test_pin_matches_the_certificate_it_was_made_from(der: bytes) -> None:
    cert = x509.load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for algorithm in SIZES:
        spki_pin = Pin("spki", algorithm, hashlib.new(algorithm, spki).digest())
        fingerprint = Pin("cert", algorithm, hashlib.new(algorithm, der).digest())
        assert spki_pin.matches(der)
        assert fingerprint.matches(der)
        assert Pin.parse(str(spki_pin)).matches(der)
        assert Pin.parse(str(fingerprint)).matches(der)
        # The twins: the same digests under the other kind, or off by one bit.
        assert not Pin("cert", algorithm, spki_pin.digest).matches(der)
        assert not Pin("spki", algorithm, fingerprint.digest).matches(der)
        flipped = bytes([spki_pin.digest[0] ^ 1]) + spki_pin.digest[1:]
        assert not Pin("spki", algorithm, flipped).matches(der)


# -- properties --------------------------------------------------------------------------------


def pins_of(kind: Literal["spki", "cert"], algorithm: str) -> st.SearchStrategy[Pin]:
    size = SIZES[algorithm]
    return st.binary(min_size=size, max_size=size).map(lambda d: Pin(kind, algorithm, d))


KINDS: tuple[Literal["spki", "cert"], ...] = ("spki", "cert")


ANY_PIN = st.one_of([pins_of(kind, algorithm) for kind in KINDS for algorithm in sorted(SIZES)])


@PROPERTY
@given(pin=ANY_PIN)
def test_round_trip_through_the_canonical_spelling(pin: Pin) -> None:
    text = str(pin)
    assert Pin.parse(text) == pin
    assert str(Pin.parse(text)) == text
    if pin.kind == "spki":
        assert text == f"{pin.algorithm}/{b64(pin.digest)}"
        assert Pin.parse(f"{pin.algorithm}//{b64(pin.digest)}") == pin
    else:
        assert text == colon_hex(pin.digest)
        assert Pin.parse(pin.digest.hex()) == pin
        assert Pin.parse(text.lower()) == pin


PIN_LIKE_TEXT = st.one_of(
    st.text(),
    st.tuples(
        st.sampled_from(["sha256/", "sha256//", "sha1/", "sha384/", "sha512/", "md5/", "", "/"]),
        st.text(alphabet=B64_ALPHABET, max_size=90),
    ).map("".join),
    st.text(alphabet="0123456789abcdefABCDEF:", max_size=140),
    ANY_PIN.map(str),
    ANY_PIN.flatmap(
        lambda p: st.integers(0, len(str(p))).map(lambda i: str(p)[:i] + str(p)[i + 1 :])
    ),
)


@PROPERTY
@given(text=PIN_LIKE_TEXT)
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        pin = Pin.parse(text)
    except ValueError as exc:
        assert repr(text.strip()) in str(exc)
        return
    assert pin.kind in ("spki", "cert")
    assert len(pin.digest) == SIZES[pin.algorithm]
    assert Pin.parse(str(pin)) == pin
    if pin.kind == "spki":
        assert re.fullmatch(r"sha(1|256|384|512)/[A-Za-z0-9+/]+=*", str(pin))
    else:
        assert re.fullmatch(r"[0-9A-F]{2}(:[0-9A-F]{2})+", str(pin))
        assert str(pin).replace(":", "") == text.strip().replace(":", "").upper()


def _b64_digest_by_b64decode(text: str) -> bytes | None:
    # The decoding the loader did before it called binascii directly.
    if len(text) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


@settings(max_examples=1000, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet="AQgw/+Zz09=\n é", max_size=48),
        st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode("ascii")),
    )
)
def test_base64_digests_decode_as_b64decode_validates_them(text: str) -> None:
    assert _pins._b64_digest(text) == _b64_digest_by_b64decode(text)


B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@settings(max_examples=1000, deadline=None)
@given(
    text=st.one_of(
        # The canonical shape, non-zero padding bits and a leading "/" included.
        st.text(alphabet=B64_ALPHABET, min_size=43, max_size=43).map(
            lambda body: f"sha256/{body}="
        ),
        # Near misses, which the general reading takes.
        st.text(alphabet=B64_ALPHABET + "= \n", min_size=40, max_size=46).map(
            lambda body: f"sha256/{body}"
        ),
    )
)
def test_the_canonical_spelling_reads_as_the_general_reading_does(text: str) -> None:
    # Pin.parse reads "sha256/<43 base64 characters>=" directly; _parse is the
    # reading of every spelling.
    try:
        general = Pin._parse(text.strip())
    except _pins._Refused:
        with pytest.raises(ValueError):
            Pin.parse(text)
        return
    pin = Pin.parse(text)
    assert (pin.kind, pin.algorithm, pin.digest) == (
        general.kind,
        general.algorithm,
        general.digest,
    )
