"""What ``requests-pinning pins`` prints: the chains, or a pin-file entry to start from.

The text output shows every certificate of each target, leaf first (a file's in
file order), with its role, subject, issuer, expiry and pins. The ``--json``
output is an entry that ``PinSet.load`` accepts, pinning the CA keys rather
than the leaf wherever the chain allows it.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .._certs import cert_digest, describe_name, format_fingerprint, format_name
from .._pinset import PinSet
from ._errors import PROG, print_warning, show
from ._sources import Chain, Item

__all__ = ["days_until", "print_chains", "print_pins_json"]


def days_until(moment: datetime, now: datetime) -> int:
    """Whole days from ``now`` to ``moment``, rounded down (negative once it is past)."""
    return math.floor((moment - now).total_seconds() / 86400)


# -- the chains, as text ----------------------------------------------------------------


def print_chains(chains: list[Chain], backups: list[tuple[str, str]], now: datetime) -> None:
    """Print each target's chain, then the backup pins (``(path, pin)``) if any."""
    for index, chain in enumerate(chains):
        if index:
            show()
        _print_chain(chain, now)
    if backups:
        show()
        show("backup pins:")
        for path, pin in backups:
            show(f"  {pin}  ({path})")


def _print_chain(chain: Chain, now: datetime) -> None:
    if chain.endpoint is None:
        header = f"{chain.name}: {len(chain.items)} certificate(s) or key(s), in file order"
    elif chain.verified:
        header = f"{chain.name}: verified chain, leaf first (CA validation on)"
    else:
        header = f"{chain.name}: UNVERIFIED chain as served, leaf first (CA validation OFF)"
    show(header)
    for position, item in enumerate(chain.items):
        show()
        show(f"  #{position}  {_role(chain, position, item)}")
        for label, value in _item_rows(item, now):
            show(f"      {label:<12} {value}")


def _role(chain: Chain, position: int, item: Item) -> str:
    if item.cert is None and item.der:  # a certificate cryptography cannot parse
        role = "leaf" if chain.endpoint is not None and position == 0 else "certificate"
        return f"{role}, {item.note}" if item.note else role
    if item.cert is None:
        if item.source == "public key":
            return "public key"
        # Only the public half of a private key or a request is ever shown.
        return f"public key of a {item.source} (only the public half is shown)"
    cert = item.cert
    if chain.endpoint is not None and position == 0:
        role = "leaf, self-signed" if _self_issued(cert) else "leaf"
    elif not _is_ca(cert):
        role = "leaf"
    else:
        role = "root" if _self_issued(cert) else "intermediate"
    return f"{role}, {item.note}" if item.note else role


def _self_issued(cert: x509.Certificate) -> bool:
    try:
        return cert.subject == cert.issuer
    # cryptography parses names on first use, and what it raises on a bad one
    # depends on its version (a KeyError in 42): describing never fails.
    except Exception:
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return _self_issued(cert)  # an old root without extensions
    except Exception:  # extensions are parsed on first use, and can be malformed
        return False


def _item_rows(item: Item, now: datetime) -> list[tuple[str, str]]:
    rows = []
    if item.der:
        rows.append(("subject", describe_name(item.der)))
    if item.cert is not None:
        rows += [
            ("issuer", _issuer(item.cert)),
            ("expires", _expiry(item.cert, now)),
        ]
    rows += [("key", item.key), ("spki pin", item.pin)]
    if item.der:
        rows.append(("cert sha256", format_fingerprint(cert_digest(item.der))))
    return rows


def _issuer(cert: x509.Certificate) -> str:
    try:
        return format_name(cert.issuer) or "(empty)"
    except Exception:  # as in _self_issued
        return "(unparseable name)"


def _expiry(cert: x509.Certificate, now: datetime) -> str:
    try:
        moment = cert.not_valid_after_utc
    except Exception:  # parsed on first use by some cryptography versions (year 0...)
        return "(unparseable date)"
    return _expiry_text(moment, now)


def _expiry_text(moment: datetime, now: datetime) -> str:
    when = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    days = days_until(moment, now)
    if moment < now:
        return f"{when} (EXPIRED {-days} days ago)"
    return f"{when} (in {days} days)"


# -- a pin-file entry, as JSON ----------------------------------------------------------


def print_pins_json(chains: list[Chain], host: str | None, backups: list[tuple[str, str]]) -> None:
    """Print the pin-file entries for ``chains`` (keyed by ``host`` if given), with backups.

    Warns on stderr where only the leaf could be pinned, and reminds the user
    to add a backup pin when there is none.
    """
    config = _pins_config(chains, host, backups)
    PinSet.from_dict(config)  # what is printed must load
    print(json.dumps(config, indent=2))
    if not backups:
        _reminder()


def _pins_config(
    chains: list[Chain], host: str | None, backups: list[tuple[str, str]]
) -> dict[str, dict[str, list[str]]]:
    entries: dict[str, list[str]] = {}
    for chain in chains:
        key = host or (chain.endpoint.key if chain.endpoint else chain.name)
        pins, warnings = _entry_pins(chain)
        for warning in warnings:
            print_warning(warning)
        known = entries.setdefault(key, [])
        known += [pin for pin in pins if pin not in known]
    for key, pins in entries.items():
        for path, pin in backups:
            if pin in pins:
                print_warning(
                    f"--backup {path!r} is already pinned for {key}: a backup must be unused"
                )
            else:
                pins.append(pin)
    return {key: {"pins": pins} for key, pins in entries.items()}


