"""Deny pins and RFC 7469 violation reports, against real servers and a local collector."""

from __future__ import annotations

import ssl
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
import trustme

from requests_pinning import (
    HostOptions,
    PinFailure,
    PinMismatchError,
    PinningAdapter,
    PinSet,
    _certs,
    _report,
    _tls,
)
from requests_pinning._report import Reporter

from .conftest import HOSTS, PKI
from .servers import Collector, TLSServer, refused_port
from .test_adapter import accept, pinned_session, refuse

# -- deny pins ----------------------------------------------------------------------------


def test_deny_only_entry_loads_and_round_trips(pki: PKI) -> None:
    pins = PinSet({"localhost": {"deny": [pki.rogue_root_pin]}})
    entry = pins.match("localhost")
    assert entry is not None
    assert entry.pins == ()
    assert [str(p) for p in entry.deny] == [pki.rogue_root_pin]
    assert PinSet(pins.to_dict()) == pins


def test_deny_blocks_a_compromised_intermediate_even_when_an_allowed_pin_matches(
    pki: PKI, good: TLSServer, good2: TLSServer
) -> None:
    session = pinned_session(
        {"localhost": {"pins": [pki.root_pin], "deny": [pki.intermediate_pin]}}
    )
    error = refuse(session, good, verify=pki.bundle)
    assert "is denied by" in error.reason
    assert pki.intermediate_pin in error.reason
    assert error.denied == [pki.intermediate_pin]
    assert "Denied:" in str(error)
    # The twin: the same allowed pin without the deny pin passes.
    accept(pinned_session({"localhost": [pki.root_pin]}), good2, verify=pki.bundle)


def test_deny_only_entry(pki: PKI, good: TLSServer, rogue: TLSServer) -> None:
    session = pinned_session({"localhost": {"deny": [pki.rogue_root_pin]}}, allow_unpinned=False)
    accept(session, good, verify=pki.bundle)  # a deny-only entry counts as configured
    error = refuse(session, rogue, verify=pki.bundle)
    assert error.pinned == []
    assert "deny pins only" in str(error)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_deny_without_validation_looks_at_every_presented_certificate(
    pki: PKI, appended: TLSServer
) -> None:
    # appended = rogue leaf + the genuine intermediate; without validation the
    # leaf pin matches, but a denied certificate anywhere in what was sent fails.
    session = pinned_session(
        {"localhost": {"pins": [pki.rogue_leaf_pin], "deny": [pki.intermediate_pin]}}
    )
    error = refuse(session, appended, verify=False)
    assert error.denied == [pki.intermediate_pin]
    with TLSServer(pki.rogue_with_real_intermediate) as twin:
        accept(pinned_session({"localhost": [pki.rogue_leaf_pin]}), twin, verify=False)


# -- violation reports ----------------------------------------------------------------------


def test_failure_is_reported_with_rfc7469_fields(
    pki: PKI, rogue: TLSServer, collector: Collector
) -> None:
    adapter = PinningAdapter({"localhost": [pki.intermediate_pin]}, report_uri=collector.url)
    session = requests.Session()
    session.mount("https://", adapter)
    refuse(session, rogue, verify=pki.bundle)
    collector.wait_for(1)
    [report] = collector.reports
    assert report["hostname"] == "localhost"
    assert report["port"] == rogue.port
    assert report["noted-hostname"] == "localhost"
    assert report["include-subdomains"] is False
    assert report["effective-expiration-date"] is None
    assert report["known-pins"] == [f'pin-sha256="{pki.intermediate_pin[7:]}"']
    assert report["served-certificate-chain"] == [
        pki.rogue_leaf.cert_chain_pems[0].bytes().decode()
    ]
    assert len(report["validated-certificate-chain"]) == 2
    moment = datetime.fromisoformat(report["date-time"].replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - moment).total_seconds()) < 600
    adapter.close()
    assert adapter.report_stats.sent == 1


def test_same_failure_is_reported_once(pki: PKI, rogue: TLSServer, collector: Collector) -> None:
    adapter = PinningAdapter({"localhost": [pki.intermediate_pin]}, report_uri=collector.url)
    session = requests.Session()
    session.mount("https://", adapter)
    for _ in range(3):
        with pytest.raises(PinMismatchError):
            session.get(f"https://localhost:{rogue.port}/", verify=pki.bundle, timeout=10)
    adapter.close()
    assert len(collector.reports) == 1
    stats = adapter.report_stats
    assert (stats.sent, stats.deduplicated, stats.dropped) == (1, 2, 0)


def test_entry_report_uri_beats_the_adapter_one(
    pki: PKI, rogue: TLSServer, collector: Collector
) -> None:
    entry: HostOptions = {
        "pins": [pki.intermediate_pin],
        "report_uri": collector.url,
        "report_only": True,
    }
    with refused_port() as port:
        adapter = PinningAdapter(
            {"localhost": entry}, report_uri=f"http://127.0.0.1:{port}/elsewhere"
        )
        session = requests.Session()
        session.mount("https://", adapter)
        accept(session, rogue, verify=pki.bundle)  # report-only failures are reported too
        collector.wait_for(1)
        adapter.close()
    assert collector.reports[0]["noted-hostname"] == "localhost"
    assert adapter.report_stats.sent == 1


