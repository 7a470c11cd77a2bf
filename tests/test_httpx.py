"""The httpx face against real TLS servers on loopback.

Every scenario runs with ``httpx.Client`` and ``httpx.AsyncClient`` (under asyncio and
trio), most of them over HTTP/1.1 and HTTP/2 (servers that offer h2 by ALPN), and
the routes directly, through a CONNECT proxy, an HTTPS proxy (TLS inside TLS) and a
SOCKS5 proxy. Every refusal asserts that the impostor received zero bytes after its
handshake; every passing scenario has a failing twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import pickle
import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the httpx face needs the test-httpx extra")
httpcore = pytest.importorskip("httpcore", reason="the httpx face needs the test-httpx extra")
trio = pytest.importorskip("trio", reason="the trio runs need the test-httpx extra")

from requests_pinning import (  # noqa: E402
    PinFailure,
    PinningPolicy,
    PinningSession,
    PinSet,
    cert_fingerprint,
)
from requests_pinning.httpx import (  # noqa: E402
    AsyncPinningTransport,
    PinMismatchError,
    PinningTransport,
    _install,
)

from .conftest import PKI  # noqa: E402
from .servers import ConnectProxy, Socks5Proxy, TLSServer  # noqa: E402
from .test_identity import attempt  # noqa: E402
from .test_public_paths import _forged_under  # noqa: E402

MODES = ("sync", "asyncio", "trio")
# httpx 0.27's AsyncHTTPTransport ignores Proxy(ssl_context=...): its HTTPS
# proxy cannot be trusted by a test CA (the handshake fails CA validation).
ASYNC_PROXY_CONTEXT = tuple(int(part) for part in httpx.__version__.split(".")[:2]) >= (0, 28)


def needs_proxy_context(mode: str) -> None:
    if mode != "sync" and not ASYNC_PROXY_CONTEXT:
        pytest.skip("httpx < 0.28 ignores an async transport's Proxy(ssl_context=...)")


ROUTES = ("direct", "connect", "https-proxy", "socks5")

Outcome = Any  # an httpx.Response, or the exception a request raised


@pytest.fixture(autouse=True)
def _no_ca_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx reads these under verify=True; the tests choose their CAs explicitly.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture(params=["http/1.1", "h2"])
def protocol(request: pytest.FixtureRequest) -> str:
    """What the servers offer by ALPN and the client asks for."""
    if request.param == "h2":
        pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in tox -e httpx-no-h2)")
    return str(request.param)


@pytest.fixture
def origin(pki: PKI, protocol: str) -> Iterator[TLSServer]:
    """The genuine server, speaking ``protocol``."""
    with TLSServer(pki.leaf, http2=protocol == "h2") as server:
        yield server


@pytest.fixture
def impostor(pki: PKI, protocol: str) -> Iterator[TLSServer]:
    """A rogue-CA server (trusted by the client, so only the pins stop it)."""
    with TLSServer(pki.rogue_leaf, http2=protocol == "h2") as server:
        yield server


def trusting(pki: PKI) -> ssl.SSLContext:
    """A client context that trusts the genuine and the rogue root."""
    return ssl.create_default_context(cafile=pki.bundle)


def url(server: TLSServer, host: str = "localhost", path: str = "/") -> str:
    return f"https://{host}:{server.port}{path}"


def fetch(mode: str, pins: Any, urls: list[str], **kwargs: Any) -> list[Outcome]:
    """GET each URL in turn through one pinning client; the responses or the errors.

    ``kwargs`` go to the transport, except ``extensions`` (to each request).
    """
    extensions = kwargs.pop("extensions", None)
    results: list[Outcome] = []
    if mode == "sync":
        with httpx.Client(transport=PinningTransport(pins, **kwargs), timeout=10) as client:
            for target in urls:
                try:
                    results.append(client.get(target, extensions=extensions))
                except httpx.TransportError as exc:
                    results.append(exc)
    else:

        async def main() -> None:
            transport = AsyncPinningTransport(pins, **kwargs)
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:
                for target in urls:
                    try:
                        results.append(await client.get(target, extensions=extensions))
                    except httpx.TransportError as exc:
                        results.append(exc)

        if mode == "asyncio":
            asyncio.run(main())
        else:
            trio.run(main)
    gc.collect()  # a socket left open would warn now, and warnings are errors
    return results


def only(outcomes: list[Outcome]) -> Outcome:
    """The one outcome, raised if it is an error."""
    [outcome] = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def accepted(outcome: Outcome, protocol: str = "http/1.1") -> None:
    assert isinstance(outcome, httpx.Response), repr(outcome)
    assert outcome.status_code == 200
    assert outcome.text == "ok"
    assert outcome.http_version == ("HTTP/2" if protocol == "h2" else "HTTP/1.1")


def refused(outcome: Outcome, server: TLSServer, handshakes: int = 1) -> PinMismatchError:
    """The outcome is a pin refusal, after ``handshakes`` handshakes and zero bytes."""
    assert isinstance(outcome, PinMismatchError), repr(outcome)
    server.wait_idle()
    assert server.handshakes == handshakes
    assert server.bytes_received == 0
    assert server.requests == []
    return outcome


@contextlib.contextmanager
def routed(route: str, pki: PKI, target: TLSServer) -> Iterator[tuple[str, dict[str, Any]]]:
    """The URL and transport arguments of a request that reaches ``target`` by ``route``.

    Through a proxy, the URL names ``localhost:443`` and the proxy (in the
    attacker's hands, or the honest twin) sends the tunnel to ``target``.
    """
    if route == "direct":
        yield url(target), {}
    elif route == "connect":
        with ConnectProxy(route_to=target.port) as connect:
            yield "https://localhost:443/", {"proxy": connect.url}
    elif route == "https-proxy":
        with ConnectProxy(tls_cert=pki.leaf, route_to=target.port) as tls_proxy:
            proxy = httpx.Proxy(tls_proxy.url, ssl_context=trusting(pki))
            yield "https://localhost:443/", {"proxy": proxy}
    else:
        with Socks5Proxy(route_to=target.port) as socks:
            yield "https://localhost:443/", {"proxy": socks_url(socks)}


# -- the core scenario, every way ---------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", MODES)
def test_pinned_host_passes_and_the_impostor_gets_nothing(
    pki: PKI,
    origin: TLSServer,
    impostor: TLSServer,
    protocol: str,
    mode: str,
    route: str,
) -> None:
    if route == "https-proxy":
        needs_proxy_context(mode)
    pins = {"localhost": [pki.intermediate_pin]}
    options = {"verify": trusting(pki), "http2": protocol == "h2"}
    with routed(route, pki, origin) as (target, extra):
        [response] = fetch(mode, pins, [target], **options, **extra)
    accepted(response, protocol)
    with routed(route, pki, impostor) as (target, extra):
        [outcome] = fetch(mode, pins, [target], **options, **extra)
    error = refused(outcome, impostor)
    assert error.host == "localhost"
    assert error.port == (impostor.port if route == "direct" else 443)  # the origin's
    assert error.pattern == "localhost"
    assert error.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]


@pytest.mark.parametrize("mode", MODES)
def test_http2_only_client(pki: PKI, mode: str) -> None:
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in tox -e httpx-no-h2)")
    pins = {"localhost": [pki.intermediate_pin]}
    options = {"verify": trusting(pki), "http1": False, "http2": True}
    with TLSServer(pki.leaf, http2=True) as good, TLSServer(pki.rogue_leaf, http2=True) as rogue:
        accepted(fetch(mode, pins, [url(good)], **options)[0], "h2")
        refused(fetch(mode, pins, [url(rogue)], **options)[0], rogue)


# -- the error ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_error_fields_and_message(pki: PKI, rogue: TLSServer, mode: str) -> None:
    pins = {"**.localhost": [pki.intermediate_pin, pki.root_pin]}
    [outcome] = fetch(mode, pins, [url(rogue, path="/secret")], verify=trusting(pki))
    error = refused(outcome, rogue)
    assert isinstance(error, httpx.ConnectError)
    assert isinstance(error, httpx.TransportError)
    assert error.host == "localhost"
    assert error.port == rogue.port
    assert error.pattern == "**.localhost"
    assert error.pinned == [pki.intermediate_pin, pki.root_pin]
    assert error.denied == []
    assert error.served == [pki.rogue_leaf_pin]
    assert error.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
    assert len(error.checked_chain) == 2
    assert error.verified is True
    assert error.reason == "no certificate of the verified chain matches a pin"
    assert str(error.request.url) == url(rogue, path="/secret")
    # The same text as the requests face's.
    message = str(error)
    assert message.startswith(
        f"Certificate pinning failure for localhost:{rogue.port}: "
        "no certificate of the verified chain matches a pin\n  Chain checked (verified):\n"
    )
    assert f"    {pki.rogue_leaf_pin}  " in message
    assert f"    {pki.rogue_root_pin}  " in message
    assert 'Pinned for localhost (entry "**.localhost"):' in message
    assert f"    {pki.intermediate_pin}" in message
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is PinMismatchError
    assert str(copy) == message
    assert copy.checked_chain == error.checked_chain
    assert copy.reason == error.reason
    assert str(copy.request.url) == str(error.request.url)


def test_error_without_a_request_pickles() -> None:
    error = PinMismatchError("text", host="h", port=1, pinned=["sha256/x"], verified=True)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.host, copy.port, copy.pinned, copy.verified) == ("h", 1, ["sha256/x"], True)
    with pytest.raises(RuntimeError):
        copy.request  # noqa: B018 - httpx's own "not set" error


# -- which certificates count -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_appended_genuine_intermediate_does_not_pass(
    pki: PKI, good: TLSServer, appended: TLSServer, mode: str
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    [bad, ok] = fetch(mode, pins, [url(appended), url(good)], verify=trusting(pki))
    error = refused(bad, appended)
    assert pki.intermediate_pin in error.served
    assert pki.intermediate_pin not in error.checked
    accepted(ok)


@pytest.mark.parametrize("mode", MODES)
def test_verify_false_checks_the_leaf_only(
    pki: PKI, untrusted: TLSServer, rogue: TLSServer, good: TLSServer, mode: str
) -> None:
    # A leaf pin authenticates a self-managed server without CA validation...
    leaf_pins = {"localhost": [pki.untrusted_leaf_pin]}
    [ok, bad] = fetch(mode, leaf_pins, [url(untrusted), url(rogue)], verify=False)
    accepted(ok)
    error = refused(bad, rogue)
    assert error.verified is False
    assert error.checked == [pki.rogue_leaf_pin]
    assert "NOT verified" in str(error)
    # ...and without validation an intermediate pin never passes, even the genuine server's.
    [outcome] = fetch(mode, {"localhost": [pki.intermediate_pin]}, [url(good)], verify=False)
    assert "only the leaf is checked" in refused(outcome, good).reason


@pytest.mark.parametrize("mode", MODES)
def test_verify_true_with_the_transports_own_context(
    pki: PKI,
    good: TLSServer,
    rogue: TLSServer,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # verify=True: httpx builds the context (from SSL_CERT_FILE), not the user.
    monkeypatch.setenv("SSL_CERT_FILE", pki.bundle)
    pins = {"localhost": [cert_fingerprint(pki.intermediate.cert_pem.bytes())]}
    [ok, bad] = fetch(mode, pins, [url(good), url(rogue)])
    accepted(ok)
    refused(bad, rogue)


class _ChangedUnderTheHandshake(ssl.SSLContext):
    """A user's context that someone else switches to validation right after a handshake.

    The handshake runs without validation; by the time the pins are checked the
    context says it validates, as a context shared with other code may.
    """

    def wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        sock = super().wrap_socket(*args, **kwargs)  # the handshake happens here
        self.verify_mode = ssl.CERT_REQUIRED
        return sock


def test_a_users_context_must_vouch_for_a_chain_that_links(pki: PKI, good: TLSServer) -> None:
    def context() -> ssl.SSLContext:
        ctx = _ChangedUnderTheHandshake(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_verify_locations(pki.bundle)
        return ctx

    pins = {"localhost": [pki.intermediate_pin]}
    # A leaf that names the genuine intermediate as its issuer, signed by
    # another key: "verified" after the fact, its signatures do not link.
    with TLSServer(_forged_under(pki)) as forged:
        [outcome] = fetch("sync", pins, [url(forged)], verify=context())
        assert "signatures do not link" in refused(outcome, forged).reason
    # The twin: the genuine chain links.
    accepted(fetch("sync", pins, [url(good)], verify=context())[0])


# -- names: the pinned name is the authenticated name -------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_sni_hostname_names_the_pins(
    pki: PKI, good: TLSServer, rogue: TLSServer, mode: str
) -> None:
    # The URL says 127.0.0.1 (no entry); TLS authenticates "localhost" (pinned).
    pins = {"localhost": [pki.intermediate_pin]}
    options: dict[str, Any] = {
        "verify": trusting(pki),
        "allow_unpinned": True,
        "extensions": {"sni_hostname": "localhost"},
    }
    host = "127.0.0.1"
    [ok, bad] = fetch(mode, pins, [url(good, host), url(rogue, host)], **options)
    accepted(ok)
    assert refused(bad, rogue).pattern == "localhost"


SPELLINGS = ["LOCALHOST", "LocalHost.", "localhost.", "localhost..", "127.1", "0x7f.0.0.1", "[::1]"]


@pytest.mark.parametrize("route", ["direct", "connect", "socks5"])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_other_spellings_of_the_host_get_nothing_through(
    pki: PKI, good: TLSServer, rogue: TLSServer, spelling: str, route: str
) -> None:
    # Through a proxy in the attacker's hands every spelling reaches the
    # impostor. Whatever the spelling, it gets nothing: the pins of a name the
    # connection is known by refuse it, or it fails before TLS is done.
    pins = {name: [pki.intermediate_pin] for name in ("localhost", "127.0.0.1", "::1")}
    if route == "direct" and spelling == "[::1]":
        pytest.skip("the servers listen on 127.0.0.1")
    direct = route == "direct"
    target = f"https://{spelling}:{rogue.port if direct else 443}/"
    with proxied(route, rogue) as proxies:
        # attempt() collects the SSLSocket that ssl leaks when IDNA refuses a
        # name ("localhost..": a UnicodeError that httpcore does not map).
        outcome = attempt(
            lambda: only(fetch("sync", pins, [target], verify=trusting(pki), **proxies))
        )
    rogue.wait_idle()
    assert rogue.bytes_received == 0
    assert rogue.requests == []
    assert isinstance(outcome, httpx.TransportError | UnicodeError), repr(outcome)
    if isinstance(outcome, PinMismatchError):
        assert outcome.port == (rogue.port if direct else 443)
        # The passing twin: the same spelling and route to the genuine server.
        target = f"https://{spelling}:{good.port if direct else 443}/"
        with proxied(route, good) as proxies:
            accepted(fetch("sync", pins, [target], verify=trusting(pki), **proxies)[0])


@contextlib.contextmanager
def proxied(route: str, target: TLSServer) -> Iterator[dict[str, Any]]:
    """Transport arguments for a proxy (or none) that sends every tunnel to ``target``."""
    if route == "connect":
        with ConnectProxy(route_to=target.port) as connect:
            yield {"proxy": connect.url}
    elif route == "socks5":
        with Socks5Proxy(route_to=target.port) as socks:
            yield {"proxy": socks_url(socks)}
    else:
        yield {}


def socks_url(proxy: Socks5Proxy) -> str:
    # socks5 (not socks5h): the spelling httpx 0.27 accepts too; httpcore sends
    # the name to the proxy either way.
    return f"socks5://127.0.0.1:{proxy.port}"


# -- proxies ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_https_proxy_with_an_impostors_certificate_gets_nothing(
    pki: PKI, good: TLSServer, mode: str
) -> None:
    # The proxy's own TLS session is checked against the proxy's pins before
    # the CONNECT line (target, credentials) is written.
    needs_proxy_context(mode)
    pins = {"localhost": [pki.intermediate_pin]}
    with ConnectProxy(tls_cert=pki.rogue_leaf, route_to=good.port) as evil:
        proxy = httpx.Proxy(evil.url, auth=("user", "secret"), ssl_context=trusting(pki))
        [outcome] = fetch(mode, pins, [url(good)], verify=trusting(pki), proxy=proxy)
        evil.wait_idle()
        assert evil.handshakes == 1
        assert evil.connects == []
    assert isinstance(outcome, PinMismatchError), repr(outcome)
    assert outcome.port == evil.port  # the proxy's own session failed
    assert good.handshakes == 0
    with ConnectProxy(tls_cert=pki.leaf, route_to=good.port) as honest:
        proxy = httpx.Proxy(honest.url, auth=("user", "secret"), ssl_context=trusting(pki))
        accepted(fetch(mode, pins, [url(good)], verify=trusting(pki), proxy=proxy)[0])
        assert honest.connects == [f"localhost:{good.port}"]


def test_http_url_through_an_https_proxy_checks_the_proxy(pki: PKI) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    with ConnectProxy(tls_cert=pki.rogue_leaf) as evil:
        proxy = httpx.Proxy(evil.url, ssl_context=trusting(pki))
        [outcome] = fetch("sync", pins, ["http://example.invalid/"], proxy=proxy)
        evil.wait_idle()
        assert evil.forwarded == []
    assert isinstance(outcome, PinMismatchError)
    with ConnectProxy(tls_cert=pki.leaf) as honest:
        proxy = httpx.Proxy(honest.url, ssl_context=trusting(pki))
        [response] = fetch("sync", pins, ["http://example.invalid/"], proxy=proxy)
        assert response.text == "forwarded"


def test_a_client_with_a_pinning_transport_ignores_proxy_environment_variables(
    pki: PKI, good: TLSServer, rogue: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx reads HTTPS_PROXY only when the client builds its own transport.
    with ConnectProxy(route_to=rogue.port) as evil:
        monkeypatch.setenv("HTTPS_PROXY", evil.url)
        monkeypatch.setenv("ALL_PROXY", evil.url)
        pins = {"localhost": [pki.intermediate_pin]}
        accepted(fetch("sync", pins, [url(good)], verify=trusting(pki))[0])
        assert evil.connects == []


# -- policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_report_only_lets_the_request_through_and_calls_on_failure(
    pki: PKI, rogue: TLSServer, mode: str
) -> None:
    failures: list[PinFailure] = []
    pins = {"localhost": [pki.intermediate_pin]}
    options = {"verify": trusting(pki), "on_failure": failures.append}
    # Enforced: the failure is reported and the request refused.
    refused(fetch(mode, pins, [url(rogue)], **options)[0], rogue)
    assert [f.report_only for f in failures] == [False]
    # The twin, report-only: reported, and the request goes through.
    failures.clear()
    accepted(fetch(mode, pins, [url(rogue)], report_only=True, **options)[0])
    [failure] = failures
    assert failure.report_only is True
    assert (failure.host, failure.port, failure.pattern) == ("localhost", rogue.port, "localhost")


@pytest.mark.parametrize("mode", MODES)
def test_allow_unpinned_false_refuses_hosts_without_pins(
    pki: PKI, good: TLSServer, mode: str
) -> None:
    options = {"verify": trusting(pki), "allow_unpinned": False}
    [outcome] = fetch(mode, {"example.com": [pki.intermediate_pin]}, [url(good)], **options)
    error = refused(outcome, good)
    assert error.pattern is None
    assert "unpinned hosts are refused" in error.reason
    # The twins: a pinned host passes; by default, so does an unpinned one.
    accepted(fetch(mode, {"localhost": [pki.intermediate_pin]}, [url(good)], **options)[0])
    unpinned = {"example.com": [pki.intermediate_pin]}
    accepted(fetch(mode, unpinned, [url(good)], verify=trusting(pki))[0])


# -- connection handling ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_refusal_is_not_retried_and_never_pooled(
    pki: PKI, origin: TLSServer, impostor: TLSServer, protocol: str, mode: str
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    options = {"verify": trusting(pki), "retries": 3, "http2": protocol == "h2"}
    urls = [url(impostor), url(impostor), url(origin), url(origin)]
    first, second, ok, again = fetch(mode, pins, urls, **options)
    refused(first, impostor, handshakes=2)  # one handshake per request: no retry, no reuse
    refused(second, impostor, handshakes=2)
    accepted(ok, protocol)
    accepted(again, protocol)
    origin.wait_idle()
    assert origin.handshakes == 1  # a passing connection is kept alive


def test_construction_fails_closed_when_httpcore_keeps_its_backend_elsewhere(
    pki: PKI,
) -> None:
    transport = PinningTransport({"localhost": [pki.intermediate_pin]})
    assert type(transport._pool._network_backend).__name__ == "_Backend"

    class Pool:
        pass

    with pytest.raises(TypeError, match="refusing to make an unpinned transport"):
        _install(Pool(), object, transport._pinning, httpcore.NetworkBackend)
    transport.close()


def test_policy_properties(pki: PKI) -> None:
    pins = PinSet({"localhost": [pki.intermediate_pin]})
    transport = AsyncPinningTransport(pins, report_only=True, allow_unpinned=False)
    assert transport.pinset is pins
    assert transport.policy.report_only is True
    assert transport.policy.allow_unpinned is False
    assert transport.policy.on_failure is None
    assert transport.policy.report_uri is None
    assert transport.report_stats.sent == 0
    assert isinstance(transport, httpx.AsyncHTTPTransport)
    with pytest.raises(AttributeError):
        transport.policy = transport.policy


def test_one_policy_for_the_httpx_and_requests_faces(pki: PKI) -> None:
    policy = PinningPolicy({"localhost": [pki.intermediate_pin]}, allow_unpinned=False)
    transport = PinningTransport(policy)
    assert transport.policy is policy
    assert PinningSession(policy).pinning_adapter.policy is policy
    with pytest.raises(TypeError, match="report_only given beside a PinningPolicy"):
        PinningTransport(policy, report_only=True)
    transport.close()


def test_importing_the_package_does_not_import_httpx() -> None:
    code = "import sys, requests_pinning; assert 'httpx' not in sys.modules, 'httpx imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_public_surface_is_listed_and_documented() -> None:
    import inspect

    import requests_pinning.httpx as face

    assert set(face.__all__) == {"AsyncPinningTransport", "PinMismatchError", "PinningTransport"}
    for name in face.__all__:
        doc = inspect.getdoc(getattr(face, name))
        assert doc and len(doc) > 40, f"{name} needs a docstring"
