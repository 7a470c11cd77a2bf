"""PinFailure: what ``on_failure`` callbacks receive, and its RFC 7469 violation report."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import queue
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests.utils
import urllib3

from ._pinset import normalize_host

__all__ = ["OnFailure", "PinFailure", "ReportStats", "Reporter"]

log = logging.getLogger("requests_pinning")


@dataclass(frozen=True)
class PinFailure:
    """One failed pin check, enforced or report-only.

    Attributes:
        host: the origin's host, normalised.
        port: the origin's port.
        pattern: the pin-set entry that applied, or ``None`` when the host has none.
        pinned: the pins that applied, canonical spellings.
        denied: the deny pins that applied.
        served: ``sha256/`` SPKI pins of the certificates the server presented, leaf first.
        checked: ``sha256/`` SPKI pins of the certificates the check looked at.
        verified: whether CA validation was on.
        report_only: ``True`` when the connection was allowed to proceed.
        date_time: when the check failed (aware, UTC).
        reason: one line saying why the check failed.
        served_chain: the DER certificates behind ``served``.
        checked_chain: the DER certificates behind ``checked``.
        include_subdomains: whether the entry covers subdomains.
        expires: the entry's expiry, or ``None``.
        report_uri: where a violation report for this failure goes, or ``None``.
    """

    host: str
    port: int
    pattern: str | None
    pinned: tuple[str, ...]
    served: tuple[str, ...]
    checked: tuple[str, ...]
    verified: bool
    report_only: bool
    date_time: datetime
    reason: str
    served_chain: tuple[bytes, ...] = ()
    checked_chain: tuple[bytes, ...] = ()
    denied: tuple[str, ...] = ()
    include_subdomains: bool = False
    expires: datetime | None = None
    report_uri: str | None = None

    def to_report(self) -> dict[str, Any]:
        """The failure as an RFC 7469 section 3 violation report (JSON-serialisable).

        Fields that do not apply are ``None`` (JSON ``null``), such as
        ``effective-expiration-date`` for an entry without ``expires``.
        """
        return {
            "date-time": _iso(self.date_time),
            "hostname": self.host,
            "port": self.port,
            "effective-expiration-date": _iso(self.expires) if self.expires else None,
            "include-subdomains": self.include_subdomains,
            "noted-hostname": self.pattern,
            "served-certificate-chain": [_pem(der) for der in self.served_chain],
            "validated-certificate-chain": (
                [_pem(der) for der in self.checked_chain] if self.verified else []
            ),
            "known-pins": [_known_pin(pin) for pin in self.pinned],
        }


#: The type of ``on_failure`` callbacks.
OnFailure = Callable[[PinFailure], object]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def _known_pin(pin: str) -> str:
    # RFC 7469 spells known pins as they appear in the header: pin-sha256="...".
    if "/" in pin:
        algorithm, digest = pin.split("/", 1)
        return f'pin-{algorithm}="{digest}"'
    return pin


#: At most one report per (host, port, served chain, pins, URI) per this many seconds.
DEDUP_SECONDS = 24 * 60 * 60
_DEDUP_LIMIT = 10_000

# Deduplication is per process, as HPKP and TrustKit do it: two adapters that
# see the same failure send one report.
_dedup_lock = threading.Lock()
_dedup_seen: dict[tuple[object, ...], float] = {}


def _first_in_window(key: tuple[object, ...], now: float) -> bool:
    with _dedup_lock:
        last = _dedup_seen.get(key)
        if last is not None and now - last < DEDUP_SECONDS:
            return False
        if len(_dedup_seen) >= _DEDUP_LIMIT:
            # Bounded memory: forget the oldest half.
            for old in sorted(_dedup_seen, key=_dedup_seen.__getitem__)[: _DEDUP_LIMIT // 2]:
                del _dedup_seen[old]
        _dedup_seen[key] = now
        return True


@dataclass
class ReportStats:
    """Counters of violation reports, for operators watching back-pressure."""

    sent: int = 0
    deduplicated: int = 0
    dropped: int = 0
    failed: int = 0


class Reporter:
    """Sends violation reports from a background thread; never blocks or fails a request.

    Reports go through a bounded queue to one worker thread, started on first
    use, with short timeouts and no retries. When the queue is full the report
    is dropped and counted. The worker uses its own pool with normal CA
    validation: a report never travels over the connection that failed.
    """

    def __init__(self, *, queue_size: int = 100, timeout: float = 3.0) -> None:
        self.stats = ReportStats()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=queue_size)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, failure: PinFailure, uri: str) -> None:
        """Queue the report for ``failure`` to ``uri``; returns at once."""
        target = urllib3.util.parse_url(uri).host or ""
        if normalize_host(target.strip("[]")) == failure.host:
            # Reporting to the host that just failed would hand the report
            # (and a loop of failures) to the impostor; HPKP forbids it.
            log.warning("not sending a pin violation report for %s to itself", failure.host)
            self._count("dropped")
            return
        key = (failure.host, failure.port, failure.served_chain, failure.pinned, uri)
        if not _first_in_window(key, time.monotonic()):
            self._count("deduplicated")
            return
        body = json.dumps(failure.to_report()).encode("utf-8")
        self._ensure_worker()
        try:
            self._queue.put_nowait((uri, body))
        except queue.Full:
            log.warning("pin violation report queue is full; report for %s dropped", failure.host)
            self._count("dropped")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker after the reports already queued (waits at most ``timeout``)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                return
            thread.join(timeout)

    def snapshot(self) -> ReportStats:
        """A consistent copy of the counters."""
        with self._lock:
            return dataclasses.replace(self.stats)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="requests-pinning-reporter", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or requests.utils.DEFAULT_CA_BUNDLE_PATH
        http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle,
            timeout=urllib3.Timeout(connect=self._timeout, read=self._timeout),
            retries=False,
        )
        while True:
            item = self._queue.get()
            if item is None:
                http.clear()
                return
            uri, body = item
            try:
                response = http.request(
                    "POST", uri, body=body, headers={"Content-Type": "application/json"}
                )
                ok = 200 <= response.status < 300
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                log.warning("pin violation report to %s failed: %s", uri, exc)
                ok = False
            self._count("sent" if ok else "failed")
