"""Every public way into a pinning pool raises a documented error, and sends nothing.

The adapter's pools are public (``adapter.poolmanager``,
``get_connection_with_tls_context``): calling them directly must give what urllib3
callers expect (``MaxRetryError`` wrapping ``PinMismatchError``, or the error itself
with ``retries=False``), never the private exception that carries a refusal through
urllib3. And HTTP/2 injected into urllib3 before this package is imported must not
let a single byte (its connection preface) reach an impostor, on any path.
"""

from __future__ import annotations

import datetime
import json
import pickle
import ssl
import subprocess
import sys
import textwrap
import warnings
from typing import Any

import pytest
import requests
import trustme
import urllib3
from urllib3.exceptions import MaxRetryError

from requests_pinning import (
    PinMismatchError,
    PinningAdapter,
    PinningPoolManager,
    PinningProxyManager,
    PinningSession,
)
from requests_pinning._urllib3 import _PinningHTTPSConnection

from .conftest import PKI
from .servers import ConnectProxy, Socks5Proxy, TLSServer


def adapter(pki: PKI) -> PinningAdapter:
    return PinningAdapter({"localhost": [pki.intermediate_pin]})


def test_adapter_pool_manager_used_directly(pki: PKI, rogue: TLSServer, good: TLSServer) -> None:
    manager = adapter(pki).poolmanager
    options = {"cert_reqs": "CERT_REQUIRED", "ca_certs": pki.bundle}
    manager.connection_pool_kw.update(options)
    pool = manager.connection_from_url(f"https://localhost:{rogue.port}/")
    with pytest.raises(MaxRetryError) as info:
        pool.urlopen("POST", "/", body=b"secret")
    assert isinstance(info.value.reason, PinMismatchError)
    # The adapter's pools skip the urllib3-style unwrapping (a per-request
    # cost requests never needs): with retries off too, a MaxRetryError.
    with pytest.raises(MaxRetryError) as info:
        pool.urlopen("POST", "/", body=b"secret", retries=False)
    assert isinstance(info.value.reason, PinMismatchError)
    # It survives pickling (process pools) and copying, as urllib3's errors do.
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, MaxRetryError)
    assert isinstance(again.reason, PinMismatchError)
    assert again.reason.host == "localhost"
    with pytest.raises(MaxRetryError) as info:
        manager.request("GET", f"https://localhost:{rogue.port}/")
    assert isinstance(info.value.reason, PinMismatchError)
    rogue.wait_idle()
    assert rogue.bytes_received == 0
    assert rogue.handshakes == 3
    good_pool = manager.connection_from_url(f"https://localhost:{good.port}/")
    assert good_pool.urlopen("GET", "/").status == 200


def test_get_connection_with_tls_context(pki: PKI, rogue: TLSServer, good: TLSServer) -> None:
    pinning = adapter(pki)
    for server, ok in ((rogue, False), (good, True)):
        request = requests.Request("GET", f"https://localhost:{server.port}/").prepare()
        pool: Any = pinning.get_connection_with_tls_context(request, verify=pki.bundle)
        if ok:
            assert pool.urlopen("GET", "/").status == 200
        else:
            with pytest.raises(MaxRetryError) as info:
                pool.urlopen("POST", "/", body=b"secret", retries=False)
            assert isinstance(info.value.reason, PinMismatchError)
    rogue.wait_idle()
    assert rogue.bytes_received == 0


# HTTP/2 is injected process-wide, before this package is imported, so the
# client runs in a process of its own; the servers count bytes in this one.
_H2_CLIENT = textwrap.dedent(
    """
    import json, sys
    from urllib3.http2 import inject_into_urllib3
    inject_into_urllib3()
    import requests
    from requests_pinning import PinMismatchError, PinningAdapter

    pin, bundle, port, connect_proxy, socks_proxy = sys.argv[1:]
    results = {}
    for path, proxies in (
        ("direct", {}),
        ("connect", {"https": connect_proxy}),
        ("socks", {"https": socks_proxy}),
    ):
        session = requests.Session()
        session.mount("https://", PinningAdapter({"localhost": [pin]}))
        session.verify = bundle
        url = f"https://localhost:{port}/" if path == "direct" else "https://localhost/"
        try:
            response = session.post(url, data=b"secret", proxies=proxies)
            results[path] = f"HTTP {response.status_code}"
        except PinMismatchError:
            results[path] = "refused"
        session.close()
    print(json.dumps(results))
    """
)


