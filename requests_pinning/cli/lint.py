"""``requests-pinning lint``: risky or mistaken entries in a pin file.

The file is loaded exactly as the library loads it; each check below then
yields warnings, which are sorted into the file's entry order. Precedence
between entries is never re-implemented here: the library's own
``PinSet.match`` is asked which entry applies where two overlap. The command's
parser and help are at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .._pins import Pin
from .._pinset import _SCHEMA_KEY, HostPins, PinSet, _parse_pattern, read_pin_file
from .._suffixes import SuffixList, public_suffix_list
from ._errors import EXIT_FAILED, EXIT_OK, show
from ._options import subparser
from ._output import days_until

__all__ = ["DUMMY_PIN", "LintWarning", "add_parser", "lint", "print_lint"]

#: A well-formed pin that matches nothing: for asking the library about host
#: patterns alone (does this key load? which entry applies where?).
DUMMY_PIN = "sha256/" + base64.b64encode(bytes(32)).decode("ascii")

_PatternKey = tuple[str, str, int | None]  # (kind, host, port), as _parse_pattern says


@dataclass(frozen=True)
class LintWarning:
    """One warning: its code (``single-pin``...), the entry's pattern, and what is wrong."""

    code: str
    pattern: str
    message: str


def lint(
    pinset: PinSet, text: str, now: datetime, warn_days: int, suffixes: SuffixList
) -> list[LintWarning]:
    """Every warning about ``pinset``, loaded from the file ``text``, in the file's entry order."""
    found = [
        *_lint_entries(pinset, now, warn_days, suffixes),
        *_lint_raw(text),
        *_lint_overrides(pinset, now),
    ]
    order = {entry.pattern: index for index, entry in enumerate(pinset)}
    found.sort(key=lambda warning: order.get(warning.pattern, len(order)))
    return found


def print_lint(
    path: str, pinset: PinSet, found: list[LintWarning], suffixes: SuffixList, *, as_json: bool
) -> None:
    """Print the warnings, one line each and a summary, or as one JSON object.

    Both say which public suffix list was used: the built-in one misses
    suffixes that the real list has.
    """
    if as_json:
        report = {
            "file": path,
            "entries": len(pinset),
            "ok": not found,
            "warnings": [vars(warning) for warning in found],
            "public_suffixes": suffixes.description,
        }
        print(json.dumps(report, indent=2))
        return
    for warning in found:
        show(f"{path}: {warning.pattern}: {warning.message} [{warning.code}]")
    show(f"{path}: {len(pinset)} entries, {len(found)} warning(s)")
    show(f"{path}: public suffixes from {suffixes.description}")


# -- one entry at a time ----------------------------------------------------------------


def _lint_entries(
    pinset: PinSet, now: datetime, warn_days: int, suffixes: SuffixList
) -> Iterator[LintWarning]:
    for entry in pinset:
        yield from _single_pin(entry)
        yield from _expiry(entry, now, warn_days)
        yield from _public_suffix(entry, suffixes)
        yield from _sha1(entry)


def _single_pin(entry: HostPins) -> Iterator[LintWarning]:
    # An entry with deny pins only has nothing to brick: it is not warned about.
    if len(entry.pins) == 1:
        yield LintWarning(
            "single-pin",
            entry.pattern,
            "only one pin: add a backup pin (the key of a spare key pair kept offline, "
            "or another CA key of the chain), or clients break when that key changes",
        )


def _expiry(entry: HostPins, now: datetime, warn_days: int) -> Iterator[LintWarning]:
    if entry.expires is None:
        return
    when = _when(entry.expires)
    days = days_until(entry.expires, now)
    if entry.is_expired(now):
        yield LintWarning(
            "expired",
            entry.pattern,
            f"expired {when} ({-days} days ago): it is no longer enforced, and broader "
            "entries do not apply to its hosts either",
        )
    elif entry.expires - now <= timedelta(days=warn_days):
        yield LintWarning(
            "expires-soon",
            entry.pattern,
            f"expires {when} (in {days} days): renew it, or its hosts lose pinning",
        )


def _public_suffix(entry: HostPins, suffixes: SuffixList) -> Iterator[LintWarning]:
    kind, host, _port = _parse_pattern(entry.pattern, None)
    if kind != "exact" and suffixes.is_public_suffix(host):
        yield LintWarning(
            "public-suffix",
            entry.pattern,
            f"a wildcard over the public suffix {host!r}: it pins every site registered "
            "under it, not only yours",
        )


