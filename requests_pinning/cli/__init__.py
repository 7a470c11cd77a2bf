"""The ``requests-pinning`` command: find, check and lint pins, and a demo.

Errors go to stderr as one line (``requests-pinning: error: ...``); never a
traceback, not even for a bug (which says it is one). ``--json`` output is the JSON alone on stdout;
warnings and reminders go to stderr. Nothing is fetched from the network
except the targets named on the command line.

This module holds the parsers, their help, and the dispatch; the work is done
in ``_cli_sources`` (targets, handshakes, files), ``_cli_output`` (what
``pins`` prints), ``_cli_check`` and ``_cli_lint``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any, NoReturn

from cryptography.utils import CryptographyDeprecationWarning

from .. import __version__
from .._errors import PinConfigError
from .._pinset import PinSet
from .._suffixes import public_suffix_list
from . import demo as _demo
from ._errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UserError,
    print_error,
    print_warning,
)
from ._output import print_chains, print_pins_json
from ._sources import (
    Endpoint,
    Network,
    backup_pin,
    classify,
    gather,
    parse_endpoint,
    tls_context,
)
from .check import check_all, print_check, print_summary
from .lint import DUMMY_PIN, lint, print_lint

__all__ = ["main"]

_EPILOG = """\
examples:
  requests-pinning pins https://api.example.com/          show the chain and its pins
  requests-pinning pins --json --backup spare.pub api.example.com > pins.json
  requests-pinning pins fullchain.pem                     pins of a certificate file
  requests-pinning check pins.json api.example.com        does the server match its pins?
  requests-pinning lint pins.json                         single pins, expiry, mistakes
  requests-pinning demo                                   see pinning stop a rogue CA, offline

exit status: 0 success, 1 a check failed / lint warned / a target was
unreachable, 2 usage or configuration error.
"""

_PINS_EPILOG = """\
A TARGET is an https:// URL, host[:port] (IPv6: [2001:db8::1]:8443), or a
file: a PEM or DER certificate or chain (also PKCS#7), a PEM or DER public
key, a certificate request, or an unencrypted private key, of which only the
public half is used (private material is never printed). A TARGET naming an
existing file is read as that file; write https://NAME to mean the host.

For a host, the connection is made with CA validation on, against
--ca-bundle, else $REQUESTS_CA_BUNDLE, else $CURL_CA_BUNDLE, else the bundle
requests uses by default; the verified chain, root included, is printed.

--json prints a pin-file entry that PinSet.load accepts. It pins the
intermediate and root keys, not the leaf (the certificate that changes most
often); where there is nothing else (a self-signed certificate, a key, or
--insecure) it pins the leaf and says so. Always add a backup pin: the key of
a spare key pair kept offline (--backup). The entry's key is the host for
port 443 and host:port otherwise; for a file, give it with --host.

examples:
  requests-pinning pins https://api.example.com/
  requests-pinning pins api.example.com:8443 [2001:db8::1]:443
  requests-pinning pins --json --backup spare-key.pem api.example.com > pins.json
  requests-pinning pins --json --host api.example.com fullchain.pem
  requests-pinning pins --insecure self-signed.internal:8443

exit status: 0 success, 1 a host was unreachable or failed CA validation,
2 usage error or unreadable file.
"""

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
report_uri.

examples:
  requests-pinning check pins.json api.example.com https://cdn.example.com/
  requests-pinning check --json pins.json api.example.com | your-monitoring
  requests-pinning check --ca-bundle corp-ca.pem pins.json intranet.example:8443

exit status: 0 every target passed, 1 any target failed, 2 usage error or a
pin file that does not load.
"""

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
                  pins): its pins replace, not add to, the broader entry's.
                  (No entry can be shadowed completely: the same pattern
                  twice is a load error, and any other entry is still the
                  one that applies to some host or port. An override is the
                  shadowing that bites.)
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

