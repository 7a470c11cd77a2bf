"""Mounting cannot silently fail open.

requests picks an adapter by URL prefix, so a pinning adapter mounted per host, or
another adapter on a longer ``https://`` prefix, leaves other spellings of a pinned
host (``user@host``, the IP address, a trailing dot) to an unpinned adapter.
``PinningSession`` cannot be mounted that way; a plain Session that is gets a
``PinningMountWarning`` on its first request.
"""

from __future__ import annotations

import contextlib
import gc
import pickle
import re
import urllib.parse
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
import urllib3.util
from hypothesis import given
from hypothesis import strategies as st
from requests.adapters import BaseAdapter, HTTPAdapter

from requests_pinning import (
    HostPins,
    PinMismatchError,
    PinningAdapter,
    PinningMountWarning,
    PinningPolicy,
    PinningSession,
    PinSet,
)

from .conftest import PKI
from .servers import ConnectProxy, TLSServer


def pins(pki: PKI) -> dict[str, list[str]]:
    return {"localhost": [pki.intermediate_pin], "127.0.0.1": [pki.intermediate_pin]}


def spellings(port: int) -> list[str]:
    return [
        f"https://localhost:{port}/",
        f"https://user:secret@localhost:{port}/",
        f"https://127.0.0.1:{port}/",
        f"https://LOCALHOST:{port}/",
    ]


def test_pinning_session_pins_every_spelling(pki: PKI, rogue: TLSServer, good: TLSServer) -> None:
    with PinningSession(pins(pki)) as session:
        session.verify = pki.bundle
        for url in spellings(rogue.port):
            with pytest.raises(PinMismatchError):
                session.post(url, data=b"secret")
        for url in spellings(good.port):
            assert session.get(url).status_code == 200
    rogue.wait_idle()
    assert rogue.handshakes == len(spellings(rogue.port))
    assert rogue.bytes_received == 0


def test_pinning_session_mounts_https_and_http(pki: PKI) -> None:
    session = PinningSession(pins(pki))
    for url in ("https://x.example/", "http://x.example/", "HTTPS://X.EXAMPLE/"):
        assert session.get_adapter(url) is session.pinning_adapter
    assert session.pinset == session.pinning_adapter.pinset


def test_pinning_session_refuses_adapters_that_would_bypass_it(pki: PKI) -> None:
    session = PinningSession(pins(pki))
    for prefix in ("https://localhost", "https://", "HTTPS://api.example.com/", "http", ""):
        with pytest.raises(ValueError, match="out of pinning"):
            session.mount(prefix, HTTPAdapter())
    with pytest.raises(ValueError, match="another pin set"):
        session.mount("https://localhost", PinningAdapter({"localhost": [pki.root_pin]}))
    # Same pins, another policy: just as much a way out of the session's rules.
    with pytest.raises(ValueError, match="another allow_unpinned"):
        session.mount("https://localhost", PinningAdapter(pins(pki), allow_unpinned=False))
    with pytest.raises(ValueError, match="another report_only"):
        session.mount("https://localhost", PinningAdapter(pins(pki), report_only=True))
    with pytest.raises(ValueError, match="another on_failure"):
        session.mount("https://localhost", PinningAdapter(pins(pki), on_failure=print))
    # The twins: a pinning adapter with the same pins (other options), or a
    # prefix no web URL can match, are fine.
    for prefix in (" https://localhost", "\thttps://", "\x00http"):  # urllib3 strips these
        with pytest.raises(ValueError, match="out of pinning"):
            session.mount(prefix, HTTPAdapter())
    retrying = PinningAdapter(pins(pki), max_retries=3)
    session.mount("https://localhost", retrying)
    assert session.get_adapter("https://localhost/x") is retrying
    session.mount("ftp://", HTTPAdapter())


