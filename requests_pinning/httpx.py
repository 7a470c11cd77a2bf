"""The httpx face: transports that check pins on every new TLS connection.

::

    import httpx
    from requests_pinning.httpx import AsyncPinningTransport, PinningTransport

    client = httpx.Client(transport=PinningTransport("pins.json"))
    async with httpx.AsyncClient(transport=AsyncPinningTransport("pins.json")) as client: ...

Needs the ``httpx`` extra (``pip install 'requests-pinning[httpx]'``);
``import requests_pinning`` alone never imports httpx.

How it works. httpcore opens every connection through a *network backend*:
``connect_tcp()`` (to the origin, or to the proxy), then, for TLS,
``stream.start_tls(ssl_context, server_hostname, timeout)``, directly, inside a
SOCKS5 tunnel, after an HTTP ``CONNECT``, and again inside the TLS session of
an HTTPS proxy. The request bytes (and HTTP/2's connection preface) are
written only after ``start_tls()`` returns. So each transport wraps its pool's
backend with one whose streams check the pins at the end of ``start_tls()``:
after the handshake and CA validation, before a single byte of the request.
On failure the new TLS stream is closed and :class:`PinMismatchError` raised;
httpcore marks the connection failed, so it is never pooled.

Which TLS session is whose: the transport's ``handle_request()`` records the
request (its URL's host and port: the origin) in a context variable, which the
connection opened for it, in the same thread or task, reads. The first
``start_tls()`` on a TCP stream opened to an ``https://`` proxy is the proxy's
own session, checked against the proxy's pins; every other one is the origin's.

Every interaction with the core (the names, the chain, the decision and the
translation of its error) is in :func:`_enforce`.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

try:
    import anyio.to_thread
    import httpcore
    import httpx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"requests_pinning.httpx needs httpx: pip install 'requests-pinning[httpx]' ({exc})"
    ) from exc

from ._errors import MismatchFields, failure_fields
from ._pinset import PinSet, PinSource
from ._report import OnFailure, ReportStats
from ._tls import may_misreport, read_chain, tls_server_name, vouched
from ._verify import PeerChain, PinningPolicy, make_policy

__all__ = ["AsyncPinningTransport", "PinMismatchError", "PinningTransport"]


class PinMismatchError(MismatchFields, httpx.ConnectError):
    """The server's certificate chain did not satisfy the pins for its host.

    An ``httpx.ConnectError`` (so also an ``httpx.TransportError``): code that
    handles httpx's connection failures keeps handling it. Raised after the
    TLS handshake and before a single byte of the request was sent; the
    connection was closed and never pooled. ``request`` is the request that
    opened the connection.

    Its fields are those of :class:`requests_pinning.PinMismatchError`:
    ``host``, ``port``, ``pattern``, ``pinned``, ``denied``, ``served``,
    ``checked``, ``checked_chain``, ``verified`` and ``reason``, and so is its
    message.
    """

    def __init__(
        self,
        message: str,
        *,
        host: str,
        port: int,
        pattern: str | None = None,
        pinned: Iterable[str] = (),
        denied: Iterable[str] = (),
        served: Iterable[str] = (),
        checked: Iterable[str] = (),
        checked_chain: Iterable[bytes] = (),
        verified: bool = False,
        reason: str = "",
        request: httpx.Request | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self._set_fields(
            host=host,
            port=port,
            pattern=pattern,
            pinned=list(pinned),
            denied=list(denied),
            served=list(served),
            checked=list(checked),
            checked_chain=list(checked_chain),
            verified=verified,
            reason=reason,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The default would call cls(message) and lose every keyword field.
        return (_rebuild, (str(self), self._fields(), self._request))


def _rebuild(
    message: str, fields: dict[str, Any], request: httpx.Request | None
) -> PinMismatchError:
    return PinMismatchError(message, request=request, **fields)


class _Origin(NamedTuple):
    """The request being sent, and the host and port its connection must be pinned for."""

    request: httpx.Request
    host: str
    port: int
    #: httpx's ``sni_hostname`` request extension: the name TLS is to
    #: authenticate. httpcore pools connections without it, and through a
    #: tunnel starts the origin's TLS with the URL's host instead.
    sni: str | None

    @property
    def names(self) -> tuple[str, str | None]:
        """What a connection must have been checked for to carry this request."""
        return (self.host, self.sni)


# Set by the transports' handle_request for the duration of the call: httpcore
# opens a request's new connection inside it, in the same thread or task.
_ORIGIN: contextvars.ContextVar[_Origin | None] = contextvars.ContextVar(
    "requests_pinning_httpx_origin", default=None
)


def _origin_of(request: httpx.Request) -> _Origin:
    url = request.url
    port = url.port or (443 if url.scheme in ("https", "wss") else 80)
    given = request.extensions.get("sni_hostname")
    sni = _tls_name(given)
    if sni is not None and given is not sni:
        # The name as the check reads it is the name TLS is started with (anyio
        # takes no bytes, ssl does).
        request.extensions = {**request.extensions, "sni_hostname": sni}
    return _Origin(request, url.raw_host.decode("ascii"), port, sni)


def _tls_name(value: object) -> str | None:
    """A name TLS is started with (``sni_hostname``), as ``ssl`` reads it; ``None`` for none.

    Whatever ``ssl`` would start TLS with is a name to look up: a bytearray
    taken for "no name" left the pins of the name TLS authenticated unread on
    a reused connection. Anything ``ssl`` would not take is refused here,
    before the request is sent anywhere.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return "".join((value,))  # a plain str, whatever a subclass says of itself
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("ascii")  # as ssl decodes it (or refuses it)
    raise TypeError(f"a TLS server name is a str or bytes, not a {type(value).__name__}")