_DEMO_EPILOG = """\
examples:
  requests-pinning demo
  python -m requests_pinning demo
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in the command's one-line format."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


# -- the commands -----------------------------------------------------------------------


def _network(args: argparse.Namespace) -> Network:
    return Network(args.ca_bundle, args.timeout, args.insecure)


def _cmd_pins(args: argparse.Namespace) -> int:
    sources = [classify(target) for target in args.targets]
    if args.json and args.host is None and any(isinstance(s, str) for s in sources):
        raise UserError("pins --json needs --host NAME for a file target (the entry's key)")
    if args.host is not None:
        PinSet.from_dict({args.host: [DUMMY_PIN]})  # a PinConfigError says what is wrong
    backups = [backup_pin(path) for path in args.backup]
    net = _network(args)
    needs_tls = any(isinstance(source, Endpoint) for source in sources)
    context = tls_context(net) if needs_tls else None
    chains = [gather(source, net, context) for source in sources]
    if args.json:
        print_pins_json(chains, args.host, backups)
    else:
        print_chains(chains, backups, datetime.now(timezone.utc))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    pinset = PinSet.from_json(args.pinfile)
    endpoints = [parse_endpoint(target) for target in args.targets]
    net = _network(args)
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
        pinset, endpoints, context, net.timeout, now, jobs=jobs, on_result=on_result
    )
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print_summary(records)
    return EXIT_OK if all(record["ok"] for record in records) else EXIT_FAILED


def _cmd_lint(args: argparse.Namespace) -> int:
    pinset = PinSet.from_json(args.pinfile)  # exactly as the library loads it
    suffixes = public_suffix_list()
    found = lint(pinset, args.pinfile, datetime.now(timezone.utc), args.warn_days, suffixes)
    print_lint(args.pinfile, pinset, found, suffixes, as_json=args.json)
    return EXIT_FAILED if found and not args.warnings_ok else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    return _demo.run(sys.stdout)


# -- the command line -------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


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


def _network_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("network options")
    group.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="trust the CAs in FILE (PEM; or a directory of hashed certificates) instead "
        "of requests' default ($REQUESTS_CA_BUNDLE, $CURL_CA_BUNDLE, or its bundle)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="for connecting and the TLS handshake (default: 10)",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="turn CA validation off: the chain is then unverified and only the leaf "
        "is meaningful (as with verify=False)",
    )
    return parent


def _subparser(
    commands: Any, name: str, help_text: str, description: str, epilog: str, **kwargs: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help_text,
        description=textwrap.fill(description, 79),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def _add_pins(commands: Any, network: argparse.ArgumentParser) -> None:
    parser = _subparser(
        commands,
        "pins",
        "show the certificate chain of hosts or files, and their pins",
        "Show the certificate chain of each TARGET, leaf first, with each "
        "certificate's subject, issuer, expiry, sha256/ SPKI pin and SHA-256 "
        "fingerprint; or, with --json, a pin-file entry to start from.",
        _PINS_EPILOG,
        parents=[network],
    )
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="URL, host[:port] or file")
    parser.add_argument("--json", action="store_true", help="print a pin-file entry as JSON")
    parser.add_argument(
        "--host",
        metavar="NAME",
        help="the host pattern to use as the entry's key in --json output "
        "(required for file targets)",
    )
    parser.add_argument(
        "--backup",
        action="append",
        default=[],
        metavar="KEYFILE",
        help="also pin this spare key (PEM public or private key, or a certificate); "
        "may be repeated",
    )
    parser.set_defaults(handler=_cmd_pins)


def _add_check(commands: Any, network: argparse.ArgumentParser) -> None:
    parser = _subparser(
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


def _add_lint(commands: Any) -> None:
    parser = _subparser(
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


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Find, check and lint TLS certificate pins for requests-pinning.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    network = _network_options()
    _add_pins(commands, network)
    _add_check(commands, network)
    _add_lint(commands)
    demo = _subparser(
        commands,
        "demo",
        "show pinning stop a mis-issued certificate, offline",
        "Make a throwaway PKI, start a genuine HTTPS server and an impostor on "
        "loopback, and show that pinning refuses the impostor before sending it a byte.",
        _DEMO_EPILOG,
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 failed or warned, 2 usage)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        with warnings.catch_warnings():
            # The certificates the command reads are untrusted input:
            # cryptography's warnings about them (a negative serial number)
            # are not about the user's code, and must never become errors.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            return handler(args)
    except UserError as exc:
        print_error(str(exc))
        return exc.status
    except PinConfigError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        print_error(f"{exc.strerror or exc}" + (f": {exc.filename!r}" if exc.filename else ""))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Exception as exc:
        # The last resort: every known failure is handled above, each with its
        # own message. Anything else is a bug, still reported in one line.
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        print_error(f"unexpected error, a bug in {PROG} (please report it): {detail}")
        return EXIT_FAILED
