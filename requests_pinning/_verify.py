"""The decision: (host policy, certificate chain, was it verified?) -> verdict.

Nothing here knows about sockets. The socket layer (``_urllib3``) hands over a
:class:`PeerChain`; :class:`Enforcer` decides, logs, calls ``on_failure`` and
raises :class:`PinMismatchError` when the connection must not be used.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from ._certs import describe_name, sha256_pin
from ._errors import PinMismatchError
from ._pins import Pin
from ._pinset import HostPins, PinSet, check_policy, normalize_host
from ._report import LOG_SECONDS, OnFailure, PinFailure, Reporter, log_gate

__all__ = ["Enforcer", "PeerChain", "Verdict", "evaluate"]

log = logging.getLogger("requests_pinning")


class PeerChain:
    """What the TLS layer could tell about the server.

    ``checked`` is what proves something: the chain OpenSSL verified against
    the trust store (root included) when CA validation was on, otherwise only
    the leaf. ``served`` is what the server sent, for messages, reports and
    deny pins without validation only: it is never what an accepted pin is
    matched against, because an attacker can append the genuine intermediate
    to a rogue chain (CVE-2016-2402). It is read on first use (a passing check
    never needs it), so read it while the socket is open. ``problem`` says why
    nothing could be checked at all.
    """

    __slots__ = ("_load_served", "_served", "checked", "problem", "verified")

    def __init__(
        self,
        *,
        checked: tuple[bytes, ...],
        verified: bool,
        served: tuple[bytes, ...] | None = None,
        load_served: Callable[[], tuple[bytes, ...] | None] | None = None,
        problem: str | None = None,
    ) -> None:
        self.checked = checked
        self.verified = verified
        self.problem = problem
        self._served = served
        self._load_served = load_served

    @property
    def served(self) -> tuple[bytes, ...]:
        if self._served is None:
            loaded = None
            if self._load_served is not None:
                try:
                    loaded = self._load_served()
                except Exception:  # only for messages and reports: the leaf will do
                    log.debug("could not read the served chain", exc_info=True)
            self._served = loaded or self.checked[:1]
        return self._served


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
    """Decide one connection. Pure: no logging, no callbacks, no exceptions.

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
    if entry.is_expired(now) and not ignore_expiry:
        # An expired entry is not enforced, and there is no fall-back to a
        # broader entry: the user's pins for this host said "until then".
        return Verdict("expired", f"the entry expired at {entry.expires}")
    if chain.problem is not None:
        return Verdict("failed", chain.problem)
    if not chain.checked:
        return Verdict("failed", "the server presented no certificate")
    # Deny pins first: a denied certificate fails the connection even when an
    # accepted pin matches too. With CA validation off, every certificate the
    # server presented is looked at: for a deny-list, stricter is safe.
    if entry.deny:
        for der in chain.checked if chain.verified else chain.served:
            for pin in entry.deny:
                if pin.matches(der):
                    return Verdict(
                        "failed",
                        f"the certificate {describe_name(der)} ({sha256_pin(der)}) "
                        f"is denied by {pin}",
                    )
        if not entry.pins:
            return Verdict("matched", "no deny pin matched (the entry has deny pins only)")
    for der in chain.checked:
        for pin in entry.pins:
            if pin.matches(der):
                return Verdict("matched", matched=pin)
    if chain.verified:
        return Verdict("failed", "no certificate of the verified chain matches a pin")
    return Verdict(
        "failed",
        "the leaf certificate matches no pin (CA validation is off, so only the "
        "leaf is checked: intermediate and root pins cannot match)",
    )


