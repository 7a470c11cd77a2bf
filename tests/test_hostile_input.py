"""Hostile input: every DER length form OpenSSL reads, and only documented errors.

A certificate may use DER lengths that are not minimal (OpenSSL reads them; a
CA can sign one, and a handshake accepts it): its pins must still be read, as
encoded. Pin files and pin dicts raise only PinConfigError, and ``lint`` says
so in one line. PEM scanning, pin loading and lint take linear time: a test
compares two input sizes in one run, never an absolute time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from requests_pinning import (
    PinConfigError,
    PinFailure,
    PinMismatchError,
    PinningAdapter,
    PinningPoolManager,
    PinningSession,
    PinSet,
    _pinset,
    cli,
    spki_pin,
)
from requests_pinning._certs import iter_pem_blocks, spki_of_der_cert, split_der_certificates
from requests_pinning.cli import _sources as cli_sources
from requests_pinning.cli import lint as cli_lint
from requests_pinning.cli._errors import UserError
from requests_pinning.cli._sources import parse_endpoint

from .conftest import PKI
from .servers import TLSServer, _Server
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


def resign(
    cert_der: bytes, issuer: trustme.CA, octets: int = 0, *, replace: dict[int, bytes] | None = None
) -> bytes:
    """``cert_der`` with its subject's length in ``octets`` octets (0: as it was), or
    TBSCertificate fields replaced by index, signed again by ``issuer``."""
    [(_, outer, _)] = der_children(cert_der)
    (_, tbs, _), (_, _, algorithm), _ = der_children(outer)
    fields = [element for _, _, element in der_children(tbs)]
    if octets:
        _, subject, _ = der_children(fields[SUBJECT])[0]
        fields[SUBJECT] = long_form(0x30, subject, octets)
    for index, element in (replace or {}).items():
        fields[index] = element
    new_tbs = der_tlv(0x30, b"".join(fields))
    key = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    return der_tlv(0x30, new_tbs + algorithm + der_tlv(0x03, b"\x00" + signature))


def odd_leaf(
    leaf: trustme.LeafCert, issuer: trustme.CA, octets: int = 0, *, indefinite: bool = False
) -> trustme.LeafCert:
    """``leaf`` re-encoded with a non-minimal (or indefinite) subject length, re-signed."""
    original = der_of_pem(leaf.cert_chain_pems[0].bytes())
    replace = {}
    if indefinite:  # BER: OpenSSL verifies it too, the DER walker refuses it
        subject = der_children(der_children(der_children(original)[0][1])[0][1])[SUBJECT][1]
        replace[SUBJECT] = b"\x30\x80" + subject + b"\x00\x00"
    der = resign(original, issuer, octets, replace=replace)
    chain = [blob.bytes() for blob in leaf.cert_chain_pems[1:]]
    return trustme.LeafCert(leaf.private_key_pem.bytes(), pem(der), chain)


UNKNOWN_OID = "1.3.6.1.4.1.311.1.2.3"
UNKNOWN_SPKI = der_tlv(
    0x30,
    der_tlv(0x30, der_tlv(0x06, bytes.fromhex("2b0601040182370102" + "03")))
    + der_tlv(0x03, b"\x00" + b"\x01" * 32),
)


def unknown_key_cert(issuer: trustme.CA) -> bytes:
    """A certificate, signed by ``issuer``, for a key of an algorithm nobody knows."""
    return resign(der_of_pem(issuer.cert_pem.bytes()), issuer, replace={SUBJECT + 1: UNKNOWN_SPKI})


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


# -- linear time ------------------------------------------------------------------------


def seconds(function: Callable[[], object]) -> float:
    """This thread's CPU time, the best of three runs: the least disturbed by a loaded machine.

    CPU time, not the wall clock: on an oversubscribed machine (CI runs two
    suites at once on two cores) a short run often escapes preemption where a
    long one never does, and wall-clock ratios of linear work reached 105.
    """
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        with contextlib.suppress(ValueError):
            function()
        best = min(best, time.thread_time() - start)
    return best


def assert_linear(function: Callable[[bytes], object], make: Callable[[int], bytes]) -> None:
    """``function`` on 8 times the input takes well under 64 times as long.

    Never an absolute time: the ratio of two sizes in one run. Linear is about
    8; quadratic would be 64. The bound of 30 leaves room for a loaded machine.
    """
    small, large = make(8_000), make(64_000)
    assert len(large) >= 7 * len(small)
    ratio = seconds(lambda: function(large)) / max(seconds(lambda: function(small)), 1e-9)
    assert ratio < 30, f"8x the input took {ratio:.0f}x the time"


# Each shape once made a scan search the rest of the input again and again.
PEM_SHAPES: dict[str, Callable[[int], bytes]] = {
    "unterminated BEGIN lines": lambda n: b"-----BEGIN CERTIFICATE-----\n" * n,
    "BEGIN lines of distinct labels": lambda n: b"".join(
        b"-----BEGIN A%d-----\n" % i for i in range(n)
    ),
    "BEGIN and END of other labels": lambda n: b"-----BEGIN A-----\n-----END B-----\n" * n,
    "BEGIN lines without their dashes": lambda n: b"-----BEGIN CERTIFICATE\n" * n,
    "one long label": lambda n: b"-----BEGIN " + b"A" * (20 * n),
    "dashes": lambda n: b"-----BEGIN X-----" + b"-" * (20 * n),
    "END lines then a BEGIN": lambda n: b"-----END X-----\n" * n + b"-----BEGIN X-----\n",
}


@pytest.mark.parametrize("shape", sorted(PEM_SHAPES))
def test_spki_pin_takes_linear_time_on_hostile_pem(shape: str) -> None:
    assert_linear(spki_pin, PEM_SHAPES[shape])


# -- PEM scanning: the same blocks as the regular expression it replaced -----------------

# The old scanner: right, but quadratic on unterminated BEGIN lines. Kept as a model.
MODEL = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
PEM_PIECES = [
    b"-----BEGIN ", b"-----END ", b"-----", b"-", b"A", b"B", b"A B", b"#", b" ", b"\n",
    b"\t", b"MII=", b"a", b"\x00",
]  # fmt: skip


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PEM_PIECES), max_size=40))
def test_pem_blocks_are_those_of_the_regular_expression(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    expected = [(m.group(1).decode(), m.group(2)) for m in MODEL.finditer(data)]
    assert list(iter_pem_blocks(data)) == expected


def test_pem_blocks_in_order_with_text_between(pki: PKI) -> None:
    leaf, ca = pki.leaf.cert_chain_pems[0].bytes(), pki.root.cert_pem.bytes()
    # A BEGIN without its END is skipped; one with it spans any BEGIN in between.
    data = b"junk\n-----BEGIN X-----\n" + leaf + b"text" + ca
    assert [label for label, _ in iter_pem_blocks(data)] == ["CERTIFICATE", "CERTIFICATE"]
    assert [body[:3] for _, body in iter_pem_blocks(data)] == [b"MII", b"MII"]
    spanning = b"-----BEGIN CERTIFICATE-----\n" + leaf
    assert [body[:11] for _, body in iter_pem_blocks(spanning)] == [b"-----BEGIN "]


# -- pin files and pin dicts: PinConfigError, and nothing else -------------------------

PIN_A = "sha256/" + base64.b64encode(b"a" * 32).decode()
PIN_B = "sha256/" + base64.b64encode(b"b" * 32).decode()


def pin_file(tmp_path: Path, content: str | bytes) -> str:
    path = tmp_path / "pins.json"
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
        ('{"a.example": ' + "9" * 5000 + "}", "number too long (5000 digits)"),
        ('{"a.example": [-' + "9" * 30 + "]}", "number too long (31 digits)"),
        ('{"a.example": NaN}', "NaN is not JSON"),
        ('{"a.example": {"pins": ["x"], "report_only": -Infinity}}', "-Infinity is not JSON"),
        ("null", "null is not an object of entries"),
        ('{"\\ud800.example": ["x"]}', "host pattern '\\ud800.example': not a valid host name"),
        (f'{{"a.example": ["{PIN_A}", "\\udfff"]}}', "'\\udfff' is neither an SPKI pin"),
        ("\ufeff\ufeff{}", "is not valid JSON: Unexpected UTF-8 BOM"),
        (b"\xff\xfe{\x00}\x00", "is not UTF-8"),  # a UTF-16 BOM
        (b'{"a": "\xed\xa0\x80"}', "is not UTF-8"),  # a surrogate in UTF-8
    ],
)
def test_hostile_pin_files_raise_a_config_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = pin_file(tmp_path, content)
    with pytest.raises(PinConfigError) as info:
        PinSet.from_json(path)
    assert str(info.value).startswith(f"pin file {path!r}")
    assert message in str(info.value)
    # lint: one line on stderr, exit 2, never a traceback.
    status = cli.main(["lint", path])
    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    assert err.startswith("requests-pinning: error: pin file") and message in err
    assert err.count("\n") == 1


def test_a_pin_file_with_a_utf8_bom_loads(tmp_path: Path) -> None:
    path = pin_file(tmp_path, "\ufeff" + json.dumps({"a.example": [PIN_A, PIN_B]}))
    assert [entry.pattern for entry in PinSet.from_json(path)] == ["a.example"]


def test_messages_about_huge_values_stay_short(tmp_path: Path) -> None:
    huge = "A" * 10_000_000
    for config in ({"a.example": [huge]}, {huge: [PIN_A]}, {"a.example": {huge: 1}}):
        with pytest.raises(PinConfigError) as info:
            PinSet(config)
        message = str(info.value)
        assert len(message) < 1100
        assert " [...] " in message
    # The start says which entry, the end what is wrong.
    with pytest.raises(
        PinConfigError,
        match=r"^pins for 'a.example': 'AAA.* \[\.\.\.\] AAA.*' has 10000000 hex digits",
    ):
        PinSet({"a.example": [huge]})


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({1: [PIN_A]}, "host pattern 1 is a int, not a string"),
        ({b"a.example": [PIN_A]}, "host pattern b'a.example' is a bytes, not a string"),
        ({Unprintable(): [PIN_A]}, "host pattern <Unprintable that cannot be shown> is a Unp"),
        ({"a.example": Unprintable()}, "got Unprintable <Unprintable that cannot be shown>"),
        ({"a.example": [Unprintable()]}, "<Unprintable that cannot be shown> is a Unprintable"),
        ({"a.example": nested(100_000)}, "<list that cannot be shown> is a list, not a pin"),
        ({"a.example": {"pins": [PIN_A], "expires": nested(100_000)}}, "<list that cannot be"),
        ({"a.example": {"pins": [PIN_A], "report_uri": nested(100_000)}}, "<list that cannot"),
        ({"a.example": [10**5000]}, "<int that cannot be shown> is a int, not a pin string"),
        ({"a.example": {"pins": [PIN_A], 10**5000: 1}}, "unknown key <int that cannot be shown>"),
        ({"a.example": [float("nan")]}, "nan is a float, not a pin string"),
        ({"a.example": {PIN_A}}, "expected a list of pins or an object with 'pins', got set"),
    ],
)
def test_hostile_pin_dicts_raise_a_config_error(config: dict[object, object], message: str) -> None:
    with pytest.raises(PinConfigError) as info:
        PinSet(config)  # type: ignore[arg-type]
    assert message in str(info.value)


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
PIN_LIKE = st.sampled_from([PIN_A, PIN_B, "sha256//" + PIN_A[7:], PIN_A.upper(), "AB" * 32])
PATTERN_LIKE = st.sampled_from(["a.example", "*.a.example", "**.a.example:8443", "[::1]:1"])


def json_like(keys: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.recursive(
        JSON_LEAVES | PIN_LIKE,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


ENTRY_KEYS = st.sampled_from(
    ["pins", "deny", "include_subdomains", "expires", "report_only", "report_uri", "other"]
)
# Values whose repr() fails are left to the test above: hypothesis shows its
# strategies and failing examples with repr().
ODD_KEYS = st.sampled_from([b"bytes", (PIN_A,), frozenset([PIN_A]), 1.5, None, 2**64])
ODD_VALUES = ODD_KEYS | st.sampled_from([nested(50), {PIN_A}, (PIN_A, PIN_B)])


@given(
    st.dictionaries(
        PATTERN_LIKE | st.text(max_size=20) | st.integers() | st.binary(max_size=4) | ODD_KEYS,
        json_like(ENTRY_KEYS | st.text(max_size=8) | ODD_KEYS) | ODD_VALUES,
        max_size=4,
    )
)
def test_any_pin_dict_loads_or_raises_a_config_error(config: dict[object, object]) -> None:
    try:
        pinset = PinSet(config)  # type: ignore[arg-type]
    except PinConfigError as exc:
        assert str(exc)
        return
    assert PinSet(pinset.to_dict()) == pinset


JSON_PIECES = [
    "{", "}", "[", "]", ",", ":", '"a.example"', '"pins"', '"deny"', '"expires"',
    f'"{PIN_A}"', '"\\ud800"', '"\\u0000"', "1", "-0", "1e999", "9" * 30, "NaN",
    "-Infinity", "true", "null", " ", "\n", "\ufeff", '"', "\\",
]  # fmt: skip


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(JSON_PIECES), max_size=30), st.binary(max_size=4))
def test_any_pin_file_loads_or_raises_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[str], noise: bytes
) -> None:
    path = tmp_path_factory.mktemp("pins") / "pins.json"
    path.write_bytes("".join(pieces).encode("utf-8", "surrogatepass") + noise)
    try:
        PinSet.from_json(path)
    except PinConfigError as exc:
        assert str(exc).startswith(f"pin file {str(path)!r}")


def test_pin_loading_takes_linear_time(tmp_path: Path) -> None:
    def entries(n: int) -> bytes:
        return json.dumps({f"h{i}.example:{i % 65535 + 1}": [PIN_A] for i in range(n)}).encode()

    def pins_and_deny(n: int) -> bytes:
        # pins and deny both long: a tuple lookup made this quadratic
        digests = [hashlib.sha256(b"%d" % i).digest() for i in range(2 * n)]
        pins = ["sha256/" + base64.b64encode(d).decode() for d in digests]
        return json.dumps({"a.example": {"pins": pins[:n], "deny": pins[n:]}}).encode()

    def load(data: bytes) -> object:
        path = tmp_path / "pins.json"
        path.write_bytes(data)
        return PinSet.from_json(path)

    assert_linear(load, lambda n: entries(n // 8))
    assert_linear(load, lambda n: pins_and_deny(n // 8))


def _pin_number(number: int) -> str:
    """A distinct canonical pin for each ``number``."""
    return "sha256/" + base64.b64encode(hashlib.sha256(str(number).encode()).digest()).decode()


# Valid files whose entries lint once paired quadratically; n: the entries.
LINT_SHAPES: dict[str, Callable[[int], dict[str, list[str]]]] = {
    # pairing every entry with every other
    "one host on many ports": lambda n: {f"a.example:{p}": [PIN_A, PIN_B] for p in range(1, n)},
    # pairing every name with every entry of its parent (none of which can apply
    # where the name's does)
    "a host on many ports above many names": lambda n: {
        **{f"a.example:{p}": [PIN_A, PIN_B] for p in range(1, n // 2)},
        **{f"h{i}.a.example": [PIN_B, PIN_A] for i in range(n // 2)},
    },
    # two overlapping entries of many pins each: every pin of one was looked
    # for in the other's tuple
    "two overlapping entries of many pins": lambda n: {
        "**.a.example": [_pin_number(i) for i in range(4 * n)],
        "b.a.example": [_pin_number(-1 - i) for i in range(4 * n)],
    },
    # pairs that do overlap, quadratically many: lint stops after _MAX_PAIRS
    "a subtree on many ports above many names": lambda n: {
        **{f"**.a.example:{p}": [PIN_A, PIN_B] for p in range(1, n // 2)},
        **{f"h{i}.a.example": [PIN_B, "sha256/" + "B" * 43 + "="] for i in range(n // 2)},
    },
}


@pytest.mark.parametrize("shape", list(LINT_SHAPES))
def test_lint_takes_linear_time(
    shape: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def lint(data: bytes) -> object:
        path = tmp_path / "pins.json"
        path.write_bytes(data)
        return cli.main(["lint", str(path)])

    assert_linear(lint, lambda n: json.dumps(LINT_SHAPES[shape](n // 32)).encode())
    out, err = capsys.readouterr()
    assert err == ""
    if shape == "a subtree on many ports above many names":
        assert "[overrides-unchecked]" in out
    elif shape == "two overlapping entries of many pins":
        assert "1 warning(s)" in out and "[override]" in out
    else:
        assert "0 warning(s)" in out


# -- the command line: one line and an exit status, never a traceback ------------------

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    for line in err.splitlines():  # errors and warnings, one line each; never a bug
        assert line.startswith("requests-pinning: "), err
    assert "unexpected error" not in err and "Traceback" not in err
    return status, out, err


class LaxTLSServer(TLSServer):
    """A TLSServer that may send a certificate for a key OpenSSL cannot size.

    OpenSSL's default security level refuses to load such a chain; an attacker's
    server has no such scruples.
    """

    def __init__(self, cert: trustme.LeafCert) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.num_tickets = 0
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        cert.configure_cert(context)
        _Server.__init__(self, context, "127.0.0.1")
        self.bytes_received = 0
        self.requests: list[str] = []


def test_pins_of_a_certificate_with_an_unknown_key_algorithm(
    capsys: Capture, pki: PKI, tmp_path: Path
) -> None:
    der = unknown_key_cert(pki.root)
    expected = "sha256/" + base64.b64encode(hashlib.sha256(UNKNOWN_SPKI).digest()).decode()
    assert spki_pin(der) == expected  # the pin never needed the key
    for name, data in (("cert.pem", pem(der)), ("cert.der", der)):
        (tmp_path / name).write_bytes(data)
        status, out, _ = run(capsys, "pins", str(tmp_path / name))
        assert status == 0
        assert f"key          unknown key algorithm OID {UNKNOWN_OID}\n" in out
        assert f"spki pin     {expected}\n" in out


def test_pins_insecure_on_a_server_that_appends_an_unknown_key_algorithm(
    capsys: Capture, pki: PKI
) -> None:
    leaf = pki.leaf.cert_chain_pems[0].bytes()
    served = trustme.LeafCert(
        pki.leaf.private_key_pem.bytes(), leaf, [pem(unknown_key_cert(pki.rogue_root))]
    )
    with LaxTLSServer(served) as server:
        status, out, err = run(capsys, "pins", "--insecure", f"localhost:{server.port}")
    assert status == 0, err
    assert f"unknown key algorithm OID {UNKNOWN_OID}" in out
    assert pki.leaf_pin in out


def test_pins_of_a_server_and_a_file_with_a_non_minimal_length(
    capsys: Capture, pki: PKI, tmp_path: Path
) -> None:
    odd = odd_leaf(pki.leaf, pki.intermediate, 5)
    with TLSServer(odd) as server:
        status, out, err = run(
            capsys, "pins", "--ca-bundle", pki.bundle, f"localhost:{server.port}"
        )
    assert status == 0, err
    assert "#0  leaf, not strict DER: cryptography cannot parse it\n" in out
    assert f"spki pin     {pki.leaf_pin}\n" in out
    assert f"spki pin     {pki.intermediate_pin}\n" in out
    path = tmp_path / "odd.pem"
    path.write_bytes(odd.cert_chain_pems[0].bytes())
    status, out, err = run(capsys, "pins", "--json", "--host", "a.example", str(path))
    assert status == 0, err
    assert json.loads(out) == {"a.example": {"pins": [pki.leaf_pin]}}


@pytest.mark.parametrize("as_json", [False, True])
def test_check_on_servers_whose_certificates_cryptography_or_the_walker_refuses(
    capsys: Capture, pki: PKI, tmp_path: Path, as_json: bool
) -> None:
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"localhost": [pki.intermediate_pin, pki.root_pin]}))
    odd = odd_leaf(pki.leaf, pki.intermediate, 5)
    # OpenSSL verifies a BER (indefinite) length too; the walker refuses it: a failure.
    ber = odd_leaf(pki.rogue_leaf, pki.rogue_root, indefinite=True)
    with TLSServer(odd) as good, TLSServer(ber) as bad:
        flags = ["--json"] if as_json else []
        targets = [f"localhost:{good.port}", f"localhost:{bad.port}"]
        status, out, err = run(
            capsys, "check", *flags, "--ca-bundle", pki.bundle, str(pins), *targets
        )
        pins_status, _, pins_err = run(capsys, "pins", "--ca-bundle", pki.bundle, targets[1])
    assert status == 1, err
    reason = "the certificate chain cannot be checked: indefinite DER length"
    if as_json:
        records = json.loads(out)
        assert [(r["status"], r["ok"]) for r in records] == [("matched", True), ("failed", False)]
        assert records[0]["matched"] == pki.intermediate_pin
        assert records[1]["reason"] == reason
        assert records[1]["checked"][0]["pin"] == "(unparseable certificate)"
    else:
        assert f"PASS  localhost:{good.port}\n" in out
        assert f"FAIL  localhost:{bad.port}: {reason}\n" in out
    assert pins_status == 1
    assert pins_err == f"requests-pinning: error: {targets[1]}: certificate #0 cannot be parsed\n"


URL_PIECES = st.sampled_from(
    ["https://", "http://", "[", "]", ":", "::", "1", "a", ".", "%25", "%", "@", "/", "?", "#",
     "\uff03", "\u3002", "xn--", "443", "99999", "-", " ", "\x00", "\\", "[::1]", "127.1"]
)  # fmt: skip


@given(st.lists(URL_PIECES, max_size=12).map("".join))
def test_any_url_like_target_parses_or_is_a_user_error(text: str) -> None:
    try:
        endpoint = parse_endpoint(text)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert 1 <= endpoint.port <= 65535


def test_target_parsing_takes_linear_time() -> None:
    def target(text: bytes) -> object:
        try:
            return parse_endpoint(text.decode())
        except UserError:
            return None

    for make in (
        lambda n: b"https://[" + b":" * n + b"]/",
        lambda n: b"https://" + b"a." * (n // 2) + b"example:443/",
        lambda n: b"a" * n + b":" + b"9" * n,
        # the zone id's split once backtracked over runs of colons (a minute
        # and a half for 128 KiB of them)
        lambda n: b":" * n,
        lambda n: b":" * n + b"%",
        lambda n: b"[" + b":" * n + b"%" + b"a" * n,
    ):
        assert_linear(target, make)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("[::1%" + "a" * 65 + "]:1", "is not a zone id"),
        ("[::1%\udcff]:1", "is not a zone id"),
        ("[::1%a\x01]:1", "is not a zone id"),
        ("https://[::1%25]:1/", "is not a zone id"),
        ("[::1%a..b]:1", "cannot resolve [::1%a..b]:1"),  # the resolver's encoder refuses it
    ],
)
def test_a_target_zone_id_is_an_interface_or_an_error(
    capsys: Capture, target: str, message: str
) -> None:
    # Handed to the resolver with the address, zone ids that its name encoder
    # refuses failed as "unexpected error, a bug" (round 8 attack pass).
    status, out, err = run(capsys, "pins", "--timeout", "5", target)
    assert status in (1, 2) and out == ""
    assert message in err


@settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_file_given_to_pins_is_pinned_or_one_line(
    capsys: Capture, pki: PKI, tmp_path: Path, data: st.DataObject
) -> None:
    chain = b"".join(blob.bytes() for blob in pki.leaf.cert_chain_pems)
    source = data.draw(st.sampled_from(["pem", "der", "bytes"]))
    if source == "pem":
        content = bytearray(chain)
    elif source == "der":
        content = bytearray(der_of_pem(chain))
    else:
        content = bytearray(data.draw(st.binary(max_size=300)))
    for _ in range(data.draw(st.integers(0, 3))):
        if content:
            position = data.draw(st.integers(0, len(content) - 1))
            content[position] = data.draw(st.integers(0, 255))
    path = tmp_path / "input"
    path.write_bytes(bytes(content))
    status, out, err = run(capsys, "pins", str(path))
    assert status in (0, 2)
    if status:
        assert err.count("\n") == 1 and out == ""


def test_an_unexpected_error_is_one_line_saying_it_is_a_bug(
    capsys: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pin_file(tmp_path, json.dumps({"a.example": [PIN_A, PIN_B]}))

    def broken(*args: object) -> object:
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(cli_lint, "lint", broken)
    status = cli.main(["lint", path])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err == (
        "requests-pinning: error: unexpected error, a bug in requests-pinning "
        "(please report it): RuntimeError: something unforeseen\n"
    )


def test_a_certificate_the_walker_refuses_is_a_pin_failure_on_the_wire(pki: PKI) -> None:
    # OpenSSL verifies a BER (indefinite) length; the walker cannot read it.
    # The check cannot decide: enforced, that is a PinMismatchError before any
    # byte is sent; report-only, the request proceeds and the failure is reported.
    ber = odd_leaf(pki.rogue_leaf, pki.rogue_root, indefinite=True)
    pins = {"localhost": [pki.intermediate_pin]}
    with TLSServer(ber) as bad:
        failures: list[PinFailure] = []
        with PinningSession(pins, on_failure=failures.append) as session:
            session.verify = pki.bundle
            with pytest.raises(PinMismatchError, match="could not be checked"):
                session.post(f"https://localhost:{bad.port}/", data=b"secret")
        bad.wait_idle()
        assert bad.handshakes == 1
        assert bad.bytes_received == 0
        assert len(failures) == 1
        with PinningSession(pins, report_only=True, on_failure=failures.append) as session:
            session.verify = pki.bundle
            assert session.get(f"https://localhost:{bad.port}/").status_code == 200
        assert len(failures) == 2
        assert failures[1].report_only


# -- found by the second attack pass ---------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning:urllib3.contrib.pyopenssl")
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify off
@pytest.mark.usefixtures("pyopenssl")
@pytest.mark.parametrize("verify", [False, True])
def test_pyopenssl_and_a_certificate_cryptography_refuses_keep_every_names_pins(
    pki: PKI, verify: bool
) -> None:
    # A version "4" certificate: OpenSSL accepts it, cryptography does not. The
    # pinned name reaches the connection only through server_hostname (dialled
    # by IP): reading the chain failing must not narrow the pins to the URL's.
    version_4 = b"\xa0\x03\x02\x01\x03"
    issuer = pki.rogue_root if verify else trustme.CA()
    leaf = issuer.issue_cert("localhost")
    der = resign(der_of_pem(leaf.cert_chain_pems[0].bytes()), issuer, replace={0: version_4})
    impostor = trustme.LeafCert(leaf.private_key_pem.bytes(), pem(der), [])
    options: dict[str, Any] = (
        {"cert_reqs": "CERT_REQUIRED", "ca_certs": pki.bundle, "assert_hostname": False}
        if verify
        else {"cert_reqs": "CERT_NONE"}
    )
    pins = {"localhost": [pki.intermediate_pin, pki.leaf_pin]}
    http = PinningPoolManager(pins, server_hostname="localhost", **options)
    with TLSServer(impostor) as server:
        with pytest.raises(PinMismatchError) as info:
            http.request("POST", f"https://127.0.0.1:{server.port}/", body=b"x", retries=False)
        assert info.value.pattern == "localhost"
        server.wait_idle()
        assert server.handshakes == 1
        assert server.bytes_received == 0
    # The twin: the genuine server by the same route passes.
    with TLSServer(pki.leaf) as good:
        assert http.request("GET", f"https://127.0.0.1:{good.port}/", retries=False).status == 200


# -- found by the attack pass of round 7 ----------------------------------------------


def test_lint_reads_a_file_with_a_schema_key(capsys: Capture, tmp_path: Path) -> None:
    # "$schema" names the file's schema; lint read it as an entry and crashed.
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"$schema": "./pin-file.schema.json", "a.example": [PIN_A, PIN_A]}))
    status, out, _ = run(capsys, "lint", str(path))
    assert status == 1
    assert "a.example: pin " in out and "is listed twice [duplicate-pin]" in out
    assert "1 entries, 2 warning(s)" in out  # the duplicate, and no backup pin


def test_lint_reads_a_pipe_once(capsys: Capture, tmp_path: Path) -> None:
    # A pipe (a shell's <(...)) can be read once: lint read its file twice.
    read, write = os.pipe()
    os.write(write, json.dumps({"a.example": [PIN_A, PIN_A]}).encode())
    os.close(write)
    try:
        status, out, _ = run(capsys, "lint", f"/dev/fd/{read}")
    finally:
        os.close(read)
    assert status == 1
    assert "is listed twice [duplicate-pin]" in out


def test_a_pin_file_larger_than_any_is_refused_without_reading_it_all(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # /dev/zero as the pin file read until memory ran out.
    with pytest.raises(PinConfigError, match=r"^pin file '/dev/zero' is larger than 256 MiB"):
        PinSet.from_json("/dev/zero")
    monkeypatch.setattr(_pinset, "_MAX_FILE_BYTES", 1024)
    path = tmp_path / "pins.json"
    too_large, largest = (json.dumps({"a.example": [PIN_A] * n}) for n in (19, 18))
    assert len(too_large) > 1024 >= len(largest)
    path.write_text(too_large)
    with pytest.raises(PinConfigError, match=r"is larger than 0 MiB: not a pin file$"):
        PinSet.from_json(path)
    path.write_text(largest)
    assert len(PinSet.from_json(path)) == 1
    status, _, err = run(capsys, "lint", "/dev/zero")
    assert status == 2 and "larger than 0 MiB" in err


def test_reading_a_pin_file_sets_aside_no_more_than_it_holds(tmp_path: Path) -> None:
    # read(limit) set the whole limit (256 MiB) aside before reading a file
    # of a few kilobytes: a process with a memory limit could not load pins.
    import tracemalloc

    path = tmp_path / "pins.json"
    path.write_text(json.dumps({f"h{i}.example": [PIN_A, PIN_B] for i in range(100)}))
    tracemalloc.start()
    try:
        text = _pinset.read_pin_file(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == path.read_text()
    assert peak < 4 * path.stat().st_size + 65536


def test_a_device_larger_than_the_limit_is_dropped_before_it_is_joined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pieces of /dev/zero were joined before their length was looked at:
    # refusing it took twice the limit (566 MB at the peak for 256 MiB).
    import tracemalloc

    monkeypatch.setattr(_pinset, "_MAX_FILE_BYTES", 8 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(PinConfigError, match="is larger than 8 MiB"):
            _pinset.read_pin_file("/dev/zero")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20) * 1.5


@pytest.mark.parametrize("name", ["pins\x00.json", "pins\ud800.json"])
def test_a_pin_file_name_that_open_refuses_is_a_config_error(name: str) -> None:
    # open() refuses these with ValueError (embedded null byte) and
    # UnicodeEncodeError, which escaped every way of loading a pin file.
    for load in (PinSet.load, PinSet.from_json, lambda path: PinningAdapter(pins=path)):
        with pytest.raises(PinConfigError, match=r"^cannot read pin file "):
            load(name)


def test_a_certificate_file_larger_than_any_is_refused(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, pki: PKI, tmp_path: Path
) -> None:
    # pins --backup /dev/zero read until memory ran out.
    status, out, err = run(capsys, "pins", "--json", "--backup", "/dev/zero", "localhost:1")
    assert (status, out) == (2, "")
    assert "'/dev/zero' is larger than 16 MiB: not a certificate or key file" in err
    # A file just over the limit is refused, one at it is read.
    pem = pki.root.cert_pem.bytes()
    path = tmp_path / "spare.pem"
    path.write_bytes(pem)
    monkeypatch.setattr(cli_sources, "_MAX_CERT_FILE_BYTES", len(pem) - 1)
    status, _, err = run(capsys, "pins", str(path))
    assert status == 2 and "is larger than 0 MiB" in err
    monkeypatch.setattr(cli_sources, "_MAX_CERT_FILE_BYTES", len(pem))
    status, out, err = run(capsys, "pins", str(path))
    assert status == 0 and pki.root_pin in out, err


@pytest.mark.parametrize(
    ("argv", "status", "shown"),
    [
        (["lint", "pins-\udcff.json"], 0, b"pins-\\udcff.json: 1 entries, 0 warning(s)"),
        (["pins", "pins-\udcff.json"], 2, b"'pins-\\udcff.json' is neither a PEM"),
        (["lint", "--warn-days", "\udcff", "x"], 2, b"'\\udcff' is not a whole number"),
    ],
)
def test_what_the_locale_cannot_encode_is_printed_escaped(
    tmp_path: Path, argv: list[str], status: int, shown: bytes
) -> None:
    # A file name (or an argument) of bytes that are not UTF-8 arrives as
    # surrogate escapes; printing it back with a strict stdout (any UTF-8
    # locale, PYTHONIOENCODING=utf-8) failed as "unexpected error, a bug".
    (tmp_path / os.fsdecode(b"pins-\xff.json")).write_text(
        json.dumps({"a.example": [PIN_A, PIN_B]})
    )
    result = subprocess.run(
        [sys.executable, "-m", "requests_pinning", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        check=False,
    )
    assert result.returncode == status, result.stderr
    assert shown in result.stdout + result.stderr
    assert b"unexpected error" not in result.stderr


class _BrokenZone(tzinfo):
    """A time zone whose utcoffset() answers ``answer`` (or raises it)."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def utcoffset(self, dt: datetime | None) -> Any:
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def dst(self, dt: datetime | None) -> None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        return "broken"


