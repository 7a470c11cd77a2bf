"""IP spellings that OpenSSL and the resolver read differently.

The resolver dials ``127.0.0.010`` as 127.0.0.8 (octal); OpenSSL validates
the certificate against 127.0.0.10 (its own, decimal reading). The pinned
name is the authenticated name, so the entry of the address TLS validated
must apply (helper 54's attack pass: an impostor for a pinned address got a
whole request through). ``tls_ip_form`` is that reading; it is checked here
against real handshakes, not against a second model of OpenSSL.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

import pytest
import requests
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import (
    PinConfigError,
    PinMismatchError,
    PinningPoolManager,
    PinningSession,
    PinSet,
)
from requests_pinning._pinset import tls_ip_form

from .conftest import PKI
from .servers import TLSServer

ADDRESS = "127.0.0.10"
# urllib3 1.26 matches the name itself too (match_hostname), reading
# 127.0.0.010 as a DNS name: it refuses every server there, before the pins.
URLLIB3_1 = urllib3.__version__.startswith("1.")  # type: ignore[attr-defined]
NAME_REFUSED = (requests.exceptions.SSLError, urllib3.exceptions.SSLError)


class _Handshakes:
    """Handshakes in memory with a server for ``ADDRESS`` and ``::ffff:ADDRESS``."""

    def __init__(self, pki: PKI) -> None:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        pki.intermediate.issue_cert(ADDRESS, f"::ffff:{ADDRESS}").configure_cert(server)
        self._server = server
        self._client = ssl.create_default_context(cafile=pki.bundle)

    def validates(self, name: str) -> bool:
        """Whether OpenSSL, started with ``name``, validates the certificate of ``ADDRESS``."""
        to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            client = self._client.wrap_bio(to_client, to_server, server_hostname=name)
        except (ValueError, TypeError, UnicodeError):
            return False  # ssl does not start TLS with it at all
        from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
        server = self._server.wrap_bio(from_client, from_server, server_side=True)
        for _ in range(10):
            try:
                client.do_handshake()
                return True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError:
                return False
            from_client.write(to_server.read())
            with contextlib.suppress(ssl.SSLWantReadError):
                server.do_handshake()
            to_client.write(from_server.read())
        raise AssertionError("the handshake did not end")


@pytest.fixture(scope="module")
def handshakes(pki: PKI) -> _Handshakes:
    return _Handshakes(pki)


@pytest.mark.parametrize(
    "name",
    [
        "127.0.0.10",
        "127.0.0.010",  # decimal to OpenSSL, octal (127.0.0.8) to the resolver
        "0127.00.000.0010",
        "127.0.0.+10",
        "+127.0.0.10",
        " 127.0.0.10",
        "127.0.0. 10",
        "127.0.0.10 ",
        "127.0.0.10\n",
        "127.0.0.10 anything",
        "127.0.0.4294967306",  # 2**32 + 10, wrapped into C's int
        "::ffff:127.0.0.010",
        "::FFFF:127.0.0.10",
        "\uff11\uff12\uff17.0.0.010",  # fullwidth digits: ssl's IDNA makes them ASCII
        # The twins, read as no address or as another one:
        "127.0.0.10abc",
        "127.0.0.10.example",
        "127.0.0.10/",
        "127.0.0.0xa",
        "-0127.0.0.10",
        "-127.0.0.10",
        "2130706442",
        "127.10",
        "127.0.0.9",
        "127.0.0.-10",
        "::ffff:127.0.0.10x",
        "localhost",
    ],
)
def test_the_address_read_is_the_one_openssl_validates(handshakes: _Handshakes, name: str) -> None:
    assert (tls_ip_form(name) == ADDRESS) == handshakes.validates(name)


_PARTS = ["127", "0", "10", "010", "0010", "+", "-", " ", "\t", ".", ":", "::ffff:", "x", "a"]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(_PARTS), max_size=12).map("".join))
def test_every_spelling_is_read_as_openssl_reads_it(handshakes: _Handshakes, name: str) -> None:
    assert (tls_ip_form(name) == ADDRESS) == handshakes.validates(name)


# -- end to end: the entry of the validated address applies ----------------------------------


def _request(face: str, pins: dict[str, Any], url: str, bundle: str) -> int:
    if face == "session":
        with PinningSession(pins) as session:
            return session.post(url, data=b"secret=1", verify=bundle, timeout=10).status_code
    with PinningPoolManager(pins, ca_certs=bundle, retries=False) as manager:
        return manager.request("POST", url, body=b"secret=1", timeout=10).status


@pytest.mark.parametrize("face", ["session", "pool manager"])
@pytest.mark.parametrize("genuine", [False, True], ids=["impostor", "genuine"])
def test_a_spelling_openssl_reads_otherwise_gets_the_pins_of_the_address_it_validates(
    pki: PKI, face: str, genuine: bool
) -> None:
    # 127.0.0.010 dials 127.0.0.8, where a server holds a certificate for
    # 127.0.0.10, the pinned address: TLS validates it as 127.0.0.10.
    issuer = pki.intermediate if genuine else pki.rogue_root
    pins = {ADDRESS: [pki.intermediate_pin]}
    with TLSServer(issuer.issue_cert(ADDRESS), bind="127.0.0.8") as server:
        url = f"https://127.0.0.010:{server.port}/"
        if URLLIB3_1:
            with pytest.raises(NAME_REFUSED, match="doesn't match"):
                _request(face, pins, url, pki.bundle)
            server.wait_idle()
            assert server.bytes_received == 0
            return
        if genuine:
            assert _request(face, pins, url, pki.bundle) == 200
            return
        # (a pool manager raises urllib3's SSLError, wrapping PinMismatchError)
        refused = (urllib3.exceptions.SSLError, PinMismatchError)
        with pytest.raises(refused):
            _request(face, pins, url, pki.bundle)
        server.wait_idle()
        assert server.handshakes == 1
        assert server.bytes_received == 0


def test_requests_sends_the_spelling_as_it_is(pki: PKI) -> None:
    # The premise of the test above: without pins, the URL reaches 127.0.0.8,
    # and TLS accepts a certificate for 127.0.0.10 there.
    with TLSServer(pki.rogue_root.issue_cert(ADDRESS), bind="127.0.0.8") as server:
        url = f"https://127.0.0.010:{server.port}/"
        if URLLIB3_1:
            with pytest.raises(NAME_REFUSED, match="doesn't match"):
                requests.get(url, verify=pki.bundle, timeout=10)
            return
        response = requests.get(url, verify=pki.bundle, timeout=10)
        assert response.status_code == 200


@pytest.mark.parametrize("key", ["127.0.0.010", "0127.0.0.10", "127.0.0.4294967306"])
def test_a_key_read_two_ways_is_refused(pki: PKI, key: str) -> None:
    with pytest.raises(PinConfigError, match=r"ambiguous: .*TLS validates the address 127\.0\.0"):
        PinSet({key: [pki.intermediate_pin]})
    assert PinSet({"127.0.0.10": [pki.intermediate_pin]}).match("127.0.0.10") is not None
