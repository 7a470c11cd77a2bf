"""Process-wide pinning: ``inject_into_urllib3()`` and ``extract_from_urllib3()``.

In the convention of ``urllib3.contrib.pyopenssl.inject_into_urllib3()`` and
``truststore.inject_into_ssl()``: explicit, reversible, global.

Why methods and not module attributes: replacing ``urllib3.connection.HTTPSConnection``
(what ``urllib3.http2`` does) reaches only code that looks the name up later.
Pools made earlier hold the class in ``ConnectionCls``, and SDKs subclass it at
import time (botocore's ``AWSHTTPSConnection``, ``SOCKSHTTPSConnection``,
urllib3's own ``HTTP2Connection``). Every one of them runs urllib3's
``HTTPSConnection.connect`` in the end, through ``super()``. So that class's own
methods are replaced, and put back as they were:

- ``HTTPSConnection.connect``: urllib3's connect, then the check, before it
  returns, so before a request byte is written; and before ``HTTP2Connection``
  sends its preface, which it does after ``super().connect()`` returns.
- ``HTTPSConnection._connect_tls_proxy``: an HTTPS proxy's own TLS session,
  checked against the proxy's entries before the ``CONNECT`` line goes out.
- ``HTTPSConnectionPool._new_conn``: records the pool's host and port on the
  connection. Only the pool knows the origin of an HTTPS proxy in forwarding
  mode; everywhere else it is one more name whose pins apply.
- ``HTTPSConnectionPool._validate_conn`` (urllib3 calls it before every
  request, after connecting a closed connection) and the methods that write
  to the socket: ``send``, through which http.client writes everything
  (``request()``, 1.26's ``request_chunked()``, ``endheaders()``, a raw
  ``send()``), and ``putrequest``, where every request begins. A connection
  whose socket was not checked under the injection now in force (opened
  before it, while extracted, in a connect already under way, or before the
  pins were replaced) is checked there, on its open socket, before a byte
  more is written: also a request begun before the injection and finished
  after it. ``HTTP2Connection`` writes its own frames, in its own
  ``putrequest``, ``endheaders`` and ``send``: those are replaced too.
  Inside a connect, the socket ``send`` finds may be an HTTPS proxy's session,
  about to carry the CONNECT line: it is checked as the proxy's.
- A connect during which the pins were replaced checks again, under the new
  ones, before it returns: http.client's ``send()`` connects and writes in the
  same call, and ``HTTP2Connection`` sends its preface as connect returns.

Each connection records the injection (a token per call) and the socket it
was checked under (``_pin_checked``); anything else is checked again. A
pinning pool's connection (``PinningAdapter``,
``PinningPoolManager``) is not checked here: its own ``connect()`` checks it
right after, against its pool's policy and this one together (one chain read,
one decision per policy).
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from typing import Any

from urllib3.util.ssltransport import SSLTransport

from ._mismatch import PinMismatchError
from ._pinset import PinSource
from ._report import OnFailure
from ._urllib3 import (
    _URLLIB3_1,
    _asserted_names,
    _PinningConnectionMixin,
    _PinRefused,
    check_connection,
    check_proxy_session,
)
from ._verify import PinningPolicy, make_policy

__all__ = ["extract_from_urllib3", "inject_into_urllib3"]

_lock = threading.Lock()  # held while methods are replaced or restored
# The policy in force, read by the replaced methods without the lock: a
# reference is read atomically, and each connect uses the one it read first.
_policy: PinningPolicy | None = None
# A new object per inject_into_urllib3() call. A connection records the token
# and the socket it was checked under (_pin_checked), and is checked again
# before a request unless both are still the ones in force: a socket urllib3
# opened while nothing was injected, or before a re-injection (even of the
# same policy), is never taken for a checked one.
_token: object = object()
# (class, method name) -> what the class's own __dict__ held before injection.
_originals: dict[tuple[type, str], Any] | None = None


def inject_into_urllib3(
    pins: PinSource | PinningPolicy,
    *,
    report_only: bool = False,
    on_failure: OnFailure | None = None,
    allow_unpinned: bool = True,
    report_uri: str | None = None,
) -> None:
    """Check pins on every HTTPS connection urllib3 makes, in the whole process.

    ::

        requests_pinning.inject_into_urllib3("pins.json")
        requests.get("https://api.example.com/")  # requests.exceptions.SSLError on a foreign key
        requests_pinning.extract_from_urllib3()  # undo

    This changes urllib3 globally, for every library in the process: plain
    ``requests.get()``, pools and connection classes other code made or
    subclassed before this call, proxies (CONNECT, HTTPS, SOCKS). Kept-alive
    connections opened before it are checked before their next request.

    ``pins`` and the switches are those of :class:`PinningAdapter` (``pins``
    may be a :class:`PinningPolicy`, shared with other faces). Calling it
    again replaces the policy (nothing is wrapped twice); it is thread-safe.
    A refused connection gets exactly one handshake and no request byte; urllib3
    raises ``MaxRetryError`` whose ``reason`` is the :class:`PinMismatchError`,
    which requests turns into ``requests.exceptions.SSLError``. With a
    :class:`PinningAdapter` or :class:`PinningPoolManager` in use as well, a
    connection must pass both policies.
    """
    # Built before the lock: a pin file that does not load changes nothing.
    policy = make_policy(
        pins,
        report_only=report_only,
        on_failure=on_failure,
        allow_unpinned=allow_unpinned,
        report_uri=report_uri,
    )
    global _policy, _originals, _token
    with _lock:
        replaced = _policy
        # The policy first: a replaced method never finds itself in force
        # without one.
        _token = object()
        _policy = policy
        if _originals is None:
            _originals = _replace_methods()
    if replaced is not None:
        replaced.close()  # after the reports it already queued


def extract_from_urllib3() -> None:
    """Undo :func:`inject_into_urllib3`: urllib3's methods are restored exactly as they were.

    Connections opened from then on are not checked (unless a pinning adapter
    or pool manager checks them). Harmless when nothing is injected.
    """
    global _policy, _originals
    with _lock:
        if _originals is None:
            return
        for (owner, name), original in _originals.items():
            if original is _INHERITED:
                delattr(owner, name)  # the class had none of its own: it inherits again
            else:
                setattr(owner, name, original)
        _originals = None
        # Cleared last: a connect already in a replaced method goes on with the
        # policy it read; a later one finds None and behaves as urllib3's own.
        removed, _policy = _policy, None
    if removed is not None:
        removed.close()


def _urllib3_classes() -> tuple[type, type]:
    """urllib3's own ``HTTPSConnection`` and ``HTTPSConnectionPool``.

    ``urllib3.connection.HTTPSConnection`` is ``HTTP2Connection`` after
    ``urllib3.http2.inject_into_urllib3()``: the class it subclasses is the
    one whose methods every HTTPS connection runs.
    """
    from urllib3 import connection, connectionpool

    connection_class = next(
        cls
        for cls in connection.HTTPSConnection.__mro__
        if cls.__module__ == "urllib3.connection" and cls.__name__ == "HTTPSConnection"
    )
    return connection_class, connectionpool.HTTPSConnectionPool


def _http2_connection_class() -> type | None:
    """urllib3's ``HTTP2Connection``, if this urllib3 has it and h2 is installed."""
    try:
        from urllib3.http2.connection import HTTP2Connection
    except ImportError:  # urllib3 1.26, or no h2: no such connection can exist
        return None
    return HTTP2Connection