def _sha1(entry: HostPins) -> Iterator[LintWarning]:
    deny: tuple[Pin, ...] = getattr(entry, "deny", ())
    for pin in (*entry.pins, *deny):
        if pin.algorithm == "sha1":
            what = "SPKI pin" if pin.kind == "spki" else "certificate fingerprint"
            yield LintWarning(
                "sha1-pin",
                entry.pattern,
                f"SHA-1 {what} {pin}: SHA-1 is broken; use a sha256/ SPKI pin",
            )


# -- the file as written ----------------------------------------------------------------


def _lint_raw(text: str) -> Iterator[LintWarning]:
    """Duplicate pins, seen in the file itself: loading merges them silently."""
    config = json.loads(text)  # the text loaded: it is a valid pin file
    for raw_key, value in config.items():
        if raw_key == _SCHEMA_KEY:  # names the file's schema: not an entry
            continue
        pattern = next(iter(PinSet.from_dict({raw_key: value}))).pattern
        lists = {"pins": value} if isinstance(value, list) else value
        yield from _duplicates(pattern, {name: lists.get(name) for name in ("pins", "deny")})


def _duplicates(pattern: str, lists: dict[str, Any]) -> Iterator[LintWarning]:
    seen: dict[Pin, tuple[str, str]] = {}
    for name, texts in lists.items():
        for text in texts if isinstance(texts, list) else ():
            try:
                pin = Pin.parse(text)
            except ValueError:
                continue
            if pin not in seen:
                seen[pin] = (name, text)
                continue
            first_name, first_text = seen[pin]
            if first_name != name:
                message = f"pin {pin} is in both pins and deny"
            elif first_text.strip() == text.strip():
                message = f"pin {pin} is listed twice"
            else:
                message = f"pin {pin} is listed twice, as {first_text!r} and {text!r}"
            yield LintWarning("duplicate-pin", pattern, message)


# -- entries that override others -------------------------------------------------------


def _lint_overrides(pinset: PinSet, now: datetime) -> Iterator[LintWarning]:
    """More specific entries whose pins replace some of a broader entry's, where both apply.

    Precedence is asked of the library itself: for each pair of entries whose
    host sets may overlap, sample hosts and ports from both patterns and see
    which entry ``PinSet.match`` picks where both would apply.
    """
    entries = list(pinset)
    keys: dict[str, _PatternKey] = {
        entry.pattern: _parse_pattern(entry.pattern, None) for entry in entries
    }
    alone = {entry.pattern: PinSet.from_dict({entry.pattern: [DUMMY_PIN]}) for entry in entries}
    # Entries by (host, kind) and by (host, kind, port).
    by_name: dict[tuple[str, str], list[HostPins]] = {}
    by_port: dict[tuple[str, str, int | None], list[HostPins]] = {}
    for entry in entries:
        kind, name, port = keys[entry.pattern]
        by_name.setdefault((name, kind), []).append(entry)
        by_port.setdefault((name, kind, port), []).append(entry)
    done: set[frozenset[str]] = set()
    for entry in entries:
        _, name, port = keys[entry.pattern]
        for depth, parent in enumerate(_parents(name)):
            # Only pairs that may apply to one host and port are asked about:
            # pairing every entry of a name with every other, or with every
            # entry of a parent name, was quadratic (one host on 2,000 ports, or
            # 1,000 ports of a name beside 1,000 names below it, took minutes).
            # Every host of this entry is at or below its name, so an exact
            # entry of a parent never applies where it does, nor a "*." entry
            # two or more labels up; and entries for other ports never do.
            for kind in _KINDS_AT_DEPTH[min(depth, 2)]:
                if port is None:
                    others = by_name.get((parent, kind), [])
                else:
                    others = by_port.get((parent, kind, port), []) + by_port.get(
                        (parent, kind, None), []
                    )
                for other in others:
                    pair = frozenset((entry.pattern, other.pattern))
                    if other is entry or pair in done:
                        continue
                    if len(done) == _MAX_PAIRS:
                        yield _unchecked(entry)
                        return
                    done.add(pair)
                    yield from _override(entry, other, keys, alone, now)


