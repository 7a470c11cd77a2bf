"""The decision: (names, port, certificate chain) -> allowed, or the failure that refuses it.

Nothing here knows about sockets or HTTP clients: this module imports neither
requests, urllib3 nor httpx (a test checks it). A face (the urllib3
connections, httpx's streams) reads a :class:`PeerChain` off its TLS object
(``_tls``) and asks its :class:`PinningPolicy`, which decides, logs, calls
``on_failure``, queues reports, and returns the :class:`PinFailure` that must
refuse the connection, or ``None``. Each face turns that failure into its own
error type, in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from ._certs import cert_digest, describe_name, sha256_pin, spki_digest
from ._errors import printable
from ._pins import Pin
from ._pinset import HostPins, PinSet, PinSource, check_policy, normalize_host, tls_ip_form
from ._report import (
    LOG_SECONDS,
    OnFailure,
    PinFailure,
    Reporter,
    ReportStats,
    chain_key,
    log_gate,
    pins_of,
)

__all__ = ["PeerChain", "PinningPolicy", "Verdict", "evaluate", "make_policy"]

log = logging.getLogger("requests_pinning")


class PeerChain:
    """What the TLS layer could tell about the server.

    ``checked`` is what proves something: the chain OpenSSL verified against
    the trust store (root included) when CA validation was on, otherwise only
    the leaf. ``served`` is what the server sent, for messages, reports and
    deny pins without validation only: it is never what an accepted pin is
    matched against, because an attacker can append the genuine intermediate
    to a rogue chain (CVE-2016-2402). It is read on first use (a passing check
    never needs it), so read it while the socket is open: ``load_served``
    returns it, as DER or as certificates for ``to_der``. ``problem`` says why
    nothing could be checked at all.

    ``checked`` is given as DER, or as the TLS library's own certificate
    objects with ``to_der`` to convert them: then each is converted when a
    check first reaches it (:meth:`der`), because converting costs
    more than matching and a pin usually matches before the root.

    ``comparable`` says that ``==`` between two of these certificates (of one
    type) is true only for the same certificate, at least the same
    TBSCertificate, and so the same key: DER bytes, and ``_ssl.Certificate``,
    whose ``==`` is OpenSSL's ``X509_cmp`` (see ``_tls``). A pass may then
    compare a certificate with the one that matched last time instead of
    converting and hashing it (:meth:`_PinLookup.first_match`).
    """

    __slots__ = (
        "_certs",
        "_checked",
        "_given",
        "_load_served",
        "_served",
        "_to_der",
        "comparable",
        "problem",
        "size",
        "verified",
    )

    def __init__(
        self,
        checked: Sequence[object],
        verified: bool,
        served: tuple[bytes, ...] | None = None,
        load_served: Callable[[], Sequence[object] | None] | None = None,
        problem: str | None = None,
        to_der: Callable[[Any], bytes] | None = None,
        comparable: bool = False,
    ) -> None:
        # DER, or certificates still to be converted, replaced by their DER as
        # they are converted (in a copy: the certificates as given stay in
        # _given, for raw())
        self._given = checked
        self._certs = list(checked)
        self._to_der = to_der
        self.comparable = comparable
        self._checked: tuple[bytes, ...] | None = None
        #: How many certificates are checked (none is converted to count them).
        self.size = len(self._certs)
        self.verified = verified
        self.problem = problem
        self._served = served
        self._load_served = load_served

    @property
    def checked(self) -> tuple[bytes, ...]:
        """Every checked certificate, leaf first, as DER (converting those not converted yet)."""
        if self._checked is None:
            self._checked = tuple([self.der(index) for index in range(self.size)])
        return self._checked

    def raw(self, index: int) -> object:
        """The checked certificate at ``index`` as given (not converted)."""
        return self._given[index]

    def der(self, index: int) -> bytes:
        """The checked certificate at ``index`` (0 is the leaf) as DER, converted on first use."""
        cert = self._certs[index]
        if isinstance(cert, bytes):
            return cert
        if self._to_der is None:
            raise TypeError(f"a checked certificate is a {type(cert).__name__}, not DER")
        der = self._certs[index] = self._to_der(cert)
        return der

    def _served_der(self, cert: object) -> bytes:
        if isinstance(cert, bytes):
            return cert
        if self._to_der is None:
            raise TypeError(f"a served certificate is a {type(cert).__name__}, not DER")
        return self._to_der(cert)

    @property
    def served(self) -> tuple[bytes, ...]:
        if self._served is None:
            loaded: tuple[bytes, ...] = ()
            if self._load_served is not None:
                try:
                    loaded = tuple(map(self._served_der, self._load_served() or ()))
                except Exception:  # only for messages and reports: the leaf will do
                    log.debug("could not read the served chain", exc_info=True)
            self._served = loaded or _readable(self)[:1]
        return self._served


def _readable(chain: PeerChain) -> tuple[bytes, ...]:
    """``chain.checked`` for messages and reports, which must be built whatever happened.

    A certificate that could not be converted has already failed the check
    (the decision reads the same certificates and turns the error into a
    failure): the record then goes without them.
    """
    try:
        return chain.checked
    except Exception:
        log.debug("could not convert the checked chain", exc_info=True)
        return ()


Status = Literal["matched", "unpinned", "expired", "failed"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check; ``ok`` is False only for ``failed``."""

    status: Status
    why: str = ""
    matched: Pin | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def reason(self) -> str:
        """One line saying why (formatted on demand: a pass rarely needs it)."""
        if not self.why and self.matched is not None:
            return f"{self.matched} matched"
        return self.why


