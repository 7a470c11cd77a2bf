"""The pinned name is the authenticated name: no spelling of a host reaches an impostor.

urllib3 derives the name it validates a certificate against on its own: the tunnel
host or the host, maybe replaced by ``server_hostname``, all trailing dots and any
IPv6 zone id removed, then ``ssl`` IDNA-encodes it. A pin lookup that derived the
name differently (one trailing dot stripped instead of all, a zone id kept) found
no entry and let a rogue-CA certificate through as "unpinned". These tests attack
that with real servers: an attacker's proxy (or resolver) that sends *every* name
to the impostor, and servers that count the bytes they receive.

The differential property test uses urllib3 itself as the oracle: it dials each
spelling and lets urllib3 validate the certificate, which is valid only for pinned
names. Whenever urllib3 accepts it, the pins must have been applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import MaxRetryError

from requests_pinning import (
    PinMismatchError,
    PinningAdapter,
    PinningPoolManager,
    PinningProxyManager,
)

from .conftest import PKI
from .servers import ConnectProxy, Socks5Proxy, TLSServer


def session(pki: PKI, pins: Any, **kwargs: Any) -> requests.Session:
    s = requests.Session()
    s.mount("https://", PinningAdapter(pins, **kwargs))
    s.verify = pki.bundle
    return s


def assert_nothing_leaked(server: TLSServer) -> None:
    server.wait_idle()
    assert server.handshakes >= 1  # the impostor was reached and its certificate seen
    assert server.bytes_received == 0
    assert server.requests == []


@pytest.fixture
def evil_proxy(rogue: TLSServer) -> Iterator[ConnectProxy]:
    """A CONNECT proxy in the attacker's hands: every name goes to the impostor."""
    with ConnectProxy(route_to=rogue.port) as proxy:
        yield proxy


@pytest.fixture
def honest_proxy(good: TLSServer) -> Iterator[ConnectProxy]:
    """The same proxy routing to the genuine server: the passing twin."""
    with ConnectProxy(route_to=good.port) as proxy:
        yield proxy


TRAILING_DOT_SPELLINGS = [
    "localhost..",
    "localhost...",
    "LOCALHOST..",
    "localhost.\u3002",  # an ideographic full stop, mapped to "." by UTS 46
]


@pytest.mark.parametrize("host", TRAILING_DOT_SPELLINGS)
def test_trailing_dots_through_a_connect_proxy_requests(
    pki: PKI, evil_proxy: ConnectProxy, rogue: TLSServer, host: str
) -> None:
    s = session(pki, {"localhost": [pki.intermediate_pin]})
    proxies = {"https": evil_proxy.url}
    with pytest.raises((PinMismatchError, requests.exceptions.InvalidURL)) as info:
        s.post(
            f"https://{host}:443/",
            proxies=proxies,
            headers={"Authorization": "Bearer secret"},
            data=b"x" * 100,
        )
    if isinstance(info.value, PinMismatchError):
        assert info.value.host == "localhost"
        assert info.value.pattern == "localhost"
        assert_nothing_leaked(rogue)
    assert rogue.bytes_received == 0


@pytest.mark.parametrize("host", ["localhost..", "LocalHost...."])
def test_trailing_dots_twin_genuine_server_passes(
    pki: PKI, honest_proxy: ConnectProxy, host: str
) -> None:
    s = session(pki, {"localhost": [pki.intermediate_pin]})
    response = s.get(f"https://{host}:443/", proxies={"https": honest_proxy.url})
    assert response.status_code == 200


