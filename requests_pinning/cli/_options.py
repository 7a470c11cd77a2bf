"""The parts of the ``requests-pinning`` command line that several commands share.

How a command's parser is made (its help laid out as written), and the
network options of the commands that handshake (``pins`` and ``check``), with
:func:`read_network` to read them back.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Any

from ._sources import Network

__all__ = ["network_options", "read_network", "subparser"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    if value > _MOST_SECONDS:
        # A socket timeout past what the platform's clock holds is an
        # OverflowError in the middle of a connection: a usage error here.
        raise argparse.ArgumentTypeError(f"{text!r} is more than a day ({_MOST_SECONDS:.0f} s)")
    return value


_MOST_SECONDS = 86400.0


def network_options() -> argparse.ArgumentParser:
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


def read_network(args: argparse.Namespace) -> Network:
    return Network(args.ca_bundle, args.timeout, args.insecure)


def subparser(
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
