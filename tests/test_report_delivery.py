"""Delivery of violation reports: pinned collectors, a total deadline, and the worker's lifetime.

Collectors are real servers on loopback: the plain HTTP ``Collector`` of
test_deny_and_reports, ``TLSServer`` (which counts every byte it receives) as
an HTTPS collector, and ``DripRelay`` in front of either to feed the client
one byte at a time.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from requests_pinning import (
    HostOptions,
    PinMismatchError,
    PinningAdapter,
    PinningPoolManager,
    PinSet,
    _verify,
)
from requests_pinning._report import Reporter

from .conftest import PKI
from .servers import Collector, TLSServer
from .test_adapter import accept, assert_nothing_leaked, refuse
from .test_deny_and_reports import a_failure

WORKER = "requests-pinning-reporter"


class DripRelay:
    """A TCP relay on loopback to ``port``: the client's bytes pass at once, the
    server's one byte every ``interval`` seconds (all at once with ``None``)."""

    def __init__(self, port: int, interval: float | None) -> None:
        self._upstream = port
        self._interval = interval
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> DripRelay:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._acceptor.join(10)
        self._listener.close()
        for thread in self._threads:
            thread.join(10)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._relay, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket) -> None:
        try:
            with client, socket.create_connection(("127.0.0.1", self._upstream), 10) as upstream:
                while not self._stopping.is_set():
                    ready, _, _ = select.select([client, upstream], [], [], 0.1)
                    for sock in ready:
                        data = sock.recv(65536)
                        if not data:
                            return
                        if sock is client:
                            upstream.sendall(data)
                        elif self._interval is None:
                            client.sendall(data)
                        else:
                            for i in range(len(data)):
                                if self._stopping.wait(self._interval):
                                    return
                                client.sendall(data[i : i + 1])
        except OSError:
            pass  # the client gave up: that ends this connection


def workers(before: set[threading.Thread]) -> list[threading.Thread]:
    """Report worker threads alive now that were not alive at ``before``."""
    return [t for t in threading.enumerate() if t.name == WORKER and t not in before]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# -- the collector's own pins ---------------------------------------------------------------


