"""Attack pass on the httpx face: each test here failed when it was written (a confirmed finding).

Every scenario is end to end, against the byte-counting loopback servers: an
impostor (a certificate the client's trust store accepts, so only the pins can
stop it) must receive no request bytes. Each finding has its passing twin, so
that a fix cannot pass by refusing everything.

Findings:

1. ``sni_hostname`` (httpx's request extension naming the host TLS must
   authenticate) is a name of the request that is not looked up when httpcore
   does not start TLS with it: a pooled connection opened for another request
   to the same URL origin is reused without it, and through an HTTP ``CONNECT``
   or HTTPS proxy httpcore starts the origin's TLS with the URL's host instead.
   The pins of that name never apply, and the request goes to the impostor.
2. A context the user passed (``verify=ssl.SSLContext``) that changed under the
   handshake must "vouch for a chain that links" (README, httpx section). A
   chain that links is not a chain that was validated for this host: any
   certificate the pinned CA issued to anyone (another name, expired...)
   links, so a CA pin lets an impostor holding such a certificate through.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the httpx face needs the test-httpx extra")
trio = pytest.importorskip("trio", reason="the trio runs need the test-httpx extra")

from requests_pinning.httpx import (  # noqa: E402
    AsyncPinningTransport,
    PinMismatchError,
    PinningTransport,
)

from .conftest import PKI  # noqa: E402
from .servers import ConnectProxy, TLSServer  # noqa: E402

MODES = ("sync", "asyncio", "trio")


@pytest.fixture(autouse=True)
def _no_ca_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def trusting(pki: PKI) -> ssl.SSLContext:
    """A client context that trusts the genuine and the rogue root."""
    return ssl.create_default_context(cafile=pki.bundle)


Step = tuple[str, dict[str, Any]]  # a URL and the request's extensions


def _localhost_transport(pki: PKI) -> AsyncPinningTransport:
    """A transport pinning localhost to the intermediate, trusting the test PKI."""
    return AsyncPinningTransport({"localhost": [pki.intermediate_pin]}, verify=trusting(pki))


def run(mode: str, pins: Any, steps: list[Step], **kwargs: Any) -> list[Any]:
    """Send each GET in turn through one pinning client; the responses or the errors."""
    results: list[Any] = []
    if mode == "sync":
        with httpx.Client(transport=PinningTransport(pins, **kwargs), timeout=10) as client:
            for target, extensions in steps:
                try:
                    results.append(client.get(target, extensions=extensions))
                except httpx.TransportError as exc:
                    results.append(exc)
    else:

        async def main() -> None:
            transport = AsyncPinningTransport(pins, **kwargs)
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:
                for target, extensions in steps:
                    try:
                        results.append(await client.get(target, extensions=extensions))
                    except httpx.TransportError as exc:
                        results.append(exc)

        if mode == "asyncio":
            asyncio.run(main())
        else:
            trio.run(main)
    gc.collect()
    return results


def accepted(outcome: Any) -> None:
    assert isinstance(outcome, httpx.Response), repr(outcome)
    assert outcome.status_code == 200
    assert outcome.text == "ok"


# -- 1. sni_hostname: a name of the request that is not looked up -------------------------


@pytest.mark.parametrize("spelling", [str, bytes, bytearray])
@pytest.mark.parametrize("mode", MODES)
def test_sni_hostname_request_on_a_pooled_connection_reaches_the_impostor(
    pki: PKI, good: TLSServer, rogue: TLSServer, mode: str, spelling: type
) -> None:
    # "localhost" is pinned; "127.0.0.1" is not (allowed, unpinned). The second
    # request tells TLS to authenticate the server as "localhost": alone, it is
    # refused (test_httpx.test_sni_hostname_names_the_pins). After an unpinned
    # request to the same URL origin, httpcore's pool (keyed by scheme, host
    # and port only) hands it the connection opened for the first one, which
    # was never checked against the pins of "localhost".
    # (ssl takes the name as bytes and as a bytearray too; a bytearray was
    # taken for no name at all, round 8's third attack pass.)
    pins = {"localhost": [pki.intermediate_pin]}
    sni = {"sni_hostname": "localhost" if spelling is str else spelling(b"localhost")}
    steps: list[Step] = [
        (f"https://127.0.0.1:{rogue.port}/unpinned", {}),
        (f"https://127.0.0.1:{rogue.port}/secret", sni),
    ]
    first, second = run(mode, pins, steps, verify=trusting(pki))
    accepted(first)  # unpinned and CA-valid: allowed, as documented
    rogue.wait_idle()
    assert not any("/secret" in line for line in rogue.requests), rogue.requests
    assert isinstance(second, PinMismatchError), repr(second)
    # The twin: the genuine server passes both requests.
    steps = [
        (f"https://127.0.0.1:{good.port}/unpinned", {}),
        (f"https://127.0.0.1:{good.port}/secret", sni),
    ]
    for outcome in run(mode, pins, steps, verify=trusting(pki)):
        accepted(outcome)


@pytest.mark.parametrize("mode", MODES)
def test_a_response_piped_into_a_pinned_upload_is_not_checked_against_its_pins(
    pki: PKI, mode: str
) -> None:
    # Helper 56: an HTTP/2 download from an unpinned origin piped into an
    # upload to a pinned one. Reading the download while the upload's body is
    # written acknowledges its data on its own connection, in the upload's
    # context: that connection was checked against the upload's pins, and a
    # genuine exchange was refused (a false failure, logged and reported).
    # Its twin: a request on that connection naming the pinned host for TLS
    # is still checked, and refused.
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in tox -e httpx-no-h2)")
    pins = {"localhost": [pki.intermediate_pin]}
    with (
        TLSServer(pki.rogue_leaf, http2=True) as unpinned,
        TLSServer(pki.leaf, http2=True) as pinned,
    ):
        source = f"https://127.0.0.1:{unpinned.port}/download"
        target = f"https://localhost:{pinned.port}/upload"
        twin = (f"https://127.0.0.1:{unpinned.port}/secret", {"sni_hostname": "localhost"})
        if mode == "sync":
            transport = PinningTransport(pins, verify=trusting(pki), http2=True)
            with (
                httpx.Client(transport=transport, timeout=10) as client,
                client.stream("GET", source) as download,
            ):
                upload = client.post(target, content=download.iter_bytes())
                with pytest.raises(PinMismatchError):
                    client.get(twin[0], extensions=twin[1])
        else:

            async def main() -> Any:
                transport = AsyncPinningTransport(pins, verify=trusting(pki), http2=True)
                async with (
                    httpx.AsyncClient(transport=transport, timeout=10) as client,
                    client.stream("GET", source) as download,
                ):
                    upload = await client.post(target, content=download.aiter_bytes())
                    with pytest.raises(PinMismatchError):
                        await client.get(twin[0], extensions=twin[1])
                return upload

            upload = asyncio.run(main()) if mode == "asyncio" else trio.run(main)
        unpinned.wait_idle()
        pinned.wait_idle()
    assert upload.status_code == 200 and upload.http_version == "HTTP/2"
    assert pinned.requests == ["POST /upload HTTP/2"]
    assert unpinned.requests == ["GET /download HTTP/2"]  # not the twin's secret


@pytest.mark.parametrize("mode", MODES)
def test_a_request_naming_another_host_for_tls_never_shares_a_connection(
    pki: PKI, mode: str
) -> None:
    # Over HTTP/2, httpcore queued the request's headers in the shared
    # connection's send buffer before its own write, where the re-check ran:
    # another request on the connection, or a response being read (which
    # acknowledges data), sent them first, and the impostor got the request's
    # headers, Authorization included, though the request was refused (round
    # 8 attack pass, a race). Now a request whose sni_hostname names another
    # host has connections of its own: refused at its own handshake, and the
    # genuine server sees two connections.
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in tox -e httpx-no-h2)")
    pins = {"localhost": [pki.intermediate_pin]}
    sni = {"sni_hostname": "localhost"}
    options = {"verify": trusting(pki), "http2": True, "http1": False}
    with TLSServer(pki.rogue_leaf, http2=True) as rogue:
        steps: list[Step] = [
            (f"https://127.0.0.1:{rogue.port}/unpinned", {}),
            (f"https://127.0.0.1:{rogue.port}/secret", sni),
        ]
        first, second = run(mode, pins, steps, **options)
        accepted(first)
        assert isinstance(second, PinMismatchError), repr(second)
        rogue.wait_idle()
        assert rogue.requests == ["GET /unpinned HTTP/2"]
        assert rogue.handshakes == 2
    # The twin: the genuine server passes both, each on a connection of its own.
    with TLSServer(pki.leaf, http2=True) as good:
        steps = [
            (f"https://127.0.0.1:{good.port}/unpinned", {}),
            (f"https://127.0.0.1:{good.port}/secret", sni),
            (f"https://127.0.0.1:{good.port}/again", sni),
        ]
        for outcome in run(mode, pins, steps, **options):
            accepted(outcome)
        good.wait_idle()
        assert good.handshakes == 2  # the third request rode the second's connection


def test_a_tls_name_that_ssl_would_not_take_is_refused_before_anything_is_sent(
    pki: PKI, good: TLSServer
) -> None:
    transport = PinningTransport({"localhost": [pki.intermediate_pin]}, verify=trusting(pki))
    with httpx.Client(transport=transport, timeout=10) as client:
        for name in (memoryview(b"localhost"), 443, b"l\xf6calhost"):
            with pytest.raises((TypeError, UnicodeDecodeError)):
                client.get(f"https://127.0.0.1:{good.port}/", extensions={"sni_hostname": name})
    good.wait_idle()
    assert (good.handshakes, good.bytes_received) == (0, 0)


def test_routes_given_back_after_they_were_cleared_leave_new_ones_alone() -> None:
    # Closing the transport while a request was on a route made its give_back
    # a KeyError, or (a route made again meanwhile) miscounted the new route.
    from requests_pinning.httpx import _Routes

    routes: _Routes[Any] = _Routes(object)
    old, _ = routes.take("localhost")
    assert routes.clear() == [old.transport]
    new, _ = routes.take("localhost")
    routes.give_back(old)
    assert (old.sending, new.sending) == (0, 1)
    routes.give_back(new)
    assert new.sending == 0


@pytest.mark.parametrize("lib", ["asyncio", "trio"])
def test_a_cancelled_request_gives_its_route_back(pki: PKI, good: TLSServer, lib: str) -> None:
    # Cancelled while it closed the idle transports it had evicted (before its
    # try), a request kept its route for ever: past 40 of them, 41 routes.
    from requests_pinning import httpx as pinning_httpx

    names = iter(f"h{index}.example" for index in range(1000))
    url = f"https://127.0.0.1:{good.port}/"

    async def fetch(client: Any) -> None:
        with contextlib.suppress(httpx.ConnectError):  # not a name of the certificate
            await client.get(url, extensions={"sni_hostname": next(names)})

    async def main() -> list[Any]:
        transport = _localhost_transport(pki)
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            for _ in range(pinning_httpx._MAX_ROUTES):
                await fetch(client)
            for _ in range(10):
                if lib == "asyncio":
                    task = asyncio.ensure_future(fetch(client))
                    await asyncio.sleep(0)  # up to its first suspension: the eviction
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                else:
                    with trio.move_on_after(0):  # cancelled at its first checkpoint
                        await fetch(client)
                await fetch(client)
            return list(transport._routes._routes.values())

    routes = asyncio.run(main()) if lib == "asyncio" else trio.run(main)
    assert len(routes) <= pinning_httpx._MAX_ROUTES
    assert [route.sending for route in routes] == [0] * len(routes)


async def _sleep(lib: str, seconds: float) -> None:
    await (asyncio.sleep(seconds) if lib == "asyncio" else trio.sleep(seconds))


async def _both(lib: str, first: Any, second: Any) -> None:
    """Await two coroutines at once (two requests: two connections over HTTP/1.1)."""
    if lib == "asyncio":
        await asyncio.gather(first, second)
    else:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: first)
            nursery.start_soon(lambda: second)


async def _cancelled_at_first_suspension(lib: str, call: Any) -> None:
    """Run ``call()`` and cancel it where it first suspends: asyncio's own way, or trio's."""
    if lib == "asyncio":
        task = asyncio.ensure_future(call())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        with trio.move_on_after(0):
            await call()


async def _all_closed(lib: str, connections: list[Any]) -> list[bool]:
    """Whether each connection is closed, once they all are (or after 5 s)."""
    for _ in range(500):
        if all(connection.is_closed() for connection in connections):
            break
        await _sleep(lib, 0.01)
    return [connection.is_closed() for connection in connections]


@pytest.mark.parametrize("lib", ["asyncio", "trio"])
def test_a_request_cancelled_while_it_closes_evicted_transports_closes_all_their_connections(
    pki: PKI, lib: str
) -> None:
    # A request for a new sni_hostname past _MAX_ROUTES closes the idle
    # transports it evicted, in an anyio shielded scope: which holds off trio's
    # cancellation and anyio's, not asyncio's own (Task.cancel(), wait_for,
    # asyncio.timeout). Cancelled as it closed the evicted transport's first
    # connection, the request left the second one open, in no pool, until the
    # garbage collector closed it ("unclosed transport").
    from requests_pinning import httpx as pinning_httpx

    names = [f"h{index}.example" for index in range(pinning_httpx._MAX_ROUTES + 1)]
    with TLSServer(pki.intermediate.issue_cert(*names)) as server:
        url = f"https://127.0.0.1:{server.port}/"

        async def get(client: Any, name: str) -> None:
            accepted(await client.get(url, extensions={"sni_hostname": name}))

        async def main() -> list[bool]:
            transport = _localhost_transport(pki)
            async with httpx.AsyncClient(transport=transport, timeout=10) as client:
                await _both(lib, get(client, names[0]), get(client, names[0]))
                evicted = transport._routes._routes[names[0]].transport._pool.connections
                assert len(evicted) == 2
                for name in names[1:-1]:
                    await get(client, name)
                # The last name evicts the first name's transport, and is
                # cancelled where it first suspends: closing its first connection.
                await _cancelled_at_first_suspension(lib, lambda: get(client, names[-1]))
                assert names[0] not in transport._routes._routes
                return await _all_closed(lib, evicted)

        closed = asyncio.run(main()) if lib == "asyncio" else trio.run(main)
        gc.collect()  # a connection left open would warn now, and warnings are errors
        server.wait_idle()
    assert closed == [True, True]
    assert len(server.requests) == pinning_httpx._MAX_ROUTES + 1  # not the cancelled one


@pytest.mark.parametrize("lib", ["asyncio", "trio"])
def test_a_transport_cancelled_while_it_closes_still_closes_its_routes(pki: PKI, lib: str) -> None:
    # aclose() closed the transports of the sni_hostname routes after its own
    # pool: cancelled (asyncio's own way) while the pool closed, it never did,
    # and their connections stayed open until the garbage collector found them.
    names = ["h0.example", "h1.example"]
    with TLSServer(pki.intermediate.issue_cert("127.0.0.1", *names)) as server:
        url = f"https://127.0.0.1:{server.port}/"

        async def main() -> list[bool]:
            transport = _localhost_transport(pki)
            client = httpx.AsyncClient(transport=transport, timeout=10)
            accepted(await client.get(url))  # the transport's own pool: one connection
            for name in names:
                accepted(await client.get(url, extensions={"sni_hostname": name}))
            routes = [
                connection
                for route in transport._routes._routes.values()
                for connection in route.transport._pool.connections
            ]
            assert len(routes) == 2
            await _cancelled_at_first_suspension(lib, client.aclose)
            return await _all_closed(lib, routes)

        closed = asyncio.run(main()) if lib == "asyncio" else trio.run(main)
        gc.collect()
        server.wait_idle()
    assert closed == [True, True]


@pytest.mark.parametrize("lib", ["asyncio", "trio", "sync", "sync-with"])
def test_a_route_whose_closing_raises_leaves_no_other_route_open(pki: PKI, lib: str) -> None:
    # The transports of the routes were closed one after another, and the
    # first whose closing raised left the rest open: now each is closed, and
    # the first error is raised after; also when the client's with-block
    # ends, which closes the transport through __exit__, not close()
    # (helper 56).
    names = ["h0.example", "h1.example", "h2.example"]
    with TLSServer(pki.intermediate.issue_cert("127.0.0.1", *names)) as server:
        url = f"https://127.0.0.1:{server.port}/"
        pins = {"localhost": [pki.intermediate_pin]}

        def connections(transport: Any) -> list[Any]:
            routes = list(transport._routes._routes.values())
            return [c for route in routes for c in route.transport._pool.connections]

        def failing(close: Any) -> Any:
            def fail() -> None:
                close()
                raise RuntimeError("a route's close failed")

            async def afail() -> None:
                await close()
                raise RuntimeError("a route's close failed")

            return fail if lib.startswith("sync") else afail

        if lib.startswith("sync"):
            transport = PinningTransport(pins, verify=trusting(pki))
            client = httpx.Client(transport=transport, timeout=10)
            with pytest.raises(RuntimeError, match="a route's close failed"), client:
                for name in names:
                    accepted(client.get(url, extensions={"sni_hostname": name}))
                taken = connections(transport)
                first: Any = next(iter(transport._routes._routes.values())).transport
                first.close = failing(first.close)
                if lib == "sync":
                    client.close()
            closed = [c.is_closed() for c in taken]
        else:

            async def main() -> list[bool]:
                transport = AsyncPinningTransport(pins, verify=trusting(pki))
                client = httpx.AsyncClient(transport=transport, timeout=10)
                for name in names:
                    accepted(await client.get(url, extensions={"sni_hostname": name}))
                taken = connections(transport)
                first: Any = next(iter(transport._routes._routes.values())).transport
                first.aclose = failing(first.aclose)
                with pytest.raises(RuntimeError, match="a route's close failed"):
                    await client.aclose()
                return await _all_closed(lib, taken)

            closed = asyncio.run(main()) if lib == "asyncio" else trio.run(main)
        gc.collect()
        server.wait_idle()
    assert closed == [True] * len(names)


def test_routes_are_closed_under_trio_as_a_guest_on_an_asyncio_loop(pki: PKI) -> None:
    # In trio's guest mode an asyncio loop runs, but trio's code runs in no
    # asyncio task: closing the routes in an asyncio task would run trio's
    # code outside trio (a TypeError from trio, and the route left open).
    names = ["h0.example"]
    with TLSServer(pki.intermediate.issue_cert("127.0.0.1", *names)) as server:
        url = f"https://127.0.0.1:{server.port}/"

        async def guest() -> list[bool]:
            transport = _localhost_transport(pki)
            client = httpx.AsyncClient(transport=transport, timeout=10)
            accepted(await client.get(url, extensions={"sni_hostname": names[0]}))
            [route] = transport._routes._routes.values()
            connections = list(route.transport._pool.connections)
            await client.aclose()
            return await _all_closed("trio", connections)

        async def host() -> list[bool]:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[Any] = loop.create_future()
            trio.lowlevel.start_guest_run(
                guest,
                run_sync_soon_threadsafe=loop.call_soon_threadsafe,
                done_callback=done.set_result,
            )
            result: list[bool] = (await done).unwrap()
            return result

        closed = asyncio.run(host())
        gc.collect()
        server.wait_idle()
    assert closed == [True]


def test_transports_for_many_tls_names_are_closed_when_idle(pki: PKI, good: TLSServer) -> None:
    # One transport per sni_hostname value, kept for the value's next requests:
    # past _MAX_ROUTES, the idle ones are closed (their connections too).
    from requests_pinning import httpx as pinning_httpx

    transport = PinningTransport({"localhost": [pki.intermediate_pin]}, verify=trusting(pki))
    with httpx.Client(transport=transport, timeout=10) as client:
        for index in range(3 * pinning_httpx._MAX_ROUTES):
            sni = "localhost" if index % 2 else f"h{index}.example"
            url = f"https://127.0.0.1:{good.port}/{index}"
            if sni == "localhost":
                assert client.get(url, extensions={"sni_hostname": sni}).text == "ok"
            else:  # not a name of the server's certificate: refused by the CA check
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    client.get(url, extensions={"sni_hostname": sni})
        assert len(transport._routes._routes) == pinning_httpx._MAX_ROUTES
    assert transport._routes._routes == {}  # closed with the client
    good.wait_idle()
    # localhost's transport, used every other request, was never the idle one
    # closed: its one connection carried all its requests.
    assert good.handshakes == 1
    assert len(good.requests) == 3 * pinning_httpx._MAX_ROUTES // 2


@contextlib.contextmanager
def tunnel(route: str, pki: PKI, target: TLSServer) -> Iterator[dict[str, Any]]:
    """Transport arguments for a proxy (in the attacker's hands) that tunnels to ``target``."""
    if route == "connect":
        with ConnectProxy(route_to=target.port) as connect:
            yield {"proxy": connect.url}
    else:
        with ConnectProxy(tls_cert=pki.leaf, route_to=target.port) as tls_proxy:
            yield {"proxy": httpx.Proxy(tls_proxy.url, ssl_context=trusting(pki))}


@pytest.mark.parametrize("route", ["connect", "https-proxy"])
@pytest.mark.parametrize("mode", MODES)
def test_sni_hostname_through_a_tunnelling_proxy_is_not_looked_up(
    pki: PKI, good: TLSServer, rogue: TLSServer, mode: str, route: str
) -> None:
    # Directly (and through SOCKS5) the same request is refused: httpcore
    # starts TLS with sni_hostname, and the pins of "localhost" apply. Through
    # an HTTP CONNECT or HTTPS proxy, httpcore starts the origin's TLS with the
    # URL's host instead (it passes the extension to the CONNECT request, where
    # it names the *proxy's* session), so no name the check sees has pins.
    if route == "https-proxy" and mode != "sync" and httpx.__version__.startswith("0.27"):
        pytest.skip("httpx 0.27 ignores an async transport's Proxy(ssl_context=...)")
    pins = {"localhost": [pki.intermediate_pin]}
    steps: list[Step] = [("https://127.0.0.1:443/secret", {"sni_hostname": "localhost"})]
    with tunnel(route, pki, rogue) as proxy:
        [outcome] = run(mode, pins, steps, verify=trusting(pki), **proxy)
    rogue.wait_idle()
    assert rogue.requests == []
    assert rogue.bytes_received == 0
    assert isinstance(outcome, PinMismatchError), repr(outcome)
    # The twin: through the same kind of proxy, the genuine server passes.
    with tunnel(route, pki, good) as proxy:
        accepted(run(mode, pins, steps, verify=trusting(pki), **proxy)[0])


# -- 2. a changed user context vouches for any chain that links ---------------------------


class _SharedContextAfterARace(ssl.SSLContext):
    """A user's context caught mid-race: it handshakes without validation (and so
    without a hostname check) but reports CERT_REQUIRED when asked afterwards,
    as a context shared with code that writes verify_mode into it can (urllib3
    does, per connection, for a verify=False pool). The same emulation as the
    existing urllib3-face test of this defence (test_public_paths)."""

    @property  # type: ignore[override]
    def verify_mode(self) -> ssl.VerifyMode:
        return ssl.CERT_REQUIRED

    @verify_mode.setter
    def verify_mode(self, value: ssl.VerifyMode) -> None:
        super(_SharedContextAfterARace, type(self)).verify_mode.__set__(  # type: ignore[attr-defined]
            self, ssl.CERT_NONE
        )


def raced_context(pki: PKI) -> ssl.SSLContext:
    context = _SharedContextAfterARace(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # what the handshake really does
    context.load_verify_locations(pki.bundle)
    return context


@pytest.mark.parametrize("mode", MODES)
def test_a_changed_user_context_vouches_for_the_pinned_cas_certificate_for_another_name(
    pki: PKI, good: TLSServer, mode: str
) -> None:
    # The impostor holds a certificate that the *pinned* CA issued, honestly,
    # to someone else ("attacker.example": its own domain). Its signatures
    # link to the pinned intermediate and on to the root, so links_hold()
    # accepts it, and the intermediate pin matches: the request for
    # "localhost" goes to a server that was never authenticated as localhost.
    pins = {"localhost": [pki.intermediate_pin]}
    elsewhere = pki.intermediate.issue_cert("attacker.example")
    with TLSServer(elsewhere) as impostor:
        steps: list[Step] = [(f"https://localhost:{impostor.port}/secret", {})]
        [outcome] = run(mode, pins, steps, verify=raced_context(pki))
        impostor.wait_idle()
        assert impostor.requests == []
        assert impostor.bytes_received == 0
        assert isinstance(outcome, PinMismatchError), repr(outcome)
    # The twin: the genuine server, for its own name, passes with the same context.
    accepted(
        run(mode, pins, [(f"https://localhost:{good.port}/", {})], verify=raced_context(pki))[0]
    )


@pytest.mark.parametrize("given_transport", [True, False])
def test_mounts_with_a_transport_ignore_the_proxy_environment(
    pki: PKI, rogue: TLSServer, monkeypatch: pytest.MonkeyPatch, given_transport: bool
) -> None:
    # Helper 56: a client given mounts= but no transport= reads the proxy
    # environment, and NO_PROXY mounts httpx's own plain transport on
    # all://*localhost, which outranks the user's https:// mount: the request
    # reached the impostor (the README's caveat). With transport= as well,
    # httpx reads no proxy variables, and the pins hold.
    monkeypatch.setenv("NO_PROXY", "localhost")
    pins = {"localhost": [pki.intermediate_pin]}
    mounts = {"https://": PinningTransport(pins, verify=trusting(pki))}
    extra = {"transport": PinningTransport(pins, verify=trusting(pki))} if given_transport else {}
    with httpx.Client(mounts=mounts, verify=trusting(pki), timeout=10, **extra) as client:
        url = f"https://localhost:{rogue.port}/secret"
        if given_transport:
            with pytest.raises(PinMismatchError):
                client.get(url)
        else:
            accepted(client.get(url))  # the caveat: unpinned
    rogue.wait_idle()
    assert (rogue.requests == []) == given_transport
