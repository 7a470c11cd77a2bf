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

import functools
import gc
import warnings
from collections.abc import Callable, Iterator
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

URLLIB3_2 = not urllib3.__version__.startswith("1.")  # type: ignore[attr-defined]


def session(pki: PKI, pins: Any, **kwargs: Any) -> requests.Session:
    s = requests.Session()
    s.mount("https://", PinningAdapter(pins, **kwargs))
    s.verify = pki.bundle
    return s


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


def refused(call: Callable[[], object], rogue: TLSServer, pattern: str = "localhost") -> bool:
    """Run an attack; True if the pins refused it, False if it failed before them.

    Either way the impostor received nothing. (urllib3 1.26 hands a name with
    trailing dots to ``ssl`` unchanged, where IDNA refuses it before the
    handshake, and it validates a zone id as part of the name: such spellings
    cannot be dialled or fail hostname validation, before any pin is needed.)
    """
    error = attempt(call)
    if isinstance(error, PinMismatchError):
        rogue.wait_idle()
        assert rogue.bytes_received == 0
        assert rogue.requests == []
        assert error.pattern == pattern
        assert rogue.handshakes >= 1  # the impostor was reached: the pins stopped it
        return True
    assert error is not None, "the impostor answered"
    assert rogue.bytes_received == 0, repr(error)
    assert rogue.requests == []
    return False


def attempt(call: Callable[[], object]) -> BaseException | None:
    """The exception ``call`` raised (a MaxRetryError's reason), or None.

    urllib3 1.26 leaks the SSLSocket that ``ssl`` made when IDNA then refuses
    the server name; its ResourceWarning is not ours and is silenced here, with
    the socket collected before the warnings filter is restored.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            call()
        except Exception as exc:
            error: BaseException = exc
            if isinstance(exc, MaxRetryError) and exc.reason is not None:
                error = exc.reason
            # Drop every traceback of the chain: their frames hold the socket.
            seen: set[int] = set()
            link: BaseException | None = exc
            while link is not None and id(link) not in seen:
                seen.add(id(link))
                link.__traceback__ = None
                link = link.__cause__ or link.__context__
            del exc, link
            gc.collect()
            return error
        return None


@pytest.mark.parametrize("host", TRAILING_DOT_SPELLINGS)
def test_trailing_dots_through_a_connect_proxy(
    pki: PKI,
    evil_proxy: ConnectProxy,
    honest_proxy: ConnectProxy,
    rogue: TLSServer,
    host: str,
) -> None:
    s = session(pki, {"localhost": [pki.intermediate_pin]})
    url = f"https://{host}:443/"
    attack = functools.partial(
        s.post,
        url,
        proxies={"https": evil_proxy.url},
        headers={"Authorization": "Bearer secret"},
        data=b"x" * 100,
    )
    if refused(attack, rogue):
        # The passing twin: the genuine server, by the same spelling and path.
        assert s.get(url, proxies={"https": honest_proxy.url}).status_code == 200


def test_trailing_dots_through_pinning_proxy_manager(
    pki: PKI, evil_proxy: ConnectProxy, honest_proxy: ConnectProxy, rogue: TLSServer
) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    options: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": pki.bundle}
    evil = PinningProxyManager(pins, evil_proxy.url, **options)
    if refused(lambda: evil.request("POST", "https://localhost..:443/", body=b"secret"), rogue):
        honest = PinningProxyManager(pins, honest_proxy.url, **options)
        assert honest.request("GET", "https://localhost..:443/").status == 200


def test_trailing_dots_through_a_socks5h_proxy(pki: PKI, rogue: TLSServer, good: TLSServer) -> None:
    pins = {"localhost": [pki.intermediate_pin]}
    s = session(pki, pins)
    with Socks5Proxy(route_to=rogue.port) as proxy:
        attack = functools.partial(s.get, "https://localhost..:443/", proxies={"https": proxy.url})
        assert refused(attack, rogue)  # SOCKS dials the stripped name: always reached
    with Socks5Proxy(route_to=good.port) as proxy:
        assert s.get("https://localhost..:443/", proxies={"https": proxy.url}).status_code == 200


def test_redirect_to_a_trailing_dot_spelling(
    pki: PKI,
    good: TLSServer,
    evil_proxy: ConnectProxy,
    honest_proxy: ConnectProxy,
    rogue: TLSServer,
) -> None:
    # A page the client trusts, reached directly, redirects to a spelling of
    # the pinned host, which the attacker's proxy sends to the impostor.
    pins = {"localhost": [pki.intermediate_pin], "127.0.0.1": [pki.intermediate_pin]}
    with session(pki, pins) as s:
        page = f"https://127.0.0.1:{good.port}/redirect?to=https://localhost..:443/landed"
        # Only the redirect's target goes through the attacker's proxy.
        evil = {"https://localhost..": evil_proxy.url}
        if refused(functools.partial(s.get, page, proxies=evil), rogue):
            honest = {"https://localhost..": honest_proxy.url}
            response = s.get(page, proxies=honest)
            assert response.status_code == 200
            assert response.url == "https://localhost..:443/landed"
            assert len(response.history) == 1


def test_ipv6_zone_id_is_not_a_way_around_the_pins(pki: PKI) -> None:
    pins = {"::1": [pki.intermediate_pin]}
    with TLSServer(pki.rogue_leaf, bind="::1") as rogue:
        http = PinningPoolManager(pins, cert_reqs="CERT_REQUIRED", ca_certs=pki.bundle)
        results = []
        for url in (f"https://[::1%251]:{rogue.port}/", f"https://[0::1%251]:{rogue.port}/"):
            attack = functools.partial(http.request, "POST", url, body=b"secret")
            results.append(refused(attack, rogue, pattern="::1"))
    # urllib3 2.x validates the address without its zone: the pins refused it;
    # 1.26 validates "::1%1" as a name, which fails before pins are needed.
    assert results == [URLLIB3_2] * 2
    if results[0]:
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
        attack = functools.partial(http.request, "GET", f"https://127.0.0.1:{rogue.port}/")
        if refused(attack, rogue):
            assert http.request("GET", f"https://127.0.0.1:{good.port}/").status == 200
        else:  # urllib3 1.26 hands "LOCALHOST.." to ssl as it is; IDNA refuses it
            assert not URLLIB3_2
            assert option == "server_hostname"


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
    response: Any = None

    def call() -> None:
        nonlocal response
        response = http.request("POST", url, body=b"secret", retries=False, timeout=10)

    error = attempt(call)
    if error is None:
        return f"HTTP {response.status}"
    if isinstance(error, PinMismatchError):
        return "refused by pins"
    if isinstance(error, urllib3.exceptions.LocationParseError):
        return "not a URL to urllib3"
    assert isinstance(error, urllib3.exceptions.HTTPError | OSError | ValueError | UnicodeError)
    return f"failed before pins: {type(error).__name__}"


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