def _enforce(
    policy: PinningPolicy,
    *,
    names: list[str | None],
    port: int,
    tls: object,
    what: str,
    user_context: bool,
    validated_as: list[str | None],
    request: httpx.Request | None,
    asked: bool = False,
) -> None:
    """Check one new TLS session; raise :class:`PinMismatchError` unless it may be used.

    The one place this face talks to the core. ``names`` are the names the
    connection is known by (the URL's or the proxy's host, the name TLS was
    started with); the name the TLS object itself recorded is added here.
    Every entry found for any of them must pass ("the pinned name is the
    authenticated name"). ``tls`` is the ``ssl.SSLSocket`` or ``ssl.SSLObject``
    of the session, or ``None`` when it could not be found, which fails closed.
    ``validated_as``: the names the certificate must be for, when a context
    of the user's vouches for it. ``asked``: the session's context was made
    to validate, and may misreport whether it did (see ``_tls.peer_chain``);
    ``user_context`` is then true too, so the chain must hold on its own.
    """

    def chain() -> PeerChain:
        # Fails closed: a chain that cannot be read comes back with a problem.
        read = read_chain(tls, what, asked=asked)
        if user_context:
            # A context the user passed may be shared and changed by others
            # (verify_mode written between the handshake and now): what it
            # says now need not be what this handshake did. So the chain
            # must hold on its own, for the name TLS was started with.
            return vouched(read, validated_as)
        return read

    # The chain is read only if some name has pins (or unpinned hosts are refused).
    failure = policy.check([*names, tls_server_name(tls)], port, chain)
    if failure is not None:
        raise PinMismatchError(failure.message, request=request, **failure_fields(failure))


