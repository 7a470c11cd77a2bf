"""PinningAdapter against real TLS servers on loopback.

Every scenario that must fail asserts the error, its fields, and that the
server received zero bytes after the handshake; every passing scenario has a
failing twin.
"""

from __future__ import annotations

import logging
import pickle
import sys
import threading
import warnings
from typing import Any

import pytest
import requests
import urllib3
from urllib3.util.retry import Retry

from requests_pinning import (
    PinFailure,
    PinMismatchError,
    PinningAdapter,
    _urllib3,
    cert_fingerprint,
)

from .conftest import PKI
from .servers import ConnectProxy, Socks5Proxy, TLSServer


def pinned_session(pins: Any, **kwargs: Any) -> requests.Session:
    session = requests.Session()
    session.mount("https://", PinningAdapter(pins, **kwargs))
    return session


def url(server: TLSServer, path: str = "/", host: str = "localhost") -> str:
    return f"https://{host}:{server.port}{path}"


def refuse(session: requests.Session, server: TLSServer, **kwargs: Any) -> PinMismatchError:
    """Request ``server``, expect a PinMismatchError, and check nothing leaked."""
    with pytest.raises(PinMismatchError) as info:
        session.get(url(server), timeout=10, **kwargs)
    assert_nothing_leaked(server)
    return info.value


def assert_nothing_leaked(server: TLSServer, handshakes: int = 1) -> None:
    server.wait_idle()
    assert server.handshakes == handshakes
    assert server.bytes_received == 0
    assert server.requests == []


def accept(session: requests.Session, server: TLSServer, **kwargs: Any) -> None:
    response = session.get(url(server), timeout=10, **kwargs)
    assert response.status_code == 200
    assert response.text == "ok"


# -- which certificate a pin may name -------------------------------------------------


@pytest.mark.parametrize("which", ["leaf_pin", "intermediate_pin", "root_pin"])
def test_spki_pin_of_any_verified_certificate_passes(
    pki: PKI, good: TLSServer, rogue: TLSServer, which: str
) -> None:
    session = pinned_session({"localhost": [getattr(pki, which)]})
    accept(session, good, verify=pki.bundle)
    # The twin: the rogue CA is trusted too, so only the pin stops this.
    error = refuse(session, rogue, verify=pki.bundle)
    assert error.pinned == [getattr(pki, which)]


def test_root_pin_matches_although_the_server_does_not_send_the_root(
    pki: PKI, good: TLSServer
) -> None:
    # The server sends leaf and intermediate only: the root came from the trust store.
    other = pinned_session({"localhost": ["sha256/" + "A" * 43 + "="]})
    error = refuse(other, good, verify=pki.bundle)
    assert error.served == [pki.leaf_pin, pki.intermediate_pin]
    assert error.checked == [pki.leaf_pin, pki.intermediate_pin, pki.root_pin]
    accept(pinned_session({"localhost": [pki.root_pin]}), good, verify=pki.bundle)


@pytest.mark.parametrize("which", ["leaf", "intermediate"])
def test_certificate_fingerprint_pins(
    pki: PKI, good: TLSServer, rogue: TLSServer, which: str
) -> None:
    pem = (
        pki.leaf.cert_chain_pems[0].bytes()
        if which == "leaf"
        else pki.intermediate.cert_pem.bytes()
    )
    session = pinned_session({"localhost": [cert_fingerprint(pem)]})
    accept(session, good, verify=pki.bundle)
    refuse(session, rogue, verify=pki.bundle)


def test_error_fields_and_message(pki: PKI, rogue: TLSServer) -> None:
    session = pinned_session({"**.localhost": [pki.intermediate_pin, pki.root_pin]})
    error = refuse(session, rogue, verify=pki.bundle)
    assert isinstance(error, requests.exceptions.SSLError)
    assert isinstance(error, urllib3.exceptions.SSLError)
    assert error.host == "localhost"
    assert error.port == rogue.port
    assert error.pattern == "**.localhost"
    assert error.pinned == [pki.intermediate_pin, pki.root_pin]
    assert error.served == [pki.rogue_leaf_pin]
    assert error.checked == [pki.rogue_leaf_pin, pki.rogue_root_pin]
    assert error.verified is True
    assert error.request is not None
    message = str(error)
    assert message.startswith(f"Certificate pinning failure for localhost:{rogue.port}")
    assert "Chain checked (verified):" in message
    assert f"    {pki.rogue_leaf_pin}  " in message
    assert f"    {pki.rogue_root_pin}  " in message
    assert 'Pinned for localhost (entry "**.localhost"):' in message
    assert f"    {pki.intermediate_pin}" in message


