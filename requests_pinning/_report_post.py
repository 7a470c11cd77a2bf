"""Delivering violation reports: the reporter's only HTTP, through urllib3.

Apart from ``_report`` so that the decision imports no HTTP client: this
module is imported when the first report is sent. A report goes through a
``PinningPoolManager`` of its own, so the collector's own pins apply to it,
with CA validation on, every entry enforced and none reporting (no loops).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import cast

import requests.utils
import urllib3
from urllib3.connection import HTTPConnection

from ._pinset import HostPins, PinSet, normalize_host, tls_ip_form
from ._report import report_host

__all__ = ["Poster"]


class Poster:
    """POSTs reports for one :class:`Reporter`, each within its deadline."""

    def __init__(self, pins: PinSet, *, allow_unpinned: bool) -> None:
        self._pins = pins
        self._allow_unpinned = allow_unpinned

    def post(self, uri: str, body: bytes, deadline: float) -> int:
        """POST ``body`` to ``uri`` before ``deadline``; return the response status."""

        def time_left(share: float = 1.0) -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer before the deadline")
            return left * share

        url = urllib3.util.parse_url(uri)
        if normalize_host((url.host or "").strip("[]")) != report_host(uri):
            # The reporter judged "is the collector the failing host?" with
            # the standard library's parser; deliver only where it looked.
            raise ValueError(f"{uri!r} names its host ambiguously; not sending it a report")
        if url.scheme == "http":
            # A cleartext report cannot honour pins, and with allow_unpinned=False
            # nothing unpinned is spoken to: an http:// collector never is either.
            if _entries(self._pins, url.host or "", url.port or 80):
                raise ConnectionRefusedError(
                    f"{url.host} is pinned; not sending it a report over http"
                )
            if not self._allow_unpinned:
                raise ConnectionRefusedError(
                    f"allow_unpinned=False: not sending a report over http to {url.host}, "
                    "which cannot be pinned"
                )
        pool = self._pool_manager(url.host or "", url.port or 443).connection_from_url(uri)
        # A connection of our own, never returned to the pool: urllib3's
        # response parsing applies its timeouts to each read, so a collector
        # dripping one byte at a time would hold the worker for ever. Here
        # every step gets only what is left of one deadline.
        conn = cast(HTTPConnection, pool._new_conn())
        try:
            # create_connection() and CPython's TLS handshake each take the
            # socket timeout as their total duration: half the deadline each.
            conn.timeout = time_left(0.5)
            conn.connect()  # the collector's pins are checked here
            conn.timeout = time_left()  # for the send (urllib3 2.x)
            if conn.sock is not None:  # for the send (urllib3 1.26); sendall() counts it in total
                conn.sock.settimeout(conn.timeout)
            conn.request(
                "POST",
                url.request_uri,
                body=body,
                headers={"Content-Type": "application/json", "Connection": "close"},
            )
            return _read_status(conn.sock, time_left)
        finally:
            conn.close()

    def _pool_manager(self, host: str, port: int) -> urllib3.PoolManager:
        """A pool manager for one report to ``host``, with the collector's own pins.

        Made for each report (reports are rare, and each is sent on a
        connection of its own), from the one entry that the collector's host
        matches: never from a copy of the whole pin set, which for a large
        set doubled the memory held and took longer than a report's deadline.
        """
        # Imported here because _urllib3 imports _report (through _verify).
        # Its pools are what make a report honour the pins of the collector's
        # host: the same check as any request, with CA validation on.
        from ._urllib3 import PinningPoolManager

        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or requests.utils.DEFAULT_CA_BUNDLE_PATH
        return PinningPoolManager(
            _enforced(_entries(self._pins, host, port)),
            allow_unpinned=self._allow_unpinned,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,
            retries=False,
        )


def _entries(pins: PinSet, host: str, port: int) -> list[HostPins]:
    """The entries a connection to ``host`` is checked against (see PinningPolicy.check)."""
    found: dict[int, HostPins] = {}
    for name in (host, tls_ip_form(host)):
        entry = None if name is None else pins.match(name, port)
        if entry is not None:
            found[id(entry)] = entry
    return list(found.values())


def _enforced(entries: list[HostPins]) -> PinSet:
    """The collector's entries alone, enforced and not reporting.

    A report-only collector entry must still keep reports from an impostor,
    and a report that fails must not cause another report (no loops). The
    pool looks the collector's host up in this set as the whole set would
    have: the entries it finds there are the ones found here, or none.
    """
    config = {}
    for entry in entries:
        value = entry.to_dict()
        value.pop("report_only", None)
        value.pop("report_uri", None)
        config[entry.pattern] = value
    return PinSet(config)


def _read_status(sock: socket.socket | None, time_left: Callable[[], float]) -> int:
    """Read the status line of an HTTP response, giving up when ``time_left`` runs out."""
    if sock is None:
        raise ConnectionError("the connection to the collector is closed")
    head = b""
    while b"\n" not in head:
        if len(head) > 8192:
            raise ValueError("the collector's answer has no status line")
        sock.settimeout(time_left())
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("the collector closed the connection without answering")
        head += chunk
    parts = head.split(b"\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"the collector's answer is not HTTP: {head[:80]!r}")
    return int(parts[1])
