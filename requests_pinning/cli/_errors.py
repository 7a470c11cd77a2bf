"""How the ``requests-pinning`` command reports problems: exit statuses and stderr lines.

A user error is one line on stderr (``requests-pinning: error: ...``) and an
exit status, never a traceback. Warnings go to stderr as well, so that
``--json`` output on stdout is the JSON alone.
"""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "UserError",
    "print_error",
    "print_warning",
]

PROG = "requests-pinning"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UserError(Exception):
    """A problem to report as one line on stderr, and the exit status it means."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


def print_error(message: str) -> None:
    """Print ``requests-pinning: error: MESSAGE`` on stderr."""
    print(f"{PROG}: error: {message}", file=sys.stderr)


def print_warning(message: str) -> None:
    """Print ``requests-pinning: warning: MESSAGE`` on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)
