"""inject_into_urllib3() returning while a connect is under way (attack pass, helper 55).

Whatever connect is in its handshake when ``inject_into_urllib3()`` returns,
nothing more goes to an impostor from then on: not the CONNECT line and
Proxy-Authorization to an HTTPS proxy, not a request http.client writes in the
same ``send()`` that connected, not HTTP/2's preface. A relay holds the
server's first bytes until the injection has returned, so each race is decided
the same way every run. Every case has its twin with the genuine server.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import MaxRetryError

from requests_pinning import (
    PinMismatchError,
    PinningProxyManager,
    extract_from_urllib3,
    inject_into_urllib3,
)

from .conftest import PKI
from .servers import ConnectProxy, TLSServer
from .test_attack_inject import URLLIB3_1, Relay

PROXY_AUTHORIZATION = {"Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA=="}


@pytest.fixture
def cleanup() -> Iterator[None]:
    try:
        yield
    finally:
        extract_from_urllib3()


def _straddling(relay: Relay, work: Callable[[], object], inject: Callable[[], None]) -> object:
    """Run ``work`` in a thread; ``inject`` while its connect waits for the server's first byte.

    The relay holds the connection until ``inject`` has returned: the
    connect began before it and ends after it. Returns what ``work``
    returned, or the exception it raised.
    """
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert relay.accepted.wait(10)  # TCP is up; the client waits in its handshake
        inject()
    finally:
        relay.release.set()
        thread.join(20)
    assert len(outcome) == 1
    return outcome[0]


def _refused(outcome: object) -> PinMismatchError:
    assert isinstance(outcome, MaxRetryError), outcome
    assert isinstance(outcome.reason, PinMismatchError), outcome
    return outcome.reason


def _unrelated(pki: PKI) -> dict[str, list[str]]:
    """P1: pins that do not concern any host of the test."""
    return {"unrelated.test": [pki.intermediate_pin]}


# --- the HTTPS proxy's session, when the CONNECT line goes out ------------------------


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_a_connect_begun_before_injection_checks_the_proxy_as_its_asserted_name(
    pki: PKI, cleanup: None, good: TLSServer, route: str
) -> None:
    if URLLIB3_1:
        pytest.skip("proxy_assert_hostname is urllib3 2.x")
    # The proxy is dialled as localhost and validated as pinned.test: the
    # pins of pinned.test apply to the session that carries the CONNECT line
    # and Proxy-Authorization, also in a connect that began before injection.
    issuer = pki.intermediate if route == "good" else pki.rogue_root
    with (
        ConnectProxy(tls_cert=issuer.issue_cert("pinned.test")) as proxy,
        Relay(proxy.port, hold=True) as relay,
    ):
        http = urllib3.ProxyManager(
            f"https://localhost:{relay.port}",
            proxy_headers=PROXY_AUTHORIZATION,
            proxy_assert_hostname="pinned.test",
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        outcome = _straddling(
            relay,
            lambda: http.request("POST", f"https://localhost:{good.port}/", body=b"secret").status,
            lambda: inject_into_urllib3({"pinned.test": [pki.intermediate_pin]}),
        )
        http.clear()
        proxy.wait_idle()
    if route == "good":
        assert outcome == 200
        assert proxy.connects == [f"localhost:{good.port}"]
    else:
        assert _refused(outcome).host == "pinned.test"
        assert proxy.connects == []  # not the CONNECT line, not the credentials


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_a_connect_begun_before_injection_checks_the_proxy_as_the_proxy(
    pki: PKI, cleanup: None, good: TLSServer, rogue: TLSServer, route: str
) -> None:
    # Only the origin (127.0.0.1) is pinned; the proxy (localhost) is a
    # genuine one with a certificate of another CA, as a corporate proxy's.
    # Its session is not the origin's: the origin's pins do not apply to it
    # (they refused the genuine origin, saying the origin's chain failed).
    target = good if route == "good" else rogue
    with ConnectProxy(tls_cert=pki.rogue_leaf) as proxy, Relay(proxy.port, hold=True) as relay:
        http = urllib3.ProxyManager(
            f"https://localhost:{relay.port}", cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle
        )
        outcome = _straddling(
            relay,
            lambda: (
                http.request("POST", f"https://127.0.0.1:{target.port}/", body=b"secret").status
            ),
            lambda: inject_into_urllib3({"127.0.0.1": [pki.intermediate_pin]}),
        )
        http.clear()
    target.wait_idle()
    if route == "good":
        assert outcome == 200
    else:
        assert _refused(outcome).host == "127.0.0.1"
        assert target.bytes_received == 0


@pytest.mark.parametrize("route", ["good", "rogue"])
@pytest.mark.parametrize("face", ["ProxyManager", "PinningProxyManager"])
def test_pins_replaced_during_the_proxys_handshake_apply_to_the_connect_line(
    pki: PKI, cleanup: None, good: TLSServer, route: str, face: str
) -> None:
    # P1 leaves the proxy (localhost) unpinned; P2, injected while the
    # connect begun under P1 is in the proxy's handshake, pins it. The
    # CONNECT line and Proxy-Authorization go out under P2's verdict.
    inject_into_urllib3(_unrelated(pki))
    cert = pki.leaf if route == "good" else pki.rogue_leaf
    with ConnectProxy(tls_cert=cert) as proxy, Relay(proxy.port, hold=True) as relay:
        kwargs: dict[str, Any] = {
            "proxy_headers": PROXY_AUTHORIZATION,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": pki.bundle,
        }
        url = f"https://localhost:{relay.port}"
        http: Any = (
            urllib3.ProxyManager(url, **kwargs)
            if face == "ProxyManager"
            # Its own pins are the origin's (127.0.0.1), which the genuine one passes.
            else PinningProxyManager({"127.0.0.1": [pki.intermediate_pin]}, url, **kwargs)
        )
        outcome = _straddling(
            relay,
            lambda: http.request("POST", f"https://127.0.0.1:{good.port}/", body=b"secret").status,
            lambda: inject_into_urllib3({"localhost": [pki.intermediate_pin]}),
        )
        http.clear()
        proxy.wait_idle()
    if route == "good":
        assert outcome == 200
        assert proxy.connects == [f"127.0.0.1:{good.port}"]
    else:
        assert _refused(outcome).host == "localhost"
        assert proxy.connects == []


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_a_connect_under_way_when_extracted_checks_its_proxy_under_the_pins_it_began_with(
    pki: PKI, cleanup: None, good: TLSServer, route: str
) -> None:
    # extract_from_urllib3() during the proxy's handshake: the connect goes
    # on with the policy it read, for the proxy's session as for the origin's.
    inject_into_urllib3({"localhost": [pki.intermediate_pin]})
    cert = pki.leaf if route == "good" else pki.rogue_leaf
    with ConnectProxy(tls_cert=cert) as proxy, Relay(proxy.port, hold=True) as relay:
        http = urllib3.ProxyManager(
            f"https://localhost:{relay.port}",
            proxy_headers=PROXY_AUTHORIZATION,
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        outcome = _straddling(
            relay,
            lambda: http.request("POST", f"https://127.0.0.1:{good.port}/", body=b"secret").status,
            extract_from_urllib3,
        )
        http.clear()
        proxy.wait_idle()
    if route == "good":
        assert outcome == 200
    else:
        assert _refused(outcome).host == "localhost"
        assert proxy.connects == []


# --- what is written as the connect returns -------------------------------------------


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_pins_replaced_during_a_bare_connections_own_connect_apply_to_its_request(
    pki: PKI, cleanup: None, good: TLSServer, rogue: TLSServer, route: str
) -> None:
    # A connection used without a pool connects inside http.client's send()
    # and writes the request in the same call. Its connect began under P1;
    # P2, which pins localhost, was in force before a byte of it was written.
    inject_into_urllib3(_unrelated(pki))
    target = good if route == "good" else rogue
    with Relay(target.port, hold=True) as relay:
        context = ssl.create_default_context(cafile=pki.bundle)
        conn = HTTPSConnection("localhost", relay.port, ssl_context=context, timeout=10)

        def post() -> int:
            conn.request("POST", "/", body=b"secret", headers={"Authorization": "Bearer secret"})
            status: int = conn.getresponse().status
            return status

        try:
            outcome = _straddling(
                relay, post, lambda: inject_into_urllib3({"localhost": [pki.intermediate_pin]})
            )
        finally:
            conn.close()
    target.wait_idle()
    if route == "good":
        assert outcome == 200
    else:
        assert _refused(outcome).host == "localhost"
        assert target.bytes_received == 0


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_pins_replaced_during_an_http2_connect_apply_before_its_preface(
    pki: PKI, cleanup: None, request: pytest.FixtureRequest, route: str
) -> None:
    urllib3_http2 = pytest.importorskip("urllib3.http2", reason="urllib3 1.26 has no HTTP/2")
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in httpx-no-h2)")
    urllib3_http2.inject_into_urllib3()  # urllib3 offers h2 by ALPN
    request.addfinalizer(urllib3_http2.extract_from_urllib3)
    # HTTP2Connection writes its preface as soon as HTTPSConnection.connect
    # returns: the pins that replaced P1 during the handshake apply before.
    inject_into_urllib3(_unrelated(pki))
    leaf = pki.leaf if route == "good" else pki.rogue_leaf
    with TLSServer(leaf, http2=True) as target, Relay(target.port, hold=True) as relay:
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        outcome = _straddling(
            relay,
            lambda: http.request("POST", f"https://localhost:{relay.port}/", body=b"secret").status,
            lambda: inject_into_urllib3({"localhost": [pki.intermediate_pin]}),
        )
        http.clear()
        target.wait_idle()
        if route == "good":
            assert outcome == 200
            assert target.requests == ["POST / HTTP/2"]
        else:
            assert _refused(outcome).host == "localhost"
            assert target.bytes_received == 0  # not even the preface