def test_a_stalled_collector_never_delays_the_request(
    pki: PKI, rogue: TLSServer, collector: Collector
) -> None:
    collector.gate.clear()  # the collector accepts the report but does not answer
    adapter = PinningAdapter({"localhost": [pki.intermediate_pin]}, report_uri=collector.url)
    session = requests.Session()
    session.mount("https://", adapter)
    refuse(session, rogue, verify=pki.bundle)  # returned while the report is still pending
    assert collector.reports == []
    collector.gate.set()
    collector.wait_for(1)


def refuse_and_report(pki: PKI, rogue: TLSServer, report_uri: str) -> PinningAdapter:
    """Refuse one connection to ``rogue`` with reports to ``report_uri``; the adapter is closed."""
    adapter = PinningAdapter({"localhost": [pki.intermediate_pin]}, report_uri=report_uri)
    session = requests.Session()
    session.mount("https://", adapter)
    refuse(session, rogue, verify=pki.bundle)
    adapter.close()
    return adapter


def test_a_collector_that_is_down_changes_nothing(pki: PKI, rogue: TLSServer) -> None:
    with refused_port() as port:
        adapter = refuse_and_report(pki, rogue, f"http://127.0.0.1:{port}/")
    assert adapter.report_stats.failed == 1
    assert adapter.report_stats.sent == 0


def a_failure(port: int = 1) -> PinFailure:
    """A failure to report, distinct per port (reports are deduplicated)."""
    return PinFailure(
        host="a.example",
        port=port,
        pattern="a.example",
        pinned=("sha256/" + "A" * 43 + "=",),
        served=(),
        checked=(),
        verified=True,
        report_only=False,
        date_time=datetime.now(timezone.utc),
        reason="test",
    )


def test_full_queue_drops_and_counts(collector: Collector) -> None:
    collector.gate.clear()
    reporter = Reporter(queue_size=2)

    for port in range(1, 11):  # distinct ports: no deduplication
        reporter.submit(a_failure(port), collector.url)
    stalled = reporter.snapshot()
    # One report is with the stalled collector, two wait in the queue, the rest are dropped.
    assert stalled.dropped >= 7
    assert stalled.deduplicated == 0
    collector.gate.set()
    reporter.close()
    final = reporter.snapshot()
    assert final.sent + final.dropped == 10
    assert len(collector.reports) == final.sent


def test_never_reports_to_the_host_that_failed(
    pki: PKI, rogue: TLSServer, collector: Collector
) -> None:
    port = collector.url.split(":")[2].split("/")[0]
    adapter = refuse_and_report(pki, rogue, f"http://localhost:{port}/pkp")
    assert collector.reports == []
    assert adapter.report_stats.dropped == 1


def test_bad_adapter_report_uri_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="'report_uri' for the adapter: 'mailto:x' is not"):
        PinningAdapter({}, report_uri="mailto:x")


def _held_bytes(table: dict[Any, Any]) -> int:
    """The largest bytes value held in a key of ``table``."""
    sizes = [len(part) for key in table for part in key if isinstance(part, bytes)]
    return max(sizes, default=0)


def _cache_sizes() -> list[int]:
    caches = (_certs._cached_spki_of, _certs._cached_spki_digest, _tls._cached_judge)
    return [cache.cache_info().currsize for cache in caches]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("names", [3000, 0])
def test_a_server_s_certificates_are_not_kept_by_the_tables_and_caches(
    pki: PKI, collector: Collector, names: int
) -> None:
    # A server chooses its certificates (OpenSSL takes chains of up to 100 KiB),
    # new ones on every connection if it likes: what the log rate limit and
    # report deduplication keep per failure, and the SPKI caches per
    # certificate, must not grow with their size.
    leaf = trustme.CA().issue_cert(*HOSTS, *(f"n{i}.example" for i in range(names)))
    size = len(ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()))
    assert (size > 32 * 1024) == bool(names)
    cached = _cache_sizes()
    session = pinned_session({"localhost": [pki.untrusted_leaf_pin]}, report_uri=collector.url)
    with TLSServer(leaf) as server:
        refuse(session, server, verify=False)  # only the leaf is checked, and hashed
    collector.wait_for(1)
    # What a connection through a context of the user's own is judged by (_tls.vouched).
    _tls._judged((ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()),), ())
    assert _held_bytes(_report._log_seen) <= 32  # a digest, not the chain
    assert _held_bytes(_report._dedup_seen) <= 32
    grown = [after - before for before, after in zip(cached, _cache_sizes(), strict=True)]
    # The twin: a certificate of a usual size is cached, once in each.
    assert grown == ([0, 0, 0] if names else [1, 1, 1])
