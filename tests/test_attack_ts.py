# ruff: noqa: F811  (the fixtures imported from test_truststore)
"""The attack pass on truststore's contexts: every face, and threads sharing one context.

Each test runs truststore's macOS path (see tests/test_truststore.py): an
impostor whose leaf a CA the platform trusts issued, served with the genuine
intermediate, must be refused with nothing sent, by every face and the CLI;
and the genuine server must pass while other threads' handshakes flip the
shared context to CERT_NONE.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import requests
import urllib3

from requests_pinning import PinMismatchError, PinningAdapter
from requests_pinning.httpx import AsyncPinningTransport
from requests_pinning.httpx import PinMismatchError as HttpxPinMismatchError

from .conftest import PKI
from .servers import ConnectProxy, TLSServer
from .test_truststore import (  # noqa: F401  (fixtures)
    impostor,
    injected,
    mis_issued,
    platform,
)
from .threads import switching_often


def test_cli_check_under_truststore_macos_path(
    pki: PKI, impostor: TLSServer, platform: list[bytes], tmp_path: Path
) -> None:
    # `requests-pinning check` run where truststore is injected at start-up
    # (e.g. pip-system-certs' .pth): on macOS and Windows its context
    # handshakes with CERT_NONE, and the CLI reads the chain with peer_chain()
    # and never asks may_misreport()/vouched(). The impostor (a leaf from a CA
    # the platform trusts, served with the genuine intermediate) is reported
    # as matching the intermediate pin, where the library refuses it.
    from requests_pinning._pinset import PinSet
    from requests_pinning.cli._sources import Network, parse_endpoint, tls_context
    from requests_pinning.cli.check import check_one

    pinfile = tmp_path / "pins.json"
    pinfile.write_text(json.dumps({"127.0.0.1": {"pins": [pki.intermediate_pin]}}))
    pinset = PinSet.from_json(str(pinfile))
    context = tls_context(Network(ca_bundle=pki.bundle, timeout=10, insecure=False))
    endpoint = parse_endpoint(f"127.0.0.1:{impostor.port}")
    record = check_one(pinset, endpoint, context, 10, datetime.now(timezone.utc))
    assert platform  # the platform accepted it
    assert not record["ok"], (record["status"], record["reason"], record["matched"])


def test_httpx_async_impostor(pki: PKI, impostor: TLSServer, platform: list[bytes]) -> None:
    async def main() -> int:
        transport = AsyncPinningTransport({"127.0.0.1": [pki.intermediate_pin]})
        async with httpx.AsyncClient(transport=transport, timeout=10) as client:
            return (await client.get(f"https://127.0.0.1:{impostor.port}/")).status_code

    with pytest.raises(HttpxPinMismatchError):
        asyncio.run(main())
    impostor.wait_idle()
    assert impostor.bytes_received == 0


def test_urllib3_pool_manager_impostor(
    pki: PKI, impostor: TLSServer, platform: list[bytes]
) -> None:
    from requests_pinning import PinningPoolManager

    pm = PinningPoolManager({"127.0.0.1": [pki.intermediate_pin]}, ca_certs=pki.bundle)
    with pytest.raises(Exception) as info:
        pm.request("GET", f"https://127.0.0.1:{impostor.port}/", retries=False)
    assert "does not hold on its own" in str(info.value)
    impostor.wait_idle()
    assert impostor.bytes_received == 0


def test_inject_urllib3_impostor(pki: PKI, impostor: TLSServer, platform: list[bytes]) -> None:
    from requests_pinning import extract_from_urllib3, inject_into_urllib3

    inject_into_urllib3({"127.0.0.1": [pki.intermediate_pin]})
    try:
        pm = urllib3.PoolManager(ca_certs=pki.bundle)
        with pytest.raises(Exception) as info:
            pm.request("GET", f"https://127.0.0.1:{impostor.port}/", retries=False)
        assert "does not hold on its own" in str(info.value)
    finally:
        extract_from_urllib3()
    impostor.wait_idle()
    assert impostor.bytes_received == 0


PIN_FAILURES = (PinMismatchError, HttpxPinMismatchError)


def _in_threads(get: Callable[[], int], *, threads: int = 8, each: int) -> None:
    """Call ``get`` (a status code) ``each`` times in each of ``threads`` threads: no pin failure.

    The threads switch every microsecond, which now and then breaks a
    handshake on its own (a TLS alert, seen once in 800 on Python 3.10):
    those are not what this is about, and a few are let pass.
    """
    errors: list[BaseException] = []
    statuses: list[int] = []  # list.append is atomic; a shared counter's += is not

    def worker() -> None:
        for _ in range(each):
            try:
                statuses.append(get())
            except BaseException as exc:
                errors.append(exc)

    with switching_often():  # handshakes overlap
        started = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in started:
            thread.start()
        for thread in started:
            thread.join()
    refusals = [error for error in errors if isinstance(error, PIN_FAILURES)]
    assert not refusals, (len(statuses), len(refusals), refusals[:1])
    assert statuses == [200] * len(statuses)
    assert len(statuses) >= threads * each * 0.98, errors[:3]


@pytest.mark.skipif(
    urllib3.__version__.startswith("1."),  # type: ignore[attr-defined]
    reason="urllib3 1.26 itself reads the shared context's check_hostname and verify_mode "
    "after each handshake: mid-race it checks names on the empty getpeercert() of an "
    "unvalidated session, and fails without any pinning (SubjectAltNameWarning, then "
    "CertificateError)",
)
def test_concurrent_handshakes_on_a_shared_truststore_context(
    pki: PKI, good: TLSServer, platform: list[bytes]
) -> None:
    # On the macOS/Windows path truststore's _configure_context flips the
    # shared inner context to check_hostname=False/CERT_NONE for every
    # handshake; a thread that reads verify_mode meanwhile saw "CA
    # validation is off" and refused the genuine server's intermediate pin.
    session = requests.Session()
    session.mount("https://", PinningAdapter({"127.0.0.1": [pki.intermediate_pin]}))
    url = f"https://127.0.0.1:{good.port}/"
    close = {"Connection": "close"}
    _in_threads(
        lambda: session.get(url, verify=pki.bundle, timeout=10, headers=close).status_code,
        each=150,
    )


def test_requests_https_proxy_tls_in_tls_impostor(
    pki: PKI, impostor: TLSServer, tls_proxy: ConnectProxy, platform: list[bytes]
) -> None:
    session = requests.Session()
    session.mount("https://", PinningAdapter({"127.0.0.1": [pki.intermediate_pin]}))
    with pytest.raises(Exception) as info:
        session.get(
            f"https://127.0.0.1:{impostor.port}/",
            verify=pki.bundle,
            timeout=10,
            proxies={"https": tls_proxy.url},
        )
    assert "does not hold on its own" in str(info.value)
    impostor.wait_idle()
    assert impostor.handshakes == 1 and impostor.bytes_received == 0


def test_httpx_https_proxy_tls_in_tls_impostor(
    pki: PKI, impostor: TLSServer, tls_proxy: ConnectProxy, platform: list[bytes]
) -> None:
    from requests_pinning.httpx import PinningTransport

    ctx = ssl.create_default_context(cafile=pki.bundle)  # truststore's
    transport = PinningTransport(
        {"127.0.0.1": [pki.intermediate_pin]},
        verify=ctx,
        proxy=httpx.Proxy(tls_proxy.url, ssl_context=ctx),
    )
    with httpx.Client(transport=transport, timeout=10) as client, pytest.raises(Exception) as info:
        client.get(f"https://127.0.0.1:{impostor.port}/")
    assert "does not hold on its own" in str(info.value)
    impostor.wait_idle()
    assert impostor.handshakes == 1 and impostor.bytes_received == 0


def test_httpx_concurrent_handshakes_on_a_shared_truststore_context(
    pki: PKI, good: TLSServer, platform: list[bytes]
) -> None:
    # The same race through httpx: one transport, one (truststore's) context.
    from requests_pinning.httpx import PinningTransport

    transport = PinningTransport(
        {"127.0.0.1": [pki.intermediate_pin]}, verify=ssl.create_default_context(cafile=pki.bundle)
    )
    url = f"https://127.0.0.1:{good.port}/"
    with httpx.Client(transport=transport, timeout=10) as client:
        _in_threads(lambda: client.get(url, headers={"Connection": "close"}).status_code, each=100)
