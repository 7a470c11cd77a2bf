"""``requests-pinning pins``: the certificate chain of hosts or files, and their pins.

The targets are read by ``_sources`` (handshakes, files) and printed by
``_output`` (the chains as text, or with ``--json`` a pin-file entry to start
from); this module holds the command's parser, its help, and the run.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from .._pinset import PinSet
from ._errors import EXIT_OK, UserError
from ._options import read_network, subparser
from ._output import print_chains, print_pins_json
from ._sources import Endpoint, backup_pin, classify, gather, tls_context
from .lint import DUMMY_PIN

__all__ = ["add_parser"]

_PINS_EPILOG = """\
A TARGET is an https:// URL, host[:port] (IPv6: [2001:db8::1]:8443), or a
file: a PEM or DER certificate or chain (also PKCS#7), a PEM or DER public
key, a PEM certificate request, or an unencrypted private key, of which only the
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


def _cmd_pins(args: argparse.Namespace) -> int:
    sources = [classify(target) for target in args.targets]
    if args.json and args.host is None and any(isinstance(s, str) for s in sources):
        raise UserError("pins --json needs --host NAME for a file target (the entry's key)")
    if args.host is not None:
        PinSet.from_dict({args.host: [DUMMY_PIN]})  # a PinConfigError says what is wrong
    backups = [backup_pin(path) for path in args.backup]
    net = read_network(args)
    needs_tls = any(isinstance(source, Endpoint) for source in sources)
    context = tls_context(net) if needs_tls else None
    chains = [gather(source, net, context) for source in sources]
    if args.json:
        print_pins_json(chains, args.host, backups)
    else:
        print_chains(chains, backups, datetime.now(timezone.utc))
    return EXIT_OK


def add_parser(commands: Any, network: argparse.ArgumentParser) -> None:
    parser = subparser(
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