# -- the chain rule ---------------------------------------------------------------------


def test_appended_genuine_intermediate_does_not_pass(
    pki: PKI, good: TLSServer, appended: TLSServer
) -> None:
    """CVE-2016-2402: only the *verified* chain counts, never what the server sent."""
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    error = refuse(session, appended, verify=pki.bundle)
    assert pki.intermediate_pin in error.served
    assert pki.intermediate_pin not in error.checked
    accept(session, good, verify=pki.bundle)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_with_leaf_pin_authenticates_a_self_managed_server(
    pki: PKI, untrusted: TLSServer, rogue: TLSServer
) -> None:
    session = pinned_session({"localhost": [pki.untrusted_leaf_pin]})
    accept(session, untrusted, verify=False)
    error = refuse(session, rogue, verify=False)
    assert error.verified is False
    assert error.checked == [pki.rogue_leaf_pin]
    assert "NOT verified" in str(error)


def test_untrusted_server_still_fails_ca_validation_with_a_leaf_pin(
    pki: PKI, untrusted: TLSServer
) -> None:
    session = pinned_session({"localhost": [pki.untrusted_leaf_pin]})
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(url(untrusted), verify=pki.bundle, timeout=10)
    assert not isinstance(info.value, PinMismatchError)  # CA validation refused it first


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_false_only_the_leaf_counts(pki: PKI, good: TLSServer, appended: TLSServer) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    error = refuse(session, appended, verify=False)
    assert "only the leaf is checked" in error.reason
    assert "intermediate and root pins cannot match" in str(error)
    # Even the genuine server cannot pass an intermediate pin without validation.
    refuse(session, good, verify=False)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_unverified_connection_is_not_reused_for_a_verified_request(
    pki: PKI, untrusted: TLSServer
) -> None:
    session = pinned_session({"localhost": [pki.untrusted_leaf_pin]})
    accept(session, untrusted, verify=False)
    with pytest.raises(requests.exceptions.SSLError):
        session.get(url(untrusted), verify=pki.bundle, timeout=10)
    session.close()
    untrusted.wait_idle()
    assert untrusted.handshakes == 1  # the second request's handshake failed CA validation


# -- connection handling ----------------------------------------------------------------


def test_pin_failure_is_not_retried(pki: PKI, rogue: TLSServer, good: TLSServer) -> None:
    retries = Retry(total=5, connect=5, read=5, backoff_factor=0)
    session = pinned_session({"localhost": [pki.intermediate_pin]}, max_retries=retries)
    refuse(session, rogue, verify=pki.bundle)  # exactly one handshake
    accept(session, good, verify=pki.bundle)


def test_keep_alive_checks_once_per_connection(pki: PKI, good: TLSServer) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    for _ in range(5):
        accept(session, good, verify=pki.bundle)
    session.close()
    good.wait_idle()
    assert good.handshakes == 1
    assert len(good.requests) == 5


def test_redirect_to_another_host_is_checked_against_its_pins(
    pki: PKI, good: TLSServer, good2: TLSServer, rogue: TLSServer
) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    response = session.get(
        url(good, f"/redirect?to={url(good2, '/landed')}"), verify=pki.bundle, timeout=10
    )
    assert response.status_code == 200
    assert good2.requests == ["GET /landed HTTP/1.1"]
    with pytest.raises(PinMismatchError) as info:
        session.get(url(good, f"/redirect?to={url(rogue)}"), verify=pki.bundle, timeout=10)
    assert info.value.port == rogue.port
    assert_nothing_leaked(rogue)


def test_many_threads_mixing_good_and_bad_hosts(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]}, pool_maxsize=8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for round_ in range(6):
            target = good if (index + round_) % 2 else rogue
            try:
                session.get(url(target), verify=pki.bundle, timeout=10)
                result = "passed-good" if target is good else "passed-BAD"
            except PinMismatchError:
                result = "refused-bad" if target is rogue else "refused-GOOD"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(set(outcomes)) == ["passed-good", "refused-bad"]
    assert len(outcomes) == 48
    rogue.wait_idle()
    assert rogue.bytes_received == 0
    assert rogue.handshakes == 24


