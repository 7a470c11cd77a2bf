"""The urllib3 layer: connections that check pins in ``connect()``, and their pools.

Where the check runs: at the end of ``HTTPSConnection.connect()``, after the TLS
handshake and urllib3's CA and hostname checks, and before ``connect()``
returns, so before a single byte of the request is written. On failure the
socket is closed and the connection is never pooled.

Why an internal exception: ``PinMismatchError`` is an ``OSError`` (through
requests' ``SSLError``), and urllib3 turns an ``OSError`` raised in
``connect()`` into ``ProtocolError("Connection aborted.")`` and may retry it.
A pin failure is a verdict, not a transient fault. So ``connect()`` raises
``_PinRefused``, a ``MaxRetryError`` with the ``PinMismatchError`` as its
reason, which urllib3's ``urlopen`` neither wraps nor retries. The managers'
pools turn it into exactly what urllib3 callers expect: a ``MaxRetryError``
naming the pool, or the ``PinMismatchError`` itself with ``retries=False``.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import urllib3
from urllib3 import HTTPSConnectionPool, PoolManager, ProxyManager
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util import ssl_
from urllib3.util.retry import Retry

from ._contexts import TLSContexts, own_context
from ._errors import printable
from ._mismatch import PinMismatchError
from ._pinset import PinSet, PinSource, normalize_host
from ._report import OnFailure, ReportStats
from ._tls import may_misreport, read_chain, tls_server_name, vouched
from ._verify import PeerChain, PinningPolicy, make_policy

__all__ = [
    "PinningPoolManager",
    "PinningProxyManager",
    "socks_proxy_manager",
    "unpinned_tls_pool",
]

_URLLIB3_1 = urllib3.__version__.startswith("1.")  # type: ignore[attr-defined]


def _base_https_connection() -> type[HTTPSConnection]:
    """urllib3's HTTP/1.1 HTTPSConnection, even after ``urllib3.http2.inject_into_urllib3()``.

    HTTP2Connection sends its connection preface as soon as its own connect()
    returns, which would be before a check placed in a subclass runs. Pinned
    connections therefore always speak HTTP/1.1.
    """
    try:
        from urllib3 import http2
    except ImportError:  # urllib3 1.26
        return HTTPSConnection
    original: type[HTTPSConnection] | None = getattr(http2, "orig_HTTPSConnection", None)
    return original or HTTPSConnection


class _PinRefused(MaxRetryError):
    """Carries a PinMismatchError through urllib3's urlopen without wrapping or retry.

    A ``MaxRetryError`` whose ``reason`` is the ``PinMismatchError``: urllib3's
    ``urlopen`` lets that through as it is, so a caller of a pool without the
    unwrapping ``urlopen`` (the adapter's, used directly) still gets a
    documented error, and requests turns it into its ``SSLError``, which the
    adapter unwraps.
    """

    def __init__(self, error: PinMismatchError) -> None:
        host = printable(f"[{error.host}]" if ":" in error.host else error.host)
        super().__init__(None, f"https://{host}:{error.port}/", reason=error)  # type: ignore[arg-type]
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        # MaxRetryError pickles as cls(pool, url, reason), not this signature:
        # a refusal must survive pickling (process pools) and copying.
        return (_PinRefused, (self.error,))


def _speaks_http11(conn: Any) -> None:
    """Refuse a connection whose server chose HTTP/2: pinned connections speak HTTP/1.1.

    Only a context that is not ours can have offered it (the user's, after
    ``urllib3.http2.inject_into_urllib3()``): the request would fail, so it
    fails here, saying why, before a byte of it is written.
    """
    selected = getattr(conn.sock, "selected_alpn_protocol", None)
    if selected is not None and selected() == "h2":
        raise ProtocolError(
            f"{conn.host}:{conn.port} chose HTTP/2 (ALPN h2), and pinned connections speak "
            "HTTP/1.1: the connection's ssl_context offered h2 (urllib3.http2."
            "inject_into_urllib3() makes urllib3 offer only h2); give it a context that "
            'offers "http/1.1"'
        )


class _PinningConnectionMixin:
    """Checks pins at the end of ``connect()``. Used only through the pools below."""

    _pin_policy: PinningPolicy | None = None
    _pin_origin: tuple[str, int] | None = None

    _pin_contexts: TLSContexts | None = None

    _pin_user_context = False

    # The process-wide policy of inject_into_urllib3(), when it was in place as
    # this connect began: set by _inject's connect, which runs inside
    # super().connect(). Applied here, with the pool's own, so that the chain
    # is read once and each policy decides once (see enforce).
    _pin_global: PinningPolicy | None = None

    def connect(self) -> None:
        # Per connect, not per object: urllib3 reconnects the same object when
        # a pooled socket dropped, and the new TLS sessions must be checked too.
        self._pin_proxy_checked = False
        self._pin_global = None
        # A context that is not ours (the user's, or urllib3 1.26's kept from
        # the last connect): see _chain.
        conn: Any = self
        self._pin_user_context = conn.ssl_context is not None and not conn.__dict__.get(
            "_pin_tls_args"
        )
        if self._pin_contexts is not None:
            self._pin_contexts.attach(self)
        # Without a context, urllib3 makes one, and writes its global list of
        # protocols into it: only "h2" after urllib3.http2.inject_into_urllib3().
        # Then this connection makes the context urllib3 would, offering
        # HTTP/1.1, the one protocol it speaks (for this connect only, as
        # urllib3's own would be).
        made = conn.ssl_context is None and "h2" in ssl_.ALPN_PROTOCOLS
        if made:
            conn.ssl_context = own_context(conn)
        try:
            # An HTTPS proxy's own TLS session is checked inside (see
            # _connect_tls_proxy): its refusal must not become a retried
            # ProxyError either.
            super().connect()  # type: ignore[misc]
            self._check_pins()
            _speaks_http11(conn)
        except PinMismatchError as error:
            self.close()  # type: ignore[attr-defined]
            raise _PinRefused(error) from error
        except BaseException:
            self.close()  # type: ignore[attr-defined]
            raise
        finally:
            if made:
                conn.ssl_context = None

    def _pin_policies(self) -> tuple[PinningPolicy, ...]:
        """The pool's policy, and the process-wide one if injected: each must pass."""
        assert self._pin_policy is not None
        if self._pin_global is None:
            return (self._pin_policy,)
        return (self._pin_policy, self._pin_global)

    def _check_pins(self) -> None:
        origin = self._pin_origin
        conn: Any = self
        if self._pin_policy is None or origin is None:
            # Fail closed: this class only exists to check pins.
            raise PinMismatchError(
                "Certificate pinning failure: the connection has no pin policy attached",
                host=str(conn.host),
                port=int(conn.port or 443),
                reason="no pin policy attached",
            )
        check_connection(self, self._pin_policies(), origin)

    _pin_proxy_checked = False  # this connect's proxy session passed check_proxy_session

    def _connect_tls_proxy(self, hostname: str, sock: Any) -> Any:
        """The TLS session with an HTTPS proxy: checked like any other, against the proxy's entry.

        Through a CONNECT tunnel, this outer session carries the CONNECT line,
        the target's name and any Proxy-Authorization; in forwarding mode, the
        whole request. A pinned host must not receive them as a proxy unless
        its pins match, any more than a request as an origin.
        """
        wrapped = super()._connect_tls_proxy(hostname, sock)  # type: ignore[misc]
        if self._pin_policy is not None:  # without one, _check_pins refuses anyway
            try:
                check_proxy_session(self, self._pin_policies(), wrapped, hostname)
            except BaseException:
                wrapped.close()
                raise
        return wrapped


# The check of a connection, as functions of any urllib3 HTTPSConnection: the
# pinning connections above and, through inject_into_urllib3(), urllib3's own.
# Per-connect state lives on the connection: _pin_proxy_checked (reset to
# False as each connect begins) and _pin_user_context.


def enforce(
    policies: Sequence[PinningPolicy],
    names: list[str | None],
    port: int,
    chain: PeerChain | Callable[[], PeerChain],
) -> None:
    """Apply every policy; the chain is read at most once; raise the first refusal.

    The urllib3 face's one translation of a failure into its error. Each
    policy decides (and logs, calls ``on_failure``, reports) once, even when
    an earlier one refused: a process-wide monitoring policy sees what a
    pool's own policy refused. The connection passes only if all of them pass.
    """
    if len(policies) == 1:
        failure = policies[0].check(names, port, chain)
    else:
        read = chain if isinstance(chain, PeerChain) else functools.cache(chain)
        failure = None
        for policy in policies:
            refused = policy.check(names, port, read)  # every policy decides, and reports
            failure = failure or refused
    if failure is not None:
        raise PinMismatchError.from_failure(failure)


def check_connection(conn: Any, policies: Sequence[PinningPolicy], origin: tuple[str, int]) -> None:
    """Raise :class:`PinMismatchError` unless the TLS session of ``conn`` passes ``policies``.

    ``origin`` is the host and port of the URL (the pool's). Call it after
    urllib3's ``connect()`` returned, before anything is written.
    """
    host, port = origin
    forwarded = _talks_to_proxy(conn, host, port)
    proxy_checked = getattr(conn, "_pin_proxy_checked", False)
    if proxy_checked and not forwarded and getattr(conn, "_tunnel_host", None) is None:
        # No tunnel and the proxy is the origin (an http:// URL through an
        # HTTPS proxy): the one TLS session was checked already.
        return
    if forwarded:
        # An HTTPS proxy in forwarding mode: the TLS session is with the
        # proxy. Its own pins apply to it (urllib3 1.26 never calls
        # _connect_tls_proxy on this path), and the origin's certificate
        # is never seen, so a pinned origin fails closed.
        asserted = _asserted_names(conn)
        if not proxy_checked:
            # urllib3 1.26 validates this session as assert_hostname or
            # server_hostname: their pins apply to it too.
            check_proxy_session(conn, policies, conn.sock, conn.host, asserted)
        chain = PeerChain(
            served=(),
            checked=(),
            verified=False,
            problem=(
                f"the TLS session is with the proxy {conn.host}:{conn.port}, not with "
                "the origin (an HTTPS proxy in forwarding mode): the origin's "
                "certificate cannot be checked; use a tunnelling (CONNECT) proxy"
            ),
        )
        # urllib3 2.x validates the proxy as proxy_assert_hostname: the
        # pool's asserted names are the origin's, which fail closed with it.
        # 1.26 validated the proxy's certificate as them, and their pins
        # were applied to its chain just above: they are the proxy's, and a
        # genuine proxy passes.
        origin_names: list[str | None] = [host] if _URLLIB3_1 else [host, *asserted]
        enforce(policies, origin_names, port, chain)
        return
    # The names first, and apart: however reading the chain fails, the
    # pins of every name of the connection still apply to that failure.
    names = _names(conn, host)
    # Read only if some name has pins: an unpinned host pays nothing for it.
    enforce(policies, names, port, functools.partial(_connection_chain, conn))


def _connection_chain(conn: Any) -> PeerChain:
    sock = conn.sock
    tls = getattr(sock, "sslobj", sock)  # SSLTransport (TLS in TLS) wraps an SSLObject
    validating = ssl_.resolve_cert_reqs(conn.cert_reqs) != ssl.CERT_NONE
    misreports = may_misreport(getattr(tls, "context", None))
    # A context that may misreport is not asked whether this handshake
    # validated: a connection that asked for validation reads its verified
    # chain as such, which must then hold on its own (below).
    chain = read_chain(sock, "the TLS connection", asked=validating and misreports)
    if not chain.verified or chain.problem is not None:
        return chain
    if not validating:
        # This connection asked for no validation, whatever its context
        # says now: only the leaf counts.
        return PeerChain(
            checked=chain.checked[:1], verified=False, load_served=lambda: chain.served
        )
    if getattr(conn, "_pin_user_context", True) or misreports:
        # A context the user passed may be shared with pools that want no
        # validation, and urllib3 writes verify_mode into it on every
        # connect: what it says now need not be what this handshake did.
        # So the chain must hold on its own, for the name urllib3 validates.
        # The same for a context that validates after a CERT_NONE handshake.
        asserted = getattr(conn, "assert_hostname", None)
        names = [] if asserted is False else _names(conn, "")[1:]
        return vouched(chain, names)
    return chain


def _asserted_names(conn: Any) -> list[str | None]:
    """What the user told urllib3 to validate as: ``server_hostname``, ``assert_hostname``."""
    asserted = getattr(conn, "assert_hostname", None)
    return [
        getattr(conn, "server_hostname", None),
        asserted if isinstance(asserted, str) else None,
    ]


def check_proxy_session(
    conn: Any,
    policies: Sequence[PinningPolicy],
    sock: Any,
    hostname: str,
    extra: Sequence[str | None] = (),
) -> None:
    """Check the TLS session ``sock`` with an HTTPS proxy against the proxy's entries."""
    proxy_config = getattr(conn, "proxy_config", None)
    asserted = getattr(proxy_config, "assert_hostname", None)
    # Every name the proxy's certificate may have been validated as: the
    # proxy's host, proxy_assert_hostname, what the TLS object recorded,
    # and whatever else the caller knows urllib3 validated it as.
    names = [
        hostname,
        conn.host,
        asserted if isinstance(asserted, str) else None,
        tls_server_name(sock),
        *extra,
    ]

    def read() -> PeerChain:
        # Read only when some name has an entry, as for the origin: inside
        # the check, so that whatever goes wrong reading it is a pin failure
        # like any other (reported; let through only in report-only mode).
        tls = getattr(sock, "sslobj", sock)
        misreports = may_misreport(getattr(tls, "context", None))
        # As for the origin: a context that may misreport is not asked.
        asked = misreports and ssl_.resolve_cert_reqs(conn.cert_reqs) != ssl.CERT_NONE
        chain = read_chain(sock, "the proxy's TLS session", asked=asked)
        if (
            getattr(proxy_config, "ssl_context", None) is not None
            or getattr(conn, "_pin_user_context", False)
            or misreports
        ):
            # As for the origin (see _connection_chain): a context of the user's
            # (proxy_ssl_context, or the pool's in forwarding mode) or one that
            # validates after a CERT_NONE handshake must show a chain that holds.
            chain = vouched(chain, [] if asserted is False else names)
        return chain

    enforce(policies, names, int(conn.port or 443), read)
    conn._pin_proxy_checked = True


def _talks_to_proxy(conn: Any, host: str, port: int) -> bool:
    """True when the TLS session is with a forwarding proxy rather than the origin.

    The TLS peer is the tunnel's far end when tunnelling (CONNECT), else
    the host this socket was opened to.
    """
    tunnel_host = getattr(conn, "_tunnel_host", None)
    peer_host = tunnel_host or conn.host
    peer_port = (getattr(conn, "_tunnel_port", None) if tunnel_host else conn.port) or 443
    same_host = peer_host == host or normalize_host(peer_host) == normalize_host(host)
    return not same_host or int(peer_port) != port


def _names(conn: Any, origin: str) -> list[str | None]:
    """Every name this connection is known by; the pins of each one apply.

    urllib3 derives the name it validates the certificate against on its
    own (the tunnel host or the host, replaced by ``server_hostname``,
    trailing dots and IPv6 zone ids removed, then ``assert_hostname`` if
    given), and ``ssl`` encodes it once more (IDNA 2003). Instead of
    re-deriving that and hoping to agree, the check takes the names at
    every stage, including the one the TLS object itself recorded, and
    the policy applies the pins of all of them (see ``PinningPolicy.check``).
    """
    return [
        origin,
        getattr(conn, "_tunnel_host", None) or conn.host,
        *_asserted_names(conn),
        tls_server_name(conn.sock),
    ]


class _PinningHTTPSConnection(_PinningConnectionMixin, _base_https_connection()):  # type: ignore[misc]
    pass


class _PinningPoolMixin:
    """Attaches the policy and the origin to each new connection."""

    _pin_policy: PinningPolicy | None = None
    _pin_contexts: TLSContexts | None = None

    def _new_conn(self) -> Any:
        conn = super()._new_conn()  # type: ignore[misc]
        if not isinstance(conn, _PinningConnectionMixin):
            # Fail closed: a pool whose ConnectionCls was replaced (say by a
            # subclass or an SDK, for socket options) makes connections that
            # check nothing. Refused before it connects.
            _refuse_connection(self, conn, "its ConnectionCls was replaced")
        pool: Any = self
        conn._pin_policy = self._pin_policy
        conn._pin_origin = (pool.host, int(pool.port or 443))
        conn._pin_contexts = self._pin_contexts
        return conn

    def _validate_conn(self, conn: Any) -> None:
        # urllib3 calls this before every request, on a new connection or a
        # kept-alive one: a connection that checks no pins, however the pool
        # came by it (a subclass's _new_conn or _get_conn, its queue), is
        # refused here, before a request byte.
        if not isinstance(conn, _PinningConnectionMixin):
            _refuse_connection(self, conn, "it did not come from the pinning connection class")
        super()._validate_conn(conn)  # type: ignore[misc]


def _refuse_connection(pool: object, conn: object, why: str) -> NoReturn:
    raise TypeError(
        f"{type(pool).__name__} got a {type(conn).__name__}, which does not check pins: "
        f"{why}; refusing to use it"
    )


class _UnwrapRefusalsMixin:
    """Gives urllib3 callers the contract of urllib3's own errors.

    ``MaxRetryError`` naming this pool, with the ``PinMismatchError`` as its
    reason, or the ``PinMismatchError`` itself when retries are off. The
    adapter's pools go without it: requests never asks for the bare error, and
    this pass-through would cost every keep-alive request thousands of
    instructions; used directly, they raise the ``MaxRetryError`` form.
    """

    def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().urlopen(method, url, *args, **kwargs)  # type: ignore[misc]
        except _PinRefused as refused:
            error = refused.error
            retries = kwargs["retries"] if "retries" in kwargs else (args[2:3] or [None])[0]
            if retries is None:
                retries = getattr(self, "retries", None)
            # urllib3 raises errors raw when retries are off (retries=False);
            # otherwise wrapped in MaxRetryError. Keep that contract.
            if retries is False or (isinstance(retries, Retry) and retries.total is False):
                raise error from None
            pool: ConnectionPool = self  # type: ignore[assignment]
            raise MaxRetryError(pool, url, reason=error) from error


class _AdapterHTTPSConnectionPool(_PinningPoolMixin, HTTPSConnectionPool):
    ConnectionCls = _PinningHTTPSConnection


class _PinningHTTPSConnectionPool(_UnwrapRefusalsMixin, _AdapterHTTPSConnectionPool):
    pass


class _PinningManagerMixin:
    """Swaps in pinning HTTPS pools and hands them the policy."""

    pinset: PinSet
    _pin_policy: PinningPolicy
    _pin_contexts: TLSContexts | None = None
    _https_pool_class: type[_PinningPoolMixin] = _PinningHTTPSConnectionPool
    _adapter_pool_class: type[_PinningPoolMixin] = _AdapterHTTPSConnectionPool

    def _serve_adapter(self) -> None:
        """Use the pools without the unwrapping ``urlopen`` (see _UnwrapRefusalsMixin)."""
        manager: Any = self
        manager.pool_classes_by_scheme = {
            **manager.pool_classes_by_scheme,
            "https": self._adapter_pool_class,
        }

    def _setup_pinning(self, policy: PinningPolicy, share_tls_context: bool) -> None:
        self._pin_policy = policy
        self.pinset = policy.pinset
        self._pin_contexts = TLSContexts() if share_tls_context else None
        manager: Any = self
        manager.pool_classes_by_scheme = {
            **manager.pool_classes_by_scheme,
            "https": self._https_pool_class,
        }

    @property
    def report_stats(self) -> ReportStats:
        """Counters of violation reports: sent, deduplicated, dropped, failed."""
        return self._pin_policy.report_stats

    def clear(self) -> None:
        """Close the pools, and stop the report worker after the reports already queued.

        Also what leaving a ``with`` block does. A later report starts a new worker.
        """
        super().clear()  # type: ignore[misc]
        self._pin_policy.close()

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> Any:
        pool = super()._new_pool(scheme, host, port, request_context)  # type: ignore[misc]
        if isinstance(pool, _PinningPoolMixin):
            pool._pin_policy = self._pin_policy
            pool._pin_contexts = self._pin_contexts
        else:
            _pinning_pool(pool)  # fail closed: something replaced our pool classes
        return pool

    def connection_from_pool_key(self, *args: Any, **kwargs: Any) -> Any:
        # Where every way urllib3 hands out a pool ends (urlopen,
        # connection_from_url, _host, _context, in 1.26 and 2.x): what it
        # got is checked, however it was made. A subclass's _new_pool, or a
        # mixin's, may build the pool itself and never reach the one above.
        # Refused before the pool is used, so before a byte; one isinstance
        # more per request.
        return _pinning_pool(super().connection_from_pool_key(*args, **kwargs))  # type: ignore[misc]


def _pinning_pool(pool: Any) -> Any:
    """``pool``, unless it is an HTTPS pool that checks no pins: then a ``TypeError``."""
    if unpinned_tls_pool(pool):
        raise TypeError(f"{type(pool).__name__} does not check pins; refusing to use it")
    return pool


def unpinned_tls_pool(pool: Any) -> bool:
    """Whether ``pool`` may speak TLS without checking pins."""
    if isinstance(pool, _PinningPoolMixin):
        return False
    # Any pool that may speak TLS: urllib3's HTTPS pool, or another pool class
    # given the https scheme or a TLS connection class (helper 61).
    connection_class = getattr(pool, "ConnectionCls", None)
    return (
        isinstance(pool, HTTPSConnectionPool)
        or getattr(pool, "scheme", None) != "http"
        or not isinstance(connection_class, type)
        or issubclass(connection_class, HTTPSConnection)
    )


class PinningPoolManager(_PinningManagerMixin, PoolManager):
    """A ``urllib3.PoolManager`` that checks pins on every new HTTPS connection.

    ``pins`` is anything :meth:`PinSet.load` accepts. Other keyword arguments
    go to ``PoolManager`` (``num_pools``, ``maxsize``, ``cert_reqs``, ``ca_certs``...).
    A failed check raises ``MaxRetryError`` with the :class:`PinMismatchError`
    as its ``reason`` (or the error itself with ``retries=False``), after
    exactly one handshake and before any request byte is sent.

    ``pins`` may also be a :class:`PinningPolicy` (then without the switches);
    ``report_only``, ``on_failure``, ``allow_unpinned`` and ``report_uri`` work
    as there. Report counters are in :attr:`report_stats`.
    """

    def __init__(
        self,
        pins: PinSource | PinningPolicy,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
        share_tls_context: bool = True,
        **kwargs: Any,
    ) -> None:
        policy = make_policy(
            pins,
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
        )
        super().__init__(**kwargs)
        self._setup_pinning(policy, share_tls_context)


class PinningProxyManager(_PinningManagerMixin, ProxyManager):
    """A ``urllib3.ProxyManager`` that checks the *origin's* pins through an HTTP(S) proxy.

    HTTPS requests are tunnelled (CONNECT) and the origin's own certificate is
    checked, whether the proxy speaks HTTP or HTTPS. With
    ``use_forwarding_for_https=True`` the origin's certificate is never seen,
    so requests to pinned hosts fail closed.
    """

    def __init__(
        self,
        pins: PinSource | PinningPolicy,
        proxy_url: str,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
        share_tls_context: bool = True,
        **kwargs: Any,
    ) -> None:
        policy = make_policy(
            pins,
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
        )
        super().__init__(proxy_url, **kwargs)
        self._setup_pinning(policy, share_tls_context)


def socks_proxy_manager(
    pins: PinSource | PinningPolicy,
    proxy_url: str,
    *,
    report_only: bool = False,
    on_failure: OnFailure | None = None,
    allow_unpinned: bool = True,
    report_uri: str | None = None,
    share_tls_context: bool = True,
    **kwargs: Any,
) -> PoolManager:
    """A pinning ``urllib3.contrib.socks.SOCKSProxyManager`` (needs PySocks).

    The TLS session runs end to end through the SOCKS tunnel, so the origin's
    certificate is checked as without a proxy.
    """
    policy = make_policy(
        pins,
        report_only=report_only,
        on_failure=on_failure,
        allow_unpinned=allow_unpinned,
        report_uri=report_uri,
    )
    manager: Any = _socks_manager_class()(proxy_url, **kwargs)
    manager._setup_pinning(policy, share_tls_context)
    result: PoolManager = manager
    return result


@functools.cache
def _socks_manager_class() -> Any:
    # Imported on first use: PySocks is optional (requests[socks]).
    from urllib3.contrib.socks import (
        SOCKSConnection,
        SOCKSHTTPSConnectionPool,
        SOCKSProxyManager,
    )

    # Not urllib3's SOCKSHTTPSConnection: it inherits whatever HTTPSConnection
    # was when urllib3.contrib.socks was first imported, which is HTTP/2's
    # connection after urllib3.http2.inject_into_urllib3(), and that one sends
    # its preface before a check in a subclass could run.
    class _PinningSOCKSHTTPSConnection(
        _PinningConnectionMixin,
        SOCKSConnection,
        _base_https_connection(),  # type: ignore[misc]
    ):
        pass

    class _AdapterSOCKSHTTPSConnectionPool(_PinningPoolMixin, SOCKSHTTPSConnectionPool):
        ConnectionCls = _PinningSOCKSHTTPSConnection

    class _PinningSOCKSHTTPSConnectionPool(_UnwrapRefusalsMixin, _AdapterSOCKSHTTPSConnectionPool):
        pass

    class _PinningSOCKSProxyManager(_PinningManagerMixin, SOCKSProxyManager):
        _https_pool_class = _PinningSOCKSHTTPSConnectionPool
        _adapter_pool_class = _AdapterSOCKSHTTPSConnectionPool

    return _PinningSOCKSProxyManager