# Pairs of entries that may overlap, asked about at most (about 2 s): a file
# can hold quadratically many that really do (a wildcard on 1,000 ports above
# 1,000 names: a million), each worth its own warning. Past this, one warning
# says the rest was not checked, and lint never runs for hours.
_MAX_PAIRS = 20_000


def _unchecked(entry: HostPins) -> LintWarning:
    return LintWarning(
        "overrides-unchecked",
        entry.pattern,
        f"stopped looking for overrides after {_MAX_PAIRS:,} pairs of entries that may "
        "apply to the same host (from this entry on, overrides were not checked)",
    )


# The kinds of entries of a name, its parent, or a name further up, whose hosts
# may include one of an entry's (its own name's entries: every kind).
_KINDS_AT_DEPTH = (("exact", "one", "tree"), ("one", "tree"), ("tree",))


def _parents(name: str) -> Iterator[str]:
    """``name`` and each of its parent domains."""
    while name:
        yield name
        name = name.partition(".")[2]


def _override(
    a: HostPins,
    b: HostPins,
    keys: dict[str, _PatternKey],
    alone: dict[str, PinSet],
    now: datetime,
) -> Iterator[LintWarning]:
    winner = _winner(a, b, keys, alone)
    if winner is None:
        return
    loser = b if winner is a else a
    if loser.is_expired(now):
        return  # it enforces nothing to lose (its own warning says it expired)
    # Sets: entries of thousands of pins made each pair cost the product.
    kept = set(winner.pins)
    lost = [pin for pin in loser.pins if pin not in kept]
    winner_deny: frozenset[Pin] = frozenset(getattr(winner, "deny", ()))
    lost_deny = [pin for pin in getattr(loser, "deny", ()) if pin not in winner_deny]
    # Whether the broader entry enforces anything the winner could weaken.
    enforced = bool(loser.pins or getattr(loser, "deny", ())) and not loser.report_only
    problems = []
    if lost and not winner.pins:
        # A deny-list alone accepts whatever it does not deny: no pin of the
        # broader entry is "not accepted", each is, and so is any other key.
        if enforced:
            problems.append(
                f"it has deny pins only, so any certificate it does not deny is accepted "
                f"there, not only the pinned keys of {loser.pattern}"
            )
        lost = []
    parts = []
    if lost:
        parts.append(
            f"{_count(len(lost), len(loser.pins), 'pin')} of {loser.pattern} "
            f"{'is' if len(lost) == 1 else 'are'} not accepted there"
        )
    if lost_deny:
        parts.append(
            f"{_count(len(lost_deny), len(getattr(loser, 'deny', ())), 'deny pin')} of "
            f"{loser.pattern} {'is' if len(lost_deny) == 1 else 'are'} not applied there"
        )
    if parts:
        problems.append(
            f"its pins replace, not add to, those of {loser.pattern}: {'; '.join(parts)}"
        )
    # The switches are the winner's too: a narrower entry can turn
    # enforcement off (report-only), or end it sooner (expires), for the
    # hosts that the broader entry enforces.
    if enforced and winner.report_only:
        problems.append(
            f"it is report-only, so nothing is enforced there, where {loser.pattern} is"
        )
    sooner = winner.expires is not None and (
        loser.expires is None or winner.expires < loser.expires
    )
    if enforced and sooner:
        assert winner.expires is not None
        problems.append(
            f"it expires {_when(winner.expires)}, before {loser.pattern} "
            f"{'does' if loser.expires else '(which does not expire)'}: from then on "
            "no pins apply there at all"
        )
    if problems:
        yield LintWarning(
            "override",
            winner.pattern,
            f"overrides {loser.pattern} where both apply, and {', and '.join(problems)}",
        )


