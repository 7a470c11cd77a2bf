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

from .conftest import PKI
from .servers import TLSServer

CLOSE = {"Connection": "close"}
_ATTRIBUTES = ("cert_reqs", "ca_certs", "ca_cert_dir", "cert_file", "key_file")


@pytest.fixture
def requests_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, object]]]:
    """The pool and ``verify`` of every run of requests' own ``cert_verify``."""
    calls: list[tuple[Any, object]] = []
    original = HTTPAdapter.cert_verify

    def counted(self: HTTPAdapter, conn: Any, url: str, verify: Any, cert: Any) -> None:
        calls.append((conn, verify))
        original(self, conn, url, verify, cert)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(HTTPAdapter, "cert_verify", counted)
    yield calls


def session_for(pki: PKI, verify: Any) -> requests.Session:
    session = requests.Session()
    session.mount("https://", PinningAdapter({"localhost": [pki.intermediate_pin]}))
    session.verify = verify
    return session


def test_requests_check_runs_once_per_pool_not_per_request(
    pki: PKI, good: TLSServer, requests_checks: list[tuple[Any, object]]
) -> None:
    url = f"https://localhost:{good.port}/"
    with session_for(pki, pki.bundle) as session:
        for _ in range(5):
            assert session.get(url).ok
        assert [verify for _, verify in requests_checks] == [pki.bundle]
        # Another verify for the same host is another pool, checked on its own.
        bundle_dir = str(Path(pki.bundle).parent)
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url, verify=bundle_dir)  # a directory without hashed names
        assert [verify for _, verify in requests_checks] == [pki.bundle, bundle_dir]
    requests_checks.clear()  # the pools, and with them their connections
    gc.collect()  # the refused connection is held by its traceback's cycles
    good.wait_idle()
    assert good.handshakes == 1  # five requests on one connection; the other verify failed


def test_a_pool_changed_since_or_arguments_of_other_types_are_checked_again(
    pki: PKI, good: TLSServer, requests_checks: list[tuple[Any, object]]
) -> None:
    class Path_(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    url = f"https://localhost:{good.port}/"
    with session_for(pki, pki.bundle) as session:
        assert session.get(url).ok
        pool = requests_checks[0][0]
        pool.ca_certs = "/elsewhere.pem"  # someone changed it: requests sets it back
        assert session.get(url).ok
        assert pool.ca_certs == pki.bundle
        assert len(requests_checks) == 2
        # So is one whose requests default bundle was pointed elsewhere.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(requests.adapters, "DEFAULT_CA_BUNDLE_PATH", "/elsewhere.pem")
            assert session.get(url).ok
        assert session.get(url).ok
        assert len(requests_checks) == 4
        del requests_checks[2:]
        # A str subclass's own __eq__ never says the check is done.
        odd = Path_(pki.bundle)
        assert session.get(url, verify=odd).ok
        assert session.get(url, verify=odd).ok
        assert len(requests_checks) == 4


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

    ours = urllib3.HTTPSConnectionPool("localhost")
    theirs = urllib3.HTTPSConnectionPool("localhost")
    for call in map(spelled, calls):
        # Each call twice: the second is the one the adapter may skip.
        for _ in range(2):
            assert _outcome(_PINNING, ours, call) == _outcome(_PLAIN, theirs, call)


_PLAIN, _PINNING = HTTPAdapter(), PinningAdapter({})
