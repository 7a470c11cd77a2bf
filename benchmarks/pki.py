"""A throwaway PKI for the benchmarks: root -> intermediate -> leaf, written to a folder.

The server serves the leaf and the intermediate; the client trusts only the root
(its bundle holds nothing else), so the chain OpenSSL verifies has three
certificates. One PKI per key type: ``ec`` (ECDSA P-256, what the HTTP
benchmarks use) and ``rsa`` (RSA 2048), both for the pin-check benchmark.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import certifi
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from requests_pinning import spki_pin
from requests_pinning._contexts import SETTLE_SECONDS

__all__ = [
    "HOST",
    "KEY_TYPES",
    "Chain",
    "certifi_overlay",
    "chain_files",
    "load_chain",
    "make_certifi_overlay",
    "make_chain",
    "wait_until_settled",
]

#: The host every benchmark connects to: loopback, by address (no resolver involved).
HOST = "127.0.0.1"

KEY_TYPES: dict[str, trustme.KeyType] = {"ec": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}


@dataclass(frozen=True)
class Chain:
    """Where one PKI's files are, and the pins and fingerprint of its certificates."""

    name: str
    served: Path  # PEM: leaf then intermediate, what the server presents
    key: Path  # PEM: the leaf's private key
    bundle: Path  # PEM: the root alone, the client's trust store
    leaf_pin: str
    intermediate_pin: str
    root_pin: str
    leaf_sha256: str  # hex SHA-256 of the leaf certificate (requests-toolbelt's FingerprintAdapter)


def chain_files(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """The served chain, key and bundle paths of the PKI ``name`` in ``folder``."""
    return folder / f"{name}-served.pem", folder / f"{name}-key.pem", folder / f"{name}-root.pem"


def make_chain(folder: Path, name: str) -> Chain:
    """Create a fresh PKI with keys of type ``name`` (``ec`` or ``rsa``) in ``folder``."""
    key_type = KEY_TYPES[name]
    root = trustme.CA(key_type=key_type)
    intermediate = root.create_child_ca(key_type=key_type)
    leaf = intermediate.issue_cert(HOST, "localhost", key_type=key_type)
    served, key, bundle = chain_files(folder, name)
    served.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    bundle.write_bytes(root.cert_pem.bytes())
    return load_chain(folder, name)


def load_chain(folder: Path, name: str) -> Chain:
    """Read back a PKI written by :func:`make_chain` (as the client processes do)."""
    served, key, bundle = chain_files(folder, name)
    certs = x509.load_pem_x509_certificates(served.read_bytes())
    if len(certs) != 2:
        raise ValueError(f"{served} holds {len(certs)} certificates, not leaf and intermediate")
    leaf_pem, intermediate_pem = (cert.public_bytes(Encoding.PEM) for cert in certs)
    leaf_der = certs[0].public_bytes(Encoding.DER)
    return Chain(
        name=name,
        served=served,
        key=key,
        bundle=bundle,
        leaf_pin=spki_pin(leaf_pem),
        intermediate_pin=spki_pin(intermediate_pem),
        root_pin=spki_pin(bundle.read_bytes()),
        leaf_sha256=hashlib.sha256(leaf_der).hexdigest(),
    )


def certifi_overlay(folder: Path) -> Path:
    """The folder to put first on ``PYTHONPATH`` so that ``import certifi`` finds the overlay."""
    return folder / "certifi-overlay"


def make_certifi_overlay(folder: Path, chains: Sequence[Chain]) -> Path:
    """A copy of the installed certifi package whose ``cacert.pem`` also trusts ``chains``' roots.

    ``verify=True`` means certifi's bundle, which cannot verify the benchmark's
    own chain. A client process started with the overlay first on
    ``PYTHONPATH`` loads the real bundle (about 150 roots) plus one or two, so
    that it does the work of ``verify=True`` whatever reads the default
    (requests, urllib3 or the adapter), and its handshakes succeed.
    """
    source = Path(certifi.__file__).resolve().parent
    target = certifi_overlay(folder) / "certifi"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    with (target / "cacert.pem").open("ab") as bundle:
        for chain in chains:
            bundle.write(b"\n# requests-pinning benchmark root: " + chain.name.encode() + b"\n")
            bundle.write(chain.bundle.read_bytes())
    return certifi_overlay(folder)


def wait_until_settled() -> None:
    """Wait until the files just written are old enough for a pinned session to share
    a TLS context built from them (``SETTLE_SECONDS``): measurements start after."""
    time.sleep(SETTLE_SECONDS + 0.1)
