"""Real loopback servers for tests: a counting HTTPS origin and two kinds of proxy.

Each server is a context manager. Entering it listens on a fresh port of a loopback
address and starts daemon threads (one accept loop, one thread per connection);
leaving it closes the listening socket, shuts down open connections and joins the
threads with a timeout. Every socket has a timeout, so no test can hang forever, and
the proxies refuse to connect anywhere but loopback.

A connection that fails (a client aborting its TLS handshake, a reset, garbage
instead of HTTP) just ends that connection, quietly: tests run with warnings as
errors, where an exception escaping a thread would fail an unrelated test.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import trustme

__all__ = ["Collector", "ConnectProxy", "Socks5Proxy", "TLSServer"]

_TIMEOUT = 10.0  # seconds, for every blocking socket operation
_CHUNK = 65536
_MAX_HEAD = 65536  # a request head longer than this ends the connection

_S = TypeVar("_S", bound="_Server")


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections, held for the ``with`` block.

    Bound and never listening: a connection to it is refused, and neither
    another test's server nor the other suite CI runs beside this one can be
    given the port meanwhile (a port closed before use could be, and a "down"
    collector would then reach a live one).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class _Forbidden(Exception):
    """A proxy was asked to connect somewhere that is not loopback."""


class _Server:
    """Accept loop, per-connection threads, `wait_idle` and shutdown for the servers below.

    Subclasses implement `_handle`, called in the connection's own thread after the
    TLS handshake (if the server speaks TLS) with a socket that has a timeout.
    """

    port: int

    def __init__(self, context: ssl.SSLContext | None = None, bind: str = "127.0.0.1") -> None:
        if not ipaddress.ip_address(bind).is_loopback:
            raise ValueError(f"test servers bind to loopback only, not {bind!r}")
        self.host = bind
        self.handshakes = 0
        self._context = context
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()

    def __enter__(self: _S) -> _S:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, 0), family=family)
        # A short timeout lets the accept loop notice `_stopping` promptly.
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"{type(self).__name__}-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._acceptor.join(_TIMEOUT)
        self._listener.close()
        with self._lock:  # held so that no socket in the set can be closed meanwhile
            for sock in self._open:
                # The plain-socket shutdown wakes a handler blocked in recv or select;
                # SSLSocket.shutdown would also pull the TLS state out from under it.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
        self._join(_TIMEOUT)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every connection accepted so far has been handled and closed.

        Close clients first: a kept-alive connection is not idle. Drop responses too:
        with recent urllib3 a pool, and so its connections, lives on after
        `Session.close()` or `PoolManager.clear()` while a response still refers to it.
        Raises AssertionError if connections are still open after `timeout` seconds.
        """
        busy = self._join(timeout)
        if busy:
            raise AssertionError(f"{busy} connection(s) still open after {timeout} s")

    def _join(self, timeout: float) -> int:
        """Join the connection threads for up to `timeout` seconds; count those left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return len(self._threads)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"{type(self).__name__}-conn"
            )
            thread.daemon = True
            with self._lock:  # started under the lock: _join never sees it unstarted
                thread.start()
                self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        sock = conn
        try:
            conn.settimeout(_TIMEOUT)
            if self._context is not None:
                # The handshake is done here, in this thread, rather than on accept,
                # so that a failing one ends only this connection and is not counted.
                sock = _wrap(self._context, conn)
            with self._lock:
                self._open.add(sock)
            if self._stopping.is_set():  # __exit__ may have missed this socket
                return
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
                with self._lock:
                    self.handshakes += 1
            self._handle(sock)
        except (OSError, EOFError, ValueError):
            pass  # the peer went away or spoke nonsense: that ends this connection
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def _handle(self, sock: socket.socket) -> None:
        raise NotImplementedError


class TLSServer(_Server):
    """An HTTPS/1.1 origin on loopback that counts what it sees after each handshake.

    It serves `cert` (with its intermediates) and, given `client_ca`, requires a client
    certificate issued by it. Once a handshake succeeds, `handshakes` goes up, and every
    byte then received (decrypted) is added to `bytes_received`, every request line to
    `requests`. A client that completes a handshake and closes without sending anything
    adds one handshake and no bytes: so a test can tell "rejected after the handshake,
    before the request" from "the request was sent".

    `GET /redirect?to=<percent-encoded URL>` answers 302 to that URL; anything else
    answers 200 with the body `ok`. Connections are kept alive until the client closes
    or sends `Connection: close`. Request bodies must have a Content-Length.

    With `http2=True` the server also offers HTTP/2 by ALPN (needs the `h2` package) and
    answers every HTTP/2 request 200 `ok`; its request lines are recorded as
    `METHOD /path HTTP/2`. Bytes are counted the same way, the client's preface included.
    """

    def __init__(
        self,
        cert: trustme.LeafCert,
        *,
        client_ca: trustme.CA | None = None,
        bind: str = "127.0.0.1",
        http2: bool = False,
    ) -> None:
        context = _server_context(cert)
        if http2:
            context.set_alpn_protocols(["h2", "http/1.1"])
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            client_ca.configure_trust(context)
        super().__init__(context, bind)
        self.bytes_received = 0
        self.requests: list[str] = []

    def _received(self, count: int) -> None:
        with self._lock:
            self.bytes_received += count

    def _handle(self, sock: socket.socket) -> None:
        if isinstance(sock, ssl.SSLSocket) and sock.selected_alpn_protocol() == "h2":
            self._handle_h2(sock)
            return
        reader = _Reader(sock, on_data=self._received)
        while (head := reader.head()) is not None:
            request_line, headers = _parse_head(head)
            with self._lock:
                self.requests.append(request_line)
            reader.exactly(int(headers.get("content-length", "0")))
            _method, target, _version = request_line.split(" ")
            close = headers.get("connection", "").lower() == "close"
            sock.sendall(_answer(target, close))
            if close:
                return

    def _handle_h2(self, sock: ssl.SSLSocket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        while data := sock.recv(_CHUNK):
            self._received(len(data))
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    heads[event.stream_id] = {str(k): str(v) for k, v in event.headers or ()}
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id or 0
                    )
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id in heads:
                    head = heads.pop(event.stream_id)
                    with self._lock:
                        self.requests.append(f"{head[':method']} {head[':path']} HTTP/2")
                    response = [(":status", "200"), ("content-length", "2")]
                    conn.send_headers(event.stream_id, response)
                    conn.send_data(event.stream_id, b"ok", end_stream=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    sock.sendall(conn.data_to_send())
                    return
            sock.sendall(conn.data_to_send())


class ConnectProxy(_Server):
    """An HTTP proxy on loopback: CONNECT tunnels, and a stub for forwarding mode.

    `CONNECT host:port` is recorded in `connects` and, if the target is loopback,
    tunnelled there (anything else gets 403). A request with an absolute-form target
    (`GET http://...`, or `https://...` from a proxy in forwarding mode) is recorded in
    `forwarded` and answered 200 `forwarded` by the proxy itself, without contacting
    the origin. With `tls_cert` the proxy itself speaks TLS (an "HTTPS proxy"), and its
    `url` names it as `localhost`, so issue the certificate for "localhost".

    With `route_to` (a loopback port), every tunnel goes to 127.0.0.1 on that port,
    whatever host it names: a proxy or a resolver in the attacker's hands, which makes
    any spelling of a name reach an impostor.
    """

    def __init__(
        self, tls_cert: trustme.LeafCert | None = None, *, route_to: int | None = None
    ) -> None:
        super().__init__(None if tls_cert is None else _server_context(tls_cert))
        self.connects: list[str] = []
        self.forwarded: list[str] = []
        self.route_to = route_to

    @property
    def url(self) -> str:
        """The proxy URL to give requests or urllib3."""
        if self._context is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    def _handle(self, sock: socket.socket) -> None:
        reader = _Reader(sock)
        while (head := reader.head()) is not None:
            request_line, headers = _parse_head(head)
            reader.exactly(int(headers.get("content-length", "0")))
            method, target, _version = request_line.split(" ")
            if method == "CONNECT":
                self._tunnel(sock, target, reader.buffer)
                return
            with self._lock:
                self.forwarded.append(target)
            close = headers.get("connection", "").lower() == "close"
            sock.sendall(_response("200 OK", b"forwarded", close=close))
            if close:
                return

    def _tunnel(self, client: socket.socket, target: str, pending: bytes) -> None:
        with self._lock:
            self.connects.append(target)
        host, _, port = target.rpartition(":")
        if self.route_to is not None:
            host, port = "127.0.0.1", str(self.route_to)
        try:
            upstream = _open_upstream(host.strip("[]"), int(port))
        except _Forbidden:
            client.sendall(_response("403 Forbidden", close=True))
            return
        except OSError:
            client.sendall(_response("502 Bad Gateway", close=True))
            return
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pipe(client, upstream, pending)


class Socks5Proxy(_Server):
    """A minimal SOCKS5 proxy (RFC 1928) on loopback: no authentication, CONNECT only.

    Each CONNECT is recorded in `connects` as "host:port" ("[::1]:port" for IPv6) and,
    if the target is loopback, tunnelled there; anything else is refused.
    """

    def __init__(self, *, route_to: int | None = None) -> None:
        super().__init__()
        self.connects: list[str] = []
        self.route_to = route_to  # as for ConnectProxy: every tunnel goes there

    @property
    def url(self) -> str:
        """The proxy URL to give requests; `socks5h` lets the proxy resolve names."""
        return f"socks5h://127.0.0.1:{self.port}"

    def _handle(self, sock: socket.socket) -> None:
        reader = _Reader(sock)
        version, method_count = reader.exactly(2)
        if version != 5:
            return
        if 0 not in reader.exactly(method_count):  # 0: no authentication required
            sock.sendall(b"\x05\xff")
            return
        sock.sendall(b"\x05\x00")
        _version, command, _reserved, address_type = reader.exactly(4)
        if address_type == 1:
            host = socket.inet_ntop(socket.AF_INET, reader.exactly(4))
        elif address_type == 3:
            host = reader.exactly(reader.exactly(1)[0]).decode("ascii")
        elif address_type == 4:
            host = socket.inet_ntop(socket.AF_INET6, reader.exactly(16))
        else:
            sock.sendall(_socks_reply(8))  # address type not supported
            return
        port = int.from_bytes(reader.exactly(2), "big")
        if command != 1:
            sock.sendall(_socks_reply(7))  # command not supported
            return
        with self._lock:
            self.connects.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        if self.route_to is not None:
            host, port = "127.0.0.1", self.route_to
        try:
            upstream = _open_upstream(host, port)
        except _Forbidden:
            sock.sendall(_socks_reply(2))  # connection not allowed by ruleset
            return
        except OSError:
            sock.sendall(_socks_reply(5))  # connection refused
            return
        with upstream:
            sock.sendall(_socks_reply(0))
            _pipe(sock, upstream, reader.buffer)


class _Reader:
    """Buffered reads from one connection; `on_data` is told the size of each recv."""

    def __init__(self, sock: socket.socket, on_data: Callable[[int], None] | None = None) -> None:
        self._sock = sock
        self._on_data = on_data
        self.buffer = b""  # received but not yet consumed

    def _fill(self) -> bool:
        data = self._sock.recv(_CHUNK)
        if self._on_data is not None:
            self._on_data(len(data))
        self.buffer += data
        return bool(data)

    def head(self) -> bytes | None:
        """The next HTTP message head, without its blank line; None if the peer closes."""
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD or not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return head

    def exactly(self, count: int) -> bytes:
        """The next `count` bytes; EOFError if the peer closes first."""
        while len(self.buffer) < count:
            if not self._fill():
                raise EOFError
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    # A bare server context: create_default_context would also trust the system CAs
    # for client certificates.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # No TLS 1.3 session tickets: nothing in these tests resumes sessions, and writing
    # tickets can race a client that closes right after its handshake.
    context.num_tickets = 0
    cert.configure_cert(context)
    return context


def _wrap(context: ssl.SSLContext, conn: socket.socket) -> ssl.SSLSocket:
    """Wrap an accepted socket for a server-side handshake, to be done later."""
    try:
        return context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
    except OSError as error:
        # If the peer resets the connection just then, CPythons without the fix for
        # python/cpython#113280 (early 2024) raise and leak the SSLSocket they made,
        # and its ResourceWarning would fail whatever test runs next. That socket is
        # `self` in the failing frames: close it.
        frame = error.__traceback__
        while frame is not None:
            leaked = frame.tb_frame.f_locals.get("self")
            if isinstance(leaked, ssl.SSLSocket):
                leaked.close()
            frame = frame.tb_next
        raise


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """The request line and the headers (names lowercased) of an HTTP message head."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return request_line, headers


