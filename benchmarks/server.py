"""The benchmark server: HTTPS/1.1 on loopback, in a process of its own.

Run as ``python -m benchmarks.server --pki DIR --chain ec --chain rsa --port-file FILE``:
one listening port per chain (the PKI files written by :mod:`benchmarks.pki`),
a thread per connection (so eight concurrent clients are served at once),
keep-alive until the client closes or sends ``Connection: close``. Every
request is answered ``200`` with the body ``ok``. Once it listens, the server
writes ``{"ec": port, ...}`` to the port file; it stops when its standard
input reaches end of file, so it never outlives the benchmark that started it.

:class:`ServerProcess` starts and stops it from the benchmark runner.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .pki import HOST, chain_files

__all__ = ["ServerProcess", "main"]

_TIMEOUT = 30.0  # seconds, for every blocking socket operation of a connection
_MAX_HEAD = 65536
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n"
_REPO = Path(__file__).resolve().parent.parent


def _context(folder: Path, name: str) -> ssl.SSLContext:
    served, key, _bundle = chain_files(folder, name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # No session tickets: the clients never resume, and tickets would only add
    # work (the same for every variant) to each client handshake.
    context.num_tickets = 0
    context.load_cert_chain(str(served), str(key))
    return context


def _serve_connection(context: ssl.SSLContext, conn: socket.socket) -> None:
    try:
        conn.settimeout(_TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with context.wrap_socket(conn, server_side=True) as sock:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data or len(buffer) > _MAX_HEAD:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                headers: dict[str, str] = {}
                for line in head.decode("latin-1").lower().split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip()] = value.strip()
                length = int(headers.get("content-length") or "0")
                while len(buffer) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
                close = headers.get("connection") == "close"
                extra = b"Connection: close\r\n" if close else b""
                sock.sendall(_OK + extra + b"\r\nok")
                if close:
                    return
    except (OSError, ValueError):
        pass  # the client went away: that ends this connection
    finally:
        conn.close()


def _accept_loop(listener: socket.socket, context: ssl.SSLContext) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_serve_connection, args=(context, conn), daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__)
    parser.add_argument("--pki", type=Path, required=True, help="folder of the PKI files")
    parser.add_argument("--chain", action="append", required=True, help="ec or rsa (repeatable)")
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    ports: dict[str, int] = {}
    for name in args.chain:
        context = _context(args.pki, name)
        listener = socket.create_server((HOST, 0), backlog=256)
        ports[name] = listener.getsockname()[1]
        threading.Thread(target=_accept_loop, args=(listener, context), daemon=True).start()
    partial = args.port_file.with_suffix(".partial")
    partial.write_text(json.dumps(ports))
    partial.replace(args.port_file)
    # Serve until the parent closes our standard input (or dies).
    sys.stdin.buffer.read()
    return 0


class ServerProcess:
    """Start ``python -m benchmarks.server`` in a child process; stop it on exit."""

    def __init__(self, pki: Path, chains: Sequence[str]) -> None:
        self._pki = pki
        self._chains = list(chains)
        self._process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.pid = 0

    def __enter__(self) -> ServerProcess:
        port_file = self._pki / "ports.json"
        port_file.unlink(missing_ok=True)  # a stale one would name a dead server's ports
        command = [sys.executable, "-m", "benchmarks.server", "--pki", str(self._pki)]
        for name in self._chains:
            command += ["--chain", name]
        command += ["--port-file", str(port_file)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, cwd=_REPO, env=child_environment()
        )
        self.pid = self._process.pid
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if self._process.poll() is not None:
                raise RuntimeError(f"the benchmark server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("the benchmark server did not start within 60 s")
            time.sleep(0.05)
        self.ports = {str(k): int(v) for k, v in json.loads(port_file.read_text()).items()}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(10)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for the benchmark's child processes: this repo importable, no proxies."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_REPO) if not path else os.pathsep.join([str(_REPO), path])
    env.update(extra)
    return env


if __name__ == "__main__":
    raise SystemExit(main())
