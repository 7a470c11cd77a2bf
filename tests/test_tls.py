"""Reading chains, without servers: when a context's word on validation needs proof.

A context the user passed in (shared, changed by others) or one that
validates after a ``CERT_NONE`` handshake (truststore's) may call a chain
verified that OpenSSL never verified. ``vouched`` then makes the chain prove
itself; each refusal here has its passing twin.
"""

from __future__ import annotations

import ssl
from datetime import datetime, timedelta, timezone

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from requests_pinning._tls import may_misreport, vouched
from requests_pinning._verify import PeerChain

from .conftest import PKI
from .test_certs import der_tlv, rebuild_cert, tbs_fields


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def chain_of(*pems: bytes) -> PeerChain:
    return PeerChain(checked=tuple(der(pem) for pem in pems), verified=True)


class _Subclass(ssl.SSLContext):
    pass


def test_only_contexts_of_another_class_may_misreport() -> None:
    assert may_misreport(_Subclass(ssl.PROTOCOL_TLS_CLIENT))
    assert not may_misreport(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    assert not may_misreport(None)


def test_a_genuine_chain_for_the_name_holds(pki: PKI) -> None:
    chain = chain_of(
        pki.leaf.cert_chain_pems[0].bytes(),
        pki.intermediate.cert_pem.bytes(),
        pki.root.cert_pem.bytes(),
    )
    assert vouched(chain, ["localhost"]) is chain
    assert vouched(chain, ["127.0.0.1"]) is chain
    assert vouched(chain, []) is chain  # no name check asked for


@pytest.mark.parametrize(
    ("san", "name", "holds"),
    [
        ("*.example.com", "api.example.com", True),
        ("*.example.com", "API.Example.COM.", True),  # one trailing dot: the same name
        ("api.example.com", "api.example.com.", True),
        ("*.example.com", "example.com", False),  # a wildcard stands for one label
        ("*.example.com", "a.b.example.com", False),
        ("*.com", "victim.com", False),  # not under two labels: no wildcard (as OpenSSL)
        ("*.com", "*.com", True),  # only itself, as any name
        ("api.example.com", "api.example.com..", False),  # empty labels: no name
        ("api.example.com", "api.example.co", False),
        # Refused by a real handshake with ssl's check_hostname (OpenSSL 3.0;
        # helper 42's attack pass compared 2,183 pairs): a wildcard stands for
        # letters, digits and hyphens only, and is one only when well formed.
        ("*.example.com", "a_b.example.com", False),
        ("*.example.com", "a*.example.com", False),
        ("*.*.example.com", "a.*.example.com", False),
        ("*.ex*ample.com", "a.ex*ample.com", False),
        ("*.exa_mple.com", "x.exa_mple.com", False),
        ("*.-example.com", "x.-example.com", False),
        ("*.example-.com", "x.example-.com", False),
        ("api.example.com.", "api.example.com", False),  # a SAN's trailing dot: only itself
        ("*.example.com.", "x.example.com", False),
        ("*.example.com", "\u212a.example.com", False),  # not ASCII (KELVIN SIGN lowers to k)
        ("*.xn--bcher-kva.example", "a-b.xn--bcher-kva.example", True),
    ],
)
def test_a_leaf_is_for_a_name_as_openssl_reads_its_names(
    pki: PKI, san: str, name: str, holds: bool
) -> None:
    chain = chain_of(_leaf_for(pki, san), pki.intermediate.cert_pem.bytes())
    result = vouched(chain, [name])
    if holds:
        assert result is chain
    else:
        assert "the leaf is not for the name" in str(result.problem)


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("a rogue leaf with the genuine intermediate appended", "signatures do not link"),
        ("the genuine CA's certificate for another name", "the leaf is not for the name"),
        ("a leaf that signed another leaf", "an issuer is not a CA"),
    ],
)
def test_a_chain_that_does_not_hold_fails_closed(pki: PKI, case: str, problem: str) -> None:
    names = ["localhost"]
    if case.startswith("a rogue leaf"):
        chain = chain_of(
            pki.rogue_leaf.cert_chain_pems[0].bytes(), pki.intermediate.cert_pem.bytes()
        )
    elif case.startswith("the genuine CA's"):
        other = pki.intermediate.issue_cert("attacker.example")
        chain = chain_of(other.cert_chain_pems[0].bytes(), pki.intermediate.cert_pem.bytes())
    else:
        ca = trustme.CA()
        leaf = ca.issue_cert("signer.example")
        # A certificate for localhost signed with the key of a leaf: made by hand.
        forged = _signed_by_leaf(leaf, "localhost")
        chain = chain_of(forged, leaf.cert_chain_pems[0].bytes())
        names = ["localhost"]
    result = vouched(chain, names)
    assert result.checked == () and result.problem is not None
    assert problem in result.problem


@pytest.mark.parametrize("version", [1, 2])
def test_a_chain_that_cannot_be_read_fails_closed_and_says_so(pki: PKI, version: int) -> None:
    # OpenSSL validates X.509 v2 certificates, which cryptography cannot
    # parse: such a chain cannot prove itself, so it fails closed, but the
    # message says it could not be read, not that it is false. Its twin, the
    # same chain with the leaf left as v3 (version INTEGER 2), holds.
    leaf = der(pki.leaf.cert_chain_pems[0].bytes())
    fields = [element for _, _, element in tbs_fields(leaf)]
    fields[0] = der_tlv(0xA0, der_tlv(0x02, bytes([version])))
    rebuilt = rebuild_cert(leaf, fields)
    chain = PeerChain(checked=(rebuilt, der(pki.intermediate.cert_pem.bytes())), verified=True)
    result = vouched(chain, ["localhost"])
    if version == 2:
        assert rebuilt == leaf and result is chain
        return
    assert result.checked == () and result.problem is not None
    assert result.problem.startswith(
        "the verified chain cannot be checked on its own: cryptography cannot read "
        "certificate 1 of 2 ("
    )
    assert "does not hold" not in result.problem