def evaluate(
    entry: HostPins | None,
    chain: PeerChain,
    *,
    allow_unpinned: bool,
    now: datetime | None = None,
    ignore_expiry: bool = False,
) -> Verdict:
    """Decide one connection. Pure: no logging, no callbacks.

    A certificate that cannot be read raises ``ValueError``; every caller
    takes that as a failed check (a connection that cannot be checked is
    refused).

    ``ignore_expiry`` judges an expired entry as if it were enforced (the
    ``check`` command uses it so that monitoring sees breakage coming).
    """
    if entry is None:
        if allow_unpinned:
            return Verdict("unpinned", "no pins are configured for this host")
        return Verdict(
            "failed",
            "no pins are configured for this host and unpinned hosts are refused "
            "(allow_unpinned=False)",
        )
    if entry.expires is not None and not ignore_expiry and entry.is_expired(now):
        # An expired entry is not enforced, and there is no fall-back to a
        # broader entry: the user's pins for this host said "until then".
        return Verdict("expired", f"the entry expired at {entry.expires}")
    if chain.problem is not None:
        return Verdict("failed", chain.problem)
    if not chain.size:
        return Verdict("failed", "the server presented no certificate")
    # Deny pins first: a denied certificate fails the connection even when an
    # accepted pin matches too. With CA validation off, every certificate the
    # server presented is looked at: for a deny-list, stricter is safe.
    if entry.deny:
        denied = _lookup(entry.deny)
        for der in chain.checked if chain.verified else chain.served:
            hit = denied.find(der)
            if hit is not None:
                return Verdict(
                    "failed",
                    f"the certificate {describe_name(der)} ({sha256_pin(der)}) "
                    f"is denied by {hit.matched}",
                )
        if not entry.pins:
            return Verdict("matched", "no deny pin matched (the entry has deny pins only)")
    # No further than the first match: the rest of the chain is then never
    # converted or hashed.
    hit = _lookup(entry.pins).first_match(chain)
    if hit is not None:
        return hit
    if chain.verified:
        return Verdict("failed", "no certificate of the verified chain matches a pin")
    return Verdict(
        "failed",
        "the leaf certificate matches no pin (CA validation is off, so only the "
        "leaf is checked: intermediate and root pins cannot match)",
    )