def test_trailing_dots_through_pinning_proxy_manager(
    pki: PKI, evil_proxy: ConnectProxy, honest_proxy: ConnectProxy, rogue: TLSServer
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    evil = PinningProxyManager(pins, evil_proxy.url, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    with pytest.raises(MaxRetryError) as info:
        evil.request("POST", "https://localhost..:443/", body=b"secret")
    assert isinstance(info.value.reason, PinMismatchError)
    assert_nothing_leaked(rogue)
    honest = PinningProxyManager(
        pins, honest_proxy.url, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle
    )
    assert honest.request("GET", "https://localhost..:443/").status == 200


def test_trailing_dots_through_a_socks5h_proxy(pki: PKI, rogue: TLSServer, good: TLSServer) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    with Socks5Proxy(route_to=rogue.port) as proxy:
        s = session(pki, pins)
        with pytest.raises(PinMismatchError):
            s.get("https://localhost..:443/", proxies={"https": proxy.url})
        assert_nothing_leaked(rogue)
    with Socks5Proxy(route_to=good.port) as proxy:
        s = session(pki, pins)
        assert s.get("https://localhost..:443/", proxies={"https": proxy.url}).status_code == 200


def test_redirect_to_a_trailing_dot_spelling(pki: PKI, good: TLSServer, rogue: TLSServer) -> None:
    # A page the client trusts (reached directly) redirects to a spelling of
    # the pinned host that the attacker's proxy sends to the impostor.
    pins = {"localhost": [pki.intermediate_pin]}
    with ConnectProxy(route_to=rogue.port) as proxy:
        s = session(pki, pins)
        s.proxies = {"https": proxy.url}
        s.trust_env = False
        # The first hop goes through the proxy too; route it to the good server
        # by a name the attacker does not touch: the proxy sends everything to
        # the impostor, so the first hop is made without it.
        first = requests.Session()
        first.mount("https://", PinningAdapter(pins))
        first.verify = pki.bundle
        hop = first.get(
            f"https://localhost:{good.port}/redirect?to=https://localhost..:443/landed",
            allow_redirects=False,
        )
        assert hop.status_code == 302
        with pytest.raises(PinMismatchError):
            s.send(s.prepare_request(requests.Request("GET", hop.headers["Location"])))
        # and when requests follows the redirect itself:
        with pytest.raises(PinMismatchError):
            s.get(f"https://localhost:{good.port}/redirect?to=https://localhost..:443/landed")
        assert_nothing_leaked(rogue)


def test_ipv6_zone_id_is_not_a_way_around_the_pins(pki: PKI) -> None:
    pins = {"::1": [pki.intermediate_pin]}
    with TLSServer(pki.rogue_leaf, bind="::1") as rogue:
        http = PinningPoolManager(pins, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        for url in (f"https://[::1%251]:{rogue.port}/", f"https://[0::1%251]:{rogue.port}/"):
            with pytest.raises(MaxRetryError) as info:
                http.request("POST", url, body=b"secret")
            assert isinstance(info.value.reason, PinMismatchError)
            assert info.value.reason.host == "::1"
        assert rogue.bytes_received == 0
    with TLSServer(pki.leaf, bind="::1") as good:
        http = PinningPoolManager(pins, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        assert http.request("GET", f"https://[::1%251]:{good.port}/").status == 200


def test_server_hostname_and_assert_hostname_pins_apply(
    pki: PKI, rogue: TLSServer, good: TLSServer
) -> None:
    # Dialled by an unpinned spelling, validated as a pinned name.
    pins = {"localhost": [pki.intermediate_pin]}
    for option, name in (("server_hostname", "LOCALHOST.."), ("assert_hostname", "LocalHost")):
        http = PinningPoolManager(
            pins,
            cert_reqs="CERT_REQUIRED",
            ca_certs=pki.bundle,
            **{option: name},  # type: ignore[arg-type]
        )
        with pytest.raises(MaxRetryError) as info:
            http.request("GET", f"https://127.0.0.1:{rogue.port}/")
        assert isinstance(info.value.reason, PinMismatchError)
        assert info.value.reason.pattern == "localhost"
        assert http.request("GET", f"https://127.0.0.1:{good.port}/").status == 200
    assert rogue.bytes_received == 0


# --- the differential property test --------------------------------------------------


def _case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


_DOTS = st.lists(st.sampled_from([".", "\u3002", "\uff0e", "\uff61"]), max_size=3).map("".join)

_IPV4 = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f.0.0.1",
    "0x7F000001",
    "0177.0.0.1",
    "0177.0.0.01",
    "[::ffff:127.0.0.1]",
    "[::FFFF:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
]
_IPV6 = ["[::1]", "[0:0:0:0:0:0:0:1]", "[::0001]", "[0::1]", "[0000::1]"]
_ZONES = st.sampled_from(["", "%251", "%25lo", "%25eth0", "%2599"])


@st.composite
def spellings(draw: st.DrawFn) -> str:
    """A spelling of one of the names the impostor's certificate is valid for."""
    kind = draw(st.sampled_from(["name", "ipv4", "ipv6"]))
    if kind == "name":
        name = _case(draw, "localhost")
        if draw(st.booleans()):  # fullwidth letters, which UTS 46 maps to ASCII
            name = "".join(chr(ord(c) + 0xFEE0) if draw(st.booleans()) else c for c in name)
        return name + draw(_DOTS)
    if kind == "ipv4":
        address = _case(draw, draw(st.sampled_from(_IPV4)))
        return address if address.startswith("[") else address + draw(_DOTS)
    address = draw(st.sampled_from(_IPV6))
    return address[:-1] + draw(_ZONES) + "]"


@pytest.fixture(scope="module")
def differential_servers(pki: PKI) -> Iterator[dict[str, Any]]:
    with (
        TLSServer(pki.rogue_leaf) as rogue4,
        TLSServer(pki.rogue_leaf, bind="::1") as rogue6,
        TLSServer(pki.leaf) as good4,
        TLSServer(pki.leaf, bind="::1") as good6,
        ConnectProxy(route_to=rogue4.port) as evil_proxy,
        ConnectProxy(route_to=good4.port) as honest_proxy,
    ):
        yield {
            "rogue4": rogue4,
            "rogue6": rogue6,
            "good4": good4,
            "good6": good6,
            "evil_proxy": evil_proxy,
            "honest_proxy": honest_proxy,
        }


PINS_FOR_EVERY_NAME = ("localhost", "127.0.0.1", "::1")


def _outcome(http: urllib3.PoolManager, url: str) -> str:
    try:
        response = http.request("POST", url, body=b"secret", retries=False, timeout=10)
    except PinMismatchError:
        return "refused by pins"
    except urllib3.exceptions.LocationParseError:
        return "not a URL to urllib3"
    except (urllib3.exceptions.HTTPError, OSError, ValueError, UnicodeError) as exc:
        return f"failed before pins: {type(exc).__name__}"
    return f"HTTP {response.status}"


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(host=spellings(), via_proxy=st.booleans(), port_zeros=st.integers(0, 2))
def test_every_spelling_urllib3_authenticates_finds_the_pinned_entry(
    pki: PKI,
    differential_servers: dict[str, Any],
    host: str,
    via_proxy: bool,
    port_zeros: int,
) -> None:
    servers = differential_servers
    # Every name the certificates are valid for is pinned, to the genuine
    # intermediate: the impostor must never get a byte, whatever the spelling.
    pins = {name: [pki.intermediate_pin] for name in PINS_FOR_EVERY_NAME}
    ipv6 = host.startswith("[") and "ffff" not in host.lower()
    family = "6" if ipv6 else "4"
    rogue, good = servers["rogue" + family], servers["good" + family]
    if via_proxy:
        kwargs: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": pki.bundle}
        port = 443
        evil: urllib3.PoolManager = PinningProxyManager(pins, servers["evil_proxy"].url, **kwargs)
        honest: urllib3.PoolManager = PinningProxyManager(
            pins, servers["honest_proxy"].url, **kwargs
        )
        rogue, good = servers["rogue4"], servers["good4"]
    else:
        port = rogue.port
        evil = PinningPoolManager(pins, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        honest = PinningPoolManager(pins, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
    before = rogue.bytes_received
    result = _outcome(evil, f"https://{host}:{'0' * port_zeros}{port}/")
    event(result)
    rogue.wait_idle()
    # The oracle: urllib3 validated the rogue certificate only if the name it
    # validated is one of the pinned names; so any response means a bypass.
    assert not result.startswith("HTTP"), (host, via_proxy, result)
    assert rogue.bytes_received == before, (host, via_proxy, result)
    if result == "refused by pins":
        # The twin: the same spelling to the genuine server passes, so the
        # entry that refused the impostor is the right one.
        good_port = 443 if via_proxy else good.port
        assert _outcome(honest, f"https://{host}:{'0' * port_zeros}{good_port}/") == "HTTP 200"
    evil.clear()
    honest.clear()