def test_two_adapters_with_different_pins_share_nothing(pki: PKI, good: TLSServer) -> None:
    trusting = pinned_session({"localhost": [pki.intermediate_pin]})
    distrusting = pinned_session({"localhost": [pki.rogue_root_pin]})
    accept(trusting, good, verify=pki.bundle)
    with pytest.raises(PinMismatchError):
        distrusting.get(url(good), verify=pki.bundle, timeout=10)
    accept(trusting, good, verify=pki.bundle)
    trusting.close()
    good.wait_idle()
    assert good.handshakes == 2
    assert len(good.requests) == 2


def test_client_certificates_keep_working(pki: PKI, tmp_path: Any) -> None:
    client = pki.root.issue_cert("client@example.test")
    cert_file = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    with TLSServer(pki.leaf, client_ca=pki.root) as server:
        accept(session, server, verify=pki.bundle, cert=str(cert_file))
    with TLSServer(pki.rogue_leaf, client_ca=pki.root) as server:
        refuse(session, server, verify=pki.bundle, cert=str(cert_file))


def test_ipv6_literal(pki: PKI) -> None:
    with TLSServer(pki.leaf, bind="::1") as server:
        session = pinned_session({f"[::1]:{server.port}": [pki.intermediate_pin]})
        response = session.get(f"https://[::1]:{server.port}/", verify=pki.bundle, timeout=10)
        assert response.text == "ok"
    with TLSServer(pki.rogue_leaf, bind="::1") as server:
        session = pinned_session({"::1": [pki.intermediate_pin]})
        with pytest.raises(PinMismatchError) as info:
            session.get(f"https://[::1]:{server.port}/", verify=pki.bundle, timeout=10)
        assert info.value.host == "::1"
        assert_nothing_leaked(server)


def test_pickled_adapter_keeps_its_pins(pki: PKI, good: TLSServer, rogue: TLSServer) -> None:
    adapter = pickle.loads(pickle.dumps(PinningAdapter({"localhost": [pki.intermediate_pin]})))
    assert isinstance(adapter, PinningAdapter)
    session = requests.Session()
    session.mount("https://", adapter)
    accept(session, good, verify=pki.bundle)
    refuse(session, rogue, verify=pki.bundle)


def test_pins_from_a_json_file(pki: PKI, good: TLSServer, rogue: TLSServer, tmp_path: Any) -> None:
    path = tmp_path / "pins.json"
    path.write_text(f'{{"localhost": ["{pki.intermediate_pin}"]}}')
    session = pinned_session(str(path))
    accept(session, good, verify=pki.bundle)
    refuse(session, rogue, verify=pki.bundle)


