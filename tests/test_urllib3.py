"""PinningPoolManager and PinningProxyManager, for urllib3 users, against real servers."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from requests_pinning import PinMismatchError, PinningPoolManager, PinningProxyManager

from .conftest import PKI
from .servers import ConnectProxy, TLSServer


def manager(pki: PKI, pins: Any, **kwargs: Any) -> PinningPoolManager:
    return PinningPoolManager(pins, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle, **kwargs)


def assert_nothing_leaked(server: TLSServer) -> None:
    server.wait_idle()
    assert server.handshakes == 1
    assert server.bytes_received == 0


def test_pool_manager_passes_genuine_and_refuses_impostor(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    http = manager(pki, {"localhost": [pki.intermediate_pin]})
    response = http.request("GET", f"https://localhost:{good.port}/")
    assert response.status == 200
    assert response.data == b"ok"
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", f"https://localhost:{rogue.port}/")
    error = info.value.reason
    assert isinstance(error, PinMismatchError)
    assert error.host == "localhost"
    assert error.port == rogue.port
    assert error.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
    assert_nothing_leaked(rogue)


def test_retries_false_raises_the_error_itself(pki: PKI, rogue: TLSServer) -> None:
    http = manager(pki, {"localhost": [pki.intermediate_pin]})
    with pytest.raises(PinMismatchError):
        http.request("GET", f"https://localhost:{rogue.port}/", retries=False)
    assert_nothing_leaked(rogue)


def test_configured_retries_make_exactly_one_handshake(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    http = manager(pki, {"localhost": [pki.intermediate_pin]}, retries=Retry(10, backoff_factor=0))
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", f"https://localhost:{rogue.port}/")
    assert isinstance(info.value.reason, PinMismatchError)
    assert_nothing_leaked(rogue)
    assert http.request("GET", f"https://localhost:{good.port}/").status == 200


def test_redirect_followed_by_urllib3_is_checked(
    pki: PKI, good: TLSServer, good2: TLSServer, rogue: TLSServer
) -> None:
    http = manager(pki, {"localhost": [pki.intermediate_pin]})
    target = f"https://localhost:{good2.port}/landed"
    assert http.request("GET", f"https://localhost:{good.port}/redirect?to={target}").status == 200
    bad = f"https://localhost:{rogue.port}/"
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", f"https://localhost:{good.port}/redirect?to={bad}")
    assert isinstance(info.value.reason, PinMismatchError)
    assert_nothing_leaked(rogue)


@pytest.mark.parametrize("tls", [False, True], ids=["http-proxy", "https-proxy"])
def test_proxy_manager_tunnels_and_pins_the_origin(
    pki: PKI, good: TLSServer, rogue: TLSServer, tls: bool
) -> None:
    with ConnectProxy(tls_cert=pki.leaf if tls else None) as proxy:
        http = PinningProxyManager(
            {"localhost": [pki.intermediate_pin]},
            proxy.url,
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        assert http.request("GET", f"https://localhost:{good.port}/").status == 200
        with pytest.raises(MaxRetryError) as info:
            http.request("GET", f"https://localhost:{rogue.port}/")
        assert isinstance(info.value.reason, PinMismatchError)
        assert info.value.reason.port == rogue.port
        assert proxy.connects == [f"localhost:{good.port}", f"localhost:{rogue.port}"]
    assert_nothing_leaked(rogue)


def test_forwarding_https_proxy_fails_closed_for_pinned_hosts(pki: PKI) -> None:
    with ConnectProxy(tls_cert=pki.leaf) as proxy:
        http = PinningProxyManager(
            {"pinned.test": [pki.intermediate_pin]},
            proxy.url,
            use_forwarding_for_https=True,
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        with pytest.raises(MaxRetryError) as info:
            http.request("GET", "https://pinned.test/x")
        error = info.value.reason
        assert isinstance(error, PinMismatchError)
        assert error.host == "pinned.test"
        assert "forwarding mode" in str(error)
        assert proxy.forwarded == []  # nothing reached the proxy
        # The twin: an unpinned host goes through the same proxy.
        response = http.request("GET", "https://unpinned.test/y")
        assert response.data == b"forwarded"
        assert proxy.forwarded == ["https://unpinned.test/y"]


# urllib3 1.26's pyopenssl module itself calls pyOpenSSL APIs that warn as deprecated.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:urllib3.contrib.pyopenssl")
@pytest.mark.usefixtures("pyopenssl")
def test_pyopenssl_sockets_are_checked(pki: PKI, good: TLSServer, rogue: TLSServer) -> None:
    http = manager(pki, {"localhost": [pki.root_pin]})
    response = http.request("GET", f"https://localhost:{good.port}/")
    assert response.status == 200
    pool = http.connection_from_url(f"https://localhost:{good.port}/")
    assert pool.pool is not None
    [conn] = [c for c in pool.pool.queue if c is not None]
    assert type(conn.sock).__name__ == "WrappedSocket"  # really the pyOpenSSL path
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", f"https://localhost:{rogue.port}/")
    error = info.value.reason
    assert isinstance(error, PinMismatchError)
    assert error.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
    assert_nothing_leaked(rogue)


def test_plain_http_pools_are_untouched(pki: PKI) -> None:
    http = manager(pki, {"localhost": [pki.intermediate_pin]})
    pool = http.connection_from_url("http://localhost:1/")
    assert type(pool) is urllib3.HTTPConnectionPool


def test_pins_of_the_validated_name_apply_when_connecting_by_address(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    """server_hostname makes urllib3 validate the certificate for another name: pin it."""
    http = manager(pki, {"localhost": [pki.intermediate_pin]}, server_hostname="localhost")
    assert http.request("GET", f"https://127.0.0.1:{good.port}/").status == 200
    with pytest.raises(MaxRetryError) as info:
        http.request("GET", f"https://127.0.0.1:{rogue.port}/")
    error = info.value.reason
    assert isinstance(error, PinMismatchError)
    assert error.host == "localhost"
    assert_nothing_leaked(rogue)


class _OwnPools:
    """A mixin that builds the manager's HTTPS pools itself (say, to bind a source address)."""

    # urllib3's own HTTPS pool, or its HTTP pool made to speak TLS, neither
    # of which checks pins; or (False) the manager's.
    plain: str | bool = "https"

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> Any:
        manager: Any = self
        context = dict(request_context or manager.connection_pool_kw)
        context["source_address"] = ("127.0.0.1", 0)
        if scheme == "https" and self.plain:
            for key in ("scheme", "host", "port"):
                context.pop(key, None)
            if self.plain == "https":
                return urllib3.HTTPSConnectionPool(host, port, **context)
            # Helper 61: not an HTTPSConnectionPool, yet TLS all the same.
            for key in list(context):
                if key not in ("source_address", "timeout", "retries", "headers"):
                    context.pop(key)
            return _TLSInHTTPPool(host, port, **context)
        return super()._new_pool(scheme, host, port, context)  # type: ignore[misc]


