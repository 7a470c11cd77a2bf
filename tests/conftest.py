"""Fixtures: a throwaway PKI made with trustme, and loopback servers that count bytes.

The PKI has a root, an intermediate and a leaf (the genuine chain), plus a
second "rogue" root that the client *also* trusts, playing a CA that
mis-issues a certificate for our host: CA validation passes for the rogue
server, so only pinning can stop it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, settings

from requests_pinning import PinMismatchError, PinningPolicy, _contexts, spki_pin
from requests_pinning._verify import PeerChain

from .servers import Collector, ConnectProxy, Socks5Proxy, TLSServer

HOSTS = ("localhost", "127.0.0.1", "::1")

# No property here is about speed (tests never assert timings): a slow or
# oversubscribed CI machine must not fail one on hypothesis' 200 ms deadline or
# its too-slow health check. Tests that set their own settings keep them.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@dataclass(frozen=True)
class PKI:
    """Everything a test needs to know about the certificates."""

    root: trustme.CA
    intermediate: trustme.CA
    leaf: trustme.LeafCert
    rogue_root: trustme.CA
    rogue_leaf: trustme.LeafCert
    #: rogue leaf followed by the genuine intermediate, as an attacker would serve it
    rogue_with_real_intermediate: trustme.LeafCert
    #: self-signed, from a CA nobody trusts: for verify=False with a leaf pin
    untrusted_leaf: trustme.LeafCert
    bundle: str  # PEM file trusting both roots (not the untrusted one)
    leaf_pin: str
    intermediate_pin: str
    root_pin: str
    rogue_leaf_pin: str
    rogue_root_pin: str
    untrusted_leaf_pin: str


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert(*HOSTS)
    rogue_root = trustme.CA()
    rogue_leaf = rogue_root.issue_cert(*HOSTS)
    untrusted_leaf = trustme.CA().issue_cert(*HOSTS)
    appended = trustme.LeafCert(
        rogue_leaf.private_key_pem.bytes(),
        rogue_leaf.cert_chain_pems[0].bytes(),
        [intermediate.cert_pem.bytes()],
    )
    bundle = Path(tmp_path_factory.mktemp("pki")) / "bundle.pem"
    bundle.write_bytes(root.cert_pem.bytes() + rogue_root.cert_pem.bytes())
    return PKI(
        root=root,
        intermediate=intermediate,
        leaf=leaf,
        rogue_root=rogue_root,
        rogue_leaf=rogue_leaf,
        rogue_with_real_intermediate=appended,
        untrusted_leaf=untrusted_leaf,
        bundle=str(bundle),
        leaf_pin=spki_pin(leaf.cert_chain_pems[0].bytes()),
        intermediate_pin=spki_pin(intermediate.cert_pem.bytes()),
        root_pin=spki_pin(root.cert_pem.bytes()),
        rogue_leaf_pin=spki_pin(rogue_leaf.cert_chain_pems[0].bytes()),
        rogue_root_pin=spki_pin(rogue_root.cert_pem.bytes()),
        untrusted_leaf_pin=spki_pin(untrusted_leaf.cert_chain_pems[0].bytes()),
    )


@pytest.fixture
def good(pki: PKI) -> Iterator[TLSServer]:
    """The genuine server: leaf and intermediate of the pinned PKI."""
    with TLSServer(pki.leaf) as server:
        yield server


@pytest.fixture
def good2(pki: PKI) -> Iterator[TLSServer]:
    """A second genuine server (another port), e.g. a redirect target."""
    with TLSServer(pki.leaf) as server:
        yield server


@pytest.fixture
def rogue(pki: PKI) -> Iterator[TLSServer]:
    """An impostor with a certificate from the rogue CA, which the client trusts."""
    with TLSServer(pki.rogue_leaf) as server:
        yield server


@pytest.fixture
def appended(pki: PKI) -> Iterator[TLSServer]:
    """An impostor that appends the genuine intermediate to its rogue leaf."""
    with TLSServer(pki.rogue_with_real_intermediate) as server:
        yield server


@pytest.fixture
def untrusted(pki: PKI) -> Iterator[TLSServer]:
    """A server whose CA nobody trusts (a self-managed certificate)."""
    with TLSServer(pki.untrusted_leaf) as server:
        yield server


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as proxy:
        yield proxy


@pytest.fixture
def tls_proxy(pki: PKI) -> Iterator[ConnectProxy]:
    with ConnectProxy(tls_cert=pki.leaf) as proxy:
        yield proxy


@pytest.fixture
def socks_proxy() -> Iterator[Socks5Proxy]:
    with Socks5Proxy() as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def _no_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests choose their proxies explicitly; a developer's environment must
    # not route loopback traffic elsewhere.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


#: The real settling time of a file a shared TLS context is built from.
REAL_SETTLE_SECONDS = _contexts.SETTLE_SECONDS


@pytest.fixture(autouse=True)
def _files_settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A context built from a file changed less than SETTLE_SECONDS before is
    # not kept (a coarse file-system clock could hide a rewrite), and tests
    # write their bundles just before they use them: here a file settles at
    # once, and the tests of the settling time itself set the real one.
    monkeypatch.setattr(_contexts, "SETTLE_SECONDS", 0.0)


@pytest.fixture(autouse=True)
def _fresh_report_state() -> Iterator[None]:
    # Failures are logged once a minute, and reported once a day, per (host,
    # port, chain[, collector URL]), process-wide: each test starts with none
    # logged or reported. Without the second, a collector given a port an
    # earlier test's collector had (the OS reuses them) never received a report
    # the earlier test had already sent: CI saw it once.
    from requests_pinning import _report

    _report._log_seen.clear()
    _report._dedup_seen.clear()
    yield
    _report._log_seen.clear()
    _report._dedup_seen.clear()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A violation-report collector on loopback (it can be made to stall)."""
    with Collector() as c:
        yield c


@pytest.fixture
def pyopenssl() -> Iterator[None]:
    """urllib3 with pyOpenSSL injected: a different socket type to read chains from."""
    with warnings.catch_warnings():  # urllib3 1.26's module warns as it imports
        warnings.simplefilter("ignore", DeprecationWarning)
        from urllib3.contrib import pyopenssl

    pyopenssl.inject_into_urllib3()
    try:
        yield
    finally:
        pyopenssl.extract_from_urllib3()


@pytest.fixture
def pin_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="requests_pinning")
    return caplog


class Enforcing:
    """A :class:`PinningPolicy` used as the urllib3 face uses it: a failure raises.

    For the decision's tests that assert on the raised error (its fields and
    message); tests of the returned value call ``policy.check`` directly.
    """

    def __init__(self, pins: object, **options: object) -> None:
        self.policy = PinningPolicy(pins, **options)  # type: ignore[arg-type]

    def check(
        self,
        names: list[str | None],
        port: int,
        chain: PeerChain | Callable[[], PeerChain],
    ) -> None:
        failure = self.policy.check(names, port, chain)
        if failure is not None:
            raise PinMismatchError.from_failure(failure)
