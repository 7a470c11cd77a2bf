"""requests' per-request ``cert_verify``, run by the adapter once per pool and arguments.

requests looks the CA bundle up on disk for every request, kept-alive ones
too. The adapter runs requests' own ``cert_verify`` only when it could change
something: it must leave every pool exactly as requests would, and raise what
requests raises on a pool's first request.
"""

from __future__ import annotations

import gc
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import HTTPAdapter

from requests_pinning import PinningAdapter
from requests_pinning._urllib3 import _AdapterHTTPSConnectionPool

from .conftest import PKI
from .servers import TLSServer

CLOSE = {"Connection": "close"}
_ATTRIBUTES = ("cert_reqs", "ca_certs", "ca_cert_dir", "cert_file", "key_file")


@pytest.fixture
def requests_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The path of every run of requests' own ``cert_verify`` (it calls
    ``os.path.exists`` once with the CA bundle's path; other callers are left out
    by the tests' own paths)."""
    calls: list[object] = []
    exists = os.path.exists

    def counted(path: Any) -> bool:
        calls.append(path)
        return exists(path)

    # requests' own function stays in place: the adapter skips only requests' own.
    monkeypatch.setattr(os.path, "exists", counted)
    yield calls


def checks_of(calls: list[object], *paths: object) -> list[object]:
    return [path for path in calls if path in paths]


def pools_of(session: requests.Session, url: str) -> list[Any]:
    manager = session.get_adapter(url).poolmanager  # type: ignore[attr-defined]
    return [manager.pools[key] for key in manager.pools.keys()]  # noqa: SIM118 (no __iter__)


def session_for(pki: PKI, verify: Any) -> requests.Session:
    session = requests.Session()
    session.mount("https://", PinningAdapter({"localhost": [pki.intermediate_pin]}))
    session.verify = verify
    return session


def test_requests_check_runs_once_per_pool_not_per_request(
    pki: PKI, good: TLSServer, requests_checks: list[object]
) -> None:
    url = f"https://localhost:{good.port}/"
    bundle_dir = str(Path(pki.bundle).parent)
    with session_for(pki, pki.bundle) as session:
        for _ in range(5):
            assert session.get(url).ok
        assert checks_of(requests_checks, pki.bundle, bundle_dir) == [pki.bundle]
        # Another verify for the same host is another pool, checked on its own.
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url, verify=bundle_dir)  # a directory without hashed names
        assert checks_of(requests_checks, pki.bundle, bundle_dir) == [pki.bundle, bundle_dir]
    gc.collect()  # the refused connection is held by its traceback's cycles
    good.wait_idle()
    assert good.handshakes == 1  # five requests on one connection; the other verify failed