def _h2_client(pki: PKI, server: TLSServer) -> dict[str, str]:
    with (
        ConnectProxy(route_to=server.port) as connect_proxy,
        Socks5Proxy(route_to=server.port) as socks_proxy,
    ):
        args = [pki.intermediate_pin, pki.bundle, str(server.port)]
        args += [connect_proxy.url, socks_proxy.url]
        done = subprocess.run(
            [sys.executable, "-c", _H2_CLIENT, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(
    urllib3.__version__.startswith("1."),  # type: ignore[attr-defined]
    reason="urllib3 1.26 has no HTTP/2 support to inject",
)
def test_http2_injected_first_sends_no_preface_to_an_impostor(
    pki: PKI, rogue: TLSServer, good: TLSServer
) -> None:
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (in the test extra)")
    assert _h2_client(pki, rogue) == {"direct": "refused", "connect": "refused", "socks": "refused"}
    rogue.wait_idle()
    assert rogue.handshakes == 3
    assert rogue.bytes_received == 0  # not even the 24-byte HTTP/2 preface
    # The twin: the genuine server is reached on every path, over HTTP/1.1.
    assert _h2_client(pki, good) == {
        "direct": "HTTP 200",
        "connect": "HTTP 200",
        "socks": "HTTP 200",
    }
    assert len(good.requests) == 3
    assert all(line.endswith("HTTP/1.1") for line in good.requests)
    # And a genuine server that speaks HTTP/2 too, which urllib3's ["h2"]
    # would have had choose it: it is asked for HTTP/1.1, on every path.
    with TLSServer(pki.leaf, http2=True) as both:
        assert _h2_client(pki, both) == {
            "direct": "HTTP 200",
            "connect": "HTTP 200",
            "socks": "HTTP 200",
        }
        both.wait_idle()
        assert both.requests == ["POST / HTTP/1.1"] * 3


@pytest.mark.parametrize("allow_unpinned", [True, False])
def test_a_pinned_host_as_an_https_proxy_gets_no_connect_unless_its_pins_match(
    pki: PKI, good: TLSServer, allow_unpinned: bool
) -> None:
    # The outer TLS session of a CONNECT tunnel carries the CONNECT line and the
    # proxy credentials: an impostor for a pinned proxy host must not get them.
    pins = {"localhost": [pki.intermediate_pin], "127.0.0.1": [pki.intermediate_pin]}
    origin = f"https://127.0.0.1:{good.port}/"
    with ConnectProxy(tls_cert=pki.rogue_leaf) as impostor:
        proxy = impostor.url.replace("https://", "https://user:secret@")
        with PinningSession(pins, allow_unpinned=allow_unpinned) as session:
            session.verify = pki.bundle
            with pytest.raises(PinMismatchError) as info:
                session.get(origin, proxies={"https": proxy})
        assert info.value.host == "localhost"
        assert info.value.port == impostor.port
        assert impostor.connects == []  # refused before the CONNECT line
    with ConnectProxy(tls_cert=pki.leaf) as genuine:  # the twin
        with PinningSession(pins, allow_unpinned=allow_unpinned) as session:
            session.verify = pki.bundle
            assert session.get(origin, proxies={"https": genuine.url}).status_code == 200
        assert genuine.connects == [f"127.0.0.1:{good.port}"]


def test_an_unpinned_https_proxy_is_refused_only_when_unpinned_hosts_are(
    pki: PKI, good: TLSServer
) -> None:
    pins = {"127.0.0.1": [pki.intermediate_pin]}  # the origin is pinned, the proxy not
    origin = f"https://127.0.0.1:{good.port}/"
    with ConnectProxy(tls_cert=pki.leaf) as proxy:
        with PinningSession(pins, allow_unpinned=False) as strict:
            strict.verify = pki.bundle
            with pytest.raises(PinMismatchError, match="unpinned hosts are refused"):
                strict.get(origin, proxies={"https": proxy.url})
        assert proxy.connects == []
        with PinningSession(pins) as lenient:
            lenient.verify = pki.bundle
            assert lenient.get(origin, proxies={"https": proxy.url}).status_code == 200


@pytest.mark.skipif(
    urllib3.__version__.startswith("1."),  # type: ignore[attr-defined]
    reason="urllib3 1.26 has no proxy_assert_hostname",
)
def test_proxy_assert_hostname_is_a_name_of_the_proxy_session(pki: PKI, good: TLSServer) -> None:
    # The proxy is dialled by IP and its certificate validated as another name:
    # that name's pins apply to the proxy's TLS session.
    pins = {"proxy.example.com": [pki.intermediate_pin]}
    origin = f"https://127.0.0.1:{good.port}/"
    rogue_cert = pki.rogue_root.issue_cert("proxy.example.com")
    genuine_cert = pki.intermediate.issue_cert("proxy.example.com")
    for cert, refused in ((rogue_cert, True), (genuine_cert, False)):
        with ConnectProxy(tls_cert=cert) as proxy:
            http = PinningProxyManager(
                pins,
                f"https://127.0.0.1:{proxy.port}",
                proxy_assert_hostname="proxy.example.com",
                proxy_headers={"Proxy-Authorization": "Basic c2VjcmV0"},
                cert_reqs="CERT_REQUIRED",
                ca_certs=pki.bundle,
            )
            if refused:
                with pytest.raises(PinMismatchError) as info:
                    http.request("GET", origin, retries=False)
                assert info.value.pattern == "proxy.example.com"
                assert proxy.connects == []
            else:
                assert http.request("GET", origin, retries=False).status == 200
                assert proxy.connects == [f"127.0.0.1:{good.port}"]


def test_a_pinned_forwarding_proxy_is_checked_on_every_urllib3(pki: PKI) -> None:
    # urllib3 1.26 reaches a forwarding HTTPS proxy without _connect_tls_proxy.
    pins = {"localhost": [pki.intermediate_pin]}
    for cert, refused in ((pki.rogue_leaf, True), (pki.leaf, False)):
        with ConnectProxy(tls_cert=cert) as proxy:
            http = PinningProxyManager(
                pins,
                proxy.url,
                use_forwarding_for_https=True,
                cert_reqs="CERT_REQUIRED",
                ca_certs=pki.bundle,
            )
            if refused:
                with pytest.raises(PinMismatchError) as info:
                    http.request("POST", "https://unpinned.test/", body=b"secret", retries=False)
                assert info.value.host == "localhost"
                assert proxy.forwarded == []
            else:
                assert http.request("GET", "https://unpinned.test/y").data == b"forwarded"
                assert proxy.forwarded == ["https://unpinned.test/y"]


class _OwnPoolManagerAdapter(PinningAdapter):
    """Like requests-toolbelt's SourceAddressAdapter: builds its own PoolManager."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = urllib3.PoolManager(
            num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


class _SourceAddressPinningAdapter(PinningAdapter):
    """The right way to add pool options: through the pinning pool manager."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["source_address"] = ("127.0.0.1", 0)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


def test_a_subclass_that_replaces_the_pool_manager_fails_closed(
    pki: PKI, rogue: TLSServer, good: TLSServer
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    with PinningSession(pins) as session:
        session.verify = pki.bundle
        session.mount("https://localhost", _OwnPoolManagerAdapter(pins))
        with pytest.raises(TypeError, match="does not check pins"):
            session.post(f"https://localhost:{rogue.port}/", data=b"secret")
        assert rogue.handshakes == 0
        session.mount("https://localhost", _SourceAddressPinningAdapter(pins))  # the twin
        assert session.get(f"https://localhost:{good.port}/").status_code == 200
        with pytest.raises(PinMismatchError):
            session.get(f"https://localhost:{rogue.port}/")
    assert rogue.bytes_received == 0


class _OwnPoolAdapter(PinningAdapter):
    """Keeps the pinning pool manager, but hands requests pools of its own."""

    def __init__(self, pins: Any, pool: Any) -> None:
        super().__init__(pins)
        self.own_pool = pool

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        pool = self.own_pool(request.url) if self.own_pool else None
        return pool or super().get_connection_with_tls_context(request, verify, proxies, cert)


@pytest.mark.parametrize("pool", ["https", "cleartext", "the adapter's"])
def test_a_subclass_that_hands_requests_its_own_pool_fails_closed(
    pki: PKI, rogue: TLSServer, good: TLSServer, pool: str
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    plain = urllib3.PoolManager(ca_certs=pki.bundle)
    pools = {
        "https": plain.connection_from_url,
        # An https:// URL on a cleartext pool would go out with no TLS at all.
        "cleartext": lambda url: urllib3.HTTPConnectionPool("localhost", rogue.port),
        "the adapter's": None,  # the twin: the pinning pools, found by super()
    }
    with PinningSession(pins) as session:
        session.verify = pki.bundle
        session.mount("https://localhost", _OwnPoolAdapter(pins, pools[pool]))
        if pool == "the adapter's":
            assert session.get(f"https://localhost:{good.port}/").status_code == 200
            with pytest.raises(PinMismatchError):
                session.post(f"https://localhost:{rogue.port}/", data=b"secret")
        else:
            with pytest.raises(TypeError, match="does not check pins"):
                session.post(f"https://localhost:{rogue.port}/", data=b"secret")
            assert rogue.handshakes == 0
    plain.clear()
    assert rogue.bytes_received == 0


class _PlainConnectionsAdapter(PinningAdapter):
    """Hands requests the pinning pool, with urllib3's plain connection class put in it."""

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        pool: Any = super().get_connection_with_tls_context(request, verify, proxies, cert)
        pool.ConnectionCls = self.connection_class
        return pool

    connection_class: type = urllib3.connection.HTTPSConnection


def test_a_pinning_pool_whose_connection_class_was_replaced_fails_closed(
    pki: PKI, rogue: TLSServer
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    adapter = _PlainConnectionsAdapter(pins)
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(TypeError, match="does not check pins: its ConnectionCls was replaced"):
        session.post(f"https://localhost:{rogue.port}/", data=b"secret", verify=pki.bundle)
    assert rogue.handshakes == 0
    # The twin: a subclass of the pinning connection class keeps checking.
    adapter.connection_class = type("Options", (_PinningHTTPSConnection,), {})
    with pytest.raises(PinMismatchError):
        session.post(f"https://localhost:{rogue.port}/", data=b"secret", verify=pki.bundle)
    assert rogue.bytes_received == 0
    session.close()


@pytest.mark.parametrize("how", ["a subclass's _get_conn", "the pool's queue"])
def test_a_pinning_pool_handed_a_plain_connection_refuses_it(
    pki: PKI, rogue: TLSServer, how: str
) -> None:
    # However a pool comes by a connection that checks no pins, urllib3
    # validates every connection before a request on it: refused there.
    http = PinningPoolManager({"localhost": [pki.intermediate_pin]}, ca_certs=pki.bundle)
    pool: Any = http.connection_from_url(f"https://localhost:{rogue.port}/")

    def plain() -> urllib3.connection.HTTPSConnection:
        # Refused before it connects: how it would validate does not matter.
        return urllib3.connection.HTTPSConnection("localhost", rogue.port)

    if how == "the pool's queue":
        pool.pool.get()
        pool.pool.put(plain())
    else:
        pool._get_conn = lambda timeout=None: plain()
    with pytest.raises(TypeError, match="does not check pins"):
        pool.urlopen("POST", "/", body=b"secret", retries=False)
    assert rogue.bytes_received == 0
    # The twin: a new pool's own connections check, and refuse the impostor.
    http.clear()
    pool = http.connection_from_url(f"https://localhost:{rogue.port}/")
    with pytest.raises(PinMismatchError):
        pool.urlopen("POST", "/", body=b"secret", retries=False)
    assert rogue.bytes_received == 0
    http.clear()


def test_a_reconnected_connection_checks_its_proxy_session_again(pki: PKI) -> None:
    # urllib3 reconnects the same connection object when a pooled socket
    # dropped: the new TLS session with the proxy is checked like the first.
    pins = {"localhost": [pki.intermediate_pin]}
    with ConnectProxy(tls_cert=pki.leaf) as genuine, ConnectProxy(tls_cert=pki.rogue_leaf) as rogue:
        http = PinningProxyManager(
            pins, genuine.url, use_forwarding_for_https=True, cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )  # fmt: skip
        pool = http.connection_from_url("https://unpinned.test/")
        conn: Any = pool._new_conn()
        conn.connect()  # the genuine proxy passes
        conn.close()
        conn.port = rogue.port  # the same object, now reaching an impostor proxy
        with pytest.raises(Exception, match="pinning failure") as info:
            conn.connect()
        assert "localhost" in str(info.value)
        assert rogue.forwarded == []


def test_forwarding_applies_the_pins_of_asserted_names(pki: PKI) -> None:
    pins = {"pinned.test": [pki.intermediate_pin]}
    with ConnectProxy(tls_cert=pki.leaf) as proxy:
        options: dict[str, Any] = {
            "use_forwarding_for_https": True,
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": pki.bundle,
        }
        asserted = PinningProxyManager(pins, proxy.url, assert_hostname="pinned.test", **options)
        # urllib3 2.x validates the proxy as the proxy, and the pins of the
        # asserted name refuse; 1.26 validates the proxy's certificate as
        # "pinned.test", which fails before pins are needed. Nothing is sent.
        with pytest.raises(urllib3.exceptions.SSLError) as info:
            asserted.request("POST", "https://127.0.0.1/", body=b"secret", retries=False)
        if isinstance(info.value, PinMismatchError):
            assert info.value.pattern == "pinned.test"
        else:
            assert urllib3.__version__.startswith("1.")  # type: ignore[attr-defined]
        assert proxy.forwarded == []
        plain = PinningProxyManager(pins, proxy.url, **options)  # the twin: nothing pinned
        assert plain.request("GET", "https://127.0.0.1/x").data == b"forwarded"
        assert proxy.forwarded == ["https://127.0.0.1/x"]


def test_retries_false_on_the_adapter_still_raises_pin_mismatch(
    pki: PKI, rogue: TLSServer, good: TLSServer
) -> None:
    from urllib3.util.retry import Retry

    adapter = PinningAdapter({"localhost": [pki.intermediate_pin]}, max_retries=Retry(total=False))
    with requests.Session() as session:
        session.mount("https://", adapter)
        session.verify = pki.bundle
        with pytest.raises(PinMismatchError):
            session.get(f"https://localhost:{rogue.port}/")
        assert session.get(f"https://localhost:{good.port}/").status_code == 200
    assert rogue.bytes_received == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning:urllib3.contrib.pyopenssl")
def test_pyopenssl_injected_after_a_connection_was_made(pki: PKI, good: TLSServer) -> None:
    http = PinningPoolManager(
        {"localhost": [pki.intermediate_pin]}, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle
    )
    url = f"https://localhost:{good.port}/"
    assert http.request("GET", url).status == 200  # a pooled connection object exists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from urllib3.contrib import pyopenssl
    pyopenssl.inject_into_urllib3()
    try:
        pool: Any = http.connection_from_url(url)
        for _ in range(2):
            conn = pool._get_conn()
            conn.close()  # dropped: the same object reconnects, now under pyOpenSSL
            pool._put_conn(conn)
            assert http.request("GET", url).status == 200
    finally:
        http.clear()
        pyopenssl.extract_from_urllib3()


class _SharedContextAfterARace(ssl.SSLContext):
    """A user's context caught mid-race: it handshakes without validation but
    reports CERT_REQUIRED when asked afterwards, as a context shared with a
    verify=False pool can when urllib3 writes verify_mode into it per connect."""

    @property  # type: ignore[override]
    def verify_mode(self) -> ssl.VerifyMode:
        return ssl.CERT_REQUIRED

    @verify_mode.setter
    def verify_mode(self, value: ssl.VerifyMode) -> None:
        super(_SharedContextAfterARace, type(self)).verify_mode.__set__(self, ssl.CERT_NONE)  # type: ignore[attr-defined]


def _forged_under(pki: PKI) -> trustme.LeafCert:
    """A leaf that names the genuine intermediate as its issuer, signed by another key."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    intermediate = cx509.load_pem_x509_certificate(pki.intermediate.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(cx509.NameOID.COMMON_NAME, "forged")]))
        .issuer_name(intermediate.subject)
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(cx509.SubjectAlternativeName([cx509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    return trustme.LeafCert(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert.public_bytes(serialization.Encoding.PEM),
        [pki.intermediate.cert_pem.bytes()],
    )


def test_a_users_context_that_changed_under_the_handshake_cannot_vouch_for_a_chain(
    pki: PKI, good: TLSServer
) -> None:
    context = _SharedContextAfterARace(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(pki.bundle)
    pins = {"localhost": [pki.intermediate_pin]}
    http = PinningPoolManager(pins, ssl_context=context, assert_hostname=False)
    with TLSServer(_forged_under(pki)) as forged:
        with pytest.raises(PinMismatchError, match="signatures do not link"):
            http.request("POST", f"https://localhost:{forged.port}/", body=b"x", retries=False)
        forged.wait_idle()
        assert forged.bytes_received == 0
    # The twin: the genuine chain's signatures link, and its pin matches.
    assert http.request("GET", f"https://localhost:{good.port}/", retries=False).status == 200