def test_mounting_the_sessions_own_policy_lists_no_entry(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pin set compared with itself is equal without a listing, which would
    # make the object of every packed entry of a large set (4.8 s and
    # hundreds of MiB at 300,000 entries). Its twin, another set with the
    # same entries, is compared entry by entry.
    policy = PinningPolicy(pins(pki))
    session = PinningSession(policy)
    listings = []
    listing = PinSet.__iter__

    def counted(self: PinSet) -> Iterator[HostPins]:
        listings.append(self)
        return listing(self)

    monkeypatch.setattr(PinSet, "__iter__", counted)
    session.mount("https://localhost", PinningAdapter(policy))
    assert listings == []
    session.mount("https://localhost", PinningAdapter(pins(pki)))
    assert len(listings) == 2


def test_pinning_session_refuses_a_request_an_edited_mapping_would_send_unpinned(
    pki: PKI, rogue: TLSServer
) -> None:
    session = PinningSession(pins(pki))
    session.verify = pki.bundle
    for sneaked in (HTTPAdapter(), PinningAdapter({}), PinningAdapter(pins(pki), report_only=True)):
        session.adapters["https://"] = sneaked  # sidesteps mount()
        with pytest.raises(ValueError, match="was not mounted through PinningSession"):
            session.get(f"https://localhost:{rogue.port}/")
    assert rogue.handshakes == 0
    assert rogue.bytes_received == 0


# Prefixes that no URL as written starts with, but that URLs parsed as https://
# do: urllib.parse drops tabs and line breaks anywhere in a URL.
HIDDEN_SCHEMES = ["ht\t", "h\nttps://", "https:\r//localhost", "\tht\ttp"]


def test_pinning_session_reads_prefixes_and_urls_as_they_are_parsed(
    pki: PKI, rogue: TLSServer
) -> None:
    session = PinningSession(pins(pki))
    session.verify = pki.bundle
    for prefix in HIDDEN_SCHEMES:
        with pytest.raises(ValueError, match="out of pinning"):
            session.mount(prefix, HTTPAdapter())
    session.adapters["ht\t"] = HTTPAdapter()  # sidesteps mount()
    with pytest.raises(ValueError, match="was not mounted through PinningSession"):
        session.get(f"ht\ttps://localhost:{rogue.port}/")
    assert rogue.handshakes == 0
    # The failing twin: a plain Session sends that URL to https://localhost,
    # unpinned (and, as requests reads its scheme, unvalidated: verify=False
    # says so to every requests version).
    plain = requests.Session()
    plain.adapters["ht\t"] = HTTPAdapter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning
        response = plain.get(f"ht\ttps://localhost:{rogue.port}/", verify=False)
        assert response.status_code == 200
    assert rogue.bytes_received > 0


@pytest.mark.parametrize("prefix", ["HTTPS://", *HIDDEN_SCHEMES])
def test_another_adapter_on_a_prefix_https_urls_can_match_warns(
    pki: PKI, good: TLSServer, prefix: str
) -> None:
    session = requests.Session()
    session.verify = pki.bundle
    # "HTTPS://" matches every https:// URL, as "https://" does: which of the
    # two requests tries first depends on the order of the mounts.
    session.mount(prefix, HTTPAdapter())
    session.mount("https://", PinningAdapter(pins(pki)))
    with pytest.warns(PinningMountWarning, match=re.escape(f"HTTPAdapter mounted on {prefix!r}")):
        session.get(f"https://localhost:{good.port}/")


def test_pinning_session_pickles(pki: PKI, rogue: TLSServer) -> None:
    session = pickle.loads(pickle.dumps(PinningSession(pins(pki))))
    session.verify = pki.bundle
    assert session.get_adapter("https://localhost/") is session.pinning_adapter
    with pytest.raises(PinMismatchError):
        session.get(f"https://localhost:{rogue.port}/")


def test_adapter_mounted_per_host_warns_on_its_first_request(pki: PKI, good: TLSServer) -> None:
    session = requests.Session()
    session.verify = pki.bundle
    session.mount(f"https://localhost:{good.port}", PinningAdapter(pins(pki)))
    with pytest.warns(PinningMountWarning, match="not on 'https://'"):
        session.get(f"https://localhost:{good.port}/")
    # This is what it warns about: another spelling goes to the default adapter.
    assert not isinstance(
        session.get_adapter(f"https://user@localhost:{good.port}/"), PinningAdapter
    )


def test_another_adapter_on_a_longer_prefix_warns(pki: PKI, good: TLSServer) -> None:
    session = requests.Session()
    session.verify = pki.bundle
    session.mount("https://", PinningAdapter(pins(pki)))
    session.mount("https://localhost.example", HTTPAdapter(max_retries=3))
    with pytest.warns(
        PinningMountWarning, match="HTTPAdapter mounted on 'https://localhost.example'"
    ):
        session.get(f"https://localhost:{good.port}/")


def test_twin_mounted_on_https_does_not_warn(pki: PKI, good: TLSServer) -> None:
    session = requests.Session()
    session.verify = pki.bundle
    session.mount("https://", PinningAdapter(pins(pki)))
    session.mount("https://other.example", PinningAdapter(pins(pki), max_retries=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinningMountWarning)
        assert session.get(f"https://localhost:{good.port}/").status_code == 200


def test_a_mount_made_after_the_first_request_is_audited_too(pki: PKI, good: TLSServer) -> None:
    session = requests.Session()
    session.verify = pki.bundle
    session.mount("https://", PinningAdapter(pins(pki)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinningMountWarning)
        assert session.get(f"https://localhost:{good.port}/").status_code == 200
    session.mount("https://localhost.example", HTTPAdapter())
    with pytest.warns(PinningMountWarning, match="out of pinning"):
        session.get(f"https://localhost:{good.port}/")


def test_a_bytes_prefix_is_mounted_as_text(pki: PKI, good: TLSServer) -> None:
    with PinningSession(pins(pki)) as session:
        session.verify = pki.bundle
        retrying = PinningAdapter(pins(pki), max_retries=2)
        session.mount(b"https://localhost", retrying)
        assert session.get_adapter(f"https://localhost:{good.port}/") is retrying
        assert session.get(f"https://localhost:{good.port}/").status_code == 200
        with pytest.raises(ValueError, match="out of pinning"):
            session.mount(b"https://localhost", HTTPAdapter())


# The README's list ("Mounting the adapter yourself"): which spellings of a
# host an adapter mounted per host does not see. Each mount form with the
# spellings it misses, and, the twins, those it still sees.
@pytest.mark.parametrize(
    ("prefix", "bypasses", "seen"),
    [
        (
            "https://api.example.com",
            ["https://user@api.example.com/", "https://93.184.215.14/"],
            [
                "https://api.example.com/",
                "https://API.EXAMPLE.COM/",
                "https://api.example.com./",
                "https://api.example.com:443/",
            ],
        ),
        (
            "https://api.example.com/",
            [
                "https://user@api.example.com/",
                "https://93.184.215.14/",
                "https://api.example.com./",
                "https://api.example.com:443/",
            ],
            ["https://api.example.com/", "https://API.EXAMPLE.COM/x"],
        ),
    ],
)
def test_the_bypasses_of_a_per_host_mount_are_the_documented_ones(
    prefix: str, bypasses: list[str], seen: list[str]
) -> None:
    session = requests.Session()
    adapter = PinningAdapter({"api.example.com": ["sha256/" + "A" * 43 + "="]})
    session.mount(prefix, adapter)
    for url in bypasses + seen:
        prepared = session.prepare_request(requests.Request("GET", url))
        assert prepared.url is not None
        chosen = session.get_adapter(prepared.url)
        assert (chosen is adapter) == (url in seen), url


# -- the audit follows every change of the session's mounts ---------------------------


def test_a_mount_replaced_in_place_is_audited_again(
    pki: PKI, good: TLSServer, rogue: TLSServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The audit ran again only when the number of mounts changed: a pinning
    # twin replaced by a plain adapter on its prefix went unsaid (attack pass).
    session = requests.Session()
    session.verify = pki.bundle
    session.mount("https://", PinningAdapter(pins(pki)))
    prefix = f"https://localhost:{rogue.port}/"
    session.mount(prefix, PinningAdapter(pins(pki), max_retries=1))  # a twin
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinningMountWarning)
        assert session.get(f"https://localhost:{good.port}/").status_code == 200
    # (The twin, mounted per host, audits its own mounts on its first request.)
    own_audit = pytest.warns(PinningMountWarning, match="not on 'https://'")
    with own_audit, pytest.raises(PinMismatchError):
        session.post(prefix, data=b"secret")
    assert rogue.bytes_received == 0
    session.mount(prefix, HTTPAdapter())  # as many mounts as before
    said = re.escape(f"HTTPAdapter mounted on {prefix!r} takes the URLs under that prefix")
    with pytest.warns(PinningMountWarning, match=said):
        session.get(f"https://localhost:{good.port}/")
    assert re.search(said, caplog.text)
    # What it says: that prefix now goes out unpinned (a plain Session can only warn).
    assert session.post(prefix, data=b"secret").status_code == 200
    assert rogue.bytes_received > 0
    # Said once: the mounts as audited raise nothing more.
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinningMountWarning)
        assert session.get(f"https://localhost:{good.port}/").status_code == 200


def test_an_adapter_audits_the_next_session_once_the_first_is_gone(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    adapter = PinningAdapter(pins(pki))
    with requests.Session() as first:
        first.mount("https://", adapter)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PinningMountWarning)
            assert first.get(f"https://localhost:{good.port}/", verify=pki.bundle).ok
    del first
    gc.collect()
    second = requests.Session()
    second.verify = pki.bundle
    second.mount("https://", adapter)
    second.mount(f"https://localhost:{rogue.port}/", HTTPAdapter())
    with pytest.warns(PinningMountWarning, match="HTTPAdapter mounted on"):
        assert second.get(f"https://localhost:{good.port}/").ok
    # Its twin: the first session's mounts would have said nothing.
    assert rogue.handshakes == 0


def test_a_change_in_the_audited_session_is_audited_whoever_sends_next(
    pki: PKI, good: TLSServer, rogue: TLSServer
) -> None:
    adapter = PinningAdapter(pins(pki))
    first, second = requests.Session(), requests.Session()
    for session in (first, second):
        session.verify = pki.bundle
        session.mount("https://", adapter)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinningMountWarning)
        assert first.get(f"https://localhost:{good.port}/").ok  # the session audited
        assert second.get(f"https://localhost:{good.port}/").ok
    prefix = f"https://localhost:{rogue.port}/"
    first.mount(prefix, HTTPAdapter())
    with pytest.warns(PinningMountWarning, match=re.escape(f"HTTPAdapter mounted on {prefix!r}")):
        assert second.get(f"https://localhost:{good.port}/").ok
    assert rogue.handshakes == 0


def test_the_audit_keeps_nothing_of_a_session_that_is_gone(pki: PKI, good: TLSServer) -> None:
    # Its copy of the mounts goes with the session: the adapters in it hold
    # pools and kept-alive sockets.
    adapter = PinningAdapter(pins(pki))
    session = requests.Session()
    session.mount("https://", adapter)
    other = HTTPAdapter()
    session.mount("http://", other)
    assert session.get(f"https://localhost:{good.port}/", verify=pki.bundle).ok
    gone = weakref.ref(other)
    session.close()
    del session, other
    gc.collect()
    assert gone() is None
    # The twin: while the session lives, so does what it mounts.
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter())
        kept = weakref.ref(session.adapters["http://"])
        gc.collect()
        assert kept() is not None


