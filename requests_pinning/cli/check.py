"""``requests-pinning check``: does each server match the pins its entry configures?

Each target is handshaken with and judged by the library's own decision
(:func:`~requests_pinning._verify.evaluate`), as if its entry were enforced.
The result of one target is a JSON-able record: ``--json`` prints the records
as they are, in the order the targets were given; the text output is made
from them, one target as soon as its check is done. Targets are checked
concurrently (``--jobs``), so one unreachable target costs one timeout, not
one per target. The command's parser and help are at the end.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime, timezone
from typing import Any

from .._certs import describe_name, sha256_pin
from .._pins import Pin
from .._pinset import HostPins, PinSet
from .._report import shown_uri
from .._verify import PeerChain, evaluate
from ._errors import EXIT_FAILED, EXIT_OK, print_warning, show
from ._options import read_network, subparser
from ._output import days_until
from ._sources import Endpoint, Unreachable, handshake, parse_endpoint, tls_context

__all__ = ["add_parser", "check_all", "check_one", "print_check", "print_summary"]


def check_one(
    pinset: PinSet,
    endpoint: Endpoint,
    context: ssl.SSLContext,
    timeout: float,
    now: datetime,
    *,
    validating: bool = True,
) -> dict[str, Any]:
    """Check one target as if its entry were enforced; the result as a JSON-able record.

    ``validating``: whether ``context`` was made to validate (not --insecure).
    """
    entry = pinset.match(endpoint.host, endpoint.port)
    try:
        chain = handshake(endpoint, context, timeout, validating=validating)
    except Unreachable as exc:
        reason = exc.detail  # the output names the target already
        if entry is None:
            reason += "; and no pins are configured for this host"
        return _record(endpoint, entry, None, exc.status, reason, None, now)
    if entry is None:
        reason = "no pins are configured for this host"
        return _record(endpoint, None, chain, "failed", reason, None, now)
    # Report-only and expired entries are judged as if enforced: monitoring
    # must see a breakage before the entry is switched on, or renewed.
    try:
        verdict = evaluate(entry, chain, allow_unpinned=False, now=now, ignore_expiry=True)
    except ValueError as exc:
        # A chain that cannot be read is a failed check, as in the library:
        # a result to print (and JSON), never a traceback.
        reason = f"the certificate chain cannot be checked: {exc}"
        return _record(endpoint, entry, chain, "failed", reason, None, now)
    return _record(endpoint, entry, chain, verdict.status, verdict.reason, verdict.matched, now)


def _record(
    endpoint: Endpoint,
    entry: HostPins | None,
    chain: PeerChain | None,
    status: str,
    reason: str,
    matched: Pin | None,
    now: datetime,
) -> dict[str, Any]:
    expires = entry.expires if entry is not None else None
    checked = chain.checked if chain is not None else ()
    matched_der = next((der for der in checked if matched and matched.matches(der)), None)
    return {
        "target": endpoint.target,
        "host": endpoint.host,
        "port": endpoint.port,
        "ok": status not in ("failed", "unreachable", "tls_error"),
        "status": status,
        "reason": reason,
        "pattern": entry.pattern if entry is not None else None,
        "matched": str(matched) if matched is not None else None,
        "matched_subject": describe_name(matched_der) if matched_der else None,
        "pinned": [str(pin) for pin in entry.pins] if entry is not None else [],
        "denied": [str(pin) for pin in getattr(entry, "deny", ())],
        "verified": chain.verified if chain is not None else None,
        "checked": _described(checked),
        "served": _described(chain.served if chain is not None else ()),
        "expires": expires.isoformat() if expires is not None else None,
        "expires_in_days": days_until(expires, now) if expires is not None else None,
        "report_only": bool(entry is not None and entry.report_only),
        "expired": bool(entry is not None and entry.is_expired(now)),
        # Without its query, where collectors take a key: this output is
        # made for monitoring, whose logs are no place for one.
        "report_uri": shown_uri(entry.report_uri) if entry and entry.report_uri else None,
    }


def _described(chain: Iterable[bytes]) -> list[dict[str, str]]:
    result = []
    for der in chain:
        try:
            pin = sha256_pin(der)
        except ValueError:
            pin = "(unparseable certificate)"
        result.append({"pin": pin, "subject": describe_name(der)})
    return result


def check_all(
    pinset: PinSet,
    endpoints: Sequence[Endpoint],
    context: ssl.SSLContext,
    timeout: float,
    now: datetime,
    *,
    jobs: int,
    on_result: Callable[[dict[str, Any]], None],
    validating: bool = True,
) -> list[dict[str, Any]]:
    """Check every target, ``jobs`` at a time; the records in the order of ``endpoints``.

    ``on_result`` is called with each record as soon as its check is done, in
    the order they finish, from the calling thread (so it can print without
    interleaving). Handshakes are I/O-bound: a thread each is enough, and the
    slowest target (at worst ``timeout``) no longer holds up the others.
    """
    records: list[dict[str, Any] | None] = [None] * len(endpoints)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="check") as pool:
        futures = {
            pool.submit(
                check_one, pinset, endpoint, context, timeout, now, validating=validating
            ): index
            for index, endpoint in enumerate(endpoints)
        }
        try:
            for future in as_completed(futures):
                record = future.result()
                records[futures[future]] = record
                on_result(record)
        except BaseException:  # Ctrl-C: let the running handshakes time out alone
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [record for record in records if record is not None]


def print_check(record: dict[str, Any]) -> None:
    """Print one PASS or FAIL line for a record, and its details."""
    target = Endpoint(record["target"], record["host"], record["port"]).label
    show(f"PASS  {target}" if record["ok"] else f"FAIL  {target}: {record['reason']}")
    for label, value in _check_rows(record):
        show(f"      {label:<9} {value}")
    if not record["ok"] and record["checked"]:
        state = "verified chain" if record["verified"] else "leaf only: CA validation is off"
        show(f"      the server presents ({state}, leaf first):")
        for cert in record["checked"]:
            show(f"        {cert['pin']}  {cert['subject']}")
    sys.stdout.flush()  # each result as it arrives, also into a pipe


def print_summary(records: list[dict[str, Any]]) -> None:
    """Print the line that closes the text output."""
    passed = sum(1 for record in records if record["ok"])
    show(f"{len(records)} target(s): {passed} passed, {len(records) - passed} failed")


def _check_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    if record["matched"]:
        rows.append(("matched", f"{record['matched']}  {record['matched_subject'] or ''}"))
    if record["pattern"] is not None:
        rows.append(("entry", f"{record['pattern']} ({_entry_state(record)})"))
    if not record["ok"]:
        rows += [("pinned", pin) for pin in record["pinned"]]
        rows += [("denied", pin) for pin in record["denied"]]
    return rows


def _entry_state(record: dict[str, Any]) -> str:
    if record["expired"]:
        state = "EXPIRED: not enforced by the library"
    elif record["report_only"]:
        state = "report-only: failures are logged, connections proceed"
    else:
        state = "enforced"
    if record["expires"] is None:
        return f"{state}; no expiry"
    days = record["expires_in_days"]
    when = record["expires"][:10]
    if record["expired"]:
        return f"{state}; expired {when}, {-days} days ago"
    return f"{state}; expires {when}, in {days} days"


# -- the command line -------------------------------------------------------------------

_CHECK_EPILOG = """\
Each TARGET (an https:// URL or host[:port]) is checked as requests-pinning
would check it if its entry in PINFILE were enforced: report-only and
expired entries are checked anyway, and their state is shown. A target with
no entry, an unreachable target and a failed CA validation all fail.

Targets are checked --jobs at a time (default 8); each result is printed as
its check finishes, and the summary line last.

--json prints a list with one object per target, in the order the targets
were given: target, host, port, ok, status ("matched", "failed", or
"unreachable" / "tls_error" when there was no usable handshake), reason,
pattern, matched, pinned, denied, verified, checked and served (each a list
of {pin, subject}), expires, expires_in_days, report_only, expired,
report_uri (without its query or fragment).

examples:
  requests-pinning check pins.json api.example.com https://cdn.example.com/
  requests-pinning check --json pins.json api.example.com | your-monitoring
  requests-pinning check --ca-bundle corp-ca.pem pins.json intranet.example:8443

exit status: 0 every target passed, 1 any target failed, 2 usage error or a
pin file that does not load.
"""

#: Handshakes wait on the network, not the CPU: 8 at a time keeps a list of
#: hosts quick without opening a burst of connections from one machine.
_DEFAULT_JOBS = 8


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of jobs")
    return value


def _cmd_check(args: argparse.Namespace) -> int:
    pinset = PinSet.from_json(args.pinfile)
    endpoints = [parse_endpoint(target) for target in args.targets]
    net = read_network(args)
    context = tls_context(net)
    if net.insecure:
        print_warning(
            "--insecure: CA validation is OFF: only the leaf certificate is checked, as "
            "the library does with verify=False; intermediate and root pins cannot match"
        )
    now = datetime.now(timezone.utc)
    jobs = min(args.jobs, len(endpoints))
    # Text: each target as its check finishes. JSON: one document, in the
    # order the targets were given, so that the output is stable.
    on_result = (lambda record: None) if args.json else print_check
    records = check_all(
        pinset,
        endpoints,
        context,
        net.timeout,
        now,
        jobs=jobs,
        on_result=on_result,
        validating=not net.insecure,
    )
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print_summary(records)
    return EXIT_OK if all(record["ok"] for record in records) else EXIT_FAILED


def add_parser(commands: Any, network: argparse.ArgumentParser) -> None:
    parser = subparser(
        commands,
        "check",
        "check that servers match their pins in a pin file",
        "Handshake with each TARGET and report whether its chain matches the pins "
        "that PINFILE configures for it, which pin matched or what the server "
        "presents instead, and when the entry expires.",
        _CHECK_EPILOG,
        parents=[network],
    )
    parser.add_argument("pinfile", metavar="PINFILE", help="a JSON pin file")
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="URL or host[:port]")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=_DEFAULT_JOBS,
        metavar="N",
        help=f"check up to N targets at the same time (default: {_DEFAULT_JOBS})",
    )
    parser.set_defaults(handler=_cmd_check)
