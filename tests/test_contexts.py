"""The shared TLS context: one per configuration, and never the wrong one.

Every component of the cache key, changed alone, must give another context and
the verdict urllib3 would have given without sharing, against real servers: the
wrong CA refused and the right one accepted, ``verify=False`` never serving a
verified request (CVE-2024-35195 was that bug in requests), client certificates,
a bundle rewritten on disk, ``REQUESTS_CA_BUNDLE`` changing between requests,
and many threads opening connections at once.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from requests_pinning import PinningAdapter, PinningPoolManager, PinningSession, _contexts
from requests_pinning._contexts import TLSContexts

from .conftest import PKI, REAL_SETTLE_SECONDS
from .servers import TLSServer

CLOSE = {"Connection": "close"}  # a new connection, so a new handshake, per request


def pins(pki: PKI) -> dict[str, list[str]]:
    return {"localhost": [pki.intermediate_pin, pki.untrusted_leaf_pin]}


def contexts_built(session: PinningSession) -> int:
    contexts = session.pinning_adapter._contexts
    assert contexts is not None
    return contexts.built


def test_one_context_serves_every_connection_of_a_configuration(pki: PKI, good: TLSServer) -> None:
    with PinningSession(pins(pki)) as session:
        session.verify = pki.bundle
        for _ in range(5):
            assert session.get(f"https://localhost:{good.port}/", headers=CLOSE).ok
        assert contexts_built(session) == 1
    good.wait_idle()
    assert good.handshakes == 5


def test_sharing_can_be_switched_off(pki: PKI, good: TLSServer) -> None:
    with PinningSession(pins(pki), share_tls_context=False) as session:
        session.verify = pki.bundle
        assert session.get(f"https://localhost:{good.port}/", headers=CLOSE).ok
        assert session.pinning_adapter._contexts is None


@pytest.mark.parametrize("order", ["unverified first", "verified first"])
def test_verify_false_never_serves_a_verified_request(
    pki: PKI, untrusted: TLSServer, order: str
) -> None:
    url = f"https://localhost:{untrusted.port}/"
    with PinningSession(pins(pki)) as session:
        attempts = ["off", "on"] if order == "unverified first" else ["on", "off"]
        for attempt in attempts:
            if attempt == "off":
                # Not verified, but the leaf pin authenticates it.
                with pytest.warns(Warning, match="Unverified HTTPS request"):
                    assert session.get(url, verify=False, headers=CLOSE).ok
            else:
                with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
                    session.get(url, verify=pki.bundle, headers=CLOSE)
        assert contexts_built(session) == 2


def test_the_right_bundle_accepts_and_another_refuses(
    pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    url = f"https://localhost:{good.port}/"
    with PinningSession(pins(pki)) as session:
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
            session.get(url, verify=str(other), headers=CLOSE)
        assert session.get(url, verify=pki.bundle, headers=CLOSE).ok
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
            session.get(url, verify=str(other), headers=CLOSE)
        # verify=True: certifi's roots, which do not include the test CA.
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
            session.get(url, verify=True, headers=CLOSE)
        # requests 2.32.3 passes its own preloaded context for verify=True,
        # which is used as given; later versions leave it to the adapter.
        preloaded = getattr(requests.adapters, "_preloaded_ssl_context", None) is not None
        assert contexts_built(session) == (2 if preloaded else 3)


def test_a_bundle_rewritten_on_disk_is_loaded_again(
    pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    # Three sizes: each rewrite is another stamp even where the file system's
    # clock gives the three writes one time (their settling is tested below).
    bundle.write_bytes(trustme.CA().cert_pem.bytes() + b"\n\n")
    url = f"https://localhost:{good.port}/"
    with PinningSession(pins(pki)) as session:
        session.verify = str(bundle)
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
            session.get(url, headers=CLOSE)
        bundle.write_bytes(pki.root.cert_pem.bytes())  # same path, new contents
        assert session.get(url, headers=CLOSE).ok
        bundle.write_bytes(trustme.CA().cert_pem.bytes() + b"\n")  # and back: refused again
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
            session.get(url, headers=CLOSE)


def test_requests_ca_bundle_changing_between_requests(
    pki: PKI, good: TLSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    url = f"https://localhost:{good.port}/"
    with PinningSession(pins(pki)) as session:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.bundle)
        assert session.get(url, headers=CLOSE).ok
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY"):
            session.get(url, headers=CLOSE)
        session.trust_env = False  # and session.verify decides again
        session.verify = pki.bundle
        assert session.get(url, headers=CLOSE).ok


def test_client_certificates_are_part_of_the_configuration(pki: PKI, tmp_path: Path) -> None:
    client_ca = trustme.CA()
    client = client_ca.issue_cert("client@example.com")
    cert = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(cert))
    with TLSServer(pki.leaf, client_ca=client_ca) as server:
        url = f"https://localhost:{server.port}/"
        with PinningSession(pins(pki)) as session:
            session.verify = pki.bundle
            assert session.get(url, cert=str(cert), headers=CLOSE).ok
            # The same server without a client certificate: refused by the server.
            with pytest.raises(requests.exceptions.RequestException):
                session.get(url, headers=CLOSE)
            assert session.get(url, cert=str(cert), headers=CLOSE).ok
            assert contexts_built(session) == 2


def test_many_threads_opening_connections_at_once(pki: PKI, good: TLSServer) -> None:
    adapter = PinningAdapter(pins(pki), pool_maxsize=16)
    results: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        with requests.Session() as session:
            session.mount("https://", adapter)
            session.verify = pki.bundle
            for _ in range(5):
                status = session.get(f"https://localhost:{good.port}/", headers=CLOSE).status_code
                with lock:
                    results.append(status)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 40
    assert adapter._contexts is not None
    assert adapter._contexts.built == 1


def test_urllib3_managers_share_too_and_a_users_context_wins(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    for _ in range(3):
        assert http.request("GET", f"https://localhost:{good.port}/", headers=CLOSE).status == 200
    assert http._pin_contexts is not None
    assert http._pin_contexts.built == 1
    mine = ssl.create_default_context(cafile=pki.bundle)
    own = PinningPoolManager(pins(pki), ssl_context=mine)
    assert own.request("GET", f"https://localhost:{good.port}/").status == 200
    assert own._pin_contexts is not None
    assert own._pin_contexts.built == 0
    with pytest.raises(Exception, match="pinning failure"):
        own.request("GET", f"https://localhost:{rogue.port}/", retries=False)


def test_sslkeylogfile_is_part_of_the_configuration(
    pki: PKI, good: TLSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keylog = tmp_path / "keys.log"
    with PinningSession(pins(pki)) as session:
        session.verify = pki.bundle
        assert session.get(f"https://localhost:{good.port}/", headers=CLOSE).ok
        monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
        # The first build creates the log, so the key after it differs: that
        # context is not kept (the connection gets urllib3's own); the next is.
        for _ in range(3):
            assert session.get(f"https://localhost:{good.port}/", headers=CLOSE).ok
        assert contexts_built(session) == 2
    assert keylog.exists()
    assert os.path.getsize(keylog) > 0


# Where urllib3 would write TLS secrets, changed between two connections in
# ways the variable's text alone does not show. Each step sets a variable,
# changes the working directory, renames a file, or connects once.
_KEY_LOG_STEPS: dict[str, list[tuple[str, str, str | None]]] = {
    # "$KL" cleared turns key logging off for urllib3 2.x (its expansion is "").
    "logging switched off through a variable": [
        ("env", "SSLKEYLOGFILE", "$KL"),
        ("env", "KL", "{tmp}/a.log"),
        ("connect", "", None),
        ("env", "KL", ""),
        ("connect", "", None),
    ],
    "a directory named by a variable": [
        ("env", "SSLKEYLOGFILE", "$KD/keys.log"),
        ("env", "KD", "{tmp}/d1"),
        ("connect", "", None),
        ("env", "KD", "{tmp}/d2"),
        ("connect", "", None),
    ],
    "a relative name, the working directory changed": [
        ("env", "SSLKEYLOGFILE", "keys.log"),
        ("chdir", "{tmp}/d1", None),
        ("connect", "", None),
        ("chdir", "{tmp}/d2", None),
        ("connect", "", None),
    ],
    "the log moved away": [
        ("env", "SSLKEYLOGFILE", "{tmp}/keys.log"),
        ("connect", "", None),
        ("rename", "{tmp}/keys.log", "{tmp}/keys.old"),
        ("connect", "", None),
    ],
}


def _key_log_story(
    steps: list[tuple[str, str, str | None]],
    share: bool,
    pki: PKI,
    good: TLSServer,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[object, list[tuple[str, int]]]]:
    """What each connection of ``steps`` gave, and the files it left, byte counts and all."""
    for folder in ("d1", "d2"):
        (tmp / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp)
    http = PinningPoolManager(pins(pki), ca_certs=pki.bundle, share_tls_context=share)
    story: list[tuple[object, list[tuple[str, int]]]] = []
    for action, name, value in steps:
        name = name.format(tmp=tmp)
        value = None if value is None else value.format(tmp=tmp)
        if action == "env":
            monkeypatch.setenv(name, value or "")
        elif action == "chdir":
            os.chdir(name)
        elif action == "rename":
            os.rename(name, value or "")
        else:
            try:
                outcome: object = http.request("GET", f"https://localhost:{good.port}/").status
            except Exception as error:  # urllib3 1.26 cannot open "$KD/keys.log"
                outcome = type(error).__name__
            http.clear()  # the next request opens a new connection
            files = sorted(
                (str(path.relative_to(tmp)), path.stat().st_size)
                for path in tmp.rglob("*")
                if path.is_file()
            )
            story.append((outcome, files))
    return story


@pytest.mark.parametrize("change", list(_KEY_LOG_STEPS))
def test_sslkeylogfile_is_read_as_urllib3_reads_it(
    change: str,
    pki: PKI,
    good: TLSServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A context opens its key log when it is built and writes there ever
    # after; urllib3 opens it anew for every connection. Shared or not, the
    # secrets must go where urllib3 would send them (and nowhere once it would
    # send them nowhere).
    steps = _KEY_LOG_STEPS[change]
    stories = []
    for share in (False, True):
        with monkeypatch.context() as patch:
            stories.append(_key_log_story(steps, share, pki, good, tmp_path / str(share), patch))
    unshared, shared = stories
    assert shared == unshared
    urllib3_1 = urllib3.__version__.startswith("1.")  # type: ignore[attr-defined]
    if change == "a directory named by a variable" and urllib3_1:
        # urllib3 1.26 takes "$KD/keys.log" as it is: no such directory, and
        # its context cannot be made, shared or not.
        assert all(outcome != 200 for outcome, _ in unshared)
    else:
        assert any(size > 0 for _, files in unshared for _, size in files)  # secrets were logged


def test_the_systems_default_store_is_not_shared(
    pki: PKI, good: TLSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No CA named: urllib3 loads the default store per connection, which an
    # operator may change under a running process (SSL_CERT_FILE, its file).
    store = tmp_path / "store.pem"
    store.write_bytes(pki.root.cert_pem.bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED")
    url = f"https://localhost:{good.port}/"
    assert http.request("GET", url, headers=CLOSE).status == 200
    store.write_bytes(trustme.CA().cert_pem.bytes())  # the root is distrusted
    if not urllib3.__version__.startswith("1."):  # type: ignore[attr-defined]
        # (urllib3 1.26 keeps a connection's own context across reconnects.)
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            http.request("GET", url, headers=CLOSE, retries=False)
    assert http._pin_contexts is not None
    assert http._pin_contexts.built == 0


# -- found by the attack pass of round 7 ----------------------------------------------


@pytest.fixture
def bundle(pki: PKI, tmp_path: Path) -> Path:
    """A bundle of its own that trusts the genuine root, for a test to rewrite."""
    path = tmp_path / "bundle.pem"
    path.write_bytes(pki.root.cert_pem.bytes())
    return path


def test_a_bundle_that_cannot_be_looked_at_is_never_shared(
    pki: PKI, good: TLSServer, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bundle replaced by unlink-then-write cannot be looked at (stat) for a
    # moment, while it can be read a moment later: a context built then was
    # kept under "path, no stamp", and served to every later connection that
    # could not look at the file, trusting what the file no longer held.
    # os.stat fails here for the bundle (a file-system fault, made certain).
    real_stat = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(path) == str(bundle):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=str(bundle))
    url = f"https://localhost:{good.port}/"
    assert http.request("GET", url, headers=CLOSE).status == 200  # urllib3's own context
    bundle.write_bytes(trustme.CA().cert_pem.bytes())  # the root is distrusted
    with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        http.request("GET", url, headers=CLOSE, retries=False)
    assert http._pin_contexts is not None
    assert http._pin_contexts.built == 0


def test_a_context_whose_bundle_changed_while_it_was_built_is_not_kept(
    pki: PKI, good: TLSServer, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = TLSContexts._build
    # Once: the root distrusted mid-build (another size: another stamp on any clock).
    rewrites = [trustme.CA().cert_pem.bytes() + b"\n"]

    def rewritten_while_built(conn: Any, own: dict[str, Any]) -> ssl.SSLContext:
        context = build(conn, own)
        if rewrites:
            bundle.write_bytes(rewrites.pop())
        return context

    monkeypatch.setattr(TLSContexts, "_build", staticmethod(rewritten_while_built))
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=str(bundle))
    url = f"https://localhost:{good.port}/"
    # Not the context built from the old text: urllib3's, from the new one.
    with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        http.request("GET", url, headers=CLOSE, retries=False)
    assert http._pin_contexts is not None
    assert http._pin_contexts.built == 0
    bundle.write_bytes(pki.root.cert_pem.bytes())
    assert http.request("GET", url, headers=CLOSE).status == 200
    assert http._pin_contexts.built == 1  # a file that held still is shared


def test_a_bundle_that_blocks_stalls_only_its_own_configuration(
    pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    # A CA file whose reading blocks (here a named pipe with no writer yet; in
    # life a hung network mount): building its context once held the lock that
    # every other connection of the adapter needed, even to find its own.
    fifo = tmp_path / "bundle.pem"
    os.mkfifo(fifo)
    adapter = PinningAdapter(pins(pki))
    url = f"https://localhost:{good.port}/"
    blocked: list[int] = []

    def through(verify: str) -> int:
        with requests.Session() as session:
            session.mount("https://", adapter)
            return session.get(url, verify=verify, headers=CLOSE).status_code

    done = threading.Event()

    def mount_back() -> None:  # every read of the pipe gets the root from now on
        while not done.is_set():
            with open(fifo, "wb") as writer:  # waits for a reader
                writer.write(pki.root.cert_pem.bytes())
            time.sleep(0.2)  # no writer for a while: the reader sees the end

    waiting = threading.Thread(target=lambda: blocked.append(through(str(fifo))))
    waiting.start()
    mounted = threading.Thread(target=mount_back)
    try:
        deadline = time.monotonic() + 10
        while adapter._contexts is not None and not adapter._contexts._building:
            assert time.monotonic() < deadline, "the pipe's context was never being built"
            time.sleep(0.01)
        other: list[int] = []
        other_thread = threading.Thread(target=lambda: other.append(through(pki.bundle)))
        other_thread.start()
        other_thread.join(10)
        assert other == [200], "another bundle's connection waited for the blocked one"
        assert blocked == []
    finally:
        mounted.start()
        waiting.join(10)
        done.set()
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the last write go
        mounted.join(10)
        os.close(reader)
    assert blocked == [200]


def test_an_encrypted_key_without_a_password_is_refused_as_urllib3_refuses_it(
    pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    # urllib3 refuses an encrypted key without a password even when no
    # certificate file is named; the shared context checked it only beside one.
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    url = f"https://localhost:{good.port}/"
    options: dict[str, Any] = {
        "cert_reqs": "CERT_REQUIRED",
        "ca_certs": pki.bundle,
        "key_file": str(key_file),
    }
    for http in (urllib3.PoolManager(**options), PinningPoolManager(pins(pki), **options)):
        with pytest.raises(urllib3.exceptions.SSLError, match="encrypted"):
            http.request("GET", url, retries=False)
    assert good.bytes_received == 0


@pytest.mark.parametrize("context", ["shared", "sharing off", "no CA named"])
def test_pinned_connections_offer_http11_after_http2_is_injected(
    pki: PKI, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, context: str
) -> None:
    # urllib3.http2.inject_into_urllib3() makes urllib3 write ALPN ["h2"] into
    # every context: pinned connections, which speak HTTP/1.1, offered only
    # h2, and a server that speaks both chose it (found by round 7's attack
    # pass: every pinned request to such a server failed).
    http2 = pytest.importorskip("urllib3.http2", reason="urllib3 1.26 has no HTTP/2")
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in httpx-no-h2)")
    http2.inject_into_urllib3()
    request.addfinalizer(http2.extract_from_urllib3)
    options: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    if context == "no CA named":  # urllib3 loads the default store (here, this one)
        monkeypatch.setenv("SSL_CERT_FILE", pki.bundle)
    else:
        options["ca_certs"] = pki.bundle
    if context == "sharing off":
        options["share_tls_context"] = False
    http = PinningPoolManager(pins(pki), **options)
    with TLSServer(pki.leaf, http2=True) as server:
        response = http.request("GET", f"https://localhost:{server.port}/", headers=CLOSE)
        assert response.status == 200
        server.wait_idle()
        assert server.requests == ["GET / HTTP/1.1"]
    # The twin: the context that offers HTTP/1.1 still verifies.
    with TLSServer(pki.untrusted_leaf, http2=True) as untrusted:
        with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            http.request("GET", f"https://localhost:{untrusted.port}/", retries=False)
        untrusted.wait_idle()
        assert untrusted.bytes_received == 0
    expected_built = 1 if context == "shared" else 0
    assert (http._pin_contexts.built if http._pin_contexts else 0) == expected_built


def test_a_users_context_that_offers_only_h2_is_refused_saying_why(
    pki: PKI, request: pytest.FixtureRequest
) -> None:
    http2 = pytest.importorskip("urllib3.http2", reason="urllib3 1.26 has no HTTP/2")
    pytest.importorskip("h2", reason="HTTP/2 needs the h2 package (not in httpx-no-h2)")
    http2.inject_into_urllib3()
    request.addfinalizer(http2.extract_from_urllib3)
    mine = ssl.create_default_context(cafile=pki.bundle)  # the user's: used as given
    http = PinningPoolManager(pins(pki), ssl_context=mine)
    with TLSServer(pki.leaf, http2=True) as server:
        with pytest.raises(urllib3.exceptions.ProtocolError, match=r"chose HTTP/2 \(ALPN h2\)"):
            http.request("GET", f"https://localhost:{server.port}/", retries=False)
        server.wait_idle()
        assert server.bytes_received == 0
    with TLSServer(pki.leaf) as http11_only:  # the twin: a server that speaks HTTP/1.1
        assert http.request("GET", f"https://localhost:{http11_only.port}/").status == 200


class _Interrupted(BaseException):
    """Not an Exception: as KeyboardInterrupt, arriving in the middle of a build."""


def test_a_build_ended_by_a_base_exception_leaves_nothing_behind(
    pki: PKI, good: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = TLSContexts._build
    interrupts = [_Interrupted()]

    def interrupted(conn: Any, own: dict[str, Any]) -> ssl.SSLContext:
        if interrupts:
            raise interrupts.pop()
        return build(conn, own)

    monkeypatch.setattr(TLSContexts, "_build", staticmethod(interrupted))
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    url = f"https://localhost:{good.port}/"
    with pytest.raises(_Interrupted):
        http.request("GET", url, headers=CLOSE, retries=False)
    assert http._pin_contexts is not None
    assert http._pin_contexts._building == {}  # its lock and entry went with it
    assert http.request("GET", url, headers=CLOSE).status == 200
    assert http._pin_contexts.built == 1


# -- a file system whose clock is coarse ------------------------------------------------


def _one_tick(monkeypatch: pytest.MonkeyPatch, path: Path) -> int:
    """Make every later write of ``path`` stamped, as the cache sees it, as the last one.

    What a file system whose clock ticks coarsely (Linux before 6.13: a few
    milliseconds; ext3, HFS+: 1 s; FAT: 2 s) does to writes within one tick.
    Only the cache's view of the file's times is held still; its size, its
    contents and every TLS handshake are real. Returns the held time (ns).
    """
    real_stat = os.stat
    held = real_stat(path)

    def stat(name: Any) -> Any:
        info = real_stat(name)
        if os.fspath(name) != str(path):
            return info
        return types.SimpleNamespace(
            st_dev=info.st_dev,
            st_ino=info.st_ino,
            st_size=info.st_size,
            st_mtime_ns=held.st_mtime_ns,
            st_ctime_ns=held.st_ctime_ns,
        )

    monkeypatch.setattr(_contexts, "os", types.SimpleNamespace(**{**vars(os), "stat": stat}))
    return max(held.st_mtime_ns, held.st_ctime_ns)


def _cache_clock(monkeypatch: pytest.MonkeyPatch, at_ns: int) -> None:
    """Set the time the cache reads (to judge a file's age) to ``at_ns``: no test waits."""
    monkeypatch.setattr(_contexts, "time", types.SimpleNamespace(time_ns=lambda: at_ns))


def _same_size(bundle: Path, pem: bytes, other: bytes) -> bytes:
    """Write ``pem`` to ``bundle`` and return ``other``, both padded to one size."""
    # (Most trustme roots take 680 bytes as PEM, a few 676: line breaks after
    # the PEM block are read as nothing.)
    size = max(len(pem), len(other))
    bundle.write_bytes(pem + b"\n" * (size - len(pem)))
    return other + b"\n" * (size - len(other))


@pytest.mark.parametrize("settling", ["real", "none"])
def test_a_same_size_rewrite_within_one_tick_is_loaded(
    pki: PKI, good: TLSServer, bundle: Path, monkeypatch: pytest.MonkeyPatch, settling: str
) -> None:
    # No context is built from a file that changed moments before: a rewrite
    # to the same size within the same tick would keep the stamp, and the kept
    # context would trust what the file no longer holds. "none" is the
    # failing twin: without settling, the distrusted root stays trusted.
    distrusted = _same_size(bundle, pki.root.cert_pem.bytes(), trustme.CA().cert_pem.bytes())
    monkeypatch.setattr(
        _contexts, "SETTLE_SECONDS", REAL_SETTLE_SECONDS if settling == "real" else 0.0
    )
    written = _one_tick(monkeypatch, bundle)
    _cache_clock(monkeypatch, written + 1_000_000_000)  # one second after the write
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=str(bundle))
    url = f"https://localhost:{good.port}/"
    assert http.request("GET", url, headers=CLOSE).status == 200
    size = bundle.stat().st_size
    bundle.write_bytes(distrusted)
    assert bundle.stat().st_size == size  # the stamp and the size both as they were
    assert http._pin_contexts is not None
    if settling == "none":
        assert http.request("GET", url, headers=CLOSE, retries=False).status == 200
        assert http._pin_contexts.built == 1
    else:
        with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            http.request("GET", url, headers=CLOSE, retries=False)
        assert http._pin_contexts.built == 0