class _PinLookup:
    """The pins of one list, by what has to be computed to test them.

    ``groups`` holds, for each (kind, algorithm) the list uses, its digests,
    each with the verdict its match gives: "is this certificate pinned" is one
    digest and one dictionary look-up per algorithm, however long the list,
    and a match builds nothing. ``last`` is where in the checked chain a pin
    matched last time: a server presents the same chain on every connection,
    so that certificate is tried first, and a pass usually converts and
    hashes only that one (the others in leaf-first order if it does not match).

    ``memo`` is that certificate, as the TLS library gave it, with its
    verdict, when an SPKI pin matched it in a ``comparable`` chain: the next
    chain's certificate at ``last`` is compared with it (``==``, no
    conversion, no hash), and if it is the same, so is its key, and the
    verdict stands. Only SPKI pins: a comparable ``==`` vouches for the
    TBSCertificate, which holds the key, but need not cover the signature
    that a certificate fingerprint also hashes.
    """

    __slots__ = ("groups", "last", "memo", "pins")

    def __init__(self, pins: tuple[Pin, ...]) -> None:
        groups: dict[tuple[str, str], dict[bytes, Verdict]] = {}
        for pin in pins:
            # setdefault: of equal pins, the first is the one named
            groups.setdefault((pin.kind, pin.algorithm), {}).setdefault(
                pin.digest, Verdict("matched", matched=pin)
            )
        self.groups = tuple((kind, alg, digests) for (kind, alg), digests in groups.items())
        self.pins = pins
        self.last = 0
        self.memo: tuple[object, Verdict] | None = None

    def find(self, der: bytes) -> Verdict | None:
        """The verdict of the pin that matches the DER certificate ``der``, if any."""
        for kind, algorithm, digests in self.groups:
            digest = spki_digest(der, algorithm) if kind == "spki" else cert_digest(der, algorithm)
            hit = digests.get(digest)
            if hit is not None:
                return hit
        return None

    def first_match(self, chain: PeerChain) -> Verdict | None:
        """The verdict of a pin that matches a checked certificate of ``chain``, if any."""
        last = self.last
        if last < chain.size:
            memo = self.memo
            if memo is not None and chain.comparable:
                cert = chain._given[last]
                if type(cert) is type(memo[0]) and cert == memo[0]:
                    return memo[1]
            hit = self.find(chain.der(last))
            if hit is not None:
                self._remember(chain, last, hit)
                return hit
        for index in range(chain.size):
            if index != last:
                hit = self.find(chain.der(index))
                if hit is not None:
                    self.last = index
                    self._remember(chain, index, hit)
                    return hit
        return None

    def _remember(self, chain: PeerChain, index: int, hit: Verdict) -> None:
        if chain.comparable and hit.matched is not None and hit.matched.kind == "spki":
            # One tuple, assigned at once: another thread sees the old memo or this one.
            self.memo = (chain.raw(index), hit)


# One lookup per list of pins. Keyed by the tuple's identity (hashing a tuple
# of pins hashes every pin, in Python, on every connection); each lookup holds
# its tuple, so no other tuple can take that identity while it is cached.
# Pin sets share one tuple between the entries that list the same pins.
_LOOKUPS: dict[int, _PinLookup] = {}
_MAX_LOOKUPS = 4096


def _lookup(pins: tuple[Pin, ...]) -> _PinLookup:
    lookup = _LOOKUPS.get(id(pins))
    if lookup is None or lookup.pins is not pins:
        if len(_LOOKUPS) >= _MAX_LOOKUPS:
            _LOOKUPS.clear()  # many pin sets come and go: start again rather than grow
        lookup = _LOOKUPS[id(pins)] = _PinLookup(pins)
    return lookup