def _tls_object(stream: httpcore.NetworkStream | httpcore.AsyncNetworkStream) -> object:
    """The ``ssl`` object of the TLS layer ``stream`` just started, or ``None``."""
    ssl_object = stream.get_extra_info("ssl_object")
    if isinstance(ssl_object, ssl.SSLObject):  # anyio, trio, and TLS inside TLS
        return ssl_object
    # httpcore's sync stream hands out the SSLSocket's native object, which has
    # no API to read a chain; the socket that wraps it has. Only that very
    # socket will do: for TLS inside TLS, "socket" is the *outer* layer, and
    # reading it would check the proxy's certificate in place of the origin's.
    sock = stream.get_extra_info("socket")
    if (
        ssl_object is not None
        and isinstance(sock, ssl.SSLSocket)
        and getattr(sock, "_sslobj", None) is ssl_object
    ):
        return sock
    return None  # fails closed in _enforce: "cannot read certificates from a NoneType"


class _Pinning:
    """One transport's policy, and what its backend needs to know to apply it."""

    def __init__(
        self,
        policy: PinningPolicy,
        *,
        https_proxy: tuple[str, int] | None,
        user_contexts: tuple[ssl.SSLContext, ...],
    ) -> None:
        self.policy = policy
        self.https_proxy = https_proxy
        self.user_contexts = user_contexts
        # The transport's contexts, and whether each was made to validate,
        # read when the transport is made (note_contexts), not at each check:
        # truststore's says CERT_NONE while any handshake of it runs.
        self.validating: list[tuple[ssl.SSLContext, bool]] = []

    def note_contexts(self, pool: object) -> None:
        """Note whether each context of ``pool`` (the origin's, the proxy's) validates."""
        for name in ("_ssl_context", "_proxy_ssl_context"):
            context = getattr(pool, name, None)
            noted = any(context is known for known, _ in self.validating)
            if isinstance(context, ssl.SSLContext) and not noted:
                self.validating.append((context, context.verify_mode != ssl.CERT_NONE))

    def asked(self, ssl_context: ssl.SSLContext) -> bool:
        """Whether ``ssl_context`` was made to validate and may misreport whether it did."""
        if not may_misreport(ssl_context):
            return False
        return any(context is ssl_context and made for context, made in self.validating)

    def is_users(self, ssl_context: ssl.SSLContext) -> bool:
        """Whether ``ssl_context``'s word on validation needs proof (see ``_tls.vouched``).

        One the user passed in (``verify=``, a proxy's), which others may
        change, or one that validates after a ``CERT_NONE`` handshake.
        """
        if may_misreport(ssl_context):
            return True
        return any(ssl_context is context for context in self.user_contexts)

    def check(
        self,
        tls_stream: httpcore.NetworkStream | httpcore.AsyncNetworkStream,
        *,
        peer: tuple[str, int] | None,
        outer_layers: int,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None,
    ) -> _Origin | None:
        """Check a new TLS session; return the origin it was checked for.

        ``None`` for an HTTPS proxy's own session, which carries no request.
        """
        tls = _tls_object(tls_stream)
        user_context = self.is_users(ssl_context)
        asked = self.asked(ssl_context)
        validated_as: list[str | None] = [server_hostname]  # see check_origin
        origin = _ORIGIN.get()
        request = origin.request if origin is not None else None
        if outer_layers == 0 and peer is not None and peer == self.https_proxy:
            # The TLS session with an HTTPS proxy: it carries the CONNECT line,
            # the target's name and any Proxy-Authorization (and, for http://
            # URLs, the whole request). A pinned proxy host must not receive
            # them from an impostor, any more than an origin a request.
            host, port = peer
            _enforce(
                self.policy,
                names=[host, server_hostname],
                port=port,
                tls=tls,
                what="the proxy's TLS session",
                user_context=user_context,
                validated_as=validated_as,
                request=request,
                asked=asked,
            )
            return None
        if origin is None:
            # Fail closed: a TLS session started outside a request of this
            # transport (e.g. by a caller on a response's network stream)
            # cannot be told apart from anything else.
            raise PinMismatchError(
                "Certificate pinning failure: a TLS session was started outside a request "
                "of the pinning transport, so its origin is unknown",
                host=server_hostname or "",
                port=0,
                reason="the origin of the TLS session is unknown",
            )
        self.check_origin(
            tls, origin, user_context=user_context, server_hostname=server_hostname, asked=asked
        )
        return origin

    def check_origin(
        self,
        tls: object,
        origin: _Origin,
        *,
        user_context: bool,
        server_hostname: str | None,
        asked: bool = False,
    ) -> None:
        """Check the origin's TLS session ``tls`` for the request of ``origin``."""
        _enforce(
            self.policy,
            # The URL's host (the origin), the name TLS was started with, and
            # the request's sni_hostname, which httpcore uses for the former
            # only without a tunnel.
            names=[origin.host, origin.sni, server_hostname],
            port=origin.port,
            tls=tls,
            what="the TLS connection",
            user_context=user_context,
            # Always the name TLS was started with, even if the context's
            # hostname check is off now: a context caught mid-race (shared
            # with code that turns validation off) has it off too.
            validated_as=[server_hostname],
            request=origin.request,
            asked=asked,
        )

    def check_reuse(self, stream: _Checked) -> None:
        """Before a request is written on an open TLS session: was it checked for its names?

        httpcore pools connections by scheme, host and port, and a request
        with another ``sni_hostname`` (or an HTTP/2 request riding on a
        connection another request opened) would be written to a session
        never checked for its names. Checked here, on the open session,
        before its first byte.
        """
        origin = _ORIGIN.get()
        if origin is None or origin.names in stream.checked:
            return
        if (origin.host, origin.port) != stream.origin:
            # Not this request's connection: httpcore gives a request only a
            # connection of its own origin (scheme, host and port, compared
            # byte for byte as here). What writes here is another origin's
            # exchange, moved along inside this request (an HTTP/2 response
            # read while this request's body is written acknowledges its
            # data, in this request's context); its own requests were
            # checked in theirs. Checking it against this request's pins
            # refused a genuine connection (helper 56).
            return
        self.check_origin(
            stream.tls,
            origin,
            user_context=stream.user_context,
            server_hostname=stream.server_hostname,
            asked=stream.asked,
        )
        stream.checked.add(origin.names)