@pytest.mark.parametrize("answer", [3600, "+01:00", RuntimeError("no"), ZeroDivisionError()])
def test_an_expiry_whose_time_zone_cannot_be_read_is_a_config_error(answer: object) -> None:
    # utcoffset() returning an int escaped PinSet as a TypeError.
    when = datetime(2030, 1, 1, tzinfo=_BrokenZone(answer))
    with pytest.raises(PinConfigError, match=r"^'expires' for 'a\.example': the time zone of "):
        PinSet({"a.example": {"pins": [PIN_A], "expires": when}})


def test_output_stays_printable_until_the_last_of_overlapping_runs_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # main() in two threads: the first to end restored the strict handler
    # while the other still printed a name the locale cannot encode.
    import io

    from requests_pinning.cli import _printable_output

    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr("sys.stdout", stream)
    first, second = _printable_output(), _printable_output()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # ends first, the other still running
    assert stream.errors == "backslashreplace"
    print("pins-\udcff.json", file=stream)
    second.__exit__(None, None, None)
    assert stream.errors == "strict"


class _LyingMoment(datetime):
    """A datetime whose astimezone() answers a string (and whose year is wrong)."""

    def astimezone(self, tz: Any = None) -> Any:
        return "not a moment"

    @property
    def year(self) -> int:
        return 1


def test_an_expiry_of_a_datetime_subclass_is_read_as_a_datetime() -> None:
    # The subclass's astimezone() answer was kept as the expiry: a string, or
    # a naive time, which failed every later check of the host.
    when = _LyingMoment(2030, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    [entry] = PinSet({"a.example": {"pins": [PIN_A], "expires": when}})
    assert type(entry.expires) is datetime
    assert entry.expires == datetime(2030, 1, 1, 0, tzinfo=timezone.utc)
    assert entry.to_dict()["expires"] == "2030-01-01T00:00:00+00:00"
    assert not entry.is_expired(datetime(2029, 12, 31, 23, 59, tzinfo=timezone.utc))


@pytest.mark.parametrize("days", ["3652501", "1000000000", "99999999999999999999999"])
def test_lint_refuses_a_warning_window_longer_than_any_expiry(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, days: str
) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"a.example": {"pins": [PIN_A, PIN_B], "expires": "2099-01-01"}}))
    status, out, err = run(capsys, "lint", "--warn-days", days, str(path))
    assert status == 2 and out == ""
    assert f"--warn-days: '{days}' is more than 3652500 days" in err
    assert run(capsys, "lint", "--warn-days", "3652500", str(path))[0] == 1  # expires-soon