def _answer(target: str, close: bool) -> bytes:
    """TLSServer's response to a request for `target` (origin- or absolute-form)."""
    url = urllib.parse.urlsplit(target)
    if url.path == "/redirect":
        location = urllib.parse.parse_qs(url.query).get("to")
        if not location:
            return _response("400 Bad Request", close=close)
        return _response("302 Found", close=close, location=location[0])
    return _response("200 OK", b"ok", close=close)


def _response(
    status: str, body: bytes = b"", *, close: bool = False, location: str | None = None
) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: text/plain")
    if location is not None:
        lines.append(f"Location: {location}")
    if close:
        lines.append("Connection: close")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def _socks_reply(code: int) -> bytes:
    # The bound address (0.0.0.0:0) is not something clients need.
    return bytes([5, code, 0, 1]) + bytes(6)


def _open_upstream(host: str, port: int) -> socket.socket:
    """Connect to host:port for a proxy, or raise _Forbidden if that is not loopback."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        # Of names, only "localhost" is resolved: a test proxy must not reach, or even
        # ask a resolver about, anything beyond this machine.
        if host.lower() != "localhost":
            raise _Forbidden(host) from None
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0])) for info in infos]
    if not all(address.is_loopback for address in addresses):
        raise _Forbidden(host)
    return socket.create_connection((host, port), timeout=_TIMEOUT)


def _pipe(a: socket.socket, b: socket.socket, pending: bytes = b"") -> None:
    """Copy bytes both ways between `a` and `b` until one closes or both go quiet.

    `pending` is what was read from `a` before the tunnel opened. A TLS socket can hold
    decrypted bytes that select() cannot see, so those are drained before waiting.
    """
    if pending:
        b.sendall(pending)
    peer = {a: b, b: a}
    while True:
        ready: list[socket.socket] = [
            s for s in peer if isinstance(s, ssl.SSLSocket) and s.pending()
        ]
        if not ready:
            ready, _, _ = select.select(list(peer), [], [], _TIMEOUT)
            if not ready:
                return
        for sock in ready:
            data = sock.recv(_CHUNK)
            if not data:
                return
            peer[sock].sendall(data)


class Collector:
    """An HTTP server on loopback that records violation reports; it can be made to stall."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Semaphore(0)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                collector.gate.wait(10)
                collector.reports.append(body)
                self.send_response(204)
                self.end_headers()
                collector.arrived.release()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pkp"
        # A short poll interval: shutdown() waits for it, in every test's teardown.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def wait_for(self, count: int) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=10), f"fewer than {count} reports arrived"

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