class PinningPolicy:
    """Pins, and what to do when they fail: the one object every face enforces.

    ::

        policy = PinningPolicy("pins.json", report_uri="https://reports.example/pkp")
        session = PinningSession(policy)
        client = httpx.Client(transport=PinningTransport(policy))

    ``pins`` is anything :meth:`PinSet.load` accepts. The switches:

    - ``report_only``: log failures at WARNING and report them to
      ``on_failure``, but let connections proceed (a rollout stage; fails open
      on purpose);
    - ``on_failure``: called with a :class:`PinFailure` for every failed
      check; exceptions it raises are logged and change nothing;
    - ``allow_unpinned``: when ``False``, hosts without an entry are refused;
    - ``report_uri``: where RFC 7469 violation reports go for entries without
      their own ``report_uri``.

    Every face (:class:`PinningSession`, :class:`PinningAdapter`, the urllib3
    managers, the httpx transports, :func:`inject_into_urllib3`) takes either
    pins and these switches, or one policy: faces given the same policy share
    its expiry warnings, report queue and counters. Thread-safe; read-only
    after construction (the faces already hold it). Pickles with its pins.
    """

    #: The switches, by name: what the faces pass through and compare.
    SWITCHES = ("report_only", "on_failure", "allow_unpinned", "report_uri")

    def __init__(
        self,
        pins: PinSource,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
    ) -> None:
        # Checked here, where every face gets its policy: a wrong type fails
        # at construction, as a wrong value in a pin file does at load, not at
        # the first pin failure.
        check_policy(
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
        )
        self._pinset = PinSet.load(pins)
        self._report_only = report_only
        self._on_failure = on_failure
        self._allow_unpinned = allow_unpinned
        self._report_uri = report_uri
        self._setup()

    def _setup(self) -> None:
        # Reports honour the same pins: a pinned collector gets them only if it passes.
        self._reporter = Reporter(self._pinset, allow_unpinned=self._allow_unpinned)
        self._expired_warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def pinset(self) -> PinSet:
        """The pins."""
        return self._pinset

    @property
    def report_only(self) -> bool:
        """Whether failures are only reported, never enforced (policy-wide)."""
        return self._report_only

    @property
    def on_failure(self) -> OnFailure | None:
        """The callback that receives every :class:`PinFailure`."""
        return self._on_failure

    @property
    def allow_unpinned(self) -> bool:
        """Whether hosts without an entry are allowed."""
        return self._allow_unpinned

    @property
    def report_uri(self) -> str | None:
        """Where violation reports go for entries without their own ``report_uri``."""
        return self._report_uri

    @property
    def report_stats(self) -> ReportStats:
        """Counters of violation reports: ``sent``, ``deduplicated``, ``dropped``, ``failed``."""
        return self._reporter.snapshot()

    def close(self) -> None:
        """Stop the report worker after the reports already queued (a later report restarts it)."""
        self._reporter.close()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PinningPolicy):
            return NotImplemented
        return self.difference(other) == ""

    __hash__ = object.__hash__  # equal policies are still distinct report queues

    def difference(self, other: PinningPolicy) -> str:
        """The name of the first setting in which the two policies differ, or ``''``."""
        if self._pinset != other._pinset:
            return "pin set"
        for name in self.SWITCHES:
            if getattr(self, name) != getattr(other, name):
                return name
        return ""

    def __getstate__(self) -> dict[str, object]:
        return {"pins": self._pinset, **{name: getattr(self, name) for name in self.SWITCHES}}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __repr__(self) -> str:
        switches = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.SWITCHES)
        return f"PinningPolicy(<{len(self._pinset)} entries>, {switches})"

    def check(
        self,
        names: list[str | None],
        port: int,
        chain: PeerChain | Callable[[], PeerChain],
    ) -> PinFailure | None:
        """Decide a connection: ``None`` if it may be used, else the failure that refuses it.

        The face raises its own error for the failure it gets back (built from
        it: the fields and the message are the same in every face).

        ``names`` are every name the connection is known by: the origin's host
        as the URL spelled it, the host TLS was started with, and the names
        the certificate was validated against (``server_hostname``,
        ``assert_hostname``, the TLS object's own). The rule is "the pinned
        name is the authenticated name": rather than trusting that one
        derivation of the name agrees with another, every distinct name is
        looked up, and every entry found must pass. A spelling difference
        can therefore only add pins, never take them away; a connection is
        "unpinned" only when no name it is known by has an entry.

        Anything that goes wrong while deciding (a certificate the parser
        cannot walk, a name the lookup cannot take) is a failure like any
        other: returned when enforced, reported and let through (``None``) in
        report-only mode, with ``on_failure`` and ``report_uri`` called either way.

        ``chain`` may be a function that reads it: then it is read only when
        some name has an entry (or unpinned hosts are refused), so that an
        unpinned host pays nothing for its certificates.
        """
        hosts: dict[str, None] = {}
        found: dict[int, tuple[str, HostPins]] = {}
        try:
            # Mostly one spelling several times over: each is normalised once.
            for name in dict.fromkeys(names):
                if name:
                    hosts[normalize_host(name)] = None
                    # And the address TLS validated, where OpenSSL reads the
                    # name as one otherwise than the resolver (127.0.0.010).
                    address = tls_ip_form(name)
                    if address is not None:
                        hosts[address] = None
            for host in hosts:
                entry = self._pinset.match(host, port)
                if entry is not None:
                    found.setdefault(id(entry), (host, entry))
        except Exception as exc:
            # Fail closed: a name that cannot be looked up might have pins.
            host = next(iter(hosts), "") or str(names[0] if names else "")
            why = f"the host name could not be looked up ({type(exc).__name__}: {exc})"
            return self._fail(host, port, None, _read(chain), Verdict("failed", why))
        if not found:
            first = next(iter(hosts), "")
            if self._allow_unpinned:
                _debug("no pins configured for %s:%s; connection allowed", first, port)
                return None
            return self._decide(first, port, None, _read(chain))
        checked = _read(chain)
        for host, entry in found.values():
            failure = self._decide(host, port, entry, checked)
            if failure is not None:
                return failure
        return None

    def _decide(
        self, host: str, port: int, entry: HostPins | None, chain: PeerChain
    ) -> PinFailure | None:
        try:
            verdict = evaluate(entry, chain, allow_unpinned=self._allow_unpinned)
        except Exception as exc:
            # A check that cannot decide is a failure, never a pass and never
            # an exception that escapes the documented ones.
            why = f"the certificates could not be checked ({type(exc).__name__}: {exc})"
            verdict = Verdict("failed", why)
        if verdict.status == "matched":
            # The pin is formatted only if DEBUG is on: this is the hot path.
            _debug("pin check passed for %s:%s: %s matched", host, port, verdict.matched)
            return None
        if verdict.status == "unpinned":
            _debug("no pins configured for %s:%s; connection allowed", host, port)
            return None
        if verdict.status == "expired":
            assert entry is not None
            self._warn_expired(entry)
            return None
        return self._fail(host, port, entry, chain, verdict)

    def _fail(
        self, host: str, port: int, entry: HostPins | None, chain: PeerChain, verdict: Verdict
    ) -> PinFailure | None:
        report_only = self._report_only or (entry is not None and entry.report_only)
        now = datetime.now(timezone.utc)
        report_uri = (entry.report_uri if entry else None) or self._report_uri
        failure = _failure(host, port, entry, chain, verdict, report_only, now, report_uri)
        message = failure.message
        # Logged whether enforced or not: an application that catches SSLError
        # broadly must still leave a trace, and report-only mode (fail-open by
        # the user's explicit choice) must say so loudly. Rate-limited per
        # host, port and served chain, so that a retry loop cannot flood the log.
        key = (host, port, chain_key(failure.served_chain), report_only)
        suppressed = log_gate(key, time.monotonic())
        if suppressed is not None:
            verdict_text = "connection allowed" if report_only else "connection refused"
            kind = "report-only pin failure" if report_only else "pin failure"
            repeats = (
                f" [{suppressed} more like it in the last {LOG_SECONDS:.0f} s not logged]"
                if suppressed
                else ""
            )
            log.warning("%s (%s): %s%s", kind, verdict_text, message, repeats)
        self._notify(failure)
        if report_uri is not None:
            try:
                self._reporter.submit(failure, report_uri)
            except Exception:
                # Reporting is best effort; it never changes the verdict.
                log.exception("could not queue a pin violation report for %s", printable(host))
        return None if report_only else failure

    def _warn_expired(self, entry: HostPins) -> None:
        with self._lock:
            first = entry.pattern not in self._expired_warned
            self._expired_warned.add(entry.pattern)
        if first:
            log.warning(
                "pins for %r expired at %s and are no longer enforced",
                entry.pattern,
                entry.expires.isoformat() if entry.expires else "?",
            )

    def _notify(self, failure: PinFailure) -> None:
        if self._on_failure is None:
            return
        try:
            self._on_failure(failure)
        except Exception:
            # A broken callback must neither let a bad connection through nor
            # break a report-only one; the verdict stands either way.
            log.exception(
                "on_failure callback raised for %s:%s", printable(failure.host), failure.port
            )