def test_a_pool_changed_since_or_arguments_of_other_types_are_checked_again(
    pki: PKI, good: TLSServer, requests_checks: list[object]
) -> None:
    class Path_(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    url = f"https://localhost:{good.port}/"
    with session_for(pki, pki.bundle) as session:
        assert session.get(url).ok
        [pool] = pools_of(session, url)
        pool.ca_certs = "/elsewhere.pem"  # someone changed it: requests sets it back
        assert session.get(url).ok
        assert pool.ca_certs == pki.bundle
        assert len(checks_of(requests_checks, pki.bundle)) == 2
        # So is one whose requests default bundle was pointed elsewhere.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", "/elsewhere.pem")
            assert session.get(url).ok
        assert session.get(url).ok
        assert len(checks_of(requests_checks, pki.bundle)) == 4
        # A str subclass's own __eq__ never says the check is done.
        odd = Path_(pki.bundle)
        assert session.get(url, verify=odd).ok
        assert session.get(url, verify=odd).ok
        assert len(checks_of(requests_checks, pki.bundle)) == 6


def test_a_default_bundle_pointed_elsewhere_during_the_check_is_read_again(
    pki: PKI, good: TLSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another thread points requests' default bundle elsewhere while a pool's
    # first check runs (here: at its os.path.exists call). Plain requests uses
    # the new bundle from the next request on; so must the pinned session.
    if getattr(requests.adapters, "_preloaded_ssl_context", None) is not None:
        pytest.skip(
            "requests 2.32.3 and 2.32.4 verify verify=True with a context of their own, "
            "loaded from certifi at import: they read no default bundle path per request"
        )
    old, new = tmp_path / "old.pem", tmp_path / "new.pem"
    shutil.copy(pki.bundle, old)
    new.write_bytes(pki.rogue_root.cert_pem.bytes())  # does not trust the server
    monkeypatch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", str(old))
    exists = os.path.exists

    def flipping(path: Any) -> bool:
        if path == str(old):
            requests.adapters.DEFAULT_CA_BUNDLE_PATH = str(new)
        return exists(path)

    url = f"https://localhost:{good.port}/"
    with session_for(pki, True) as session:
        session.trust_env = False  # verify=True, not REQUESTS_CA_BUNDLE
        monkeypatch.setattr(os.path, "exists", flipping)
        first = session.get(url, stream=True)  # kept open: the next needs a new connection
        monkeypatch.setattr(os.path, "exists", exists)
        try:
            assert first.ok
            with pytest.raises(requests.exceptions.SSLError):
                session.get(url)
        finally:
            first.close()


class _EnvironmentCA(HTTPAdapter):
    """A mixin's own cert_verify that reads other state than its arguments."""

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if os.environ.get("TEST_EXTRA_CA"):
            conn.ca_certs = os.environ["TEST_EXTRA_CA"]


class _PinningWithMixin(PinningAdapter, _EnvironmentCA):
    pass


@pytest.mark.parametrize("make", [_EnvironmentCA, lambda: _PinningWithMixin({})])
def test_a_cert_verify_of_a_class_after_the_adapter_runs_every_time(
    pki: PKI, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = make()
    pool = _AdapterHTTPSConnectionPool(
        "localhost"
    )  # the adapter refuses a pool that checks no pins
    monkeypatch.setenv("TEST_EXTRA_CA", "/srv/withdrawn.pem")
    adapter.cert_verify(pool, "https://localhost/", pki.bundle, None)
    assert pool.ca_certs == "/srv/withdrawn.pem"
    monkeypatch.delenv("TEST_EXTRA_CA")
    adapter.cert_verify(pool, "https://localhost/", pki.bundle, None)
    assert pool.ca_certs == pki.bundle  # withdrawn, as without pinning
    adapter.close()


def test_a_missing_bundle_is_refused_as_requests_refuses_it(
    pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.pem")
    url = f"https://localhost:{good.port}/"
    for session in (requests.Session(), session_for(pki, True)):
        with session, pytest.raises(OSError, match="Could not find a suitable TLS CA certificate"):
            session.get(url, verify=missing)
    good.wait_idle()
    assert good.handshakes == 0


def test_a_bundle_deleted_later_fails_the_next_new_connection(
    pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    shutil.copy(pki.bundle, bundle)
    url = f"https://localhost:{good.port}/"
    for share in (True, False):
        adapter = PinningAdapter({"localhost": [pki.intermediate_pin]}, share_tls_context=share)
        with requests.Session() as session:
            session.mount("https://", adapter)
            session.verify = str(bundle)
            assert session.get(url).ok
            os.unlink(bundle)
            # The connection already verified with it carries on (requests'
            # own check would refuse to use it, for a file it no longer needs)...
            assert session.get(url, headers=CLOSE).ok
            # ...and a new one cannot be verified: refused.
            with pytest.raises(requests.exceptions.RequestException):
                session.get(url)
            shutil.copy(pki.bundle, bundle)
    good.wait_idle()
    assert good.handshakes == 2


_FILES = ("bundle", "folder", "missing", "client")


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> dict[str, str]:
    root = tmp_path_factory.mktemp("places")
    (root / "folder").mkdir()
    shutil.copy(pki.bundle, root / "bundle")
    pki.leaf.private_key_and_cert_chain_pem.write_to_path(str(root / "client"))
    return {name: str(root / name) for name in _FILES}


_calls = st.tuples(
    st.sampled_from(["https://localhost/", "http://localhost/", "HTTPS://localhost/x"]),
    st.one_of(st.booleans(), st.sampled_from(_FILES)),
    st.one_of(
        st.none(),
        st.sampled_from(_FILES),
        st.tuples(st.sampled_from(_FILES), st.sampled_from(_FILES)),
    ),
)


def _outcome(adapter: HTTPAdapter, pool: Any, call: tuple[str, Any, Any]) -> object:
    url, verify, cert = call
    try:
        adapter.cert_verify(pool, url, verify, cert)  # type: ignore[no-untyped-call]
    except OSError as error:
        result: object = str(error)
    else:
        result = None
    return result, [getattr(pool, name, None) for name in _ATTRIBUTES]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_calls, min_size=1, max_size=8))
def test_any_sequence_of_calls_leaves_a_pool_as_requests_leaves_it(
    places: dict[str, str], calls: list[tuple[str, Any, Any]]
) -> None:
    def spelled(call: tuple[str, Any, Any]) -> tuple[str, Any, Any]:
        url, verify, cert = call
        verify = places[verify] if isinstance(verify, str) else verify
        if isinstance(cert, tuple):
            cert = tuple(places[name] for name in cert)
        elif cert is not None:
            cert = places[cert]
        return url, verify, cert

    ours = _AdapterHTTPSConnectionPool("localhost")
    theirs = urllib3.HTTPSConnectionPool("localhost")
    for call in map(spelled, calls):
        # Each call twice: the second is the one the adapter may skip.
        for _ in range(2):
            assert _outcome(_PINNING, ours, call) == _outcome(_PLAIN, theirs, call)


_PLAIN, _PINNING = HTTPAdapter(), PinningAdapter({})