class _Checked:
    """An origin's TLS session that passed its check, and the request names it passed for."""

    __slots__ = ("asked", "checked", "origin", "server_hostname", "tls", "user_context")

    def __init__(
        self,
        tls: object,
        origin: _Origin,
        *,
        server_hostname: str | None,
        user_context: bool,
        asked: bool = False,
    ) -> None:
        self.tls = tls
        #: The host and port of the origin the session was opened for.
        self.origin = (origin.host, origin.port)
        self.checked = {origin.names}
        self.server_hostname = server_hostname
        self.user_context = user_context
        self.asked = asked


class _Stream(httpcore.NetworkStream):
    """A network stream whose ``start_tls()`` checks pins before it returns."""

    def __init__(
        self,
        stream: httpcore.NetworkStream,
        pinning: _Pinning,
        peer: tuple[str, int] | None,
        layers: int = 0,
        origin: _Checked | None = None,
    ) -> None:
        self._stream = stream
        self._pinning = pinning
        self._peer = peer
        self._layers = layers
        self._origin = origin  # set on an origin's TLS session: checked before each request

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._origin is not None:
            self._pinning.check_reuse(self._origin)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, timeout)
        try:
            server_hostname = _tls_name(server_hostname)
            checked_for = self._pinning.check(
                tls,
                peer=self._peer,
                outer_layers=self._layers,
                ssl_context=ssl_context,
                server_hostname=server_hostname,
            )
            origin = None
            if checked_for is not None:
                origin = _Checked(
                    _tls_object(tls),
                    checked_for,
                    server_hostname=server_hostname,
                    user_context=self._pinning.is_users(ssl_context),
                    asked=self._pinning.asked(ssl_context),
                )
        except BaseException:
            # Never pooled, never written to: the refused session ends here.
            tls.close()
            raise
        return _Stream(tls, self._pinning, self._peer, self._layers + 1, origin)