def _debug(message: str, host: str, *args: object) -> None:
    """``log.debug`` of a line about ``host``, escaped (:func:`printable`) only if it is shown."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(message, printable(host), *args)


def _read(chain: PeerChain | Callable[[], PeerChain]) -> PeerChain:
    """The chain, read now if it is given as the function that reads it."""
    if isinstance(chain, PeerChain):
        return chain
    try:
        return chain()
    except Exception as exc:
        # A chain that cannot be read cannot pass: a failure like any other
        # (reported, and let through only in report-only mode), not an
        # exception that would skip on_failure and the report.
        why = f"the certificates could not be read ({type(exc).__name__}: {exc})"
        return PeerChain((), verified=False, problem=why)


def _failure(
    host: str,
    port: int,
    entry: HostPins | None,
    chain: PeerChain,
    verdict: Verdict,
    report_only: bool,
    now: datetime,
    report_uri: str | None,
) -> PinFailure:
    checked = _readable(chain)
    return PinFailure(
        # The name as the URL (or a server's redirect) spelled it, normalised:
        # urllib3 1.26 keeps control characters in a host. Kept as it is, as
        # data (reports, their deduplication); every message and log line
        # shows it escaped (printable), and only ever after the lookup:
        # escaping first would hide a name that IDNA maps to a pinned one (a
        # soft hyphen is dropped by it).
        host=host,
        port=port,
        pattern=entry.pattern if entry else None,
        pinned=tuple(str(pin) for pin in entry.pins) if entry else (),
        denied=tuple(str(pin) for pin in entry.deny) if entry else (),
        served=pins_of(chain.served),
        checked=pins_of(checked),
        verified=chain.verified,
        report_only=report_only,
        date_time=now,
        # A reason can quote an error raised reading the server's certificates:
        # the field is printable, for every log an on_failure callback writes.
        reason=printable(verdict.reason),
        served_chain=chain.served,
        checked_chain=checked,
        include_subdomains=entry.include_subdomains if entry else False,
        expires=entry.expires if entry else None,
        report_uri=report_uri,
    )


def make_policy(
    pins: PinSource | PinningPolicy,
    *,
    report_only: bool = False,
    on_failure: OnFailure | None = None,
    allow_unpinned: bool = True,
    report_uri: str | None = None,
) -> PinningPolicy:
    """What every face does with its ``pins`` and switches: one :class:`PinningPolicy`.

    Given a policy, returns it as it is; switches beside it would be a second
    word on the same question, so any that is not its default is a
    ``TypeError`` rather than a silent choice between the two.
    """
    if isinstance(pins, PinningPolicy):
        given = {
            "report_only": report_only is not False,
            "on_failure": on_failure is not None,
            "allow_unpinned": allow_unpinned is not True,
            "report_uri": report_uri is not None,
        }
        extra = [name for name, differs in given.items() if differs]
        if extra:
            raise TypeError(
                f"{', '.join(extra)} given beside a PinningPolicy: set "
                f"{'it' if len(extra) == 1 else 'them'} on the policy instead"
            )
        return pins
    return PinningPolicy(
        pins,
        report_only=report_only,
        on_failure=on_failure,
        allow_unpinned=allow_unpinned,
        report_uri=report_uri,
    )
