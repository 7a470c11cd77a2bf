"""How the ``requests-pinning`` command reports problems: exit statuses and stderr lines.

A user error is one line on stderr (``requests-pinning: error: ...``) and an
exit status, never a traceback. Warnings go to stderr as well, so that
``--json`` output on stdout is the JSON alone. Every line of text output,
here and in the other commands, goes through :func:`show`.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .._errors import printable

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "UserError",
    "print_error",
    "print_warning",
    "show",
]

PROG = "requests-pinning"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A problem to report as one line on stderr, and the exit status it means."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


def show(line: str = "", file: TextIO | None = None) -> None:
    """Print one line of text output (stdout unless ``file``), as one line.

    The command prints what servers sent (certificate names, errors read from
    a handshake): a line break or a terminal escape sequence in that text
    would forge lines of the report, a PASS under a FAIL, or erase them. So
    whatever is not printable is written as its escape (:func:`printable`).
    """
    print(printable(line), file=file)


def print_error(message: str) -> None:
    """Print ``requests-pinning: error: MESSAGE`` on stderr."""
    show(f"{PROG}: error: {message}", sys.stderr)


def print_warning(message: str) -> None:
    """Print ``requests-pinning: warning: MESSAGE`` on stderr."""
    show(f"{PROG}: warning: {message}", sys.stderr)
