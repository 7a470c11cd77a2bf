"""Failures leave a trace in the log, and a retry loop cannot flood it (issue 9, section 3).

Every failure, enforced or report-only, is logged at WARNING, at most once per
LOG_SECONDS per (host, port, served chain, mode), with the number of repeats
left out; the verdict, ``on_failure`` and the exception are the same for every
repeat. A passing check logs no WARNING.
"""

from __future__ import annotations

import logging

import pytest
import requests

from requests_pinning import PinFailure, PinMismatchError, PinningSession, PinSet
from requests_pinning._report import LOG_SECONDS
from requests_pinning._verify import PeerChain

from .conftest import PKI, Enforcing
from .servers import TLSServer
from .test_decision import der, intermediate_der, leaf_der


def root_der(pki: PKI) -> bytes:
    return der(pki.root.cert_pem.bytes())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("requests_pinning._verify.time.monotonic", clock)
    return clock


def warnings_of(log: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in log.records if r.levelno == logging.WARNING]


def setup(pki: PKI, **options: object) -> tuple[Enforcing, list[PinFailure], PeerChain]:
    failures: list[PinFailure] = []
    pins = PinSet({"api.example.com": [pki.root_pin]})
    check = Enforcing(pins, on_failure=failures.append, **options)
    rogue = PeerChain(checked=(leaf_der(pki),), verified=False)  # the leaf is not the root
    return check, failures, rogue


def test_an_enforced_failure_is_logged_at_warning(
    pki: PKI, pin_log: pytest.LogCaptureFixture, clock: Clock
) -> None:
    check, failures, chain = setup(pki)
    with pytest.raises(PinMismatchError) as info:
        check.check(["api.example.com"], 443, chain)
    [line] = warnings_of(pin_log)
    assert len(failures) == 1
    assert line == f"pin failure (connection refused): {info.value}"
    assert line.startswith("pin failure (connection refused): Certificate pinning failure for ")


def test_repeats_are_logged_once_per_window_with_their_count(
    pki: PKI, pin_log: pytest.LogCaptureFixture, clock: Clock
) -> None:
    check, failures, chain = setup(pki)
    for _ in range(5):
        with pytest.raises(PinMismatchError):  # fail-closed every time
            check.check(["api.example.com"], 443, chain)
        clock.now += 1
    assert len(failures) == 5  # the callback sees every failure
    assert len(warnings_of(pin_log)) == 1
    clock.now += LOG_SECONDS  # the window is over
    with pytest.raises(PinMismatchError):
        check.check(["api.example.com"], 443, chain)
    lines = warnings_of(pin_log)
    assert len(lines) == 2
    assert lines[1].endswith(" [4 more like it in the last 60 s not logged]")
    assert not lines[0].endswith("not logged]")


def test_another_port_or_chain_or_host_is_logged_at_once(
    pki: PKI, pin_log: pytest.LogCaptureFixture, clock: Clock
) -> None:
    check, _, chain = setup(pki, allow_unpinned=False)
    other_chain = PeerChain(checked=(intermediate_der(pki),), verified=False)
    for host, port, served in [
        ("api.example.com", 443, chain),
        ("api.example.com", 443, chain),  # the repeat: not logged
        ("api.example.com", 8443, chain),
        ("api.example.com", 443, other_chain),
        ("unpinned.example.com", 443, chain),
    ]:
        with pytest.raises(PinMismatchError):
            check.check([host], port, served)
    assert len(warnings_of(pin_log)) == 4


def test_report_only_failures_are_rate_limited_the_same_way(
    pki: PKI, pin_log: pytest.LogCaptureFixture, clock: Clock
) -> None:
    check, failures, chain = setup(pki, report_only=True)
    for _ in range(3):
        check.check(["api.example.com"], 443, chain)  # allowed, on purpose
    assert len(failures) == 3
    [line] = warnings_of(pin_log)
    assert line.startswith("report-only pin failure (connection allowed): Certificate pinning")
    clock.now += LOG_SECONDS
    check.check(["api.example.com"], 443, chain)
    assert warnings_of(pin_log)[1].endswith(" [2 more like it in the last 60 s not logged]")


def test_enforced_and_report_only_are_counted_apart(
    pki: PKI, pin_log: pytest.LogCaptureFixture, clock: Clock
) -> None:
    enforced, _, chain = setup(pki)
    report_only, _, _ = setup(pki, report_only=True)
    report_only.check(["api.example.com"], 443, chain)
    with pytest.raises(PinMismatchError):
        enforced.check(["api.example.com"], 443, chain)
    assert [line.split(":")[0] for line in warnings_of(pin_log)] == [
        "report-only pin failure (connection allowed)",
        "pin failure (connection refused)",
    ]


def test_a_passing_check_logs_no_warning(pki: PKI, pin_log: pytest.LogCaptureFixture) -> None:
    check, failures, rogue = setup(pki)
    genuine = PeerChain(
        checked=(leaf_der(pki), intermediate_der(pki), root_der(pki)), verified=True
    )
    for _ in range(3):
        check.check(["api.example.com"], 443, genuine)
    assert warnings_of(pin_log) == []
    assert failures == []
    # The twin: the same enforcer on the impostor's chain.
    with pytest.raises(PinMismatchError):
        check.check(["api.example.com"], 443, rogue)
    assert len(warnings_of(pin_log)) == 1


def test_a_retry_loop_against_a_real_impostor_logs_once(
    pki: PKI, rogue: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    session = PinningSession({"localhost": [pki.intermediate_pin]})
    for _ in range(4):
        with pytest.raises(PinMismatchError):
            session.get(f"https://localhost:{rogue.port}/", verify=pki.bundle, timeout=10)
    rogue.wait_idle()
    assert rogue.handshakes == 4
    assert rogue.bytes_received == 0
    lines = warnings_of(pin_log)
    assert len(lines) == 1
    assert lines[0].startswith(
        f"pin failure (connection refused): Certificate pinning failure "
        f"for localhost:{rogue.port}: "
    )
    # The twin: a session that catches SSLError broadly still left that line.
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://localhost:{rogue.port}/", verify=pki.bundle, timeout=10)
