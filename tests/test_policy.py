"""The policy, without sockets: every outcome of ``evaluate``, every return of ``check``.

The decision returns values and raises nothing; each face turns a returned
failure into its own error. These tests pin the values, and the fail-closed
paths of the urllib3 face that need no server: a connection with no policy
attached, and a pool class something replaced.
"""

from __future__ import annotations

import copy
import pickle
from datetime import datetime, timedelta, timezone

import pytest
import requests
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from requests_pinning import (
    PinFailure,
    PinMismatchError,
    PinningAdapter,
    PinningPolicy,
    PinningPoolManager,
    PinningSession,
    PinSet,
)
from requests_pinning._urllib3 import _PinningHTTPSConnection
from requests_pinning._verify import PeerChain, evaluate

from .conftest import PKI

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
HOST = "api.example.com"


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def chains(pki: PKI) -> dict[str, PeerChain]:
    leaf = der(pki.leaf.cert_chain_pems[0].bytes())
    intermediate = der(pki.intermediate.cert_pem.bytes())
    root = der(pki.root.cert_pem.bytes())
    rogue = der(pki.rogue_leaf.cert_chain_pems[0].bytes())
    return {
        "verified": PeerChain(checked=(leaf, intermediate, root), verified=True),
        "leaf only": PeerChain(checked=(leaf,), verified=False, served=(leaf, intermediate)),
        "rogue": PeerChain(checked=(rogue,), verified=True),
        "rogue with the real intermediate appended": PeerChain(
            checked=(rogue,), verified=False, served=(rogue, intermediate)
        ),
        "empty": PeerChain(checked=(), verified=True),
        "unreadable": PeerChain(checked=(), verified=False, problem="it could not be read"),
    }


# (entry config or None, chain, allow_unpinned) -> (status, words of the reason)
OUTCOMES = [
    ("unpinned", None, "verified", True, "no pins are configured"),
    ("refused unpinned", None, "verified", False, "unpinned hosts are refused"),
    ("matched", "intermediate", "verified", True, "matched"),
    ("matched leaf, validation off", "leaf", "leaf only", True, "matched"),
    ("root pin, validation off", "root", "leaf only", True, "only the leaf is checked"),
    ("no match, verified", "intermediate", "rogue", True, "no certificate of the verified"),
    (
        "appended intermediate never counts",
        "intermediate",
        "rogue with the real intermediate appended",
        True,
        "only the leaf is checked",
    ),
    ("no certificate", "intermediate", "empty", True, "presented no certificate"),
    ("unreadable chain", "intermediate", "unreadable", True, "it could not be read"),
    ("expired entry", "expired", "rogue", True, "expired"),
    ("denied though an accepted pin matches", "deny", "verified", True, "is denied by"),
    ("deny only, nothing denied", "deny only", "verified", True, "no deny pin matched"),
    ("deny only, validation off, served chain", "deny only served", "leaf only", True, "denied"),
]

STATUS = {
    "unpinned": "unpinned",
    "refused unpinned": "failed",
    "matched": "matched",
    "matched leaf, validation off": "matched",
    "root pin, validation off": "failed",
    "no match, verified": "failed",
    "appended intermediate never counts": "failed",
    "no certificate": "failed",
    "unreadable chain": "failed",
    "expired entry": "expired",
    "denied though an accepted pin matches": "failed",
    "deny only, nothing denied": "matched",
    "deny only, validation off, served chain": "failed",
}


def config_for(pki: PKI, kind: str | None) -> object:
    configs: dict[str, object] = {
        "intermediate": [pki.intermediate_pin],
        "leaf": [pki.leaf_pin],
        "root": [pki.root_pin],
        "expired": {"pins": [pki.intermediate_pin], "expires": "2020-01-01"},
        "deny": {"pins": [pki.intermediate_pin], "deny": [pki.root_pin]},
        "deny only": {"deny": [pki.rogue_root_pin]},
        "deny only served": {"deny": [pki.intermediate_pin]},
    }
    return None if kind is None else configs[kind]


@pytest.mark.parametrize(("name", "kind", "chain", "allow", "words"), OUTCOMES)
def test_every_outcome_of_evaluate(
    pki: PKI,
    chains: dict[str, PeerChain],
    name: str,
    kind: str | None,
    chain: str,
    allow: bool,
    words: str,
) -> None:
    config = config_for(pki, kind)
    host_pins = None if config is None else PinSet({HOST: config}).match(HOST, 443)
    verdict = evaluate(host_pins, chains[chain], allow_unpinned=allow, now=NOW)
    assert verdict.status == STATUS[name]
    assert verdict.ok is (STATUS[name] != "failed")
    assert words in verdict.reason


