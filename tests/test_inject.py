"""inject_into_urllib3(): process-wide pinning, against real servers that count what they receive.

Every test injects through the `injected` fixture, which always extracts again,
also when the test fails. Every pass has its failing twin: the same path to an
impostor, refused after one handshake with zero request bytes.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

import requests_pinning
from requests_pinning import (
    PinConfigError,
    PinFailure,
    PinMismatchError,
    PinningAdapter,
    PinningPoolManager,
    extract_from_urllib3,
    inject_into_urllib3,
)

from .conftest import PKI
from .servers import ConnectProxy, Socks5Proxy, TLSServer

# What urllib3's classes hold before any test injects anything.
ORIGINALS = {
    (HTTPSConnection, "connect"): HTTPSConnection.__dict__["connect"],
    (HTTPSConnection, "_connect_tls_proxy"): HTTPSConnection.__dict__["_connect_tls_proxy"],
    (HTTPSConnectionPool, "_new_conn"): HTTPSConnectionPool.__dict__["_new_conn"],
    (HTTPSConnectionPool, "_validate_conn"): HTTPSConnectionPool.__dict__["_validate_conn"],
}


# An SDK's connection classes, defined before any injection, the way botocore
# writes them: a mixin overriding some of HTTPConnection's methods, and an
# HTTPS class whose connect() does its own work around super().connect().
class SDKConnection:
    connects = 0

    def close(self) -> None:
        super().close()  # type: ignore[misc]

    def connect(self) -> None:
        SDKConnection.connects += 1
        super().connect()  # type: ignore[misc]


class SDKHTTPSConnection(SDKConnection, HTTPSConnection):
    pass


class SDKHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = SDKHTTPSConnection


Inject = Callable[..., None]


@pytest.fixture
def injected() -> Iterator[Inject]:
    """inject_into_urllib3, undone after the test whatever happened."""
    try:
        yield inject_into_urllib3
    finally:
        extract_from_urllib3()
        assert_restored()


def assert_restored() -> None:
    for (owner, name), original in ORIGINALS.items():
        assert owner.__dict__[name] is original, name


def pin_error(exc: BaseException) -> PinMismatchError:
    """The PinMismatchError inside what requests or urllib3 raised."""
    if isinstance(exc, PinMismatchError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        exc = exc.args[0]
    assert isinstance(exc, MaxRetryError), repr(exc)
    assert isinstance(exc.reason, PinMismatchError), repr(exc.reason)
    return exc.reason


def assert_nothing_leaked(server: TLSServer, handshakes: int = 1) -> None:
    server.wait_idle()
    assert server.handshakes == handshakes
    assert server.bytes_received == 0
    assert server.requests == []


def pins(pki: PKI, host: str = "localhost") -> dict[str, list[str]]:
    return {host: [pki.intermediate_pin]}


# --- requests.get(), with no Session ------------------------------------------------


def test_requests_get_passes_the_genuine_server_and_refuses_an_impostor(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    injected(pins(pki))
    response = requests.get(f"https://localhost:{good.port}/", verify=pki.bundle)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.SSLError) as info:
        requests.post(f"https://localhost:{rogue.port}/", data=b"secret", verify=pki.bundle)
    error = pin_error(info.value)
    assert error.host == "localhost"
    assert error.port == rogue.port
    assert error.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
    assert_nothing_leaked(rogue)


def test_without_injection_the_impostor_is_reached(pki: PKI, rogue: TLSServer) -> None:
    # The twin of the suite: the rogue CA is trusted, so only pins stop it.
    assert requests.get(f"https://localhost:{rogue.port}/", verify=pki.bundle).status_code == 200


def test_a_pin_that_does_not_match_refuses_the_genuine_server(
    pki: PKI, injected: Inject, good: TLSServer
) -> None:
    injected({"localhost": [pki.rogue_root_pin]})
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{good.port}/", verify=pki.bundle)
    assert_nothing_leaked(good)


def test_an_attackers_proxy_routing_to_the_impostor(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    injected(pins(pki))
    with ConnectProxy(route_to=rogue.port) as evil:
        with pytest.raises(requests.exceptions.SSLError) as info:
            requests.get("https://localhost:443/", proxies={"https": evil.url}, verify=pki.bundle)
        assert pin_error(info.value).port == 443
        assert evil.connects == ["localhost:443"]
    assert_nothing_leaked(rogue)
    with ConnectProxy(route_to=good.port) as honest:
        response = requests.get(
            "https://localhost:443/", proxies={"https": honest.url}, verify=pki.bundle
        )
        assert response.status_code == 200


def test_https_proxy_from_the_environment(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    injected(pins(pki))
    with ConnectProxy(route_to=rogue.port) as evil:
        monkeypatch.setenv("HTTPS_PROXY", evil.url)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get("https://localhost:443/", verify=pki.bundle)
        assert evil.connects == ["localhost:443"]
    assert_nothing_leaked(rogue)
    with ConnectProxy(route_to=good.port) as honest:
        monkeypatch.setenv("HTTPS_PROXY", honest.url)
        assert requests.get("https://localhost:443/", verify=pki.bundle).status_code == 200


def test_a_redirect_to_another_host_is_checked(
    pki: PKI, injected: Inject, good: TLSServer, good2: TLSServer, rogue: TLSServer
) -> None:
    injected({"localhost": [pki.intermediate_pin], "127.0.0.1": [pki.intermediate_pin]})
    page = f"https://127.0.0.1:{good.port}/redirect?to="
    landed = requests.get(page + f"https://localhost:{good2.port}/landed", verify=pki.bundle)
    assert landed.status_code == 200
    assert len(landed.history) == 1
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(page + f"https://localhost:{rogue.port}/", verify=pki.bundle)
    assert_nothing_leaked(rogue)


# --- urllib3: pools and connection classes made before injection -------------------


def test_a_pool_manager_built_before_injection(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    # "A third-party library" made its manager, and its pools, earlier.
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    pool = http.connection_from_url(f"https://localhost:{rogue.port}/")
    injected(pins(pki))
    assert http.request("GET", f"https://localhost:{good.port}/").status == 200
    for retries in (Retry(10, backoff_factor=0), False):
        with pytest.raises(MaxRetryError) as info:
            pool.request("POST", "/", body=b"secret", retries=retries)
        assert pin_error(info.value).host == "localhost"
    # One handshake per refusal, whatever the retries; a MaxRetryError even
    # with retries=False (urllib3 would raise a bare error there).
    assert_nothing_leaked(rogue, handshakes=2)


def test_a_connection_class_subclassed_before_injection(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    injected(pins(pki))
    before = SDKConnection.connects
    options: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": pki.bundle}
    with SDKHTTPSConnectionPool("localhost", good.port, **options) as pool:
        assert pool.request("GET", "/").status == 200
    with SDKHTTPSConnectionPool("localhost", rogue.port, **options) as pool:
        with pytest.raises(MaxRetryError) as info:
            pool.request("POST", "/", body=b"secret", retries=Retry(5, backoff_factor=0))
        pin_error(info.value)
    assert SDKConnection.connects == before + 2  # its own connect() ran, and called ours
    assert_nothing_leaked(rogue)


def test_a_bare_connection_outside_any_pool(pki: PKI, injected: Inject, rogue: TLSServer) -> None:
    injected(pins(pki))
    # A context of the caller's (the constructor's other TLS arguments differ
    # between urllib3 1.26 and 2.x).
    context = ssl.create_default_context(cafile=pki.bundle)
    conn = HTTPSConnection("localhost", rogue.port, ssl_context=context)
    with pytest.raises(MaxRetryError) as info:
        conn.request("POST", "/", body=b"secret")
    pin_error(info.value)
    assert conn.sock is None
    assert_nothing_leaked(rogue)


def test_the_tunnel_through_an_https_proxy_and_the_proxys_own_session(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    # The proxy is "localhost" too: its own TLS session is checked against
    # that entry before the CONNECT line goes out.
    injected(pins(pki))
    with ConnectProxy(tls_cert=pki.leaf) as proxy:
        proxies = {"https": proxy.url}
        ok = requests.get(f"https://localhost:{good.port}/", proxies=proxies, verify=pki.bundle)
        assert ok.status_code == 200
        with pytest.raises(requests.exceptions.SSLError) as info:
            requests.get(f"https://localhost:{rogue.port}/", proxies=proxies, verify=pki.bundle)
        assert pin_error(info.value).port == rogue.port
        assert proxy.connects == [f"localhost:{good.port}", f"localhost:{rogue.port}"]
    assert_nothing_leaked(rogue)
    with ConnectProxy(tls_cert=pki.rogue_leaf) as impostor_proxy:
        with pytest.raises(requests.exceptions.SSLError) as info:
            requests.get(
                f"https://localhost:{good.port}/",
                proxies={"https": impostor_proxy.url},
                verify=pki.bundle,
            )
        assert pin_error(info.value).port == impostor_proxy.port
        impostor_proxy.wait_idle()
        assert impostor_proxy.connects == []  # not even the CONNECT line
        assert impostor_proxy.handshakes == 1


def test_through_a_socks5_proxy(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    injected(pins(pki))
    with Socks5Proxy(route_to=rogue.port) as evil:
        with pytest.raises(requests.exceptions.SSLError):
            requests.get("https://localhost:443/", proxies={"https": evil.url}, verify=pki.bundle)
        assert evil.connects == ["localhost:443"]
    assert_nothing_leaked(rogue)
    with Socks5Proxy(route_to=good.port) as honest:
        response = requests.get(
            "https://localhost:443/", proxies={"https": honest.url}, verify=pki.bundle
        )
        assert response.status_code == 200


def test_http2_connections_are_checked_before_their_preface(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    http2 = pytest.importorskip("urllib3.http2")
    http2.inject_into_urllib3()
    try:
        injected(pins(pki))
        http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        with pytest.raises(MaxRetryError) as info:
            http.request("GET", f"https://localhost:{rogue.port}/", retries=False)
        pin_error(info.value)
        assert_nothing_leaked(rogue)  # not the 24-byte preface, not a GOAWAY
        # The twin: the check passes and the preface goes out. (Connected by
        # hand: the test server speaks HTTP/1.1 only, and urllib3's HTTP/2
        # client waits forever for a response it cannot parse.)
        conn = urllib3.connection.HTTPSConnection(  # HTTP2Connection now
            "localhost", good.port, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle
        )
        assert type(conn).__name__ == "HTTP2Connection"
        conn.connect()
        conn.close()
        http.clear()
        good.wait_idle()
        assert good.bytes_received > 0
    finally:
        http2.extract_from_urllib3()


def test_a_forwarding_https_proxy_fails_closed_for_pinned_origins(
    pki: PKI, injected: Inject
) -> None:
    injected({"pinned.test": [pki.intermediate_pin]})
    with ConnectProxy(tls_cert=pki.leaf) as proxy:
        http = urllib3.ProxyManager(
            proxy.url,
            use_forwarding_for_https=True,
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        with pytest.raises(MaxRetryError) as info:
            http.request("GET", "https://pinned.test/x")
        error = pin_error(info.value)
        assert error.host == "pinned.test"
        assert "forwarding mode" in str(error)
        # The twin: an unpinned origin goes through the same proxy.
        assert http.request("GET", "https://unpinned.test/y").data == b"forwarded"
        assert proxy.forwarded == ["https://unpinned.test/y"]
        http.clear()


# urllib3 1.26's pyopenssl module itself calls pyOpenSSL APIs that warn as deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:urllib3.contrib.pyopenssl")
@pytest.mark.usefixtures("pyopenssl")
def test_pyopenssl_sockets_are_checked(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    injected({"localhost": [pki.root_pin]})
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    assert http.request("GET", f"https://localhost:{good.port}/").status == 200
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", f"https://localhost:{rogue.port}/")
    assert pin_error(info.value).checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
    assert_nothing_leaked(rogue)
    http.clear()


# --- connections opened before injection --------------------------------------------


def test_kept_alive_connections_opened_before_injection_are_checked_before_reuse(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    assert http.request("GET", f"https://localhost:{good.port}/").status == 200
    assert http.request("GET", f"https://localhost:{rogue.port}/").status == 200
    received = rogue.bytes_received
    injected(pins(pki))
    # The same sockets: the genuine one passes without a new handshake...
    assert http.request("GET", f"https://localhost:{good.port}/").status == 200
    assert good.handshakes == 1
    # ...and the impostor's is refused before the request, and closed.
    with pytest.raises(MaxRetryError) as info:
        http.request("POST", f"https://localhost:{rogue.port}/", body=b"secret")
    pin_error(info.value)
    http.clear()
    rogue.wait_idle()
    assert rogue.handshakes == 1
    assert rogue.bytes_received == received
    assert rogue.requests == ["GET / HTTP/1.1"]


def test_replaced_pins_apply_to_connections_checked_under_the_old_ones(
    pki: PKI, injected: Inject, good: TLSServer
) -> None:
    http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    injected(pins(pki))
    assert http.request("GET", f"https://localhost:{good.port}/").status == 200
    injected({"localhost": [pki.rogue_root_pin]})  # e.g. the intermediate was compromised
    with pytest.raises(MaxRetryError):
        http.request("GET", f"https://localhost:{good.port}/")
    http.clear()
    good.wait_idle()
    assert good.handshakes == 1
    assert good.requests == ["GET / HTTP/1.1"]


# --- with a PinningAdapter or PinningPoolManager ------------------------------------


def test_combined_with_an_adapter_both_policies_apply(
    pki: PKI, injected: Inject, rogue: TLSServer
) -> None:
    globally: list[PinFailure] = []
    adapter_failures: list[PinFailure] = []
    injected({"127.0.0.1": [pki.intermediate_pin]}, on_failure=globally.append)
    session = requests.Session()
    session.mount("https://", PinningAdapter(pins(pki), on_failure=adapter_failures.append))
    session.verify = pki.bundle
    # Pinned only in the adapter: the adapter refuses (its own error type).
    with pytest.raises(PinMismatchError) as info:
        session.get(f"https://localhost:{rogue.port}/")
    assert info.value.host == "localhost"
    assert (len(adapter_failures), len(globally)) == (1, 0)
    # Pinned only globally: refused through the adapter's pools too.
    with pytest.raises(PinMismatchError) as info:
        session.get(f"https://127.0.0.1:{rogue.port}/")
    assert info.value.host == "127.0.0.1"
    assert (len(adapter_failures), len(globally)) == (1, 1)
    # One handshake per refusal: each connection was checked once.
    assert_nothing_leaked(rogue, handshakes=2)


def test_combined_the_stricter_policy_wins_and_each_reports_once(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    globally: list[PinFailure] = []
    managed: list[PinFailure] = []
    injected({"localhost": [pki.rogue_root_pin]}, on_failure=globally.append)
    http = PinningPoolManager(
        pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle, on_failure=managed.append
    )
    for server in (good, rogue):  # each fails one of the two policies
        with pytest.raises(MaxRetryError) as info:
            http.request("POST", f"https://localhost:{server.port}/", body=b"secret")
        pin_error(info.value)
        assert_nothing_leaked(server)
    assert [f.port for f in managed] == [rogue.port]
    assert [f.port for f in globally] == [good.port]


def test_combined_when_both_refuse_both_report_and_the_pools_error_is_raised(
    pki: PKI, injected: Inject, good: TLSServer
) -> None:
    globally: list[PinFailure] = []
    managed: list[PinFailure] = []
    injected({"localhost": [pki.rogue_root_pin]}, on_failure=globally.append)
    http = PinningPoolManager(
        {"localhost": [pki.rogue_leaf_pin]},
        cert_reqs="CERT_REQUIRED",
        ca_certs=pki.bundle,
        on_failure=managed.append,
    )
    with pytest.raises(PinMismatchError) as info:
        http.request("GET", f"https://localhost:{good.port}/", retries=False)
    assert info.value.pinned == [pki.rogue_leaf_pin]
    assert (len(managed), len(globally)) == (1, 1)
    assert_nothing_leaked(good)


def test_inject_then_adapter_then_extract(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    injected({"127.0.0.1": [pki.intermediate_pin]})
    session = requests.Session()
    session.mount("https://", PinningAdapter(pins(pki)))
    session.verify = pki.bundle
    assert session.get(f"https://localhost:{good.port}/").status_code == 200
    extract_from_urllib3()
    # The adapter's own pins still apply, on the kept-alive connection and new ones...
    assert session.get(f"https://localhost:{good.port}/").status_code == 200
    with pytest.raises(PinMismatchError):
        session.get(f"https://localhost:{rogue.port}/")
    # ...and the process-wide ones no longer do.
    assert session.get(f"https://127.0.0.1:{rogue.port}/").status_code == 200
    assert good.handshakes == 1


# --- install and remove -------------------------------------------------------------


def test_extract_restores_urllib3_exactly(pki: PKI, injected: Inject, rogue: TLSServer) -> None:
    injected(pins(pki))
    assert HTTPSConnection.__dict__["connect"] is not ORIGINALS[HTTPSConnection, "connect"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{rogue.port}/", verify=pki.bundle)
    extract_from_urllib3()
    assert_restored()
    assert requests.get(f"https://localhost:{rogue.port}/", verify=pki.bundle).status_code == 200
    extract_from_urllib3()  # harmless when nothing is injected
    assert_restored()


def test_injecting_twice_wraps_once_and_replaces_the_policy(
    pki: PKI, injected: Inject, good: TLSServer
) -> None:
    injected(pins(pki))
    first = HTTPSConnection.__dict__["connect"]
    injected({"localhost": [pki.rogue_root_pin]})
    assert HTTPSConnection.__dict__["connect"] is first
    assert first.__wrapped__ is ORIGINALS[HTTPSConnection, "connect"]
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://localhost:{good.port}/", verify=pki.bundle)
    injected(pins(pki))
    assert requests.get(f"https://localhost:{good.port}/", verify=pki.bundle).status_code == 200


def test_a_pin_file_that_does_not_load_changes_nothing(pki: PKI, injected: Inject) -> None:
    with pytest.raises(PinConfigError):
        injected({"localhost": ["sha256/abc"]})
    assert_restored()
    with pytest.raises(PinConfigError):
        injected(pins(pki), report_only="yes")
    assert_restored()


def test_report_only_lets_the_impostor_through_and_reports(
    pki: PKI, injected: Inject, rogue: TLSServer
) -> None:
    failures: list[PinFailure] = []
    injected(pins(pki), report_only=True, on_failure=failures.append)
    assert requests.get(f"https://localhost:{rogue.port}/", verify=pki.bundle).status_code == 200
    assert [f.report_only for f in failures] == [True]


def test_allow_unpinned_false_refuses_hosts_without_pins(
    pki: PKI, injected: Inject, good: TLSServer
) -> None:
    injected({"localhost": [pki.intermediate_pin]}, allow_unpinned=False)
    assert requests.get(f"https://localhost:{good.port}/", verify=pki.bundle).status_code == 200
    with pytest.raises(requests.exceptions.SSLError) as info:
        requests.get(f"https://127.0.0.1:{good.port}/", verify=pki.bundle)
    assert pin_error(info.value).pattern is None


def test_inject_and_extract_from_threads_while_requests_run(
    pki: PKI, injected: Inject, good: TLSServer, rogue: TLSServer
) -> None:
    stop = threading.Event()
    outcomes: dict[str, int] = {"good": 0, "impostor reached": 0, "impostor refused": 0}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def count(key: str) -> None:
        with lock:
            outcomes[key] += 1

    def client() -> None:
        try:
            while not stop.is_set():
                response = requests.get(f"https://localhost:{good.port}/", verify=pki.bundle)
                assert response.status_code == 200
                count("good")
                try:
                    requests.get(f"https://localhost:{rogue.port}/", verify=pki.bundle)
                    count("impostor reached")
                except requests.exceptions.SSLError as exc:
                    pin_error(exc)
                    count("impostor refused")
        except BaseException as exc:
            errors.append(exc)

    def toggler() -> None:
        try:
            for _ in range(60):
                injected(pins(pki))
                extract_from_urllib3()
        except BaseException as exc:
            errors.append(exc)

    clients = [threading.Thread(target=client) for _ in range(3)]
    togglers = [threading.Thread(target=toggler) for _ in range(2)]
    for thread in clients + togglers:
        thread.start()
    for thread in togglers:
        thread.join(60)
    injected(pins(pki))  # now every request is checked
    with lock:
        refused_before = outcomes["impostor refused"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not errors:
        with lock:
            if outcomes["impostor refused"] >= refused_before + 3:
                break
        time.sleep(0.01)
    stop.set()
    for thread in clients:
        thread.join(60)
    assert not errors, errors
    assert outcomes["good"] > 0
    extract_from_urllib3()
    assert_restored()


def test_the_functions_are_public_and_documented() -> None:
    assert requests_pinning.inject_into_urllib3 is inject_into_urllib3
    assert "process" in (inject_into_urllib3.__doc__ or "")
    assert {"inject_into_urllib3", "extract_from_urllib3"} <= set(requests_pinning.__all__)