def test_a_caller_s_own_name_class_never_judges_another_name(pki: PKI) -> None:
    # What is judged is kept for every later connection (one judgement per
    # chain and names). A str subclass whose text is one name and whose
    # rstrip(), or __eq__ and __hash__, say another had the chain for
    # attacker.example judged good, and kept, for victim.example: a later
    # honest check for victim.example then passed it. Each name is read as
    # str reads it; a name that is not a str fails closed.
    from requests_pinning import _tls

    class RstripLies(str):
        def rstrip(self, chars: str | None = None) -> str:
            return "attacker.example"

    class Lying(str):
        def __hash__(self) -> int:
            return hash("victim.example")

        def __eq__(self, other: object) -> bool:
            return True

    other = pki.intermediate.issue_cert("attacker.example")
    pems = (other.cert_chain_pems[0].bytes(), pki.intermediate.cert_pem.bytes())
    for liar in (RstripLies("victim.example"), Lying("attacker.example")):
        _tls._cached_judge.cache_clear()
        vouched(chain_of(*pems), [liar])
        honest = vouched(chain_of(*pems), ["victim.example"])
        assert honest.checked == () and honest.problem is not None, type(liar).__name__
        assert "the leaf is not for the name" in honest.problem
    assert vouched(chain_of(*pems), ["attacker.example"]).problem is None
    refused = vouched(chain_of(*pems), [b"attacker.example"])  # type: ignore[list-item]
    assert refused.checked == () and "a name to check is a bytes" in str(refused.problem)


def test_a_name_s_own_truth_value_or_class_never_skips_its_check(pki: PKI) -> None:
    # A falsy str subclass was skipped as no name, and with no name left the
    # chain was judged without one; an object whose __class__ claims str, or
    # whose __bool__ raises, made the check raise instead of failing closed.
    class Falsy(str):
        def __bool__(self) -> bool:
            return False

    class Raising(str):
        def __bool__(self) -> bool:
            raise RuntimeError("boom")

    class Posing:
        @property  # type: ignore[misc]
        def __class__(self) -> type:
            return str

    other = pki.intermediate.issue_cert("attacker.example")
    pems = (other.cert_chain_pems[0].bytes(), pki.intermediate.cert_pem.bytes())
    for name in (Falsy("victim.example"), Raising("victim.example")):
        result = vouched(chain_of(*pems), [name])
        assert result.checked == () and "the leaf is not for the name" in str(result.problem)
    posing = vouched(chain_of(*pems), [Posing()])  # type: ignore[list-item]
    assert posing.checked == () and "a name to check is a Posing" in str(posing.problem)
    assert vouched(chain_of(*pems), ["", None, "attacker.example"]).problem is None
    # Only no names at all is no name check: an empty name matches nothing.
    for names in (["", None], [Falsy("")], ["."]):
        result = vouched(chain_of(*pems), names)
        assert result.checked == () and "the leaf is not for the name" in str(result.problem)
    assert vouched(chain_of(*pems), []).problem is None
    assert vouched(chain_of(*pems), [None]).problem is None


def test_a_passing_error_is_never_kept_as_the_chain_s_judgement(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The judgement of a chain is kept for later connections: a RecursionError
    # or MemoryError while judging (a request made deep in a stack) was kept
    # as the chain's failure, and failed every later connection to the server.
    from requests_pinning import _tls

    pems = (
        pki.leaf.cert_chain_pems[0].bytes(),
        pki.intermediate.cert_pem.bytes(),
        pki.root.cert_pem.bytes(),
    )
    load = x509.load_der_x509_certificate
    for error in (RecursionError("maximum recursion depth exceeded"), MemoryError()):
        _tls._cached_judge.cache_clear()

        def failing(data: bytes, error: BaseException = error) -> x509.Certificate:
            raise error

        monkeypatch.setattr(x509, "load_der_x509_certificate", failing)
        result = vouched(chain_of(*pems), ["localhost"])
        assert result.checked == () and type(error).__name__ in str(result.problem)
        monkeypatch.setattr(x509, "load_der_x509_certificate", load)
        assert vouched(chain_of(*pems), ["localhost"]).problem is None

        # Converting the chain to DER (the TLS library's certificates) fails
        # closed too, whatever the error, and is not kept either.
        def to_der(cert: object, error: BaseException = error) -> bytes:
            raise error

        unconvertible = PeerChain(checked=[object()], verified=True, to_der=to_der)
        result = vouched(unconvertible, ["localhost"])
        assert result.checked == () and type(error).__name__ in str(result.problem)


def _signed_by_leaf(leaf: trustme.LeafCert, name: str) -> bytes:
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    issuer = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    issuer_key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=True)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_an_unverified_or_unreadable_chain_is_left_as_it_is(pki: PKI) -> None:
    leaf_only = PeerChain(checked=(der(pki.rogue_leaf.cert_chain_pems[0].bytes()),), verified=False)
    assert vouched(leaf_only, ["localhost"]) is leaf_only


def _leaf_for(pki: PKI, san: str) -> bytes:
    """A leaf of the genuine intermediate for ``san`` as given (trustme would encode it)."""
    issuer = x509.load_pem_x509_certificate(pki.intermediate.cert_pem.bytes())
    issuer_key = serialization.load_pem_private_key(pki.intermediate.private_key_pem.bytes(), None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)
