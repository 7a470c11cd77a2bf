"""PinFailure: what ``on_failure`` callbacks receive, and its RFC 7469 violation report."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import textwrap
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._certs import describe_name, sha256_pin
from ._errors import MismatchFields, printable, safe_repr
from ._pinset import PinSet, normalize_host

if TYPE_CHECKING:
    from ._report_post import Poster

__all__ = [
    "LOG_SECONDS",
    "OnFailure",
    "PinFailure",
    "ReportStats",
    "Reporter",
    "log_gate",
    "shown_uri",
]

log = logging.getLogger("requests_pinning")


@dataclass(frozen=True)
class PinFailure:
    """One failed pin check, enforced or report-only.

    Attributes:
        host: the name whose pins failed, normalised (the origin's, a name it was
            validated as, or an HTTPS proxy's).
        port: that host's port.
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

    @functools.cached_property
    def message(self) -> str:
        """The error text people copy from: the chain checked and the pins configured.

        The message of every face's error for this failure, and of its log line.
        """
        return format_message(self)

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


def format_message(failure: PinFailure) -> str:
    """The error text people copy from: the chain checked and the pins configured."""
    state = "verified" if failure.verified else "NOT verified: CA validation is off"
    # The message is logged and shown: text that may come from outside (the
    # reason can quote an error raised reading the server's certificates) is
    # kept to its one line, escaped (subjects are, by describe_name).
    host = printable(failure.host)
    where = _hostport(host, failure.port)
    lines = [f"Certificate pinning failure for {where}: {printable(failure.reason)}"]
    if failure.checked_chain:
        lines.append(f"  Chain checked ({state}):")
        for pin, der in zip(failure.checked, failure.checked_chain, strict=True):
            lines.append(f"    {pin}  {describe_name(der)}")
    extra = failure.served_chain[len(failure.checked_chain) :] if not failure.verified else ()
    if extra:
        lines.append("  Also presented by the server (not trusted without CA validation):")
        for pin, der in zip(pins_of(extra), extra, strict=True):
            lines.append(f"    {pin}  {describe_name(der)}")
    if failure.pattern is None:
        lines.append(f"  No pins are configured for {host}.")
    else:
        lines.append(f'  Pinned for {host} (entry "{failure.pattern}"):')
        lines.extend(f"    {pin}" for pin in failure.pinned)
        if not failure.pinned:
            lines.append("    (none: the entry has deny pins only)")
        if failure.denied:
            lines.append("  Denied:")
            lines.extend(f"    {pin}" for pin in failure.denied)
    return "\n".join(lines)


class _Shown:
    """An error for a log line, escaped, and formatted only as the line is.

    A pin failure's message keeps its lines (each part of it is escaped where
    it is made); any other error's text is one line, escaped: it can quote
    what a collector answered. An error whose ``str`` raises is shown by its
    type: formatting a log line must not end the thread that logs it.
    """

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __str__(self) -> str:
        try:
            text = str(self.error)
        except Exception:
            return safe_repr(self.error)
        if isinstance(self.error, MismatchFields):
            return text
        return printable(text)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def pins_of(chain: Sequence[bytes]) -> tuple[str, ...]:
    pins = []
    for der in chain:
        try:
            pins.append(sha256_pin(der))
        except Exception:  # a failure message must be built whatever the certificate
            pins.append("(unparseable certificate)")
    return tuple(pins)


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


def chain_key(chain: Sequence[bytes]) -> bytes:
    """A digest that tells the served chain ``chain`` from any other, for the tables below.

    The tables of deduplication and log rate limiting keep thousands of keys:
    holding the chains themselves, which a server chooses (up to about 100 KB
    each, and new on every connection if it likes), would let it make a
    client hold gigabytes. Each certificate's length goes in before it, so
    that no two chains give one text to digest.
    """
    digest = hashlib.sha256()
    for der in chain:
        digest.update(len(der).to_bytes(8, "big"))
        digest.update(der)
    return digest.digest()


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


#: At most one WARNING per (host, port, served chain, mode) per this many seconds.
LOG_SECONDS = 60.0

# Log rate limiting is per process too, and keyed like reports: a retry loop
# against one impostor logs once a minute, with the number of repeats left out,
# while a different host, port or chain is logged at once.
_log_lock = threading.Lock()
_log_seen: dict[tuple[object, ...], list[float | int]] = {}  # key -> [logged at, suppressed]


def log_gate(key: tuple[object, ...], now: float) -> int | None:
    """Whether to log a failure with ``key`` now.

    ``None``: one was logged less than :data:`LOG_SECONDS` ago; this one is
    counted and left out. Otherwise log it, with the returned number of
    repeats left out since the last line.
    """
    with _log_lock:
        seen = _log_seen.get(key)
        if seen is not None and now - seen[0] < LOG_SECONDS:
            seen[1] += 1
            return None
        if seen is None and len(_log_seen) >= _DEDUP_LIMIT:
            # Bounded memory: forget the oldest half (their repeat counts with them).
            for old in sorted(_log_seen, key=lambda k: _log_seen[k][0])[: _DEDUP_LIMIT // 2]:
                del _log_seen[old]
        suppressed = int(seen[1]) if seen is not None else 0
        _log_seen[key] = [now, 0]
        return suppressed


@dataclass
class ReportStats:
    """Counters of violation reports, for operators watching back-pressure.

    Attributes:
        sent: reports the collector acknowledged with a 2xx status.
        deduplicated: reports not sent because the same one was sent (or tried)
            within :data:`DEDUP_SECONDS`.
        dropped: reports never tried: the queue was full, the collector is the
            host that failed, or ``close()`` ran out of time before their turn.
        failed: reports tried and not delivered: the collector was unreachable,
            failed its own pin check, missed the deadline or answered non-2xx.
    """

    sent: int = 0
    deduplicated: int = 0
    dropped: int = 0
    failed: int = 0


class Reporter:
    """Sends violation reports from a background thread; never blocks or fails a request.

    Reports go through a bounded queue to one worker thread, started by the
    first report and ended as soon as the queue is empty, so an idle reporter
    holds no thread and a forgotten one does not keep one alive. Each report
    has a total ``deadline`` (connect, TLS, send and reading the status) and
    no retries; when the queue is full the report is dropped and counted.

    A report never travels over the connection that failed. It goes through a
    pool that enforces ``pins`` for the collector's own host (CA validation
    on), so an impostor for a pinned collector gets nothing.
    """

    def __init__(
        self,
        pins: PinSet | None = None,
        *,
        allow_unpinned: bool = True,
        queue_size: int = 100,
        deadline: float = 3.0,
    ) -> None:
        self.stats = ReportStats()
        self._pins = pins if pins is not None else PinSet()
        self._allow_unpinned = allow_unpinned
        self._queue_size = queue_size
        self._deadline = deadline
        self._lock = threading.Lock()
        self._pending: deque[tuple[str, bytes]] = deque()
        self._running = False  # a worker is draining _pending
        self._threads: list[threading.Thread] = []  # started and not yet joined
        self._stop_at: float | None = None  # while close() waits: its own deadline
        self._poster: Poster | None = None

    def submit(self, failure: PinFailure, uri: str) -> None:
        """Queue the report for ``failure`` to ``uri``; returns at once."""
        if report_host(uri) == failure.host:
            # Reporting to the host that just failed would hand the report
            # (and a loop of failures) to the impostor; HPKP forbids it.
            log.warning(
                "not sending a pin violation report for %s to itself", printable(failure.host)
            )
            self._count("dropped")
            return
        key = (failure.host, failure.port, chain_key(failure.served_chain), failure.pinned, uri)
        if not _first_in_window(key, time.monotonic()):
            self._count("deduplicated")
            return
        body = json.dumps(failure.to_report()).encode("utf-8")
        with self._lock:
            full = len(self._pending) >= self._queue_size
            if full:
                self.stats.dropped += 1
            else:
                self._pending.append((uri, body))
                if not self._running:
                    self._running = True
                    thread = threading.Thread(
                        target=self._work, name="requests-pinning-reporter", daemon=True
                    )
                    self._threads = [t for t in self._threads if t.is_alive()]
                    self._threads.append(thread)
                    thread.start()
        if full:
            log.warning(
                "pin violation report queue is full; report for %s dropped", printable(failure.host)
            )

    def close(self, timeout: float = 5.0) -> None:
        """Send the reports already queued for up to ``timeout`` seconds, then stop the worker.

        Reports whose turn has not come by then are dropped and counted. Returns
        once the worker thread has ended: after at most ``timeout`` seconds, or
        the deadline of the report in flight if that is later. The reporter stays
        usable: a later report starts a new worker.
        """
        with self._lock:
            threads = list(self._threads)
            self._stop_at = time.monotonic() + timeout
        # The bound holds unless name resolution hangs (nothing interrupts
        # getaddrinfo); the thread is a daemon, so it cannot hold up exit.
        give_up = time.monotonic() + max(timeout, self._deadline) + 1.0
        try:
            for thread in threads:
                thread.join(max(0.0, give_up - time.monotonic()))
                if thread.is_alive():
                    log.warning("the pin violation report worker did not stop in time")
        finally:
            with self._lock:
                self._stop_at = None
                self._threads = [t for t in self._threads if t.is_alive()]

    def snapshot(self) -> ReportStats:
        """A consistent copy of the counters."""
        with self._lock:
            return dataclasses.replace(self.stats)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    # Decided under the lock, so that submit() starts a new
                    # worker for anything queued from now on.
                    self._running = False
                    return
                uri, body = self._pending.popleft()
                stop_at = self._stop_at
            now = time.monotonic()
            deadline = now + self._deadline
            if stop_at is not None:
                # close() is waiting: what cannot start before its own deadline
                # is dropped, and what starts may not run past it.
                if now >= stop_at:
                    log.warning(
                        "pin violation report to %s dropped: the reporter closed", shown_uri(uri)
                    )
                    self._count("dropped")
                    continue
                deadline = min(deadline, stop_at)
            try:
                status = self._post(uri, body, deadline)
            except Exception as exc:
                # Whatever went wrong (a refused pin check, a timeout, a bad
                # answer), one report is lost, never the worker.
                log.warning("pin violation report to %s failed: %s", shown_uri(uri), _Shown(exc))
                self._count("failed")
                continue
            if 200 <= status < 300:
                self._count("sent")
            else:
                log.warning(
                    "pin violation report to %s failed: HTTP status %d", shown_uri(uri), status
                )
                self._count("failed")

    def _post(self, uri: str, body: bytes, deadline: float) -> int:
        # Delivery is the one part of reporting that speaks HTTP. It goes
        # through urllib3 (a base dependency) in _report_post, imported on the
        # first report so that the decision itself imports no HTTP client.
        from ._report_post import Poster

        with self._lock:
            if self._poster is None:
                self._poster = Poster(self._pins, allow_unpinned=self._allow_unpinned)
            poster = self._poster
        return poster.post(uri, body, deadline)


def shown_uri(uri: str) -> str:
    """``uri`` as log lines and the command show it: without its query or fragment.

    Collectors often take a key in the query (``?sentry_key=...``); a log
    line is no place for it. (A user name and password are refused when the
    URI is configured.)
    """
    return uri.partition("#")[0].partition("?")[0]


def report_host(uri: str) -> str:
    """The collector's host in ``uri``, normalised as pinned hosts are ("" if it has none)."""
    try:
        host = urlsplit(uri).hostname or ""
        return normalize_host(host) if host else ""
    except ValueError:  # not a URL the delivery could use either
        return ""