@pytest.fixture
def trust_test_pki(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reports use requests' CA bundle, or REQUESTS_CA_BUNDLE.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.bundle)


@pytest.mark.usefixtures("trust_test_pki")
@pytest.mark.parametrize("variant", ["entry", "report-only entry", "adapter report-only", "loop"])
@pytest.mark.parametrize("genuine", [False, True], ids=["impostor", "genuine"])
def test_a_report_reaches_a_pinned_collector_only_if_its_pins_match(
    pki: PKI, rogue: TLSServer, collector: Collector, variant: str, genuine: bool
) -> None:
    # The origin (localhost) fails; its report goes to a collector on ::1, which
    # has pins of its own. An impostor for the collector must get nothing, even
    # when the collector's entry, or the adapter, is report-only; and its failure
    # must not cause a report of its own (the "loop" variant gives it a report_uri).
    entry: HostOptions = {"pins": [pki.intermediate_pin]}
    if variant == "report-only entry":
        entry["report_only"] = True
    if variant == "loop":
        entry["report_uri"] = collector.url
    report_only = variant == "adapter report-only"
    with TLSServer(pki.leaf if genuine else pki.rogue_leaf, bind="::1") as server:
        adapter = PinningAdapter(
            {"localhost": [pki.intermediate_pin], "::1": entry},
            report_uri=f"https://[::1]:{server.port}/pkp",
            report_only=report_only,
        )
        session = requests.Session()
        session.mount("https://", adapter)
        if report_only:
            accept(session, rogue, verify=pki.bundle)
        else:
            refuse(session, rogue, verify=pki.bundle)
        adapter.close()  # sends what is queued
        stats = adapter.report_stats
        if genuine:
            assert server.requests == ["POST /pkp HTTP/1.1"]
            assert (stats.sent, stats.failed) == (1, 0)
        else:
            assert_nothing_leaked(server)
            assert (stats.sent, stats.failed) == (0, 1)
    assert collector.reports == []


@pytest.mark.usefixtures("trust_test_pki")
@pytest.mark.parametrize("genuine", [False, True], ids=["impostor", "genuine"])
def test_a_report_takes_the_collectors_entry_for_its_port_and_reads_no_other(
    pki: PKI,
    rogue: TLSServer,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
    genuine: bool,
) -> None:
    # The collector's pins are those of its most specific entry (here its
    # port's, over an entry for the host on any port that pins a key nobody
    # has): read from that entry alone. The first report once copied the
    # whole pin set, which at 500,000 entries took longer than the report's
    # deadline and doubled the memory held; now nothing lists the set.
    with TLSServer(pki.leaf if genuine else pki.rogue_leaf, bind="::1") as server:
        pins = PinSet(
            {
                "localhost": [pki.intermediate_pin],
                "::1": ["sha256/" + "A" * 43 + "="],
                f"[::1]:{server.port}": {"pins": [pki.intermediate_pin], "report_only": True},
                **{f"h{n}.example": [pki.intermediate_pin] for n in range(100)},
            }
        )

        def listed(self: PinSet) -> Any:
            raise AssertionError("the pin set was listed")

        monkeypatch.setattr(PinSet, "__iter__", listed)
        monkeypatch.setattr(PinSet, "to_dict", listed)
        adapter = PinningAdapter(pins, report_uri=f"https://[::1]:{server.port}/pkp")
        session = requests.Session()
        session.mount("https://", adapter)
        refuse(session, rogue, verify=pki.bundle)
        adapter.close()
        stats = adapter.report_stats
        if genuine:
            assert server.requests == ["POST /pkp HTTP/1.1"]
            assert (stats.sent, stats.failed) == (1, 0)
        else:
            assert_nothing_leaked(server)
            assert (stats.sent, stats.failed) == (0, 1)
    assert collector.reports == []


def refused_and_reported(
    pki: PKI, rogue: TLSServer, report_uri: str, *, allow_unpinned: bool
) -> PinningAdapter:
    """An adapter pinning localhost, after a request to the impostor and its report's delivery."""
    adapter = PinningAdapter(
        {"localhost": [pki.intermediate_pin]},
        report_uri=report_uri,
        allow_unpinned=allow_unpinned,
    )
    session = requests.Session()
    session.mount("https://", adapter)
    refuse(session, rogue, verify=pki.bundle)
    adapter.close()
    return adapter


@pytest.mark.usefixtures("trust_test_pki")
@pytest.mark.parametrize("allow_unpinned", [False, True])
def test_allow_unpinned_false_applies_to_collectors_too(
    pki: PKI, rogue: TLSServer, good: TLSServer, allow_unpinned: bool
) -> None:
    adapter = refused_and_reported(
        pki, rogue, f"https://127.0.0.1:{good.port}/pkp", allow_unpinned=allow_unpinned
    )
    if allow_unpinned:
        assert good.requests == ["POST /pkp HTTP/1.1"]
        assert adapter.report_stats.sent == 1
    else:
        assert_nothing_leaked(good)
        assert adapter.report_stats.failed == 1


def test_a_failed_report_is_logged_without_the_collectors_query(
    pki: PKI, rogue: TLSServer, pin_log: Any
) -> None:
    # Helper 57: the WARNING line of a failed report showed the whole URI,
    # a collector's key in the query too (sentry_key=...). The URI is shown
    # without its query; the collector here refuses the connection.
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    uri = f"http://127.0.0.1:{port}/pkp?sentry_key=T0KEN#frag"
    adapter = refused_and_reported(pki, rogue, uri, allow_unpinned=True)
    assert adapter.report_stats.failed == 1
    assert f"pin violation report to http://127.0.0.1:{port}/pkp failed" in pin_log.text
    assert "T0KEN" not in pin_log.text


@pytest.mark.parametrize("allow_unpinned", [False, True])
def test_allow_unpinned_false_sends_nothing_to_an_http_collector(
    pki: PKI, rogue: TLSServer, collector: Collector, pin_log: Any, allow_unpinned: bool
) -> None:
    # An http:// collector whose host has no pins got the report (the host,
    # the served chain, the known pins) in cleartext under allow_unpinned=False:
    # only a pinned one was refused (round 8 attack pass).
    adapter = refused_and_reported(pki, rogue, collector.url, allow_unpinned=allow_unpinned)
    if allow_unpinned:
        assert len(collector.reports) == 1
        assert adapter.report_stats.sent == 1
    else:
        assert collector.reports == []
        assert adapter.report_stats.failed == 1
        assert "allow_unpinned=False: not sending a report over http" in pin_log.text


@pytest.mark.parametrize("collector_pinned", [True, False])
def test_no_cleartext_report_to_a_pinned_host(
    pki: PKI, rogue: TLSServer, collector: Collector, pin_log: Any, collector_pinned: bool
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    if collector_pinned:
        pins["127.0.0.1"] = [pki.intermediate_pin]
    adapter = PinningAdapter(pins, report_uri=collector.url)
    session = requests.Session()
    session.mount("https://", adapter)
    refuse(session, rogue, verify=pki.bundle)
    adapter.close()
    if collector_pinned:
        assert collector.reports == []
        assert adapter.report_stats.failed == 1
        assert "127.0.0.1 is pinned; not sending it a report over http" in pin_log.text
    else:
        assert len(collector.reports) == 1
        assert adapter.report_stats.sent == 1


# -- a total deadline per report ------------------------------------------------------------


@pytest.fixture(params=["http", "https"])
def slow_collector(request: pytest.FixtureRequest, pki: PKI, collector: Collector) -> Iterator[Any]:
    """(scheme://host, port) of a collector to put behind a DripRelay.

    Over https the TLS handshake drips too; the host, localhost, is pinned (and
    passes), so the pinned path is the one that is timed.
    """
    if request.param == "http":
        yield "http://127.0.0.1", collector.server.server_address[1]
    else:
        request.getfixturevalue("trust_test_pki")
        with TLSServer(pki.leaf) as server:
            yield "https://localhost", server.port


@pytest.mark.parametrize("drip", [True, False], ids=["dripping", "prompt"])
def test_a_dripping_collector_cannot_hold_the_worker(
    pki: PKI, slow_collector: tuple[str, int], drip: bool
) -> None:
    origin, port = slow_collector
    before = set(threading.enumerate())
    reporter = Reporter(PinSet({"localhost": [pki.intermediate_pin]}), deadline=1.0)
    # One byte every 0.2 s: each read would return well within a per-read timeout,
    # and the status line alone would take 5 s.
    with DripRelay(port, 0.2 if drip else None) as relay:
        started = time.monotonic()
        reporter.submit(a_failure(), f"{origin}:{relay.port}/pkp")
        reporter.close(timeout=30)
        elapsed = time.monotonic() - started
        assert workers(before) == []
    stats = reporter.snapshot()
    if drip:
        assert (stats.sent, stats.failed) == (0, 1)
        assert 0.4 < elapsed < 2.5  # the deadline (1 s), not the drip, decided
    else:
        assert (stats.sent, stats.failed) == (1, 0)


def test_close_is_bounded_and_drops_what_it_cannot_send(collector: Collector) -> None:
    before = set(threading.enumerate())
    collector.gate.clear()  # the collector takes the report and does not answer
    reporter = Reporter(deadline=1.0)
    for port in (1, 2, 3):
        reporter.submit(a_failure(port), collector.url)
    started = time.monotonic()
    reporter.close(timeout=0.3)
    elapsed = time.monotonic() - started
    stats = reporter.snapshot()
    # The report in flight fails at its deadline (or close()'s, if it starts
    # after close() was called); the two whose turn never came are dropped.
    assert (stats.sent, stats.failed, stats.dropped) == (0, 1, 2)
    assert elapsed < 2.0  # not the 10 s the collector would keep it
    assert workers(before) == []


# -- the worker's lifetime ------------------------------------------------------------------


def test_no_worker_before_the_first_report(
    pki: PKI, rogue: TLSServer, collector: Collector
) -> None:
    before = set(threading.enumerate())
    managers = [
        PinningPoolManager(
            {"localhost": [pki.intermediate_pin]},
            report_uri=collector.url,
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
        )
        for _ in range(5)
    ]
    adapters = [PinningAdapter({}, report_uri=collector.url) for _ in range(5)]
    assert workers(before) == []
    collector.gate.clear()
    with pytest.raises(PinMismatchError):
        managers[0].request("GET", f"https://localhost:{rogue.port}/", retries=False)
    assert len(workers(before)) == 1  # busy with the stalled collector
    collector.gate.set()
    for manager in managers:
        manager.clear()
    for adapter in adapters:
        adapter.close()
    assert workers(before) == []
    assert len(collector.reports) == 1


@pytest.mark.parametrize("ending", ["with", "clear", "adapter.close", "session.close"])
def test_no_worker_outlives_its_owner(
    pki: PKI, rogue: TLSServer, collector: Collector, ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every worker must still be waiting on the collector when the 30th owner
    # is made, however slow the machine: with the default 3 s deadline, a
    # loaded machine that took longer for the 30 failing requests let the
    # first worker give up first (provoked with a 1 s deadline).
    monkeypatch.setattr(_verify, "Reporter", functools.partial(Reporter, deadline=60.0))
    before = set(threading.enumerate())
    pins = {"localhost": [pki.intermediate_pin]}
    url = f"https://localhost:{rogue.port}/"
    collector.gate.clear()  # every worker stays busy until the owners end
    with contextlib.ExitStack() as owners:
        ended: list[PinningPoolManager | PinningAdapter] = []
        for n in range(30):
            report_uri = f"{collector.url}?n={n}"  # 30 distinct reports: no deduplication
            if ending in ("with", "clear"):
                manager = PinningPoolManager(
                    pins, report_uri=report_uri, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle
                )
                if ending == "clear":
                    owners.callback(manager.clear)
                else:
                    owners.enter_context(manager)
                with pytest.raises(PinMismatchError):
                    manager.request("GET", url, retries=False)
                ended.append(manager)
            else:
                adapter = PinningAdapter(pins, report_uri=report_uri)
                session = requests.Session()
                session.mount("https://", adapter)
                owners.callback(adapter.close if ending == "adapter.close" else session.close)
                with pytest.raises(PinMismatchError):
                    session.get(url, verify=pki.bundle, timeout=10)
                ended.append(adapter)
        assert len(workers(before)) == 30
        collector.gate.set()
    assert workers(before) == []
    assert len(collector.reports) == 30
    assert sum(owner.report_stats.sent for owner in ended) == 30


def test_an_idle_worker_ends_without_close(collector: Collector) -> None:
    # An owner that is never closed must not leave a thread behind either.
    before = set(threading.enumerate())
    reporter = Reporter()
    reporter.submit(a_failure(), collector.url)
    collector.wait_for(1)
    wait_until(lambda: workers(before) == [])
    assert reporter.snapshot().sent == 1


def test_a_closed_reporter_starts_again_on_the_next_report(collector: Collector) -> None:
    before = set(threading.enumerate())
    reporter = Reporter()
    reporter.submit(a_failure(1), collector.url)
    reporter.close()
    reporter.submit(a_failure(2), collector.url)
    reporter.close()
    assert workers(before) == []
    assert reporter.snapshot().sent == 2
    assert [r["port"] for r in collector.reports] == [1, 2]


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_starts_with_no_report_sent(turn: str) -> None:
    # Reports are deduplicated for a day, process-wide, by (failure, URL), and
    # the OS hands a later test's collector a port an earlier one had: the two
    # turns submit the same report to the same URL, and the second is counted
    # as deduplicated unless conftest clears that state between tests.
    reporter = Reporter(deadline=0.5)
    reporter.submit(a_failure(), "http://127.0.0.1:9/refused")
    reporter.close(timeout=0.5)
    assert reporter.snapshot().deduplicated == 0