class _TLSInHTTPPool(urllib3.HTTPConnectionPool):
    scheme = "https"
    ConnectionCls = urllib3.connection.HTTPSConnection


class _OwnPoolManager(_OwnPools, PinningPoolManager):
    pass


class _OwnProxyManager(_OwnPools, PinningProxyManager):
    pass


@pytest.mark.parametrize(
    "plain", ["https", "http-tls", False], ids=["plain pool", "tls in an http pool", "pinning pool"]
)
@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "proxied"])
@pytest.mark.parametrize("how", ["request", "connection_from_url"])
def test_a_subclass_whose_pools_check_no_pins_is_refused_before_a_byte(
    pki: PKI, good: TLSServer, rogue: TLSServer, plain: str | bool, proxied: bool, how: str
) -> None:
    # The pool the manager is about to use is looked at, however it was made:
    # a subclass's _new_pool never reaches the manager's own.
    pins = {"localhost": [pki.intermediate_pin]}
    kwargs: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": pki.bundle}
    with ConnectProxy() as proxy:
        http: Any = (
            _OwnProxyManager(pins, proxy.url, **kwargs)
            if proxied
            else _OwnPoolManager(pins, **kwargs)
        )
        http.plain = plain

        def post(server: TLSServer) -> Any:
            url = f"https://localhost:{server.port}/"
            if how == "request":
                return http.request("POST", url, body=b"secret")
            return http.connection_from_url(url).urlopen("POST", "/", body=b"secret")

        if plain:
            with pytest.raises(TypeError, match="Pool does not check pins"):
                post(rogue)
            rogue.wait_idle()
            assert rogue.handshakes == 0
            assert proxy.connects == []
        else:  # the twin: a subclass that lets the manager make its pools
            assert post(good).status == 200
            with pytest.raises(MaxRetryError) as info:
                post(rogue)
            assert isinstance(info.value.reason, PinMismatchError)
            assert_nothing_leaked(rogue)
        http.clear()


@pytest.mark.parametrize("route", ["good", "rogue"])
def test_forwarding_on_urllib3_1_applies_the_asserted_names_pins_to_the_proxy_only(
    pki: PKI, route: str
) -> None:
    if not urllib3.__version__.startswith("1."):  # type: ignore[attr-defined]
        pytest.skip("urllib3 2.x validates a forwarding proxy as proxy_assert_hostname")
    # urllib3 1.26 validates a forwarding proxy's certificate as the pool's
    # assert_hostname: that name's pins apply to the proxy's session, which
    # is its TLS peer. They are not the origin's (unpinned here), whose
    # certificate is never seen: a genuine proxy passes.
    issuer = pki.intermediate if route == "good" else pki.rogue_root
    with ConnectProxy(tls_cert=issuer.issue_cert("pinned.test")) as proxy:
        http = PinningProxyManager(
            {"pinned.test": [pki.intermediate_pin]},
            proxy.url,
            use_forwarding_for_https=True,
            assert_hostname="pinned.test",
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        if route == "good":
            assert http.request("GET", "https://127.0.0.1/x").data == b"forwarded"
            assert proxy.forwarded == ["https://127.0.0.1/x"]
        else:
            with pytest.raises(PinMismatchError) as info:
                http.request("POST", "https://127.0.0.1/", body=b"secret", retries=False)
            assert info.value.pattern == "pinned.test"
            assert proxy.forwarded == []
        http.clear()
