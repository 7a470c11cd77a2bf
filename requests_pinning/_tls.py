"""The certificates off a TLS object, whatever the client: the one place that reads them.

Every face (the urllib3 connections, httpx's streams, the CLI) hands its TLS
object here after the handshake and gets a :class:`PeerChain` back:

- ``ssl.SSLSocket`` (urllib3, requests, the CLI);
- ``ssl.SSLObject`` (asyncio, anyio, trio and httpcore, and TLS inside TLS);
- urllib3's ``SSLTransport``, which wraps an ``SSLObject`` (TLS through an
  HTTPS proxy);
- urllib3's pyOpenSSL ``WrappedSocket``.

What counts: the chain OpenSSL verified, root included, when the TLS object's
context validates; only the leaf when it does not, because without validation
anything past the leaf is the peer's say-so (CVE-2016-2402 was a pinning
library that believed it). Nothing here raises for a connection that cannot be
read: :func:`read_chain` returns a chain whose ``problem`` says why, which the
decision turns into a refusal.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import ssl
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from ._pinset import openssl_address
from ._verify import PeerChain

__all__ = [
    "STDLIB_CONTEXT",
    "HTTP11Context",
    "may_misreport",
    "peer_chain",
    "read_chain",
    "tls_server_name",
    "vouched",
]

# _ssl.Certificate.public_bytes() takes _ssl's own constants (DER is 2).
_ENCODING_DER: int = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)
# Whether SSLSocket and SSLObject have get_verified_chain() (3.13 and later).
_PUBLIC_CHAINS = hasattr(ssl.SSLSocket, "get_verified_chain")


def _stdlib_context_class() -> type[ssl.SSLContext]:
    """The class that module ``ssl`` defines, whatever the name ``ssl.SSLContext`` holds now.

    ``truststore.inject_into_ssl()`` (and gevent) bind ``ssl.SSLContext`` to
    their own class, perhaps before this module is imported. What ssl
    defined is still the one subclass of ``_ssl._SSLContext`` that module
    ``ssl`` names ``SSLContext``.
    """
    base = getattr(getattr(ssl, "_ssl", None), "_SSLContext", None)
    subclasses: list[type] = base.__subclasses__() if isinstance(base, type) else []
    for cls in subclasses:
        if cls.__module__ == "ssl" and cls.__qualname__ == "SSLContext":
            return cast("type[ssl.SSLContext]", cls)
    return ssl.SSLContext


#: ssl's own SSLContext class (``ssl.SSLContext`` may name another: see above).
STDLIB_CONTEXT = _stdlib_context_class()


class HTTP11Context(STDLIB_CONTEXT):  # type: ignore[misc,valid-type]
    """ssl's own context, offering HTTP/1.1 by ALPN whatever it is asked to offer.

    The contexts the urllib3 face makes for its connections, which speak
    HTTP/1.1: urllib3 writes its global list of protocols into the context
    of every connection, and after ``urllib3.http2.inject_into_urllib3()``
    that list is ``["h2"]``, which a server that speaks HTTP/2 would choose.
    It handshakes and validates as ssl's own class does.
    """

    def set_alpn_protocols(self, alpn_protocols: Any) -> None:
        super().set_alpn_protocols(["http/1.1"])


# Contexts that handshake as OpenSSL validates, and whose properties say
# what they are (may_misreport).
_OWN_CONTEXTS = (STDLIB_CONTEXT, HTTP11Context)


def peer_chain(tls: object, *, asked: bool = False) -> PeerChain:
    """Read the verified chain (or the leaf) and the verify mode off a TLS object.

    The served chain is read only when needed. Raises ``ValueError`` when
    nothing can be read; :func:`read_chain` is the form that never raises.

    ``asked``: the connection asked for validation, and its context is one
    that may misreport (:func:`may_misreport`), so what the context says now
    is not asked: OpenSSL's verified chain is read as such, and the caller
    must have it vouched for (:func:`vouched`). truststore, for one, sets its
    shared context to ``CERT_NONE`` during every handshake on macOS and
    Windows, so a connection that validated could read "off" while another
    thread's handshake runs.
    """
    if isinstance(tls, (ssl.SSLSocket, ssl.SSLObject)):
        return _stdlib_chain(tls, asked)
    inner = getattr(tls, "sslobj", None)
    if isinstance(inner, ssl.SSLObject):  # urllib3's SSLTransport
        return _stdlib_chain(inner, asked)
    connection = getattr(tls, "connection", None)
    if connection is not None and hasattr(connection, "get_verified_chain"):  # pyOpenSSL
        verified = connection.get_context().get_verify_mode() != 0
        peer = connection.get_peer_certificate()
        return _assemble(
            leaf=lambda: (_der_list([peer]) or (None,))[0] if peer is not None else None,
            served=lambda: _call(connection, "get_peer_cert_chain"),
            verified_chain=_call(connection, "get_verified_chain") if verified else None,
            verified=verified,
        )
    raise ValueError(f"cannot read certificates from a {type(tls).__name__}")


def read_chain(tls: object, what: str, *, asked: bool = False) -> PeerChain:
    """``peer_chain(tls, asked=asked)``, or a chain whose ``problem`` says why it could not be read.

    ``what`` names the session in that message ("the TLS connection", "the
    proxy's TLS session"). A chain that cannot be read fails closed.
    """
    try:
        return peer_chain(tls, asked=asked)
    except Exception as exc:  # e.g. pyOpenSSL on a certificate it cannot convert
        problem = f"{what} could not be read ({type(exc).__name__}: {exc})"
        return PeerChain(checked=(), verified=False, problem=problem)


def tls_server_name(tls: object) -> str | None:
    """The server name a TLS object was started with (what ``ssl`` validated), if any.

    ``ssl.SSLSocket`` and ``ssl.SSLObject`` record it after IDNA encoding;
    urllib3's ``SSLTransport`` wraps an ``SSLObject``; pyOpenSSL keeps the SNI.
    """
    try:
        name = getattr(tls, "server_hostname", None)
        if name is None:
            name = getattr(getattr(tls, "sslobj", None), "server_hostname", None)
        if name is None:
            connection = getattr(tls, "connection", None)
            get_servername = getattr(connection, "get_servername", None)
            if get_servername is not None:
                name = get_servername()
    except Exception:  # the other names of the connection still apply
        return None
    if isinstance(name, bytes):
        return name.decode("ascii", "replace")
    return name if isinstance(name, str) else None


def may_misreport(context: object) -> bool:
    """Whether a context's word on validation may not be what its handshake did.

    Only a context of ssl's own class, with ssl's own socket and object
    classes, handshakes as OpenSSL validates. Any other may not:
    truststore's handshakes with ``CERT_NONE`` on macOS and Windows and
    validates with the platform afterwards, so OpenSSL's "verified" chain
    is then built from whatever the peer sent, and may carry a genuine
    intermediate after a leaf it never signed. With
    ``truststore.inject_into_ssl()``, every context urllib3 and httpx make
    is truststore's, and the TLS object's own context is truststore's inner
    one: of ssl's class, but with truststore's socket and object classes
    (which validate after the handshake). The name ``ssl.SSLContext`` is
    truststore's class then, so it is not what this compares with. Such a
    chain must prove itself (:func:`vouched`).
    """
    if not isinstance(context, STDLIB_CONTEXT):
        return False  # not an ssl context: pyOpenSSL's are read otherwise
    return not (
        type(context) in _OWN_CONTEXTS
        and context.sslsocket_class is STDLIB_CONTEXT.sslsocket_class
        and context.sslobject_class is STDLIB_CONTEXT.sslobject_class
    )


def vouched(chain: PeerChain, names: Sequence[str | None]) -> PeerChain:
    """``chain`` if it could have passed validation on its own, else a chain that fails closed.

    For a context the user passed in: it may be shared with connections that
    do not validate, and clients write ``verify_mode`` into it per
    connection, so what it says after the handshake need not be what the
    handshake did. Then its "verified" chain may be whatever the peer sent,
    and a CA pin would match any certificate that CA ever issued. So the
    chain must prove itself: each certificate signed by the next, every
    issuer a CA, every one valid now, and the leaf issued for one of
    ``names`` (the names the connection was validated as; empty when the
    caller asked for no name check). The pin then anchors the trust.
    """
    if not chain.verified or chain.problem is not None:
        return chain
    texts = []
    for name in names:
        if name is None:
            continue
        # Its text, read as str reads it: what is judged is kept for every
        # later connection, so a caller's own subclass (its __bool__,
        # rstrip(), __eq__ or __hash__) must not judge, skip, or key the
        # judgement of, another name. (Its type, not its __class__, says
        # whether it is a str: it is what a pool holds, whatever its type
        # says.) An empty name is kept, and matches nothing (ssl and urllib3
        # refuse one): only no names at all means no name check.
        kind: type = type(name)
        if kind is not str:
            if not issubclass(kind, str):
                return PeerChain(
                    checked=(), verified=False, problem=f"a name to check is a {kind.__name__}"
                )
            name = str.__str__(name)
        texts.append(name)
    problem = _unvouched(chain, texts)
    if problem is None:
        return chain
    if problem.startswith(_UNREADABLE):
        # Not a chain shown to be false: one that cannot be checked here
        # (OpenSSL validates some certificates cryptography cannot parse).
        # It fails closed all the same, but the message must not send the
        # user looking for a shared context that may not exist.
        return PeerChain(
            checked=(),
            verified=False,
            problem=f"the verified chain cannot be checked on its own: {problem}; a chain "
            "validated with a context passed in must prove itself here, since that "
            "context may be shared with connections that do not validate",
        )
    return PeerChain(
        checked=(),
        verified=False,
        problem=f"the verified chain does not hold on its own ({problem}); its context "
        "may have been shared with connections that do not validate",
    )


def _unvouched(chain: PeerChain, names: list[str]) -> str | None:
    """Why ``chain`` would not pass validation for ``names`` now, or ``None``."""
    try:
        certs = chain.checked  # converted to DER here: a failure fails closed
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        problem, valid_from, valid_until = _judged(certs, tuple(names))
    except (RecursionError, MemoryError) as exc:
        # Not the certificates' doing (the stack or memory ran out while
        # judging them): this connection fails, and nothing is kept that
        # would fail every later one.
        return f"{type(exc).__name__}: {exc}"
    if problem is None and not valid_from <= datetime.now(timezone.utc) <= valid_until:
        return "a certificate is not valid now"
    return problem


_Judgement = tuple[str | None, datetime, datetime]

# How a problem that is the reader's, not the chain's, begins.
_UNREADABLE = "cryptography cannot read "


# A server presents the same chain on every connection, and verifying its
# signatures costs about half a millisecond: each (chain, names) is judged
# once. What the result depends on is all in the key, the clock apart, which
# is why the validity window is kept and compared on every use. The cache
# keeps the chain as its key: one that a server makes large (OpenSSL takes up
# to 100 KiB) is judged each time instead, or 256 of them would hold 25 MB.
_CACHED_CHAIN_BYTES = 32 * 1024


def _judged(
    chain: tuple[bytes, ...], names: tuple[str, ...]
) -> tuple[str | None, datetime, datetime]:
    """(the problem or ``None``, the latest not-before, the earliest not-after) of ``chain``."""
    if sum(map(len, chain)) > _CACHED_CHAIN_BYTES:
        return _judge(chain, names)
    return _cached_judge(chain, names)


def _judge(
    chain: tuple[bytes, ...], names: tuple[str, ...]
) -> tuple[str | None, datetime, datetime]:
    never = datetime.min.replace(tzinfo=timezone.utc)
    certs = []
    for position, der in enumerate(chain, 1):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except (RecursionError, MemoryError):
            raise  # never kept as the certificates' judgement (_unvouched)
        except Exception as exc:
            return (
                f"{_UNREADABLE}certificate {position} of {len(chain)} ({type(exc).__name__}: "
                f"{exc})",
                never,
                never,
            )
    try:
        valid_from = max(cert.not_valid_before_utc for cert in certs)
        valid_until = min(cert.not_valid_after_utc for cert in certs)
        for child, issuer in itertools.pairwise(certs):
            constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints)
            if not constraints.value.ca:
                return "an issuer is not a CA", never, never
            try:
                child.verify_directly_issued_by(issuer)
            except (InvalidSignature, ValueError, TypeError):
                return "its signatures do not link", never, never
        if names and not any(_issued_for(certs[0], name) for name in names):
            return "the leaf is not for the name", never, never
    except (RecursionError, MemoryError):
        raise  # never kept as the certificates' judgement (_unvouched)
    except Exception as exc:  # a certificate it cannot read
        return f"{type(exc).__name__}: {exc}", never, never
    return None, valid_from, valid_until


_cached_judge = functools.lru_cache(maxsize=256)(_judge)


# OpenSSL's host check (X509_check_host, as ssl calls it: no partial
# wildcards), for a wildcard SAN: "*." and then two labels or more, each of
# letters, digits and inner hyphens; the one label it stands for, of letters,
# digits and hyphens.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_WILDCARD_BASE = re.compile(rf"(?:{_LABEL}\.)+{_LABEL}\Z")
_WILDCARD_LABEL = re.compile(r"[a-z0-9-]+\Z")


def _issued_for(cert: x509.Certificate, name: str) -> bool:
    """Whether ``cert``'s subjectAltName covers ``name``, never more widely than OpenSSL's check.

    A name is compared as ASCII text without regard to case, and one trailing
    dot (the fully qualified spelling, which urllib3 takes off before TLS sees
    the name) is the same name. A wildcard SAN covers one label of letters,
    digits and hyphens, and is one only as OpenSSL takes it: ``*.`` then two
    well-formed labels or more (``*.example.com`` covers ``api.example.com``;
    ``*.com``, ``*.*.example.com`` and ``*.exa_mple.com`` are no wildcards).
    A SAN with a trailing dot covers nothing but itself, as in OpenSSL.
    """
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    # An address as OpenSSL reads the name (127.0.0.010 is 127.0.0.10 to it,
    # and [::1] is no address), compared as it compares: v4 with v4 only.
    address = openssl_address(name)
    if address is not None:
        return address in sans.get_values_for_type(x509.IPAddress)
    wanted = name[:-1] if name.endswith(".") else name
    if not wanted or wanted.endswith(".") or not wanted.isascii():
        # An empty name, empty labels, or text TLS would never have been given
        # as it is (ssl encodes a name to ASCII first): no name a leaf is for.
        return False
    wanted = wanted.lower()
    label, _, parent = wanted.partition(".")
    wild = _WILDCARD_LABEL.match(label) is not None and _WILDCARD_BASE.match(parent) is not None
    for pattern in sans.get_values_for_type(x509.DNSName):
        if not pattern.isascii():
            continue  # OpenSSL compares its bytes: no lower() may turn them into a name
        pattern = pattern.lower()
        if pattern == wanted or (wild and pattern[:2] == "*." and pattern[2:] == parent):
            return True
    return False


def _stdlib_chain(tls: ssl.SSLSocket | ssl.SSLObject, asked: bool = False) -> PeerChain:
    context = tls.context
    # ssl keeps check_hostname True only with a verify_mode that validates:
    # it refuses verify_mode = CERT_NONE while check_hostname is on, and
    # turning check_hostname on makes CERT_NONE into CERT_REQUIRED (3.7 and
    # later). So check_hostname alone answers whenever it is on, as in
    # requests' and httpx's default connections; verify_mode is read when it
    # is off, because ssl.SSLContext.verify_mode wraps its int in the
    # VerifyMode enum on every read (some 6,500 instructions on 3.11).
    # A context of another class (truststore's, a subclass) is asked for its
    # verify_mode alone, as its properties may say anything: see
    # may_misreport for what is done about what it says.
    verified = (
        asked
        or (type(context) in _OWN_CONTEXTS and context.check_hostname is True)
        or context.verify_mode != ssl.CERT_NONE
    )
    # get_verified_chain() and get_unverified_chain() are public on SSLSocket
    # and SSLObject from Python 3.13 (returning DER); on 3.10 to 3.12 only
    # the _ssl object underneath (_sslobj) has them, returning certificates
    # that are converted to DER one by one as the check reaches them.
    native: Any = tls if _PUBLIC_CHAINS else getattr(tls, "_sslobj", None)

    # With validation off, get_verified_chain() returns the *unverified*
    # chain: only the leaf proves anything, so it is not even read.
    get_verified_chain = getattr(native, "get_verified_chain", None) if verified else None
    if get_verified_chain is not None:
        certs = get_verified_chain()
        if certs:
            # Converted to DER one by one as the check reaches them. Either
            # DER (3.13) or _ssl.Certificate (3.10 to 3.12), whose == is
            # OpenSSL's X509_cmp: equal SHA-1 digests of the whole
            # certificates and byte-equal TBSCertificates (Modules/_ssl/cert.c,
            # certificate_richcompare, the same in 3.10 to 3.13). So an equal
            # certificate has the same key (the SPKI is in the TBSCertificate),
            # and the check may compare instead of converting (comparable).
            # The served chain comes as the verified one does, converted alike.
            # Positional: (checked, verified, served, load_served, problem,
            # to_der, comparable). Keywords to a class cost a dictionary.
            return PeerChain(certs, True, None, native.get_unverified_chain, None, _der, True)
    return _assemble(
        leaf=lambda: tls.getpeercert(binary_form=True),
        served=lambda: _call(native, "get_unverified_chain"),
        verified_chain=None,
        verified=verified,
    )


#: One certificate of the _ssl object's chains (an _ssl.Certificate) as DER.
_der: Callable[[Any], bytes] = operator.methodcaller("public_bytes", _ENCODING_DER)


def _assemble(
    *,
    leaf: Callable[[], bytes | None],
    served: Callable[[], tuple[bytes, ...] | None],
    verified_chain: tuple[bytes, ...] | None,
    verified: bool,
) -> PeerChain:
    if verified_chain:
        return PeerChain(checked=verified_chain, verified=verified, load_served=served)
    # With validation on but no verified chain to be had, the leaf is still
    # checked: intermediate and root pins then fail, closed.
    der = leaf() or (served() or (None,))[0]
    if der is None:
        raise ValueError("the TLS connection has no peer certificate")
    return PeerChain(checked=(der,), verified=verified, load_served=served)


def _call(obj: object, name: str) -> tuple[bytes, ...] | None:
    method = getattr(obj, name, None)
    return None if method is None else _der_list(method())


def _der_list(items: object) -> tuple[bytes, ...] | None:
    """Certificates as DER, from whatever a TLS object returned (bytes, _ssl or pyOpenSSL)."""
    if not items:
        return None
    if isinstance(items, list) and all(isinstance(item, bytes) for item in items):
        return tuple(items)  # Python 3.13's public methods
    try:  # _ssl.Certificate (Python 3.10 to 3.12's _sslobj): one comprehension (hot path)
        return tuple([item.public_bytes(_ENCODING_DER) for item in items])  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass
    result = []
    for item in items:  # type: ignore[attr-defined]
        if isinstance(item, bytes | bytearray):
            result.append(bytes(item))
        elif isinstance(item, x509.Certificate):
            result.append(item.public_bytes(Encoding.DER))
        elif hasattr(item, "to_cryptography"):  # pyOpenSSL X509
            # Dumped by OpenSSL itself, not through cryptography, which refuses
            # certificates OpenSSL accepted (a version 4, a non-DER length).
            from OpenSSL import crypto

            result.append(crypto.dump_certificate(crypto.FILETYPE_ASN1, item))
        else:
            return None
    return tuple(result)
