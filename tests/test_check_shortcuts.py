"""The check's two shortcuts, against real servers: each would let a connection through if wrong.

- Whether a handshake validated the chain is read from ``check_hostname``
  when ssl keeps it on (it cannot be on with ``CERT_NONE``), else from
  ``verify_mode``. A context switched to ``CERT_NONE`` must still be judged
  unverified, and a context of another class is asked through its own
  ``verify_mode``, whatever its ``check_hostname`` says.
- A pin list remembers the certificate an SPKI pin matched last, as
  ``_ssl.Certificate`` (3.10 to 3.12) or DER (3.13), and the next chain's
  certificate is compared with it (``==``) instead of converted and hashed.
  A different certificate, even one with the same subject (the same
  ``__hash__``), must not pass for it; nor may a connection without
  validation borrow it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from requests_pinning import PinningPolicy, PinSet
from requests_pinning._tls import peer_chain

from .conftest import PKI
from .servers import TLSServer


def _connect(context: ssl.SSLContext, server: TLSServer) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _client(pki: PKI) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.bundle)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


def _policy(pki: PKI) -> PinningPolicy:
    return PinningPolicy(PinSet({"127.0.0.1": [pki.intermediate_pin]}))


def test_a_validating_context_is_judged_verified_with_or_without_check_hostname(
    pki: PKI, good: TLSServer
) -> None:
    context = _client(pki)
    with _connect(context, good) as sock:
        chain = peer_chain(sock)
        assert chain.verified and chain.size == 3
        assert _policy(pki).check(["127.0.0.1"], good.port, chain) is None
    context.check_hostname = False  # verify_mode stays CERT_REQUIRED: still validated
    with _connect(context, good) as sock:
        chain = peer_chain(sock)
        assert chain.verified and chain.size == 3


def test_twin_a_context_switched_to_cert_none_is_judged_unverified(
    pki: PKI, good: TLSServer
) -> None:
    context = _client(pki)
    policy = _policy(pki)
    with _connect(context, good) as sock:  # the pin matches, and is remembered
        assert policy.check(["127.0.0.1"], good.port, peer_chain(sock)) is None
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with _connect(context, good) as sock:
        chain = peer_chain(sock)
        assert not chain.verified
        assert chain.checked == (sock.getpeercert(binary_form=True),)  # the leaf only
        failure = policy.check(["127.0.0.1"], good.port, chain)
    assert failure is not None and "only the leaf is checked" in failure.reason
    context.verify_mode = ssl.CERT_REQUIRED  # and back
    with _connect(context, good) as sock:
        assert peer_chain(sock).verified


class _ClaimsHostnameChecks(ssl.SSLContext):
    """A context class whose check_hostname says yes whatever it does."""

    @property
    def check_hostname(self) -> bool:
        return True

    @check_hostname.setter
    def check_hostname(self, value: bool) -> None:
        base: Any = ssl.SSLContext.check_hostname  # _ssl's own attribute
        base.__set__(self, value)


def test_a_context_of_another_class_is_asked_for_its_verify_mode(
    pki: PKI, untrusted: TLSServer
) -> None:
    context = _ClaimsHostnameChecks(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # in fact
    context.verify_mode = ssl.CERT_NONE
    assert context.check_hostname is True
    with _connect(context, untrusted) as sock:
        chain = peer_chain(sock)
    assert not chain.verified and chain.size == 1