def test_a_request_sent_without_a_session_leaves_the_audit_to_the_next(
    pki: PKI, good: TLSServer
) -> None:
    adapter = PinningAdapter(pins(pki))
    prepared = requests.Request("GET", f"https://localhost:{good.port}/").prepare()
    assert adapter.send(prepared, verify=pki.bundle).ok
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("https://localhost.example", HTTPAdapter())
    with pytest.warns(PinningMountWarning, match="HTTPAdapter mounted on"):
        session.get(f"https://localhost:{good.port}/", verify=pki.bundle)


# -- PinningSession keeps no adapter it no longer mounts ------------------------------


def test_pinning_session_lets_go_of_the_adapters_it_remounts(pki: PKI, good: TLSServer) -> None:
    # Every approved adapter was kept, replaced or not: with a request each,
    # 200 remounts held 400 descriptors, and close() did not free them.
    session = PinningSession(pins(pki))
    session.verify = pki.bundle
    prefix = f"https://localhost:{good.port}/"
    mounted = []
    for _ in range(4):
        adapter = PinningAdapter(pins(pki))
        session.mount(prefix, adapter)
        assert session.get(prefix).ok
        mounted.append(weakref.ref(adapter))
    del adapter
    gc.collect()
    assert [ref() is None for ref in mounted] == [True, True, True, False]
    # Approval went with the mount: put back by an edit of the mapping, a
    # replaced adapter is refused, like any other that did not pass mount().
    session.mount(f"https://localhost:{good.port}/x", replaced := PinningAdapter(pins(pki)))
    session.mount(f"https://localhost:{good.port}/x", PinningAdapter(pins(pki)))
    session.adapters[prefix] = replaced
    with pytest.raises(ValueError, match="was not mounted through PinningSession"):
        session.get(prefix)
    session.close()
    gc.collect()
    good.wait_idle(5)


