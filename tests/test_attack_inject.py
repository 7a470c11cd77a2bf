"""Attack pass on inject_into_urllib3(): each failing test is a confirmed finding.

Every test is parametrized over route="good" (the genuine server: passes) and
route="rogue" (an impostor the client's CAs trust: must be refused with no
request byte). The "rogue" cases fail today:

1. test_stale_record_after_extract_and_reinject: a connection reconnected
   while extracted keeps the ``_pin_global`` of its earlier connect; re-injecting
   the same PinningPolicy skips the recheck of its new socket.
2. test_a_connect_in_progress_when_injection_returns: _validate_conn rechecks
   before urllib3's own _validate_conn connects, never after; a connect that
   began before injection (its ServerHello held back by whoever is on the path)
   writes its request after inject_into_urllib3() returned.
3. test_the_proxys_session_under_a_context_that_may_misreport: the HTTPS
   proxy's session is never vouched() the way the origin's is: the CONNECT line
   and Proxy-Authorization go to a forged chain (injected and PinningProxyManager).
4. test_proxy_assert_hostname_names_the_proxys_pins[before-rogue]: the recheck
   of a kept-alive connection to an HTTPS proxy (http:// URL) ignores
   proxy_assert_hostname, which a fresh connect's check honours.
5. test_a_bare_connection_opened_before_injection: a connected HTTPSConnection
   used without a pool is never rechecked.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import MaxRetryError

from requests_pinning import (
    PinMismatchError,
    PinningPolicy,
    PinningProxyManager,
    extract_from_urllib3,
    inject_into_urllib3,
)

from .conftest import PKI
from .servers import ConnectProxy, TLSServer
from .test_public_paths import _forged_under, _SharedContextAfterARace


@pytest.fixture
def cleanup() -> Iterator[None]:
    try:
        yield
    finally:
        extract_from_urllib3()


URLLIB3_1 = urllib3.__version__.startswith("1.")  # type: ignore[attr-defined]


def pins(pki: PKI) -> dict[str, list[str]]:
    return {"localhost": [pki.intermediate_pin]}


class Relay:
    """A TCP relay on loopback to 127.0.0.1:`target`, which may change (DNS, a route).

    Each connection is held until `release` is set (set from the start
    unless `hold`): whoever is on the path decides when the server's first
    byte arrives, while the client sits in urllib3's connect().
    """

    def __init__(self, target: int, *, hold: bool = False) -> None:
        self.target = target
        self.accepted = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Relay:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._stop.set()
        self._acceptor.join(10)
        self._listener.close()
        for thread in self._threads:
            thread.join(10)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        from .servers import _pipe

        with client:
            client.settimeout(10)
            self.accepted.set()
            self.release.wait(10)
            try:
                with socket.create_connection(("127.0.0.1", self.target), timeout=10) as upstream:
                    _pipe(client, upstream)
            except OSError:
                pass


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_stale_record_after_extract_and_reinject(
    pki: PKI, cleanup: None, good: TLSServer, rogue: TLSServer, route: str
) -> None:
    policy = PinningPolicy(pins(pki))  # one policy, shared with other faces
    target = good if route == "good" else rogue
    with Relay(good.port) as relay:
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        url = f"https://localhost:{relay.port}/"
        try:
            inject_into_urllib3(policy)
            # Checked under the policy; the server then closes the kept-alive
            # socket (here asked to; an idle timeout does the same). urllib3 keeps
            # the connection object and reconnects it on its next request.
            assert http.request("GET", url, headers={"Connection": "close"}).status == 200
            extract_from_urllib3()  # e.g. a block that must run unpinned
            relay.target = target.port  # DNS or a route changes meanwhile
            assert http.request("GET", url).status == 200  # unpinned now: by design
            received = target.bytes_received
            inject_into_urllib3(policy)  # pinning back on: "nothing goes to an impostor"
            if route == "good":
                assert http.request("GET", url).status == 200
            else:
                with pytest.raises(MaxRetryError) as info:
                    http.request("POST", url, body=b"secret")
                assert isinstance(info.value.reason, PinMismatchError), info.value
        finally:
            http.clear()
    target.wait_idle()
    if route == "rogue":
        assert target.bytes_received == received


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_a_connect_in_progress_when_injection_returns(
    pki: PKI, cleanup: None, good: TLSServer, rogue: TLSServer, route: str
) -> None:
    target = good if route == "good" else rogue
    outcome: list[object] = []
    with Relay(target.port, hold=True) as relay:
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)

        def client() -> None:
            try:
                r = http.request("POST", f"https://localhost:{relay.port}/", body=b"secret")
                outcome.append(r.status)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=client)
        thread.start()
        assert relay.accepted.wait(10)  # the client is inside connect(), TCP done
        inject_into_urllib3(pins(pki))
        # From here on, "nothing goes to an impostor". The impostor answers now.
        relay.release.set()
        thread.join(20)
        http.clear()
    target.wait_idle()
    if route == "good":
        assert outcome == [200]
    else:
        assert len(outcome) == 1 and isinstance(outcome[0], MaxRetryError), outcome
        assert target.bytes_received == 0


# --- the proxy's own TLS session: a context that may misreport --------------------


@pytest.mark.parametrize("route", ["good", "rogue"])
@pytest.mark.parametrize("face", ["injected", "PinningProxyManager"])
def test_the_proxys_session_under_a_context_that_may_misreport(
    pki: PKI, cleanup: None, good: TLSServer, route: str, face: str
) -> None:
    # The origin's session under such a context must show a chain that holds
    # on its own (vouched(), test_public_paths); the proxy's session, which
    # carries the CONNECT line and Proxy-Authorization, is taken at its word.
    context = _SharedContextAfterARace(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(pki.bundle)
    if face == "injected":
        inject_into_urllib3(pins(pki))
        manager: Any = urllib3.ProxyManager
    else:
        manager = functools.partial(PinningProxyManager, pins(pki))
    cert = pki.leaf if route == "good" else _forged_under(pki)
    with ConnectProxy(tls_cert=cert) as proxy:
        http = manager(
            proxy.url,
            proxy_headers={"Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA=="},
            proxy_ssl_context=context,
            # urllib3 2.x matches the name itself when a context does not;
            # 1.26 leaves a user's proxy context to check what it will.
            **({} if URLLIB3_1 else {"proxy_assert_hostname": False}),
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        url = f"https://localhost:{good.port}/"
        if route == "good":
            assert http.request("GET", url).status == 200
        else:
            with pytest.raises((MaxRetryError, PinMismatchError)) as info:
                http.request("GET", url)
            reason = getattr(info.value, "reason", info.value)
            # urllib3 1.26 writes verify_mode into the proxy's context before
            # its handshake, so OpenSSL itself refuses the forged chain there.
            refused_by = (
                (PinMismatchError, urllib3.exceptions.SSLError) if URLLIB3_1 else PinMismatchError
            )
            assert isinstance(reason, refused_by), info.value
        http.clear()
        proxy.wait_idle()
        if route == "rogue":
            # Not the CONNECT line, not the Proxy-Authorization header.
            assert proxy.connects == []


# --- names: what the recheck of an older connection looks up ----------------------


@pytest.mark.parametrize("route", ["good", "rogue"])
@pytest.mark.parametrize("opened", ["after", "before"])
def test_proxy_assert_hostname_names_the_proxys_pins(
    pki: PKI, cleanup: None, route: str, opened: str
) -> None:
    if URLLIB3_1:
        pytest.skip("proxy_assert_hostname is urllib3 2.x")
    # The proxy is dialled as localhost and validated as pinned.test
    # (proxy_assert_hostname): the pins of pinned.test apply to it.
    issuer = pki.intermediate if route == "good" else pki.rogue_root
    cert = issuer.issue_cert("pinned.test")
    policy = {"pinned.test": [pki.intermediate_pin]}
    with ConnectProxy(tls_cert=cert) as proxy:
        http = urllib3.ProxyManager(
            proxy.url,
            proxy_assert_hostname="pinned.test",
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        url = "http://origin.test/x"  # through the HTTPS proxy, which answers itself
        if opened == "before":
            assert http.request("GET", url).data == b"forwarded"  # kept alive
        inject_into_urllib3(policy)
        if route == "good":
            assert http.request("GET", url).data == b"forwarded"
        else:
            forwarded = list(proxy.forwarded)
            with pytest.raises(MaxRetryError) as info:
                http.request("POST", url, body=b"secret")
            assert isinstance(info.value.reason, PinMismatchError), info.value
            assert proxy.forwarded == forwarded
        http.clear()


@pytest.mark.parametrize("route", ["good", "rogue"])
@pytest.mark.parametrize("opened", ["after", "before"])
def test_assert_hostname_names_the_proxys_pins_on_urllib3_1(
    pki: PKI, cleanup: None, route: str, opened: str
) -> None:
    if not URLLIB3_1:
        pytest.skip("urllib3 2.x validates the proxy as proxy_assert_hostname (above)")
    # urllib3 1.26 validates an HTTPS proxy that forwards an http:// URL as
    # the connection's assert_hostname: the pins of pinned.test apply to it,
    # also when the connection was kept alive from before the injection.
    issuer = pki.intermediate if route == "good" else pki.rogue_root
    cert = issuer.issue_cert("pinned.test")
    with ConnectProxy(tls_cert=cert) as proxy:
        http = urllib3.ProxyManager(
            proxy.url, assert_hostname="pinned.test", cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle
        )
        url = "http://origin.test/x"
        if opened == "before":
            assert http.request("GET", url).data == b"forwarded"  # kept alive
        inject_into_urllib3({"pinned.test": [pki.intermediate_pin]})
        if route == "good":
            assert http.request("GET", url).data == b"forwarded"
        else:
            forwarded = list(proxy.forwarded)
            with pytest.raises(MaxRetryError) as info:
                http.request("POST", url, body=b"secret")
            assert isinstance(info.value.reason, PinMismatchError), info.value
            assert proxy.forwarded == forwarded
        http.clear()


# --- a connection opened before injection, used without a pool ---------------------


def _settled(server: TLSServer, at_least: int = 0) -> int:
    """The bytes ``server`` has received, once ``at_least`` have and no more arrive for a while."""
    # First what must arrive, without a fixed delay (a loaded machine may take
    # longer than one settling interval to count HTTP/2's preface).
    give_up = time.monotonic() + 10
    while server.bytes_received < at_least and time.monotonic() < give_up:
        time.sleep(0.01)
    seen = -1
    while seen != server.bytes_received:
        seen = server.bytes_received
        time.sleep(0.2)
    return seen


@contextlib.contextmanager
def _counting_sends(conn: Any) -> Iterator[list[int]]:
    """Count the bytes ``conn`` hands its TLS socket (HTTP/2's preface in connect() too)."""
    sent = [0]
    real_sendall = ssl.SSLSocket.sendall

    def sendall(self: ssl.SSLSocket, data: Any, *args: Any) -> Any:
        if self is getattr(conn, "sock", None):  # not the server thread's answers
            sent[0] += memoryview(data).nbytes
        return real_sendall(self, data, *args)

    ssl.SSLSocket.sendall = sendall  # type: ignore[method-assign, assignment]
    try:
        yield sent
    finally:
        ssl.SSLSocket.sendall = real_sendall  # type: ignore[method-assign]


def _nothing(conn: Any) -> None:
    pass


def _begin_post(conn: Any) -> None:
    conn.putrequest("POST", "/")
    conn.putheader("Authorization", "Bearer secret")
    conn.putheader("Content-Length", "6")


def _end_post(conn: Any) -> None:
    conn.endheaders(b"secret")


def _low_level_post(conn: Any) -> None:
    # http.client's own way, which request() takes too: it never called the
    # request() that was checked. (The server's request log says it arrived:
    # urllib3 2.x reads responses only to its own request().)
    _begin_post(conn)
    _end_post(conn)


def _raw_post(conn: Any) -> None:
    conn.send(b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\nsecret")


def _http2_post(conn: Any) -> None:
    # HTTP2Connection.request() writes its own frames: it never called
    # HTTPSConnection.request().
    conn.request("POST", "/", body=b"secret", headers={"authorization": "Bearer secret"})
    assert conn.getresponse().status == 200


def _http2_begin(conn: Any) -> None:
    conn.putrequest("POST", "/")
    conn.putheader("authorization", "Bearer secret")


def _http2_end(conn: Any) -> None:
    conn.endheaders(message_body=b"secret")
    conn.send(b"secret")
    assert conn.getresponse().status == 200


def _http2_headers(conn: Any) -> None:
    _http2_begin(conn)
    conn.endheaders(message_body=b"secret")  # the body's DATA frames to come


def _http2_body(conn: Any) -> None:
    conn.send(b"secret")
    assert conn.getresponse().status == 200


# (what is sent before injection, what after, HTTP/2?): every way of writing
# a request, and requests begun before the injection and finished after it.
_WAYS = {
    "putrequest": (_nothing, _low_level_post, False),
    "raw send": (_nothing, _raw_post, False),
    "begun before": (_begin_post, _end_post, False),
    "http2": (_nothing, _http2_post, True),
    "http2 begun before": (_http2_begin, _http2_end, True),
    "http2 body after": (_http2_headers, _http2_body, True),
}


@pytest.mark.parametrize("route", ["good", "rogue"])
@pytest.mark.parametrize("way", list(_WAYS))
def test_a_bare_connection_opened_before_injection_sending_its_own_way(
    pki: PKI, cleanup: None, request: pytest.FixtureRequest, route: str, way: str
) -> None:
    before_injection, after_injection, http2 = _WAYS[way]
    connection_class: Any = HTTPSConnection
    if http2:
        urllib3_http2 = pytest.importorskip("urllib3.http2", reason="urllib3 1.26 has no HTTP/2")
        pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in httpx-no-h2)")
        urllib3_http2.inject_into_urllib3()  # urllib3 offers h2 by ALPN
        request.addfinalizer(urllib3_http2.extract_from_urllib3)
        connection_class = urllib3.connection.HTTPSConnection  # HTTP2Connection now
        assert connection_class.__name__ == "HTTP2Connection"
    context = ssl.create_default_context(cafile=pki.bundle)
    leaf = pki.leaf if route == "good" else pki.rogue_leaf
    with TLSServer(leaf, http2=http2) as target:
        conn = connection_class("localhost", target.port, ssl_context=context, timeout=10)
        with _counting_sends(conn) as sent:
            conn.connect()  # before injection: HTTP/2's preface goes out here
            before_injection(conn)
        # Everything sent before the injection has arrived, whatever the load.
        before = _settled(target, sent[0])
        assert before >= (24 if http2 else 0)
        inject_into_urllib3(pins(pki))
        try:
            if route == "good":
                after_injection(conn)
            else:
                with pytest.raises(MaxRetryError) as info:
                    after_injection(conn)
                assert isinstance(info.value.reason, PinMismatchError)
        finally:
            conn.close()
        target.wait_idle()
        if route == "rogue":
            assert target.bytes_received == before
            assert target.requests == []
        else:
            assert target.requests == ["POST / HTTP/2" if http2 else "POST / HTTP/1.1"]


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_a_bare_connection_opened_before_injection(
    pki: PKI, cleanup: None, good: TLSServer, rogue: TLSServer, route: str
) -> None:
    target = good if route == "good" else rogue
    context = ssl.create_default_context(cafile=pki.bundle)
    conn = HTTPSConnection("localhost", target.port, ssl_context=context, timeout=10)
    conn.connect()  # e.g. a client library that connects eagerly, at import
    inject_into_urllib3(pins(pki))
    try:
        if route == "good":
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
        else:
            with pytest.raises(MaxRetryError):
                conn.request("POST", "/", body=b"secret")
    finally:
        conn.close()
    target.wait_idle()
    if route == "rogue":
        assert target.bytes_received == 0