@pytest.mark.parametrize("stamped", ["now", "in the future"])
def test_a_file_that_has_settled_is_shared(
    pki: PKI,
    good: TLSServer,
    bundle: Path,
    monkeypatch: pytest.MonkeyPatch,
    stamped: str,
) -> None:
    # The twin: settling only defers sharing. Connections made meanwhile load
    # the bundle as urllib3 does (no context is built for them), and the first
    # one after it builds the shared context. A file stamped in the future (a
    # clock that disagrees) settles that much later.
    monkeypatch.setattr(_contexts, "SETTLE_SECONDS", REAL_SETTLE_SECONDS)
    if stamped == "in the future":
        ahead = time.time_ns() + 3600 * 1_000_000_000
        os.utime(bundle, ns=(ahead, ahead))
    written = max(bundle.stat().st_mtime_ns, bundle.stat().st_ctime_ns)
    settled = written + int(REAL_SETTLE_SECONDS * 1e9)
    builds: list[object] = []
    build = TLSContexts._build

    def counted(conn: Any, own: dict[str, Any]) -> ssl.SSLContext:
        builds.append(conn)
        return build(conn, own)

    monkeypatch.setattr(TLSContexts, "_build", staticmethod(counted))
    http = PinningPoolManager(pins(pki), cert_reqs="CERT_REQUIRED", ca_certs=str(bundle))
    url = f"https://localhost:{good.port}/"
    _cache_clock(monkeypatch, settled - 1)
    assert http.request("GET", url, headers=CLOSE).status == 200
    assert http.request("GET", url, headers=CLOSE).status == 200
    assert http._pin_contexts is not None
    assert (http._pin_contexts.built, len(builds)) == (0, 0)
    _cache_clock(monkeypatch, settled)
    assert http.request("GET", url, headers=CLOSE).status == 200
    assert http.request("GET", url, headers=CLOSE).status == 200
    assert (http._pin_contexts.built, len(builds)) == (1, 1)