class _AsyncStream(httpcore.AsyncNetworkStream):
    """The async twin of :class:`_Stream`."""

    def __init__(
        self,
        stream: httpcore.AsyncNetworkStream,
        pinning: _Pinning,
        peer: tuple[str, int] | None,
        layers: int = 0,
        origin: _Checked | None = None,
    ) -> None:
        self._stream = stream
        self._pinning = pinning
        self._peer = peer
        self._layers = layers
        self._origin = origin  # set on an origin's TLS session: checked before each request

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if self._origin is not None:
            self._pinning.check_reuse(self._origin)
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        try:
            server_hostname = _tls_name(server_hostname)
            checked_for = self._pinning.check(
                tls,
                peer=self._peer,
                outer_layers=self._layers,
                ssl_context=ssl_context,
                server_hostname=server_hostname,
            )
            origin = None
            if checked_for is not None:
                origin = _Checked(
                    _tls_object(tls),
                    checked_for,
                    server_hostname=server_hostname,
                    user_context=self._pinning.is_users(ssl_context),
                    asked=self._pinning.asked(ssl_context),
                )
        except BaseException:
            # Never pooled, never written to: the refused session ends here.
            # Closing must not be cancelled half-way, or the socket would leak.
            with anyio.CancelScope(shield=True):
                await tls.aclose()
            raise
        return _AsyncStream(tls, self._pinning, self._peer, self._layers + 1, origin)


