"""A throwaway PKI for the benchmarks: root -> intermediate -> leaf, written to a folder.

The server serves the leaf and the intermediate; the client trusts only the root
(its bundle holds nothing else), so the chain OpenSSL verifies has three
certificates. One PKI per key type: ``ec`` (ECDSA P-256, what the HTTP
benchmarks use) and ``rsa`` (RSA 2048), both for the pin-check benchmark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from requests_pinning import spki_pin

__all__ = ["HOST", "KEY_TYPES", "Chain", "chain_files", "load_chain", "make_chain"]

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