# -- proxies ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["per-request", "session", "environment"])
def test_connect_proxy_pins_the_origin(
    pki: PKI,
    good: TLSServer,
    rogue: TLSServer,
    connect_proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    kwargs: dict[str, Any] = {"verify": pki.bundle}
    proxies = {"https": connect_proxy.url}
    if how == "per-request":
        kwargs["proxies"] = proxies
    elif how == "session":
        session.proxies.update(proxies)
    else:
        monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    accept(session, good, **kwargs)
    error = refuse(session, rogue, **kwargs)
    assert error.port == rogue.port  # the origin's, never the proxy's
    assert connect_proxy.connects == [f"localhost:{good.port}", f"localhost:{rogue.port}"]


def test_https_proxy_tls_in_tls_pins_the_origin(
    pki: PKI, good: TLSServer, rogue: TLSServer, tls_proxy: ConnectProxy
) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    proxies = {"https": tls_proxy.url}
    accept(session, good, verify=pki.bundle, proxies=proxies)
    error = refuse(session, rogue, verify=pki.bundle, proxies=proxies)
    assert error.port == rogue.port
    assert tls_proxy.connects == [f"localhost:{good.port}", f"localhost:{rogue.port}"]


def test_an_https_proxy_s_chain_that_cannot_be_read_is_a_failure_like_any_other(
    pki: PKI, good: TLSServer, tls_proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests_pinning._urllib3 as face

    def unreadable(context: object) -> bool:
        raise RuntimeError("the TLS object is gone")

    # Reading the proxy session's chain fails (its first step, here): the
    # proxy (localhost) is pinned, the origin (127.0.0.1) is not.
    monkeypatch.setattr(face, "may_misreport", unreadable)
    origin = url(good, host="127.0.0.1")
    kwargs: dict[str, Any] = {"verify": pki.bundle, "proxies": {"https": tls_proxy.url}}
    seen: list[PinFailure] = []
    pins = {"localhost": [pki.intermediate_pin]}
    refused = pytest.raises(PinMismatchError, match=r"could not be read \(RuntimeError")
    with pinned_session(pins, on_failure=seen.append) as session, refused:
        session.get(origin, timeout=10, **kwargs)
    assert tls_proxy.connects == []  # refused before the CONNECT line
    with pinned_session(pins, report_only=True, on_failure=seen.append) as session:
        assert session.get(origin, timeout=10, **kwargs).ok  # report-only lets it through
    assert [failure.report_only for failure in seen] == [False, True]
    # Its twin: an unpinned proxy's chain is never read, so nothing fails.
    with pinned_session({"other.example": [pki.intermediate_pin]}) as session:
        assert session.get(origin, timeout=10, **kwargs).ok


def test_socks_proxy_pins_the_origin(
    pki: PKI, good: TLSServer, rogue: TLSServer, socks_proxy: Socks5Proxy
) -> None:
    session = pinned_session({"localhost": [pki.intermediate_pin]})
    proxies = {"https": socks_proxy.url}
    accept(session, good, verify=pki.bundle, proxies=proxies)
    error = refuse(session, rogue, verify=pki.bundle, proxies=proxies)
    assert error.port == rogue.port
    assert socks_proxy.connects == [f"localhost:{good.port}", f"localhost:{rogue.port}"]


def test_socks_proxy_without_pysocks_is_requests_own_error(
    monkeypatch: pytest.MonkeyPatch, good: TLSServer
) -> None:
    # It was a ModuleNotFoundError from the import; requests, which looks for
    # PySocks when it is imported, raises this (requests/adapters.py).
    monkeypatch.setitem(sys.modules, "socks", None)  # as if PySocks were not installed
    monkeypatch.delitem(sys.modules, "urllib3.contrib.socks", raising=False)
    _urllib3._socks_manager_class.cache_clear()
    try:
        with pinned_session({}) as session, warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.DependencyWarning)
            with pytest.raises(
                requests.exceptions.InvalidSchema,
                match=r"^Missing dependencies for SOCKS support\.",
            ):
                session.get(url(good), proxies={"https": "socks5h://127.0.0.1:1"}, timeout=10)
    finally:
        _urllib3._socks_manager_class.cache_clear()
    assert good.handshakes == 0


# -- policy -----------------------------------------------------------------------------


def test_report_only_adapter_lets_the_request_through_and_reports(
    pki: PKI, rogue: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    failures: list[PinFailure] = []
    session = pinned_session(
        {"localhost": [pki.intermediate_pin]}, report_only=True, on_failure=failures.append
    )
    accept(session, rogue, verify=pki.bundle)
    [failure] = failures
    assert failure.report_only is True
    assert failure.host == "localhost"
    assert failure.port == rogue.port
    assert failure.pattern == "localhost"
    assert failure.pinned == (pki.intermediate_pin,)
    assert failure.served == (pki.rogue_leaf_pin,)
    assert failure.checked == (pki.rogue_leaf_pin, pki.rogue_root_pin)
    assert failure.date_time.tzinfo is not None
    report = failure.to_report()
    assert report["hostname"] == "localhost"
    assert report["known-pins"] == [f'pin-sha256="{pki.intermediate_pin[7:]}"']
    warnings = [r for r in pin_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "report-only" in warnings[0].getMessage()
    # The twin: the same pins enforced.
    with TLSServer(pki.rogue_leaf) as second:
        refuse(pinned_session({"localhost": [pki.intermediate_pin]}), second, verify=pki.bundle)


def test_report_only_entry(pki: PKI, good: TLSServer, rogue: TLSServer) -> None:
    failures: list[PinFailure] = []
    session = pinned_session(
        {
            f"localhost:{rogue.port}": {"pins": [pki.intermediate_pin], "report_only": True},
            f"localhost:{good.port}": [pki.rogue_root_pin],
        },
        on_failure=failures.append,
    )
    accept(session, rogue, verify=pki.bundle)
    refuse(session, good, verify=pki.bundle)
    assert [f.report_only for f in failures] == [True, False]


def test_on_failure_exception_changes_nothing(
    pki: PKI, rogue: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    def broken(failure: PinFailure) -> None:
        raise RuntimeError("callback bug")

    enforced = pinned_session({"localhost": [pki.intermediate_pin]}, on_failure=broken)
    refuse(enforced, rogue, verify=pki.bundle)
    relaxed = pinned_session(
        {"localhost": [pki.intermediate_pin]}, on_failure=broken, report_only=True
    )
    accept(relaxed, rogue, verify=pki.bundle)
    assert sum("on_failure callback raised" in r.getMessage() for r in pin_log.records) == 2


def test_expired_entry_is_not_enforced_and_warns_once(
    pki: PKI, rogue: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    session = pinned_session(
        {"localhost": {"pins": [pki.intermediate_pin], "expires": "2020-01-01"}},
        allow_unpinned=False,
    )
    accept(session, rogue, verify=pki.bundle, headers={"Connection": "close"})
    accept(session, rogue, verify=pki.bundle, headers={"Connection": "close"})
    rogue.wait_idle()
    assert rogue.handshakes == 2
    expired = [r for r in pin_log.records if "expired" in r.getMessage()]
    assert len(expired) == 1
    assert expired[0].levelno == logging.WARNING
    assert "2020-01-01" in expired[0].getMessage()


def test_unexpired_entry_is_enforced(pki: PKI, rogue: TLSServer) -> None:
    session = pinned_session(
        {"localhost": {"pins": [pki.intermediate_pin], "expires": "2999-01-01"}}
    )
    refuse(session, rogue, verify=pki.bundle)


def test_unpinned_hosts_pass_by_default(pki: PKI, good: TLSServer) -> None:
    accept(pinned_session({"example.com": [pki.intermediate_pin]}), good, verify=pki.bundle)


def test_allow_unpinned_false_refuses_hosts_without_pins(pki: PKI, good: TLSServer) -> None:
    failures: list[PinFailure] = []
    session = pinned_session(
        {"example.com": [pki.intermediate_pin]}, allow_unpinned=False, on_failure=failures.append
    )
    error = refuse(session, good, verify=pki.bundle)
    assert "no pins are configured" in str(error)
    assert error.pinned == []
    assert error.pattern is None
    assert len(failures) == 1
    # Adapter-wide report-only relaxes it, and the failure is still seen.
    relaxed = pinned_session(
        {"example.com": [pki.intermediate_pin]},
        allow_unpinned=False,
        report_only=True,
        on_failure=failures.append,
    )
    accept(relaxed, good, verify=pki.bundle)
    assert len(failures) == 2


def test_passed_checks_are_logged_at_debug(
    pki: PKI, good: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    accept(pinned_session({"localhost": [pki.intermediate_pin]}), good, verify=pki.bundle)
    [record] = [r for r in pin_log.records if r.name == "requests_pinning"]
    assert record.levelno == logging.DEBUG
    assert pki.intermediate_pin in record.getMessage()


# -- the names a connection is known by ---------------------------------------------------


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]"])
def test_other_spellings_of_a_pinned_address_are_pinned_too(
    pki: PKI, rogue: TLSServer, spelling: str
) -> None:
    session = pinned_session({"127.0.0.1": [pki.leaf_pin]})
    with pytest.raises(PinMismatchError) as info:
        session.get(f"https://{spelling}:{rogue.port}/", verify=False, timeout=10)
    assert info.value.host == "127.0.0.1"
    assert_nothing_leaked(rogue)


def test_policy_cannot_be_changed_after_construction(pki: PKI) -> None:
    adapter = PinningAdapter({"localhost": [pki.intermediate_pin]})
    with pytest.raises(AttributeError):
        adapter.policy.allow_unpinned = False  # type: ignore[misc]
    with pytest.raises(AttributeError):
        adapter.pinset = adapter.pinset  # type: ignore[misc]
    with pytest.raises(AttributeError):
        adapter.policy = adapter.policy  # type: ignore[misc]
    assert adapter.policy.allow_unpinned is True
    assert len(adapter.pinset) == 1


def test_expired_entry_does_not_fall_back_to_a_broader_one(pki: PKI, rogue: TLSServer) -> None:
    session = pinned_session(
        {
            "localhost": {"pins": [pki.intermediate_pin], "expires": "2020-01-01"},
            "**.localhost": [pki.intermediate_pin],  # would refuse the rogue server
        }
    )
    accept(session, rogue, verify=pki.bundle)
    # The twin: without the expired entry, the broader one applies and refuses.
    with TLSServer(pki.rogue_leaf) as second:
        refuse(pinned_session({"**.localhost": [pki.intermediate_pin]}), second, verify=pki.bundle)
