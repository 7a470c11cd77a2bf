"""The ``requests-pinning`` command: find, check and lint pins, and a demo.

Errors go to stderr as one line and exit with status 2; no tracebacks for
user errors. ``--json`` output is the JSON alone on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _demo

__all__ = ["main"]

_EPILOG = """\
examples:
  requests-pinning demo
"""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="requests-pinning",
        description="Find, check and lint TLS certificate pins for requests-pinning.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="show pinning stop a mis-issued certificate, offline",
        description=(
            "Make a throwaway PKI, start a genuine HTTPS server and an impostor on "
            "loopback, and show that pinning refuses the impostor before sending it a byte."
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        return _demo.run()
    print(f"requests-pinning: unknown command {args.command!r}", file=sys.stderr)
    return 2