def _replace_methods() -> dict[tuple[type, str], Any]:
    connection_class, pool_class = _urllib3_classes()
    replacements: dict[tuple[type, str], Callable[[Any], Callable[..., Any]]] = {
        (connection_class, "connect"): _checking_connect,
        (connection_class, "_connect_tls_proxy"): _checking_connect_tls_proxy,
        (pool_class, "_new_conn"): _origin_recording_new_conn,
        (pool_class, "_validate_conn"): _rechecking_validate_conn,
        # A connection used without a pool (conn.connect(), then a request
        # by any of http.client's ways, which all write through send).
        (connection_class, "putrequest"): _rechecking,
        (connection_class, "send"): _rechecking,
    }
    http2_class = _http2_connection_class()
    if http2_class is not None:  # its writers do not call these
        for name in ("putrequest", "endheaders", "send"):
            replacements[http2_class, name] = _rechecking
    originals = {key: key[0].__dict__.get(key[1], _INHERITED) for key in replacements}
    for (owner, name), make in replacements.items():
        original = originals[owner, name]
        if original is _INHERITED:
            original = getattr(owner, name)
        setattr(owner, name, make(original))
    return originals


# What _originals holds for a method the class only inherited.
_INHERITED = object()


def _checking_connect(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def connect(self: Any) -> None:
        policy, token = _policy, _token
        if policy is None:  # extracted since this method was looked up
            original(self)
            return
        self._pin_global = policy
        # What connect writes itself (a CONNECT line through its proxy's
        # session) is not a request on an unchecked socket: the proxy's
        # session is checked as it is made, and the origin's as connect ends.
        # The token says under which pins: after a re-injection the CONNECT
        # line is checked again, before it goes out (see _rechecking).
        self._pin_connecting = token
        try:
            _connect_and_check(self, original, policy, token)
        finally:
            self._pin_connecting = None

    return connect


def _connect_and_check(
    conn: Any, original: Callable[[Any], None], policy: PinningPolicy, token: object
) -> None:
    if isinstance(conn, _PinningConnectionMixin):
        # Its own connect() checks the session as soon as this returns,
        # against this policy too (_pin_global), and closes it if it
        # fails: checking it here as well would read the chain twice and
        # report a failure twice.
        # (If the pins were replaced meanwhile: a pinning connection is
        # used only through its pool, whose _validate_conn checks it again
        # before the request, and the CONNECT line is checked in send.)
        original(conn)
        pinning: Any = conn
        pinning._pin_checked = (token, pinning.sock)
        return
    conn._pin_proxy_checked = False
    # Any context here is the caller's, maybe shared with connections
    # that do not validate: the verified chain must also link.
    conn._pin_user_context = conn.ssl_context is not None
    try:
        original(conn)
        origin = _origin(conn)
        check_connection(conn, (policy,), origin)
        conn._pin_checked = (token, conn.sock)
        _recheck_if_replaced(conn, token, origin)
    except PinMismatchError as error:
        _abort(conn)
        # A MaxRetryError: urllib3's urlopen neither wraps nor retries it
        # (one handshake per refusal; see _urllib3._PinRefused).
        raise _PinRefused(error) from error
    except BaseException:
        _abort(conn)
        raise


def _checking_connect_tls_proxy(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _connect_tls_proxy(self: Any, hostname: str, sock: Any) -> Any:
        wrapped = original(self, hostname, sock)
        if isinstance(self, _PinningConnectionMixin):
            # A pinning connection checks this session itself, as this
            # returns; the CONNECT line is checked again if the pins were
            # replaced meanwhile (see _rechecking).
            return wrapped
        # The pins in force now, when the handshake is over, not those the
        # connect began under: an injection during the handshake (or a
        # re-injection) applies to the CONNECT line about to go out.
        # Extracted meanwhile: the connect goes on with the policy it began
        # under, as its origin's check does (none if it began before).
        policy, token = _policy, _token
        if policy is None:
            policy = self.__dict__.get("_pin_global")
            if policy is None:
                return wrapped
        try:
            check_proxy_session(self, (policy,), wrapped, hostname)
        except PinMismatchError as error:
            wrapped.close()
            # Raised from here as the refusal itself: urllib3 would turn an
            # OSError into a retried ProxyError.
            raise _PinRefused(error) from error
        except BaseException:
            wrapped.close()
            raise
        # The CONNECT line goes out on this session under these pins.
        self._pin_checked = (token, wrapped)
        return wrapped

    return _connect_tls_proxy


def _origin_recording_new_conn(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def _new_conn(self: Any) -> Any:
        conn = original(self)
        conn._pin_pool_origin = (self.host, int(self.port or 443))
        return conn

    return _new_conn


def _rechecking_validate_conn(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    @functools.wraps(original)
    def _validate_conn(self: Any, conn: Any) -> None:
        # urllib3's first: it connects a connection that is not open (which
        # our connect checks) and writes nothing. Then, before the request is
        # written, whatever socket the connection has now must have been
        # checked under the pins in force.
        original(self, conn)
        _recheck_if_stale(conn, (self.host, int(self.port or 443)))

    return _validate_conn


def _rechecking(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def rechecked(self: Any, *args: Any, **kwargs: Any) -> Any:
        # A connection connected before injection and used without a pool,
        # or one whose pool's _validate_conn was looked up before injection.
        # Through a pool otherwise, _validate_conn has just checked it. Here
        # before anything is written: a request begun before injection and
        # finished after it is checked before its rest goes out. (A
        # connection not open yet is opened, and checked, when its first byte
        # is sent.) The refusal is the MaxRetryError form, as from connect():
        # urllib3's urlopen neither wraps nor retries it.
        # Inside a connect (the CONNECT line), only if the pins were
        # replaced since it began: its sessions are checked as they are made.
        connecting = self.__dict__.get("_pin_connecting")
        if connecting is None or connecting is not _token:
            _recheck_if_stale(self, None)
        return original(self, *args, **kwargs)

    return rechecked


def _recheck_if_stale(conn: Any, origin: tuple[str, int] | None) -> None:
    """Check ``conn``'s open socket unless it was checked under the pins in force."""
    policy, token = _policy, _token
    sock = getattr(conn, "sock", None)
    if policy is None or sock is None or type(sock) is socket.socket:
        # No TLS session yet: a CONNECT line to a plain proxy, written while
        # a connect that began before injection sets up its tunnel.
        return
    checked = conn.__dict__.get("_pin_checked")
    if checked is not None and checked[0] is token and checked[1] is sock:
        return
    # An open socket never checked under these pins: made before injection,
    # while extracted, or before the pins were replaced. Checked now, before
    # the request is written, rather than trusted or dropped: its TLS
    # session still holds the chain.
    _recheck(conn, policy, token, origin or _origin(conn))


def _recheck_if_replaced(conn: Any, token: object, origin: tuple[str, int]) -> None:
    """Check ``conn`` again if the pins were replaced since ``token``, its connect's.

    Called as a connect ends, after its check: http.client's ``send()``
    connects and writes the request in one call, ``HTTP2Connection`` sends its
    preface as soon as connect returns, so a re-injection during the handshake
    must apply before connect returns. Repeated until no injection came in
    between; when none came (almost always), one comparison.
    """
    while _token is not token:
        policy, token = _policy, _token
        if policy is None:  # extracted: nothing is in force
            return
        _recheck(conn, policy, token, origin)


def _recheck(conn: Any, policy: PinningPolicy, token: object, origin: tuple[str, int]) -> None:
    try:
        if _setting_up_tunnel(conn):
            # Mid-connect, about to write the CONNECT line: the socket is
            # the HTTPS proxy's session, checked as the proxy's (its names,
            # proxy_assert_hostname included), not as the origin's. The
            # origin's session will be a new socket, checked before the
            # request is written. (Nothing of the connection's state about
            # the origin changes: the connect goes on.)
            check_proxy_session(conn, (policy,), conn.sock, conn.host)
            conn._pin_checked = (token, conn.sock)
            return
        conn._pin_proxy_checked = False
        # Whatever context made this session, it may have changed since.
        conn._pin_user_context = True
        if isinstance(conn.sock, SSLTransport):  # TLS in TLS: the proxy's session first
            check_proxy_session(conn, (policy,), conn.sock.socket, conn.host)
        elif getattr(conn, "proxy", None) is not None and not getattr(conn, "_tunnel_host", None):
            # The one TLS session is with the proxy (an http:// URL through an
            # HTTPS proxy, or forwarding): the proxy's names apply to it,
            # proxy_assert_hostname included, as at connect. urllib3 1.26
            # validates it as the connection's own server_hostname or
            # assert_hostname (2.x as proxy_assert_hostname only): their pins
            # apply too, or this check, which check_connection then takes as
            # the proxy's, would skip the very entry a fresh connect applies.
            asserted = _asserted_names(conn) if _URLLIB3_1 else []
            check_proxy_session(conn, (policy,), conn.sock, conn.host, asserted)
        check_connection(conn, (policy,), origin)
    except PinMismatchError as error:
        _abort(conn)
        raise _PinRefused(error) from error
    conn._pin_global = policy
    conn._pin_checked = (token, conn.sock)


def _setting_up_tunnel(conn: Any) -> bool:
    """True while ``conn.sock`` is an HTTPS proxy's own session, a tunnel through it not yet up.

    Through an HTTPS proxy, the origin's session is TLS in TLS, always an
    ``SSLTransport``; any other TLS socket of a tunnelling connection through
    one is the proxy's.
    """
    return (
        bool(getattr(conn, "_tunnel_host", None))
        and getattr(getattr(conn, "proxy", None), "scheme", None) == "https"
        and not isinstance(conn.sock, SSLTransport)
    )


def _origin(conn: Any) -> tuple[str, int]:
    """The URL's host and port: the pool's, else what the connection itself dialled."""
    recorded: tuple[str, int] | None = conn.__dict__.get("_pin_pool_origin")
    if recorded is not None:
        return recorded
    tunnel_host = getattr(conn, "_tunnel_host", None)
    if tunnel_host:
        return tunnel_host, int(getattr(conn, "_tunnel_port", None) or 443)
    if getattr(conn, "proxy", None) is not None:
        # An HTTPS proxy in forwarding mode, from a pool that makes its
        # connections without HTTPSConnectionPool._new_conn: the origin is
        # unknown, so it cannot be told apart from an unpinned one.
        raise PinMismatchError(
            "Certificate pinning failure: a connection through a forwarding proxy "
            "whose origin is unknown",
            host=str(conn.host),
            port=int(conn.port or 443),
            reason="the origin behind a forwarding proxy is unknown",
        )
    return conn.host, int(conn.port or 443)


def _abort(conn: Any) -> None:
    """Close a refused connection without a byte more to its peer.

    The socket goes first: ``HTTP2Connection.close()`` would send a GOAWAY frame.
    """
    sock, conn.sock = conn.sock, None
    if sock is not None:
        sock.close()
    conn.close()