class _Backend(httpcore.NetworkBackend):
    """Wraps a pool's network backend: its streams check pins in ``start_tls()``."""

    def __init__(self, backend: httpcore.NetworkBackend, pinning: _Pinning) -> None:
        self._backend = backend
        self._pinning = pinning

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self._pinning, (host, port))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, timeout, socket_options)
        return _Stream(stream, self._pinning, None)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    """The async twin of :class:`_Backend`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, pinning: _Pinning) -> None:
        self._backend = backend
        self._pinning = pinning

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AsyncStream(stream, self._pinning, (host, port))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _AsyncStream(stream, self._pinning, None)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _pinning(
    pins: PinSource | PinningPolicy,
    *,
    report_only: bool,
    on_failure: OnFailure | None,
    allow_unpinned: bool,
    report_uri: str | None,
    kwargs: dict[str, Any],
) -> _Pinning:
    # One policy per transport unless one is given, as per adapter: the
    # expiry warning is logged once per entry per policy.
    policy = make_policy(
        pins,
        report_only=report_only,
        on_failure=on_failure,
        allow_unpinned=allow_unpinned,
        report_uri=report_uri,
    )
    proxy = kwargs.get("proxy")
    if isinstance(proxy, str | httpx.URL):
        proxy = httpx.Proxy(url=proxy)
    https_proxy = None
    user_contexts = []
    if isinstance(kwargs.get("verify"), ssl.SSLContext):
        user_contexts.append(kwargs["verify"])
    if isinstance(proxy, httpx.Proxy):
        if proxy.url.scheme == "https":
            # As httpcore dials it: the proxy URL's host and port (443 by default).
            https_proxy = (proxy.url.raw_host.decode("ascii"), proxy.url.port or 443)
        if proxy.ssl_context is not None:
            user_contexts.append(proxy.ssl_context)
    return _Pinning(policy, https_proxy=https_proxy, user_contexts=tuple(user_contexts))


def _install(pool: object, wrap: Any, pinning: _Pinning, base: type) -> None:
    """Wrap the network backend of the pool httpx built (``ConnectionPool``, ``HTTPProxy``...).

    httpx's transports take no ``network_backend``, and building the pool
    ourselves would mean restating httpx's choice of pool for each proxy
    scheme. httpcore 1.x keeps the backend in ``_network_backend`` and reads
    it each time it opens a connection. If a future httpcore keeps it
    elsewhere, this fails closed, at construction, rather than leave the
    transport unpinned.
    """
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, base):
        raise TypeError(
            f"cannot pin the connections of {type(pool).__name__} (httpcore "
            f"{getattr(httpcore, '__version__', '?')}): it has no network backend where "
            "requests-pinning expects one; refusing to make an unpinned transport"
        )
    pool._network_backend = wrap(backend, pinning)  # type: ignore[attr-defined]


_T = TypeVar("_T", httpx.HTTPTransport, httpx.AsyncHTTPTransport)

# Transports kept for distinct sni_hostname values; past this, idle ones are closed.
_MAX_ROUTES = 16


class _Routes(Generic[_T]):
    """A transport of its own for each ``sni_hostname`` that requests name.

    httpcore pools connections by scheme, host and port only, so a request
    whose ``sni_hostname`` names another host would ride a connection opened,
    and checked, for other names. Checking it again before its bytes are
    written is too late over HTTP/2: httpcore queues a request's headers in
    the connection's shared send buffer before it writes them, and whoever
    writes next on the connection (a concurrent request, or a response being
    read, acknowledging data) sends them. So a connection only ever carries
    requests for the names it was checked for: each ``sni_hostname`` value
    has its own pool, made like the transport's own and pinning alike.
    (This also keeps a request off a connection whose TLS session named
    another host, which httpcore alone would hand it.)
    """

    def __init__(self, make: Callable[[], _T]) -> None:
        self._make: Callable[[], _T] = make
        self._lock = threading.Lock()
        self._routes: OrderedDict[str, _Route[_T]] = OrderedDict()

    def take(self, sni: str) -> tuple[_Route[_T], list[_T]]:
        """The route for ``sni``, taken (give it back), and idle transports to close."""
        with self._lock:
            route = self._routes.get(sni)
            if route is None:
                route = self._routes[sni] = _Route(self._make())
            self._routes.move_to_end(sni)
            route.sending += 1
            spare: list[_T] = []
            for key, other in list(self._routes.items())[:-1]:
                if len(self._routes) <= _MAX_ROUTES:
                    break
                # Never one a request is on: sending now, or reading a response.
                if other.sending == 0 and _idle(other.transport):
                    del self._routes[key]
                    spare.append(other.transport)
            return route, spare

    def give_back(self, route: _Route[_T]) -> None:
        """The request that took ``route`` has its response (or failed)."""
        with self._lock:
            route.sending -= 1  # the route itself: it may have been cleared meanwhile

    def clear(self) -> list[_T]:
        """Forget every transport; return them, to close."""
        with self._lock:
            transports = [route.transport for route in self._routes.values()]
            self._routes.clear()
        return transports


class _Route(Generic[_T]):
    """A transport for one ``sni_hostname``, and how many requests are sending on it now."""

    __slots__ = ("sending", "transport")

    def __init__(self, transport: _T) -> None:
        self.transport: _T = transport
        self.sending = 0


def _idle(transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport) -> bool:
    """No request is on any connection of ``transport``'s pool (and none is being made)."""
    pool = transport._pool
    return all(connection.is_idle() for connection in pool.connections)


