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
import ctypes
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import (
    PinConfigError,
    PinMismatchError,
    PinningPoolManager,
    PinningSession,
    PinSet,
)
from requests_pinning._pinset import openssl_address, tls_ip_form
from requests_pinning._tls import _issued_for

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
        leaf = pki.intermediate.issue_cert(ADDRESS, f"::ffff:{ADDRESS}")
        leaf.configure_cert(server)
        self.leaf = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
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
    validates = handshakes.validates(name)
    assert (tls_ip_form(name) == ADDRESS) == validates
    assert _issued_for(handshakes.leaf, name) == validates


_PARTS = ["127", "0", "10", "010", "0010", "+", "-", " ", "\t", ".", ":", "::ffff:", "x", "a"]
_NAMES = st.lists(st.sampled_from(_PARTS), max_size=12).map("".join)


@settings(max_examples=300)
@given(_NAMES)
def test_every_spelling_is_read_as_openssl_reads_it(handshakes: _Handshakes, name: str) -> None:
    assert (tls_ip_form(name) == ADDRESS) == handshakes.validates(name)


@settings(max_examples=300)
@given(_NAMES)
def test_a_leaf_is_for_a_name_as_a_handshake_judges_it(
    handshakes: _Handshakes, pki: PKI, name: str
) -> None:
    # What vouched() asks of a chain it cannot trust the context's word on:
    # never to take a leaf for a name more widely than OpenSSL does (helper
    # 60: it read 127.0.0.010 as a DNS name, and refused a genuine leaf).
    assert _issued_for(handshakes.leaf, name) == handshakes.validates(name)


# -- against OpenSSL's own reading, where it can be called -----------------------------------


def _libcrypto() -> ctypes.CDLL | None:
    """The libcrypto ``ssl`` runs on, loaded again, if this is Linux and its version matches."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "/libcrypto" in line}
    if len(paths) != 1:
        return None  # linked statically, or not found
    try:
        lib = ctypes.CDLL(paths.pop())
        lib.OpenSSL_version.restype = ctypes.c_char_p
        lib.OpenSSL_version.argtypes = [ctypes.c_int]
        if lib.OpenSSL_version(0) != ssl.OPENSSL_VERSION.encode():
            return None
    except (OSError, AttributeError):
        return None  # not loadable, or an OpenSSL without these functions (1.0)
    lib.a2i_IPADDRESS.restype = ctypes.c_void_p
    lib.a2i_IPADDRESS.argtypes = [ctypes.c_char_p]
    lib.ASN1_STRING_get0_data.restype = ctypes.c_void_p
    lib.ASN1_STRING_get0_data.argtypes = [ctypes.c_void_p]
    lib.ASN1_STRING_length.argtypes = [ctypes.c_void_p]
    lib.ASN1_OCTET_STRING_free.argtypes = [ctypes.c_void_p]
    return lib


_LIBCRYPTO = _libcrypto()


def _a2i_ipaddress(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """OpenSSL's own reading of ``name``, as ssl hands it over (None: not an address)."""
    assert _LIBCRYPTO is not None
    try:
        text = name.encode("idna")
    except UnicodeError:
        return None
    if b"\0" in text:
        return None
    found = _LIBCRYPTO.a2i_IPADDRESS(text)
    if not found:
        return None
    data = ctypes.string_at(
        _LIBCRYPTO.ASN1_STRING_get0_data(found), _LIBCRYPTO.ASN1_STRING_length(found)
    )
    _LIBCRYPTO.ASN1_OCTET_STRING_free(found)
    return ipaddress.ip_address(data)


_GROUPS = [
    "", "0", "00", "0000", "1", "0001", "a", "A", "fFfF", "ffff", "00000", "g", " 1", "1 ",
    "+1", "0x1", "1.2.3.4", "01.2.3.4", "+1.2.3.4", " 1.2.3.4", "1.2.3.4 x", "1.2.3.4.",
    "4294967297.0.0.1", "\uff11", "%1", "[", "]",
]  # fmt: skip


@pytest.mark.skipif(
    _LIBCRYPTO is None,
    reason="OpenSSL's a2i_IPADDRESS can be called only where ssl's libcrypto can be found "
    "(Linux, dynamically linked, the same version); the handshake tests above still run",
)
@settings(max_examples=2000)
@given(
    st.one_of(
        st.lists(st.sampled_from(_GROUPS), min_size=1, max_size=9).map(":".join),
        st.lists(st.sampled_from(_GROUPS), min_size=1, max_size=5).map(".".join),
        st.text(alphabet="0123456789abcdef:.+- \t[]%x\uff1a\uff0e", max_size=20),
    )
)
def test_the_address_is_openssls_own_reading(name: str) -> None:
    assert openssl_address(name) == _a2i_ipaddress(name)


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


@pytest.mark.parametrize("genuine", [False, True], ids=["impostor", "genuine"])
def test_a_lone_colon_gets_the_pins_of_the_unspecified_address(pki: PKI, genuine: bool) -> None:
    # Helper 60: OpenSSL validates the name ":" as the address "::", which
    # Python's reading refuses: the pins of "::" did not apply.
    issuer = pki.intermediate if genuine else pki.rogue_root
    pins = {"::": [pki.intermediate_pin]}
    with TLSServer(issuer.issue_cert("::")) as server:
        url = f"https://127.0.0.1:{server.port}/"
        with PinningPoolManager(
            pins, ca_certs=pki.bundle, retries=False, server_hostname=":"
        ) as manager:
            if URLLIB3_1:
                with pytest.raises(NAME_REFUSED, match="doesn't match"):
                    manager.request("GET", url, timeout=10)
            elif genuine:
                assert manager.request("GET", url, timeout=10).status == 200
            else:
                with pytest.raises((urllib3.exceptions.SSLError, PinMismatchError)):
                    manager.request("GET", url, timeout=10)
        server.wait_idle()
        assert (server.bytes_received > 0) == (genuine and not URLLIB3_1)
