"""The decision, without sockets: every outcome of a check, the fail-closed ones included.

A check that cannot decide (a certificate the parser cannot walk, nothing to
read) must end as a pin failure like any other: raised as ``PinMismatchError``
when enforced, reported and let through in report-only mode, with ``on_failure``
called either way. Nothing else may come out of it, whatever the server sent.
"""

from __future__ import annotations

import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from requests_pinning import PinFailure, PinMismatchError, PinSet
from requests_pinning._verify import PeerChain

from .conftest import PKI, Enforcing

# A certificate the walker cannot read: a SEQUENCE whose length runs past the end.
BROKEN = b"\x30\x84\x00\x00\x10\x00" + b"\x00" * 10


def enforcer(pki: PKI, **options: object) -> tuple[Enforcing, list[PinFailure]]:
    failures: list[PinFailure] = []
    pins = PinSet({"api.example.com": [pki.intermediate_pin]})
    return Enforcing(pins, on_failure=failures.append, **options), failures


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def leaf_der(pki: PKI) -> bytes:
    return der(pki.leaf.cert_chain_pems[0].bytes())


def intermediate_der(pki: PKI) -> bytes:
    return der(pki.intermediate.cert_pem.bytes())


def test_a_chain_that_cannot_be_checked_is_an_enforced_failure(pki: PKI) -> None:
    check, failures = enforcer(pki)
    chain = PeerChain(checked=(BROKEN,), verified=True)
    with pytest.raises(PinMismatchError) as info:
        check.check(["api.example.com"], 443, chain)
    assert "could not be checked" in info.value.reason
    assert info.value.pattern == "api.example.com"
    assert info.value.checked == ["(unparseable certificate)"]
    assert [failure.host for failure in failures] == ["api.example.com"]


def test_twin_a_readable_chain_with_the_pin_passes(pki: PKI) -> None:
    check, failures = enforcer(pki)
    chain = PeerChain(checked=(leaf_der(pki), intermediate_der(pki)), verified=True)
    check.check(["api.example.com"], 443, chain)
    assert failures == []


def test_report_only_lets_an_undecidable_check_through_and_reports_it(
    pki: PKI, pin_log: pytest.LogCaptureFixture
) -> None:
    check, failures = enforcer(pki, report_only=True)
    check.check(["api.example.com"], 443, PeerChain(checked=(BROKEN,), verified=True))
    assert len(failures) == 1
    assert failures[0].report_only
    assert "could not be checked" in failures[0].reason
    assert any(
        record.levelno == logging.WARNING and "report-only" in record.getMessage()
        for record in pin_log.records
    )


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        (PeerChain(checked=(), verified=True), "presented no certificate"),
        (PeerChain(checked=(), verified=False, problem="cannot read"), "cannot read"),
    ],
)
def test_nothing_to_check_fails_closed(pki: PKI, chain: PeerChain, reason: str) -> None:
    check, failures = enforcer(pki)
    with pytest.raises(PinMismatchError, match=reason):
        check.check(["api.example.com"], 443, chain)
    assert len(failures) == 1


def test_every_name_of_the_connection_is_looked_up(pki: PKI) -> None:
    # The URL's spelling has no entry, the validated name has: its pins apply.
    check, _ = enforcer(pki, allow_unpinned=True)
    rogue = PeerChain(checked=(BROKEN,), verified=True)
    with pytest.raises(PinMismatchError) as info:
        check.check(["127.0.0.1", None, "API.EXAMPLE.COM..."], 443, rogue)
    assert info.value.host == "api.example.com"
    # The twin: no name with an entry is unpinned, and allowed.
    check.check(["127.0.0.1", "other.example.com"], 443, rogue)


def test_unpinned_is_refused_only_when_asked(pki: PKI) -> None:
    chain = PeerChain(checked=(leaf_der(pki),), verified=True)
    strict, _ = enforcer(pki, allow_unpinned=False)
    with pytest.raises(PinMismatchError, match="unpinned hosts are refused"):
        strict.check(["other.example.com"], 443, chain)
    lenient, failures = enforcer(pki)
    lenient.check(["other.example.com"], 443, chain)
    assert failures == []


@given(
    chain=st.lists(st.binary(max_size=300), max_size=3),
    verified=st.booleans(),
    served=st.none() | st.lists(st.binary(max_size=300), max_size=3),
)
def test_whatever_a_server_presents_only_documented_outcomes(
    pki: PKI, chain: list[bytes], verified: bool, served: list[bytes] | None
) -> None:
    peer = PeerChain(
        checked=tuple(chain),
        verified=verified,
        served=None if served is None else tuple(served),
    )
    check, failures = enforcer(pki)
    with pytest.raises(PinMismatchError):
        check.check(["api.example.com"], 443, peer)
    assert len(failures) == 1
    str(failures[0].to_report())  # the report can be built too
    report_only, reported = enforcer(pki, report_only=True)
    report_only.check(["api.example.com"], 443, peer)  # never raises
    assert len(reported) == 1


def test_an_unpinned_host_never_reads_its_chain(pki: PKI) -> None:
    reads: list[str] = []

    def read() -> PeerChain:
        reads.append("read")
        return PeerChain(checked=(leaf_der(pki), intermediate_der(pki)), verified=True)

    check, _ = enforcer(pki)
    check.check(["other.example.com", "127.0.0.1"], 443, read)
    assert reads == []
    check.check(["other.example.com", "api.example.com"], 443, read)  # pinned: read once
    assert reads == ["read"]
    strict, _ = enforcer(pki, allow_unpinned=False)
    with pytest.raises(PinMismatchError):
        strict.check(["other.example.com"], 443, read)  # refused, with the chain in the message
    assert reads == ["read", "read"]