def _entry_pins(chain: Chain) -> tuple[list[str], list[str]]:
    """The pins ``--json`` proposes for one target, and warnings about what they are."""
    items = list(chain.items)
    if chain.endpoint is not None and not chain.verified:
        # --insecure: the intermediates were never verified, and the library
        # checks only the leaf when verify=False; pinning the unverified rest
        # would pin whatever was sent, and could never match anyway.
        return [items[0].pin], [
            f"{chain.name}: pinned the leaf only: without CA validation requests-pinning "
            "checks only the leaf (verify=False); a new key on renewal breaks this pin"
        ]
    warnings = []
    if chain.endpoint is not None:
        rest = items[1:]
    else:
        rest, warning = _file_cas(chain.name, items)
        warnings += [warning] if warning else []
    if rest:
        return [item.pin for item in rest], warnings
    # No CA to pin: the leaf itself (the first, if a file holds others), or
    # the keys a file holds.
    leaves = [item for item in items if item.cert is not None and not _is_ca(item.cert)]
    own = leaves[:1] or [item for item in items if item.cert is None] or items
    why = "a self-signed certificate or a bare key"
    if own[0].cert is not None and not _is_root(own[0]):
        # A CA issued it, but its certificate is not here: say where to get it.
        why = (
            "the server sent its leaf only"
            if chain.endpoint is not None
            else "the file holds the leaf only; give the full chain, the leaf followed by "
            "its CA certificates, to pin a CA"
        )
    return [item.pin for item in own], [
        *warnings,
        f"{chain.name}: no CA certificate to pin ({why}): "
        "pinned the leaf itself, which changes whenever its key is replaced",
    ]


def _file_cas(name: str, items: list[Item]) -> tuple[list[Item], str | None]:
    """The CA certificates of a file to pin for one host, and a warning about the rest.

    Every pinned CA vouches for the host, so only those of one chain are
    pinned: with a leaf in the file (a fullchain), the CAs that issued the
    first leaf and its issuers, and none that a bundle appended by mistake
    would add. A file of CAs only is pinned whole (a primary and a backup CA,
    say), with a warning unless each is followed by its issuer.
    """
    cas = [item for item in items if item.cert is not None and _is_ca(item.cert)]
    leaves = [item for item in items if item.cert is not None and not _is_ca(item.cert)]
    if leaves:
        chain = _issuers(leaves[0], cas)
        outside = [item for item in cas if item not in chain]
        if not outside and len(leaves) == 1:
            return chain, None
        others = f" and {len(leaves) - 1} other leaf certificate(s)" if len(leaves) > 1 else ""
        return chain, (
            f"{name}: left out {len(outside)} CA certificate(s){others} that did not issue "
            f"the first leaf ({describe_name(leaves[0].der)}) or its issuers: "
            f"{', '.join(item.pin for item in outside + leaves[1:])}; each CA pinned would "
            "vouch for the host; to pin one on purpose, give it in a file of its own"
        )
    # Linear: each CA followed by its issuer, as in a chain file.
    if all(_issued(child, issuer) for child, issuer in itertools.pairwise(cas)):
        return cas, None
    return cas, (
        f"{name}: its {len(cas)} CA certificates are not one chain, each followed by its "
        "issuer (a CA bundle?): each is pinned and vouches for the host on its own; keep "
        "only the CAs of the host's chain"
    )


#: No chain is longer: a walk up a file's CAs stops there, whatever they hold.
_MAX_ISSUERS = 16


def _issuers(leaf: Item, cas: list[Item]) -> list[Item]:
    """The items of ``cas`` that issued ``leaf``, its issuer, and so on up, in that order.

    At each step a CA whose signature on the certificate verifies is taken
    before one that only has the right name (its key or algorithm one that
    cryptography cannot check): a CA that merely copies the issuer's name
    must not displace the one that signed.
    """
    chain: list[Item] = []
    current = leaf
    while len(chain) < _MAX_ISSUERS and not (chain and _is_root(current)):
        found = [(_issued(current, item), item) for item in cas if item not in chain]
        issuer = next((item for how, item in found if how == "signed"), None)
        issuer = issuer or next((item for how, item in found if how == "named"), None)
        if issuer is None:
            break
        chain.append(issuer)
        current = issuer
    return chain


def _is_root(item: Item) -> bool:
    return item.cert is not None and _self_issued(item.cert)


def _issued(child: Item, issuer: Item) -> str | None:
    """``"signed"`` when ``issuer`` signed ``child``; ``"named"`` when only the names say so
    (cryptography cannot check that key or algorithm); else ``None``."""
    if child.cert is None or issuer.cert is None or child is issuer:
        return None
    try:
        if child.cert.issuer != issuer.cert.subject:
            return None
        child.cert.verify_directly_issued_by(issuer.cert)
    except InvalidSignature:
        return None
    except Exception:  # an algorithm or key cryptography cannot check (or read)
        return "named"
    return "signed"


def _reminder() -> None:
    show(
        f"{PROG}: reminder: add a backup pin (--backup KEYFILE): the public key of a spare "
        "key pair kept offline, so that clients keep working when the pinned keys change",
        file=sys.stderr,
    )