def test_expiry_can_be_ignored_to_see_breakage_coming(
    pki: PKI, chains: dict[str, PeerChain]
) -> None:
    host_pins = PinSet({HOST: config_for(pki, "expired")}).match(HOST, 443)
    verdict = evaluate(host_pins, chains["rogue"], allow_unpinned=True, ignore_expiry=True)
    assert verdict.status == "failed"
    later = NOW + timedelta(days=1)
    assert evaluate(host_pins, chains["rogue"], allow_unpinned=True, now=later).status == "expired"


def test_check_returns_the_failure_and_raises_nothing(
    pki: PKI, chains: dict[str, PeerChain]
) -> None:
    seen: list[PinFailure] = []
    policy = PinningPolicy({HOST: [pki.intermediate_pin]}, on_failure=seen.append)
    assert policy.check([HOST], 443, chains["verified"]) is None
    failure = policy.check([HOST], 443, chains["rogue"])
    assert isinstance(failure, PinFailure)
    assert failure.host == HOST and failure.pattern == HOST
    assert failure.pinned == (pki.intermediate_pin,)
    assert failure.checked == (pki.rogue_leaf_pin,)
    assert seen == [failure]
    assert failure.message.startswith(f"Certificate pinning failure for {HOST}:443: ")
    # Each face raises its own error for it: the same fields, the same text.
    error = PinMismatchError.from_failure(failure)
    assert str(error) == failure.message
    assert (error.host, error.port, error.pinned, error.reason) == (
        HOST,
        443,
        [pki.intermediate_pin],
        failure.reason,
    )


def test_report_only_returns_nothing_but_reports(pki: PKI, chains: dict[str, PeerChain]) -> None:
    seen: list[PinFailure] = []
    policy = PinningPolicy({HOST: [pki.intermediate_pin]}, report_only=True, on_failure=seen.append)
    assert policy.check([HOST], 443, chains["rogue"]) is None
    assert [failure.report_only for failure in seen] == [True]
    # Its twin, enforced, returns the failure.
    enforced = PinningPolicy({HOST: [pki.intermediate_pin]})
    assert enforced.check([HOST], 443, chains["rogue"]) is not None


def test_a_name_that_cannot_be_looked_up_fails_closed(
    pki: PKI, chains: dict[str, PeerChain]
) -> None:
    policy = PinningPolicy({HOST: [pki.intermediate_pin]})
    # Not a name at all (a face that handed over bytes, say): it might have pins.
    failure = policy.check([b"api.example.com"], 443, chains["verified"])  # type: ignore[list-item]
    assert failure is not None and "could not be looked up" in failure.reason
    assert policy.check(["other.example.com"], 443, chains["verified"]) is None


def test_a_chain_that_cannot_be_read_is_a_failure_like_any_other(pki: PKI) -> None:
    def unreadable() -> PeerChain:
        raise ValueError("the TLS object is gone")

    seen: list[PinFailure] = []
    pins = {HOST: [pki.intermediate_pin]}
    enforced = PinningPolicy(pins, on_failure=seen.append)
    failure = enforced.check([HOST], 443, unreadable)
    assert failure is not None
    assert "could not be read (ValueError: the TLS object is gone)" in failure.reason
    # Report-only lets it through, but reports it, as any other failure.
    lenient = PinningPolicy(pins, report_only=True, on_failure=seen.append)
    assert lenient.check([HOST], 443, unreadable) is None
    assert [item.report_only for item in seen] == [False, True]
    # Refused unpinned hosts and names that cannot be looked up read it too.
    strict = PinningPolicy(pins, allow_unpinned=False)
    refused = strict.check(["other.example.com"], 443, unreadable)
    assert refused is not None and "unpinned hosts are refused" in refused.reason
    odd = enforced.check([b"api.example.com"], 443, unreadable)  # type: ignore[list-item]
    assert odd is not None and "could not be looked up" in odd.reason
    # An unpinned host never reads it (its twin: nothing to fail).
    assert enforced.check(["other.example.com"], 443, unreadable) is None