def _route_kwargs(pool: object, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of a transport like the one of ``pool``, sharing its TLS context.

    The context (httpx loads the CA certificates into it, and the client
    certificate) is the same object, already noted by the pinning.
    """
    context = getattr(pool, "_ssl_context", None)
    if isinstance(context, ssl.SSLContext):
        return {**kwargs, "verify": context, "cert": None}
    return kwargs


class _PolicyMixin:
    """The read-only policy properties shared by both transports."""

    _pinning: _Pinning

    @property
    def policy(self) -> PinningPolicy:
        """The pins and switches this transport enforces."""
        return self._pinning.policy

    @property
    def pinset(self) -> PinSet:
        """The pins this transport enforces (``policy.pinset``)."""
        return self._pinning.policy.pinset

    @property
    def report_stats(self) -> ReportStats:
        """Counters of violation reports: ``sent``, ``deduplicated``, ``dropped``, ``failed``."""
        return self._pinning.policy.report_stats


class PinningTransport(_PolicyMixin, httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` that checks certificate pins on every new TLS connection.

    ::

        client = httpx.Client(transport=PinningTransport("pins.json"))
        client.get("https://api.example.com/")  # PinMismatchError on a foreign key

    ``pins`` is anything :meth:`~requests_pinning.PinSet.load` accepts: a
    mapping, the path of a JSON pin file, or a :class:`~requests_pinning.PinSet`;
    or a :class:`~requests_pinning.PinningPolicy` (then without the switches).
    The check runs after the TLS handshake and before any request byte is
    sent (HTTP/1.1 and HTTP/2 alike), directly and through the transport's
    ``proxy=`` (HTTP ``CONNECT``, HTTPS, whose own TLS session is checked
    against the proxy's pins, and SOCKS5). A failure raises
    :class:`PinMismatchError`, an ``httpx.ConnectError``, after exactly one
    handshake, whatever ``retries`` says.

    ``report_only``, ``on_failure``, ``allow_unpinned`` and ``report_uri``
    work as in :class:`~requests_pinning.PinningAdapter`. Other keyword
    arguments (``verify``, ``cert``, ``http1``, ``http2``, ``proxy``,
    ``retries``, ``limits``...) go to ``httpx.HTTPTransport``.

    Give proxies to the transport, not to the client: ``httpx.Client(proxy=...)``
    and ``mounts=`` route requests through transports of their own, which
    check no pins.
    """

    def __init__(
        self,
        pins: PinSource | PinningPolicy,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._pinning = _pinning(
            pins,
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
            kwargs=kwargs,
        )
        super().__init__(**kwargs)
        self._pinning.note_contexts(self._pool)
        _install(self._pool, _Backend, self._pinning, httpcore.NetworkBackend)
        self._routes: _Routes[httpx.HTTPTransport] = _Routes(
            lambda: self._route(_route_kwargs(self._pool, kwargs))
        )

    def _route(self, kwargs: dict[str, Any]) -> httpx.HTTPTransport:
        transport = httpx.HTTPTransport(**kwargs)
        self._pinning.note_contexts(transport._pool)
        _install(transport._pool, _Backend, self._pinning, httpcore.NetworkBackend)
        return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin_of(request)
        token = _ORIGIN.set(origin)
        try:
            if origin.sni is None or origin.sni == origin.host:
                return super().handle_request(request)
            # Another name for TLS: never on a connection opened for others.
            route, spare = self._routes.take(origin.sni)
            try:
                _close_all(spare)
                return route.transport.handle_request(request)
            finally:
                self._routes.give_back(route)
        finally:
            _ORIGIN.reset(token)

    def close(self) -> None:
        """Close the pool and stop the report worker (after the reports already queued)."""
        try:
            try:
                super().close()
            finally:
                _close_all(self._routes.clear())
        finally:
            self._pinning.policy.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            try:
                super().__exit__(exc_type, exc_value, traceback)
            finally:
                # As close(): every route's transport, even if one raises
                # (helper 56: a with-block left them open when one did).
                _close_all(self._routes.clear())
        finally:
            self._pinning.policy.close()


class AsyncPinningTransport(_PolicyMixin, httpx.AsyncHTTPTransport):
    """An ``httpx.AsyncHTTPTransport`` that checks certificate pins on every new TLS connection.

    ::

        async with httpx.AsyncClient(transport=AsyncPinningTransport("pins.json")) as client:
            await client.get("https://api.example.com/")

    The same arguments and guarantees as :class:`PinningTransport`, with
    asyncio and trio; keyword arguments go to ``httpx.AsyncHTTPTransport``.
    """

    def __init__(
        self,
        pins: PinSource | PinningPolicy,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._pinning = _pinning(
            pins,
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
            kwargs=kwargs,
        )
        super().__init__(**kwargs)
        self._pinning.note_contexts(self._pool)
        _install(self._pool, _AsyncBackend, self._pinning, httpcore.AsyncNetworkBackend)
        self._routes: _Routes[httpx.AsyncHTTPTransport] = _Routes(
            lambda: self._route(_route_kwargs(self._pool, kwargs))
        )

    def _route(self, kwargs: dict[str, Any]) -> httpx.AsyncHTTPTransport:
        transport = httpx.AsyncHTTPTransport(**kwargs)
        self._pinning.note_contexts(transport._pool)
        _install(transport._pool, _AsyncBackend, self._pinning, httpcore.AsyncNetworkBackend)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin_of(request)
        token = _ORIGIN.set(origin)
        try:
            if origin.sni is None or origin.sni == origin.host:
                return await super().handle_async_request(request)
            # Another name for TLS: never on a connection opened for others
            # (see _Routes).
            route, spare = self._routes.take(origin.sni)
            try:
                # A request cancelled here still closes what it took out of
                # the routes (and gives its route back, below).
                await _aclose_all(spare)
                return await route.transport.handle_async_request(request)
            finally:
                self._routes.give_back(route)
        finally:
            _ORIGIN.reset(token)

    async def aclose(self) -> None:
        """Close the pool and stop the report worker (after the reports already queued)."""
        try:
            try:
                await super().aclose()
            finally:
                await _aclose_all(self._routes.clear())
        finally:
            await _close_reporter(self._pinning)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            try:
                await super().__aexit__(exc_type, exc_value, traceback)
            finally:
                await _aclose_all(self._routes.clear())
        finally:
            await _close_reporter(self._pinning)


# The tasks closing transports under asyncio (see _aclose_all), kept until done.
_CLOSING: set[asyncio.Future[None]] = set()


async def _aclose_all(transports: list[httpx.AsyncHTTPTransport]) -> None:
    """Close every one of ``transports``, and their connections, even if the caller is cancelled.

    A shielded anyio scope holds off the cancellation of anyio and trio, not
    asyncio's own (``Task.cancel()``, ``asyncio.wait_for``, ``asyncio.timeout``):
    that stopped the closing at its first checkpoint, and every connection
    after it stayed open, unclosed, until the garbage collector found it. So
    under asyncio the closing runs in a task of its own, which cancelling the
    caller does not reach.
    """
    if not transports:
        return
    if not _in_asyncio_task():  # trio, whose shield holds, also as a guest on an asyncio loop
        with anyio.CancelScope(shield=True):
            await _close_each(transports)
        return
    task = asyncio.ensure_future(_close_each(transports))
    _CLOSING.add(task)
    task.add_done_callback(_closed)
    await asyncio.shield(task)


def _in_asyncio_task() -> bool:
    """Whether this runs in an asyncio task (not in trio, nor trio's guest mode on an asyncio loop).

    In guest mode an asyncio loop runs, but trio's code runs outside any
    asyncio task: a task of asyncio's made there would run trio's code outside trio.
    """
    try:
        return asyncio.current_task() is not None
    except RuntimeError:  # no asyncio loop running
        return False


async def _close_each(transports: list[httpx.AsyncHTTPTransport]) -> None:
    # Each one, whatever another raises: the first error is raised after.
    error: Exception | None = None
    for transport in transports:
        try:
            await transport.aclose()
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error


def _close_all(transports: list[httpx.HTTPTransport]) -> None:
    """Close each of ``transports``, whatever another raises; then raise the first error."""
    error: Exception | None = None
    for transport in transports:
        try:
            transport.close()
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error


def _closed(task: asyncio.Future[None]) -> None:
    _CLOSING.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: raised to the caller, if it still waits


async def _close_reporter(pinning: _Pinning) -> None:
    # Waiting for queued reports blocks: not on the event loop.
    await anyio.to_thread.run_sync(pinning.policy.close)