def test_pinning_session_closes_its_own_adapter_when_remounted_away(
    pki: PKI, good: TLSServer
) -> None:
    session = PinningSession(pins(pki))
    session.verify = pki.bundle
    assert session.get(f"https://localhost:{good.port}/").ok  # kept alive by its adapter
    for scheme in ("https://", "http://"):
        session.mount(scheme, PinningAdapter(pins(pki)))
    assert session.pinning_adapter not in session.adapters.values()
    session.close()
    good.wait_idle(5)  # its kept-alive connection was closed


# -- PinningSession and adapters for other schemes ------------------------------------


class Recording(BaseAdapter):
    """An adapter for a scheme of its own (as requests-unixsocket's): no network."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        self.urls.append(str(request.url))
        response = requests.Response()
        response.status_code = 200
        response._content = b"served"
        response.url = str(request.url)
        return response

    def close(self) -> None:
        pass


def test_pinning_session_serves_a_scheme_of_its_own_through_its_adapter(
    pki: PKI, rogue: TLSServer
) -> None:
    # It mounted, then refused every request, "not mounted through
    # PinningSession.mount" (requests-unixsocket, docker-py).
    session = PinningSession(pins(pki))
    session.verify = pki.bundle
    unix = Recording()
    session.mount("http+unix://", unix)
    session.mount("HTTP+DOCKER://", unix)
    for url in ("http+unix://%2Frun%2Fdocker.sock/info", "http+docker://localhost/v1/info"):
        assert session.get(url).text == "served"
    # The twins: that adapter put in place of the pinning one for web URLs, and
    # spellings that are sent with http(s), are refused.
    session.adapters["https://"] = session.adapters["http://"] = unix  # sidesteps mount()
    for url in (f"https://localhost:{rogue.port}/", f"http://localhost:{rogue.port}/"):
        with pytest.raises(ValueError, match="was not mounted through PinningSession"):
            session.get(url)
    assert len(unix.urls) == 2
    assert rogue.handshakes == 0


@pytest.mark.parametrize("session_kind", ["pinning", "plain"])
def test_a_scheme_of_its_own_is_not_sent_through_an_https_proxy_unchecked(
    pki: PKI, monkeypatch: pytest.MonkeyPatch, session_kind: str
) -> None:
    # Helper 61: a plain adapter mounted on a scheme of its own sends its URLs
    # through a proxy as urllib3 sends any scheme but https: to the proxy's
    # own pool, over TLS for an https:// proxy, whose pins nobody checked
    # (requests does not even validate it). The impostor proxy, pinned as
    # localhost, got the request. The twin, a plain Session, shows it does.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.bundle)
    with ConnectProxy(tls_cert=pki.rogue_root.issue_cert("localhost")) as proxy:
        session = PinningSession(pins(pki)) if session_kind == "pinning" else requests.Session()
        session.mount("x://", HTTPAdapter())
        proxies = {"all": proxy.url}
        if session_kind == "pinning":
            with pytest.raises(ValueError, match="HTTPAdapter, is no PinningAdapter"):
                session.get("x://origin.example/secret", proxies=proxies, timeout=10)
            assert proxy.forwarded == [] and proxy.connects == []
            # Through a cleartext (http://) proxy, which has no TLS session to
            # pin, it goes as in any session.
            with ConnectProxy() as cleartext:
                response = session.get(
                    "x://origin.example/open", proxies={"all": cleartext.url}, timeout=10
                )
                assert response.text == "forwarded"
                assert cleartext.forwarded == ["x://origin.example/open"]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning
                response = session.get("x://origin.example/secret", proxies=proxies, timeout=10)
            assert response.text == "forwarded"
            assert proxy.forwarded == ["x://origin.example/secret"]
        session.close()


class _OwnSocketAdapter(HTTPAdapter):
    """An adapter that, like docker-py's and requests-unixsocket's, makes its own
    (here: plain TCP to one loopback port) pool and uses no proxy."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return urllib3.HTTPConnectionPool("127.0.0.1", self.port)

    def request_url(self, request: Any, proxies: Any) -> str:
        return "/own"


