"""Property tests for the command line's parsers: any input parses or fails cleanly."""

from __future__ import annotations

import pytest
import trustme
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from requests_pinning._certs import split_der_certificates
from requests_pinning.cli._errors import UserError
from requests_pinning.cli._sources import parse_endpoint


@given(st.text(max_size=80))
def test_any_target_text_parses_or_is_a_user_error(text: str) -> None:
    try:
        endpoint = parse_endpoint(text)
    except UserError as exc:
        assert str(exc)  # one line for stderr, never another exception
        return
    assert 1 <= endpoint.port <= 65535
    assert endpoint.host


@given(
    st.sampled_from(["localhost", "api.example.com", "[::1]", "127.0.0.1"]), st.integers(1, 65535)
)
def test_host_and_port_round_trip(host: str, port: int) -> None:
    assert parse_endpoint(f"{host}:{port}").port == port
    assert parse_endpoint(f"https://{host}:{port}/x?y").port == port
    assert parse_endpoint(host).port == 443


@pytest.fixture(scope="module")
def chain_der() -> list[bytes]:
    ca = trustme.CA()
    leaf = ca.issue_cert("a.example")
    pems = [blob.bytes() for blob in leaf.cert_chain_pems] + [ca.cert_pem.bytes()]
    from cryptography.hazmat.primitives.serialization import Encoding

    return [x509.load_pem_x509_certificate(p).public_bytes(Encoding.DER) for p in pems]


@given(st.binary(max_size=300))
def test_any_bytes_split_into_certificates_or_raise_value_error(data: bytes) -> None:
    try:
        certs = split_der_certificates(data)
    except ValueError:
        return
    assert b"".join(certs) == data


# A flipped bit can make a serial number negative: cryptography still parses it,
# with a deprecation warning that is about the input, not about this code.
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@given(cut=st.integers(0, 2000), flip=st.integers(0, 2000))
def test_damaged_chains_never_raise_anything_but_value_error(
    chain_der: list[bytes], cut: int, flip: int
) -> None:
    data = bytearray(b"".join(chain_der))
    if flip < len(data):
        data[flip] ^= 0xFF
    data = data[: len(data) - cut % len(data)] if cut else data
    try:
        certs = split_der_certificates(bytes(data))
    except ValueError:
        return
    assert b"".join(certs) == bytes(data)  # nothing dropped, nothing invented


def test_a_whole_chain_splits_in_order(chain_der: list[bytes]) -> None:
    assert split_der_certificates(b"".join(chain_der)) == chain_der
