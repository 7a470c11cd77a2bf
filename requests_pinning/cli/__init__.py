"""The ``requests-pinning`` command: find, check and lint pins, and a demo.

Errors go to stderr as one line (``requests-pinning: error: ...``); never a
traceback, not even for a bug (which says it is one). ``--json`` output is the JSON alone on stdout;
warnings and reminders go to stderr. Nothing is fetched from the network
except the targets named on the command line.

The commands, each with its own module (its parser, its help, and the work):

- ``pins`` (``pins.py``): the certificate chain of hosts or files, and their pins;
- ``check`` (``check.py``): does each server match the pins of its entry?
- ``lint`` (``lint.py``): risky or mistaken entries in a pin file;
- ``demo`` (``demo.py``): pinning stopping a mis-issued certificate, offline.

What they share: ``_sources`` (targets, handshakes, files), ``_output`` (what
``pins`` prints), ``_errors`` (exit statuses, one-line errors) and
``_options`` (how a command's parser is made, the network options). This
module holds the top-level parser and the dispatch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from cryptography.utils import CryptographyDeprecationWarning

from .. import __version__
from .._errors import PinConfigError
from . import check, demo, lint, pins
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PROG, UserError, print_error
from ._options import network_options

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


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in the command's one-line format."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Find, check and lint TLS certificate pins for requests-pinning.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    network = network_options()
    pins.add_parser(commands, network)
    check.add_parser(commands, network)
    lint.add_parser(commands)
    demo.add_parser(commands)
    return parser


# main() may run in several threads at once: the first to start makes the
# streams escape what they cannot encode, the last to end restores them.
_OUTPUT_LOCK = threading.Lock()
_OUTPUT_USERS = 0
_OUTPUT_SAVED: list[tuple[io.TextIOWrapper, str | None]] = []


@contextlib.contextmanager
def _printable_output() -> Iterator[None]:
    """Standard output and error that print any text, escaping what they cannot encode.

    File names and arguments that are not valid in the locale's encoding
    arrive as surrogate escapes (a name of Latin-1 bytes on a UTF-8 system),
    and are printed back in messages and reports: with the usual strict
    handler, that failed as a bug instead of showing the name.
    """
    global _OUTPUT_USERS
    with _OUTPUT_LOCK:
        if _OUTPUT_USERS == 0:
            _OUTPUT_SAVED[:] = [
                (stream, stream.errors)
                for stream in (sys.stdout, sys.stderr)
                if isinstance(stream, io.TextIOWrapper)
            ]
            for stream, _ in _OUTPUT_SAVED:
                stream.reconfigure(errors="backslashreplace")
        _OUTPUT_USERS += 1
    try:
        yield
    finally:
        with _OUTPUT_LOCK:
            _OUTPUT_USERS -= 1
            if _OUTPUT_USERS == 0:
                for stream, errors in _OUTPUT_SAVED:
                    stream.reconfigure(errors=errors)
                _OUTPUT_SAVED.clear()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 failed or warned, 2 usage)."""
    with _printable_output():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
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