def test_one_policy_object_serves_every_face(pki: PKI) -> None:
    policy = PinningPolicy({HOST: [pki.intermediate_pin]}, allow_unpinned=False)
    adapter = PinningAdapter(policy)
    session = PinningSession(policy)
    manager = PinningPoolManager(policy)
    try:
        assert adapter.policy is policy and session.pinning_adapter.policy is policy
        assert manager.pinset is policy.pinset
        # A PinningAdapter with an equal policy may be mounted on the session.
        session.mount("https://api.example.com/", PinningAdapter(policy))
    finally:
        adapter.close()
        session.close()
        manager.clear()


def test_switches_beside_a_policy_are_refused(pki: PKI) -> None:
    policy = PinningPolicy({HOST: [pki.intermediate_pin]})
    with pytest.raises(TypeError, match="report_only, allow_unpinned given beside a PinningPolicy"):
        PinningAdapter(policy, report_only=True, allow_unpinned=False)
    with pytest.raises(TypeError, match="on_failure given beside"):
        PinningPoolManager(policy, on_failure=print)
    PinningAdapter(policy, report_only=False).close()  # the defaults say nothing: allowed


def test_a_session_refuses_an_adapter_with_another_policy(pki: PKI) -> None:
    session = PinningSession(PinningPolicy({HOST: [pki.intermediate_pin]}))
    other = PinningAdapter(PinningPolicy({HOST: [pki.intermediate_pin]}, report_only=True))
    with pytest.raises(ValueError, match="another report_only than the session"):
        session.mount("https://api.example.com/", other)
    session.close()


def test_a_policy_pickles_and_copies_with_its_pins(pki: PKI) -> None:
    policy = PinningPolicy(
        {HOST: [pki.intermediate_pin]}, allow_unpinned=False, report_uri="https://r.example/"
    )
    for clone in (pickle.loads(pickle.dumps(policy)), copy.deepcopy(policy)):
        assert clone == policy and clone is not policy
        assert clone.allow_unpinned is False and clone.report_uri == "https://r.example/"
    assert policy != PinningPolicy({HOST: [pki.intermediate_pin]})
    assert policy.difference(PinningPolicy({HOST: [pki.root_pin]})) == "pin set"


def test_a_connection_with_no_policy_attached_is_refused_before_any_byte() -> None:
    # Built outside a pinning pool, as a careless subclass might: connect()
    # would hand the socket over unchecked. The check refuses on its own.
    conn = _PinningHTTPSConnection("localhost", 1)
    with pytest.raises(PinMismatchError, match="no pin policy attached"):
        conn._check_pins()


def test_a_replaced_pool_class_is_refused_before_any_connection(pki: PKI) -> None:
    manager = PinningPoolManager({HOST: [pki.intermediate_pin]})
    manager.pool_classes_by_scheme = {
        **manager.pool_classes_by_scheme,
        "https": urllib3.HTTPSConnectionPool,
    }
    with pytest.raises(TypeError, match="does not check pins"):
        manager.connection_from_url("https://127.0.0.1:1/")
    # The twin: the pinning pool is accepted.
    assert (
        PinningPoolManager({HOST: [pki.intermediate_pin]}).connection_from_url(
            "https://127.0.0.1:1/"
        )
        is not None
    )


def test_an_adapter_whose_pool_manager_was_replaced_fails_closed(pki: PKI) -> None:
    adapter = PinningAdapter({HOST: [pki.intermediate_pin]})
    adapter.poolmanager = urllib3.PoolManager()
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(TypeError, match="does not check pins"):
        session.get("https://127.0.0.1:1/", timeout=1)
    session.close()


def test_a_replaced_proxy_manager_fails_closed_for_an_https_proxy_even_for_http_urls(
    pki: PKI,
) -> None:
    class Plain(PinningAdapter):
        def proxy_manager_for(self, proxy: str, **proxy_kwargs: object) -> object:
            return urllib3.ProxyManager(proxy)

    session = requests.Session()
    adapter = Plain({HOST: [pki.intermediate_pin]})
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    for proxy in ("https://127.0.0.1:1", "http://127.0.0.1:1"):
        proxies = {"http": proxy}
        if proxy.startswith("https"):
            with pytest.raises(TypeError, match="does not check pins"):
                session.get("http://127.0.0.1:1/", proxies=proxies, timeout=1)
        else:
            # The twin: through a cleartext proxy to a cleartext URL there is
            # no TLS session to pin, and the request goes on (and fails to
            # connect, as nothing listens there).
            with pytest.raises(requests.exceptions.ConnectionError):
                session.get("http://127.0.0.1:1/", proxies=proxies, timeout=1)
    session.close()