class Enforcer:
    """Applies a :class:`PinSet` with the adapter-wide policy switches. Thread-safe."""

    def __init__(
        self,
        pinset: PinSet,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
    ) -> None:
        # Checked here, where every face (adapter, session, pool managers)
        # builds its enforcer: a wrong type fails at construction, as a wrong
        # value in a pin file does at load, not at the first pin failure.
        check_policy(
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
        )
        self.pinset = pinset
        self.report_only = report_only
        self.on_failure = on_failure
        self.allow_unpinned = allow_unpinned
        self.report_uri = report_uri
        # Reports honour the same pins: a pinned collector gets them only if it passes.
        self.reporter = Reporter(pinset, allow_unpinned=allow_unpinned)
        self._expired_warned: set[str] = set()
        self._lock = threading.Lock()

    def check(
        self,
        names: list[str | None],
        port: int,
        chain: PeerChain | Callable[[], PeerChain],
    ) -> None:
        """Raise :class:`PinMismatchError` unless the connection may be used.

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
        other: raised when enforced, reported and let through in report-only
        mode, with ``on_failure`` and ``report_uri`` called either way.

        ``chain`` may be a function that reads it: then it is read only when
        some name has an entry (or unpinned hosts are refused), so that an
        unpinned host pays nothing for its certificates.
        """
        hosts: dict[str, None] = {}
        found: dict[int, tuple[str, HostPins]] = {}
        try:
            for name in names:
                if name:
                    hosts[normalize_host(name)] = None
            for host in hosts:
                entry = self.pinset.match(host, port)
                if entry is not None:
                    found.setdefault(id(entry), (host, entry))
        except Exception as exc:
            # Fail closed: a name that cannot be looked up might have pins.
            host = next(iter(hosts), "") or str(names[0] if names else "")
            why = f"the host name could not be looked up ({type(exc).__name__}: {exc})"
            self._fail(host, port, None, _read(chain), Verdict("failed", why))
            return
        if not found:
            first = next(iter(hosts), "")
            if self.allow_unpinned:
                log.debug("no pins configured for %s:%s; connection allowed", first, port)
                return
            self._decide(first, port, None, _read(chain))
            return
        checked = _read(chain)
        for host, entry in found.values():
            self._decide(host, port, entry, checked)

    def _decide(self, host: str, port: int, entry: HostPins | None, chain: PeerChain) -> None:
        try:
            verdict = evaluate(entry, chain, allow_unpinned=self.allow_unpinned)
        except Exception as exc:
            # A check that cannot decide is a failure, never a pass and never
            # an exception that escapes the documented ones.
            why = f"the certificates could not be checked ({type(exc).__name__}: {exc})"
            verdict = Verdict("failed", why)
        if verdict.status == "matched":
            # The pin is formatted only if DEBUG is on: this is the hot path.
            log.debug("pin check passed for %s:%s: %s matched", host, port, verdict.matched)
            return
        if verdict.status == "unpinned":
            log.debug("no pins configured for %s:%s; connection allowed", host, port)
            return
        if verdict.status == "expired":
            assert entry is not None
            self._warn_expired(entry)
            return
        self._fail(host, port, entry, chain, verdict)

    def _fail(
        self, host: str, port: int, entry: HostPins | None, chain: PeerChain, verdict: Verdict
    ) -> None:
        report_only = self.report_only or (entry is not None and entry.report_only)
        now = datetime.now(timezone.utc)
        report_uri = (entry.report_uri if entry else None) or self.report_uri
        failure = _failure(host, port, entry, chain, verdict, report_only, now, report_uri)
        message = format_message(failure)
        # Logged whether enforced or not: an application that catches SSLError
        # broadly must still leave a trace, and report-only mode (fail-open by
        # the user's explicit choice) must say so loudly. Rate-limited per
        # host, port and served chain, so that a retry loop cannot flood the log.
        key = (host, port, failure.served_chain, report_only)
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
                self.reporter.submit(failure, report_uri)
            except Exception:
                # Reporting is best effort; it never changes the verdict.
                log.exception("could not queue a pin violation report for %s", host)
        if report_only:
            return
        raise PinMismatchError(
            message,
            host=host,
            port=port,
            pattern=failure.pattern,
            pinned=failure.pinned,
            denied=failure.denied,
            served=failure.served,
            checked=failure.checked,
            checked_chain=failure.checked_chain,
            verified=failure.verified,
            reason=failure.reason,
        )

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
        if self.on_failure is None:
            return
        try:
            self.on_failure(failure)
        except Exception:
            # A broken callback must neither let a bad connection through nor
            # break a report-only one; the verdict stands either way.
            log.exception("on_failure callback raised for %s:%s", failure.host, failure.port)


def _read(chain: PeerChain | Callable[[], PeerChain]) -> PeerChain:
    return chain if isinstance(chain, PeerChain) else chain()


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
    return PinFailure(
        host=host,
        port=port,
        pattern=entry.pattern if entry else None,
        pinned=tuple(str(pin) for pin in entry.pins) if entry else (),
        denied=tuple(str(pin) for pin in entry.deny) if entry else (),
        served=_pins_of(chain.served),
        checked=_pins_of(chain.checked),
        verified=chain.verified,
        report_only=report_only,
        date_time=now,
        reason=verdict.reason,
        served_chain=chain.served,
        checked_chain=chain.checked,
        include_subdomains=entry.include_subdomains if entry else False,
        expires=entry.expires if entry else None,
        report_uri=report_uri,
    )


def _pins_of(chain: Sequence[bytes]) -> tuple[str, ...]:
    pins = []
    for der in chain:
        try:
            pins.append(sha256_pin(der))
        except Exception:  # a failure message must be built whatever the certificate
            pins.append("(unparseable certificate)")
    return tuple(pins)


def format_message(failure: PinFailure) -> str:
    """The error text people copy from: the chain checked and the pins configured."""
    state = "verified" if failure.verified else "NOT verified: CA validation is off"
    lines = [
        f"Certificate pinning failure for {_hostport(failure.host, failure.port)}: {failure.reason}"
    ]
    if failure.checked_chain:
        lines.append(f"  Chain checked ({state}):")
        for pin, der in zip(failure.checked, failure.checked_chain, strict=True):
            lines.append(f"    {pin}  {describe_name(der)}")
    extra = failure.served_chain[len(failure.checked_chain) :] if not failure.verified else ()
    if extra:
        lines.append("  Also presented by the server (not trusted without CA validation):")
        for pin, der in zip(_pins_of(extra), extra, strict=True):
            lines.append(f"    {pin}  {describe_name(der)}")
    if failure.pattern is None:
        lines.append(f"  No pins are configured for {failure.host}.")
    else:
        lines.append(f'  Pinned for {failure.host} (entry "{failure.pattern}"):')
        lines.extend(f"    {pin}" for pin in failure.pinned)
        if not failure.pinned:
            lines.append("    (none: the entry has deny pins only)")
        if failure.denied:
            lines.append("  Denied:")
            lines.extend(f"    {pin}" for pin in failure.denied)
    return "\n".join(lines)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
