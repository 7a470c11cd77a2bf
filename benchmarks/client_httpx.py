"""The httpx face of the HTTP benchmarks: the clients compared, and their workload.

Variants (one synchronous ``httpx.Client`` each, HTTP/1.1, ``trust_env=False``
on the client and its transport, so that ``SSL_CERT_FILE`` and proxies from
the environment play no part):

* ``httpx-plain``: ``httpx.HTTPTransport`` as it comes;
* ``httpx-plain-2``: the same again, as a separate variant: this face's A/A control;
* ``httpx-pinned``: :class:`requests_pinning.httpx.PinningTransport` with the
  server's host pinned, with the pin of the requests face's ``pinned`` (the
  intermediate; the leaf with ``verify=False``).

``verify`` configurations, as httpx 0.28 spells them: ``bundle`` is an
``ssl.SSLContext`` made with ``cafile=`` the one-root bundle (``verify=<str>``
is deprecated); ``certifi`` is ``verify=True`` (certifi's bundle, through the
overlay of :func:`benchmarks.pki.make_certifi_overlay`); ``none`` is
``verify=False``. httpx builds its ``SSLContext`` once per transport, not per
connection as requests does, so a new connection here pays no loading of CA
certificates in any variant. A context the caller passes in (``bundle``) is one
:class:`~requests_pinning.httpx.PinningTransport` does not trust to say what a
past handshake verified, so there it also checks that the verified chain's
signatures link: part of what ``httpx-pinned`` costs with ``bundle``.

Only :mod:`benchmarks.client` imports this module, and only for these
variants: the requests face's client processes never import httpx.
"""

from __future__ import annotations

import ssl

import httpx

from requests_pinning.httpx import PinningTransport

from .client import HTTPX_VARIANTS, Target, pin_for
from .pki import HOST

__all__ = ["make_client", "run_requests"]

_CLOSE = {"Connection": "close"}


def _verify(target: Target, verify: str) -> ssl.SSLContext | bool:
    if verify == "bundle":
        return ssl.create_default_context(cafile=str(target.bundle))
    if verify == "certifi":
        return True
    if verify == "none":
        return False
    raise ValueError(f"unknown verify configuration {verify!r}")


def make_client(variant: str, target: Target, *, verify: str = "bundle") -> httpx.Client:
    """A client of the given httpx variant and ``verify`` configuration."""
    if variant not in HTTPX_VARIANTS:
        raise ValueError(f"unknown httpx variant {variant!r}")
    context = _verify(target, verify)
    transport: httpx.HTTPTransport
    if variant == "httpx-pinned":
        transport = PinningTransport(
            {HOST: [pin_for(target, verify)]}, verify=context, trust_env=False
        )
    else:
        transport = httpx.HTTPTransport(verify=context, trust_env=False)
    return httpx.Client(transport=transport, trust_env=False)


def run_requests(client: httpx.Client, url: str, count: int, *, new: bool) -> None:
    """Make ``count`` GET requests; raise on anything but ``200 ok``."""
    headers = _CLOSE if new else None
    for _ in range(count):
        response = client.get(url, headers=headers)
        if response.status_code != 200 or response.content != b"ok":
            raise RuntimeError(f"unexpected response {response.status_code} {response.content!r}")