def _when(moment: datetime) -> str:
    """A moment as lint shows it: ``2027-06-30 23:59:59 UTC`` (year 1 as ``0001``)."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment.year:04d}-{moment:%m-%d %H:%M:%S} UTC"  # (%Y: "1" for year 1)


def _count(part: int, whole: int, noun: str) -> str:
    """``1 of the 2 pins``, ``the only deny pin``, ``both pins``: for the override line."""
    if part == whole == 1:
        return f"the only {noun}"
    if part == whole:
        return f"both {noun}s" if whole == 2 else f"all {whole} {noun}s"
    return f"{part} of the {whole} {noun}s"


def _winner(
    a: HostPins,
    b: HostPins,
    keys: dict[str, _PatternKey],
    alone: dict[str, PinSet],
) -> HostPins | None:
    """The entry ``PinSet.match`` picks where both apply, or None if they never overlap."""
    (_, name_a, port_a), (_, name_b, port_b) = keys[a.pattern], keys[b.pattern]
    names = {name_a, name_b, f"sample.{name_a}", f"sample.{name_b}"}
    ports = {port for port in (port_a, port_b) if port is not None}
    ports.add(next(port for port in (443, 8443, 4443) if port not in ports))
    both = PinSet.from_dict({a.pattern: [DUMMY_PIN], b.pattern: [DUMMY_PIN]})
    for name in sorted(names):
        for port in sorted(ports):
            if alone[a.pattern].match(name, port) and alone[b.pattern].match(name, port):
                found = both.match(name, port)
                return a if found is not None and found.pattern == a.pattern else b
    return None


# -- the command line -------------------------------------------------------------------

_LINT_EPILOG = """\
PINFILE is loaded exactly as the library loads it; if that fails, the error
is printed and the exit status is 2. Then each of these is one warning, one
line on stdout:

  single-pin      an entry with only one pin: no backup pin, the most common
                  cause of bricked clients (entries of deny pins only are fine)
  expired         an entry that has expired (it is no longer enforced, and
                  broader entries do not apply to its hosts either)
  expires-soon    an entry that expires within --warn-days days
  public-suffix   a *. or **. (include_subdomains) entry over a public suffix,
                  such as *.com or **.co.uk: the Public Suffix List with the
                  psl extra (pip install 'requests-pinning[psl]'), else a
                  built-in list of common ones; the output says which
  override        a more specific entry that takes precedence over a broader
                  one where both apply, and lacks some of its pins (or deny
                  pins): its pins replace, not add to, the broader entry's;
                  or that enforces less there (report-only, deny pins only,
                  or an earlier expiry).
                  (No entry can be shadowed completely: the same pattern
                  twice is a load error, and any other entry is still the
                  one that applies to some host or port. An override is the
                  shadowing that bites.)
  overrides-unchecked
                  overrides were looked for among 20,000 pairs of entries
                  that may apply to one host, and not past this entry
  duplicate-pin   a pin listed twice in one entry, also in two spellings
                  (sha256/X and sha256//X), or in both pins and deny
  sha1-pin        a SHA-1 pin (sha1/... or a 40-digit fingerprint)

examples:
  requests-pinning lint pins.json
  requests-pinning lint --warn-days 60 --json pins.json
  requests-pinning lint --warnings-ok pins.json     # report, but exit 0

exit status: 0 no warnings (or --warnings-ok), 1 warnings, 2 the file does
not load.
"""


# Longer than any expiry can be away (datetime ends at year 9999), and short
# enough for a timedelta.
_MAX_WARN_DAYS = 3_652_500


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    if value > _MAX_WARN_DAYS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is more than {_MAX_WARN_DAYS} days (ten thousand years, past every expiry)"
        )
    return value


def _cmd_lint(args: argparse.Namespace) -> int:
    # Read once (a pipe cannot be read twice), then loaded as the library loads it.
    text = read_pin_file(args.pinfile)
    pinset = PinSet._from_text(text, args.pinfile)
    suffixes = public_suffix_list()
    found = lint(pinset, text, datetime.now(timezone.utc), args.warn_days, suffixes)
    print_lint(args.pinfile, pinset, found, suffixes, as_json=args.json)
    return EXIT_FAILED if found and not args.warnings_ok else EXIT_OK


def add_parser(commands: Any) -> None:
    parser = subparser(
        commands,
        "lint",
        "find risky or mistaken entries in a pin file",
        "Load PINFILE as the library does and warn, one line each, about entries "
        "that can brick clients or do not do what they seem to.",
        _LINT_EPILOG,
    )
    parser.add_argument("pinfile", metavar="PINFILE", help="a JSON pin file")
    parser.add_argument(
        "--warn-days",
        type=_days,
        default=30,
        metavar="DAYS",
        help="warn about entries that expire within DAYS days (default: 30)",
    )
    parser.add_argument(
        "--warnings-ok", action="store_true", help="exit 0 even when there are warnings"
    )
    parser.add_argument("--json", action="store_true", help="print the warnings as JSON")
    parser.set_defaults(handler=_cmd_lint)
