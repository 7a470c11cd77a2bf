"""How much a check converts: no more than it must, and never less than the decision needs.

A verified chain comes as the TLS library's certificate objects, converted to
DER only when the check reaches them. A pass stops at the first match, and
tries first where a pin of the list matched last time; deny pins, failures and
reports still see the whole chain.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from requests_pinning import PinFailure, PinningPolicy, PinSet
from requests_pinning._verify import PeerChain

from .conftest import PKI


class _Cert:
    """Stands for an _ssl.Certificate: its DER comes out of a conversion that is counted."""

    def __init__(self, der: bytes, log: list[bytes]) -> None:
        self.der = der
        self.log = log


def _convert(cert: _Cert) -> bytes:
    cert.log.append(cert.der)
    return cert.der


def _ders(pki: PKI) -> list[bytes]:
    pems = [pki.leaf.cert_chain_pems[0].bytes(), pki.intermediate.cert_pem.bytes()]
    pems.append(pki.root.cert_pem.bytes())
    return [x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER) for pem in pems]


def _chain(pki: PKI, log: list[bytes]) -> PeerChain:
    certs = [_Cert(der, log) for der in _ders(pki)]
    return PeerChain(checked=certs, verified=True, to_der=_convert)


def test_a_pass_converts_up_to_the_match_then_only_the_matching_certificate(pki: PKI) -> None:
    leaf, intermediate, _root = _ders(pki)
    policy = PinningPolicy(PinSet({"api.example.com": [pki.intermediate_pin]}))
    log: list[bytes] = []
    assert policy.check(["api.example.com"], 443, _chain(pki, log)) is None
    assert log == [leaf, intermediate]  # leaf first, and never the root
    log.clear()
    assert policy.check(["api.example.com"], 443, _chain(pki, log)) is None
    assert log == [intermediate]  # where the pin matched last time


def test_twin_a_chain_whose_match_moved_is_still_searched_whole(pki: PKI) -> None:
    leaf, _intermediate, root = _ders(pki)
    policy = PinningPolicy(PinSet({"api.example.com": [pki.intermediate_pin, pki.root_pin]}))
    log: list[bytes] = []
    assert policy.check(["api.example.com"], 443, _chain(pki, log)) is None
    log.clear()
    # The intermediate's place now holds a certificate no pin matches: the
    # rest of the chain is searched, leaf first, and the root's pin matches.
    certs = [_Cert(leaf, log), _Cert(leaf, log), _Cert(root, log)]
    moved = PeerChain(checked=certs, verified=True, to_der=_convert)
    assert policy.check(["api.example.com"], 443, moved) is None
    assert log == [leaf, leaf, root]
    unpinned = PeerChain(checked=[_Cert(leaf, log)], verified=True, to_der=_convert)
    assert policy.check(["api.example.com"], 443, unpinned) is not None


def test_deny_pins_and_failures_see_every_certificate(pki: PKI) -> None:
    leaf, intermediate, root = _ders(pki)
    pins = {"api.example.com": {"pins": [pki.leaf_pin], "deny": [pki.root_pin]}}
    failures: list[PinFailure] = []
    policy = PinningPolicy(PinSet(pins), on_failure=failures.append)
    failure = policy.check(["api.example.com"], 443, _chain(pki, []))
    assert failure is not None and "is denied by" in failure.reason
    assert failure.checked_chain == (leaf, intermediate, root)
    assert failures == [failure]


def test_a_certificate_that_cannot_be_converted_fails_closed(pki: PKI) -> None:
    def broken(cert: object) -> bytes:
        raise ValueError("cannot convert")

    leaf = _ders(pki)[0]
    failures: list[PinFailure] = []
    policy = PinningPolicy(
        PinSet({"api.example.com": [pki.intermediate_pin]}), on_failure=failures.append
    )
    chain = PeerChain(checked=[leaf, object()], verified=True, to_der=broken)
    failure = policy.check(["api.example.com"], 443, chain)
    assert failure is not None and "could not be checked" in failure.reason
    assert failure.checked_chain == ()  # the record goes without what could not be read
    assert failures == [failure]