class _Wrapping(BaseAdapter):
    """An adapter of another kind that sends through an HTTPAdapter (as Betamax's does)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = HTTPAdapter()

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.inner.send(request, **kwargs)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("adapter_kind", ["own socket", "wrapping", "other pins", "same pins"])
def test_a_scheme_of_its_own_goes_through_an_https_proxy_only_with_the_sessions_pins(
    pki: PKI, monkeypatch: pytest.MonkeyPatch, adapter_kind: str
) -> None:
    # Helpers 62 and 63: a PinningAdapter with other pins than the session's
    # checked an impostor proxy against those (none); an adapter of another
    # kind, or one that named one pool and used another, sent through it
    # unchecked. Whether an adapter would use the proxy cannot be known, so
    # only the session's pins let a URL of another scheme through a TLS
    # proxy; one that never uses a proxy (a unix socket) works with the proxy
    # turned off for it. The twin: the same pins pass the session's check,
    # and the proxy's own pins then refuse the impostor.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.bundle)
    with (
        ConnectProxy(tls_cert=pki.rogue_root.issue_cert("localhost")) as proxy,
        ConnectProxy() as own,
    ):
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        session = PinningSession(pins(pki))
        url = "x://origin.example/secret"
        if adapter_kind == "own socket":
            session.mount("x://", _OwnSocketAdapter(own.port))
            with pytest.raises(ValueError, match="is no PinningAdapter to check its pins"):
                session.get(url, timeout=10)
            off: Any = {"all": None}  # requests takes None as "no proxy"
            assert session.get(url, proxies=off, timeout=10).text == "forwarded"
            monkeypatch.setenv("NO_PROXY", "origin.example")
            assert session.get(url, timeout=10).text == "forwarded"
            assert own.forwarded == ["/own", "/own"]
        elif adapter_kind == "wrapping":
            session.mount("x://", _Wrapping())
            with pytest.raises(ValueError, match="_Wrapping, is no PinningAdapter") as info:
                session.get(url, timeout=10)
            # A proxy's (or the URL's) password is never shown.
            secret = proxy.url.replace("https://", "https://user:S3cret@")
            with pytest.raises(ValueError, match=r"https://\*\*\*@localhost") as info:
                session.get("x://u:S3cret@origin.example/", proxies={"all": secret}, timeout=10)
            assert "S3cret" not in str(info.value)
        elif adapter_kind == "other pins":
            session.mount("x://", PinningAdapter({}))
            with pytest.raises(ValueError, match="its adapter's pin set is not the session's"):
                session.get(url, timeout=10)
        else:
            session.mount("x://", PinningAdapter(pins(pki)))
            with pytest.raises(requests.exceptions.SSLError):
                session.get(url, timeout=10)
        session.close()
        assert proxy.forwarded == [] and proxy.connects == []


def test_proxies_none_means_no_proxy_for_a_scheme_of_its_own(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Helper 62: requests resolves proxies only when none are given at all;
    # send(..., proxies=None) had the session resolve them from ALL_PROXY.
    with ConnectProxy() as proxy:
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        session = PinningSession(pins(pki))
        session.mount("x://", HTTPAdapter())
        prepared = session.prepare_request(requests.Request("GET", "x://origin.example/a"))
        with pytest.raises(requests.exceptions.InvalidURL):  # no proxy: urllib3 has no x://
            session.send(prepared, proxies=None, timeout=10)
        assert proxy.forwarded == []
        response = session.send(prepared, timeout=10)  # the twin: resolved, the proxy
        assert response.text == "forwarded"
        assert proxy.forwarded == ["x://origin.example/a"]
        session.close()


def test_pinning_session_refuses_a_url_without_a_scheme_to_another_adapter() -> None:
    # urllib3 sends it with http, and requests passes it to the adapter as it is.
    with ConnectProxy() as origin:
        url = f"//127.0.0.1:{origin.port}/"
        session = PinningSession({})
        with pytest.raises(ValueError, match="out of pinning"):
            session.mount("/", HTTPAdapter())
        session.adapters["/"] = HTTPAdapter()  # sidesteps mount()
        with pytest.raises(ValueError, match="was not mounted through PinningSession"):
            session.get(url)
        assert origin.forwarded == []
        # The failing twin: a plain Session sends it, with http.
        plain = requests.Session()
        plain.mount("/", HTTPAdapter())
        assert plain.get(url).text == "forwarded"
        assert origin.forwarded == ["/"]


@pytest.mark.parametrize(
    ("text", "web"),
    [
        ("https://host/", True),
        ("HTTP://host/", True),
        ("https:host", True),
        ("ht\ttps://host/", True),
        (" https://host/", True),
        ("\x00http://host/", True),
        ("//host/", True),
        ("127.0.0.1:80/", True),
        ("a.b://host/", True),  # no scheme to urllib3, which would send it with http
        ("http", True),  # prefixes
        ("ftp", True),
        ("/", True),
        ("", True),
        ("http+unix://%2Frun%2Fdocker.sock/", False),
        ("HTTP+Unix://x/", False),
        ("ftp://host/", False),
        ("ftp:", False),
        ("localhost:443/", False),  # urllib3 and urllib.parse: the scheme "localhost"
        ("https+x://host/", False),
    ],
)
def test_what_a_pinning_session_takes_for_a_web_url(text: str, web: bool) -> None:
    session = PinningSession({})
    plain = Recording()
    session.adapters.clear()
    session.adapters[""] = plain  # every URL's adapter, sidestepping mount()
    if web:
        with pytest.raises(ValueError, match="was not mounted through PinningSession"):
            session.get_adapter(text)
        with pytest.raises(ValueError, match="out of pinning"):
            session.mount(text, HTTPAdapter())
    else:
        assert session.get_adapter(text) is plain
        session.mount(text, HTTPAdapter())


SCHEME_PIECES = st.sampled_from(
    ["http", "https", "HTTP", "s", "+unix", "+", "-", ".", "1", "a", ":", "//", "/", "h",
     "\t", "\n", " ", "\x00", "\x7f", "\u212a", "\u0130", "host", "[::1]", "%2F", "@"]
)  # fmt: skip


@given(st.lists(SCHEME_PIECES, max_size=8).map("".join))
def test_a_url_taken_for_another_scheme_is_one_to_both_parsers(text: str) -> None:
    session = PinningSession({})
    plain = Recording()
    session.adapters.clear()
    session.adapters[""] = plain
    try:
        session.get_adapter(text)
    except ValueError:
        return  # taken for a web URL: refused
    # Not a web URL to the session: neither urllib.parse (requests' adapter)
    # nor urllib3's parse_url reads an http(s) scheme, or none, in it.
    # A parser that refuses the URL sends nothing.
    web = ("http", "https", "")
    with contextlib.suppress(ValueError):
        assert urllib.parse.urlsplit(text).scheme.lower() not in web
    with contextlib.suppress(ValueError):  # urllib3's LocationParseError is one
        assert (urllib3.util.parse_url(text).scheme or "").lower() not in web
