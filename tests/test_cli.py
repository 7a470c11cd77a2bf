"""The requests-pinning command, in-process, against real loopback TLS servers and files."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import requests_pinning
from requests_pinning import PinSet, cli, spki_pin
from requests_pinning.cli import _sources
from requests_pinning.cli.lint import DUMMY_PIN

from .conftest import PKI
from .servers import TLSServer, refused_port
from .test_certs import der_tlv, rebuild_cert, tbs_fields

DER = serialization.Encoding.DER

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; return (exit status, stdout, stderr)."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def target(server: TLSServer) -> str:
    return f"localhost:{server.port}"


def write_pins(tmp_path: Path, config: dict[str, Any], name: str = "pins.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def key_pin(private_key_pem: bytes) -> str:
    """The pin of a private key's public half, computed independently of the CLI."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    return spki_pin(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def in_days(days: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).date().isoformat()


# -- pins: network targets ------------------------------------------------------------


@pytest.mark.parametrize("form", ["host:port", "url"])
def test_pins_prints_the_verified_chain_leaf_first(
    capsys: Capture, pki: PKI, good: TLSServer, form: str
) -> None:
    name = target(good) if form == "host:port" else f"https://localhost:{good.port}/some/path"
    status, out, err = run(capsys, "pins", "--ca-bundle", pki.bundle, name)
    assert status == 0, err
    assert out.startswith(f"localhost:{good.port}: verified chain, leaf first")
    positions = [out.index(pin) for pin in (pki.leaf_pin, pki.intermediate_pin, pki.root_pin)]
    assert positions == sorted(positions)
    assert "#0  leaf\n" in out
    assert "#1  intermediate\n" in out
    assert "#2  root, from the trust store\n" in out  # the server does not send the root
    assert "cert sha256" in out and "expires      3000-01-01" in out
    assert err == ""


def test_pins_json_pins_intermediate_and_root_not_leaf(
    capsys: Capture, pki: PKI, good: TLSServer
) -> None:
    status, out, err = run(capsys, "pins", "--json", "--ca-bundle", pki.bundle, target(good))
    assert status == 0, err
    config = json.loads(out)
    assert config == {target(good): {"pins": [pki.intermediate_pin, pki.root_pin]}}
    entry = PinSet.from_dict(config).match("localhost", good.port)
    assert entry is not None and pki.leaf_pin not in [str(pin) for pin in entry.pins]
    assert "reminder: add a backup pin" in err


def test_pins_json_with_backup_key(
    capsys: Capture, pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    spare = trustme.CA().private_key_pem.bytes()
    (tmp_path / "spare.pem").write_bytes(spare)
    status, out, err = run(
        capsys,
        "pins",
        "--json",
        "--ca-bundle",
        pki.bundle,
        "--backup",
        str(tmp_path / "spare.pem"),
        f"https://localhost:{good.port}/",
    )
    assert status == 0, err
    pins = json.loads(out)[target(good)]["pins"]
    assert pins == [pki.intermediate_pin, pki.root_pin, key_pin(spare)]
    assert "reminder" not in err
    assert spare.decode() not in out + err


def test_pins_uses_requests_ca_bundle_from_the_environment(
    capsys: Capture, pki: PKI, good: TLSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(capsys, "pins", target(good))  # requests' default trust: no
    assert status == 1
    assert err.startswith("requests-pinning: error: CA validation failed for localhost:")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.bundle)
    status, out, err = run(capsys, "pins", target(good))
    assert status == 0, err
    assert pki.root_pin in out


def test_pins_insecure_warns_and_json_pins_only_the_leaf(
    capsys: Capture, pki: PKI, untrusted: TLSServer
) -> None:
    status, out, err = run(capsys, "pins", "--insecure", target(untrusted))
    assert status == 0, err
    assert "UNVERIFIED chain" in out and pki.untrusted_leaf_pin in out
    assert "WARNING: --insecure: CA validation is OFF" in err
    assert "Only the leaf is meaningful" in err
    status, out, err = run(capsys, "pins", "--insecure", "--json", target(untrusted))
    assert status == 0, err
    assert json.loads(out) == {target(untrusted): {"pins": [pki.untrusted_leaf_pin]}}
    assert "pinned the leaf only" in err


def test_pins_unreachable_target_fails(capsys: Capture, pki: PKI) -> None:
    with refused_port() as port:
        status, out, err = run(capsys, "pins", "--ca-bundle", pki.bundle, f"127.0.0.1:{port}")
    assert status == 1
    assert out == ""
    assert (
        err == f"requests-pinning: error: cannot connect to 127.0.0.1:{port}: Connection refused\n"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[::1]:8443", "[::1]:8443"),
        ("[::1]:443", "::1"),
        ("https://[::1]/x", "::1"),
        ("https://API.Example.com:443/", "api.example.com"),
        ("api.example.com:8443", "api.example.com:8443"),
        # A zone id is how to reach a link-local address, not part of its key
        # (lookups drop it; the loader refuses it).
        ("[fe80::1%eth0]:8443", "[fe80::1]:8443"),
        ("fe80::1%eth0", "fe80::1"),
        ("https://[FE80::1%25eth0]/x", "fe80::1"),
    ],
)
def test_pin_file_keys_of_targets(text: str, key: str) -> None:
    assert _sources.parse_endpoint(text).key == key
    PinSet.from_dict({key: [DUMMY_PIN]})


@pytest.mark.parametrize("text", ["[fe80::1%eth0]:8443", "https://[fe80::1%25eth0]:8443/"])
def test_a_zone_id_is_kept_for_connecting(text: str) -> None:
    endpoint = _sources.parse_endpoint(text)
    assert (endpoint.host, endpoint.zone, endpoint.port) == ("fe80::1", "%eth0", 8443)
    assert endpoint.label == "[fe80::1%eth0]:8443"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pins", "http://example.com/"], "only https:// URLs"),
        (["pins", "*.example.com"], "a wildcard cannot be connected to"),
        (["pins", "example.com:99999"], "is not an https:// URL, host[:port] or a file"),
        (["pins", "fe80::1%eth0:8443"], "without its zone id"),
        (["pins", "127.0.0.1%eth0"], "is not an https:// URL, host[:port] or a file"),
        (["pins", "./missing.pem"], "no such file"),
        (["pins"], "the following arguments are required: TARGET"),
        (["check", "--timeout", "0", "p.json", "x"], "not a positive number"),
        (["check", "--timeout", "1e10", "p.json", "x"], "is more than a day"),
        (["pins", "--timeout", "86401", "x.example"], "is more than a day"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys: Capture, argv: list[str], message: str) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("requests-pinning: error: ") and err.count("\n") == 1
    assert message in err


# -- pins: files ----------------------------------------------------------------------


def test_pins_of_a_chain_file_needs_host_for_json(
    capsys: Capture, pki: PKI, tmp_path: Path
) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in pki.leaf.cert_chain_pems))
    status, out, err = run(capsys, "pins", str(chain))
    assert status == 0, err
    assert "2 certificate(s) or key(s), in file order" in out
    assert out.index(pki.leaf_pin) < out.index(pki.intermediate_pin)

    status, out, err = run(capsys, "pins", "--json", str(chain))
    assert status == 2
    assert out == ""
    assert "needs --host NAME" in err

    status, out, err = run(capsys, "pins", "--json", "--host", "api.example.com", str(chain))
    assert status == 0, err
    assert json.loads(out) == {"api.example.com": {"pins": [pki.intermediate_pin]}}
    PinSet.from_dict(json.loads(out))


@pytest.mark.parametrize(
    "appended", ["nothing", "the rogue root", "an unrelated intermediate", "a copy of the root"]
)
def test_pins_json_of_a_fullchain_pins_only_the_leaf_s_chain(
    capsys: Capture, pki: PKI, tmp_path: Path, appended: str
) -> None:
    # Every pinned CA vouches for the host: a CA appended to a fullchain file
    # (a bundle pasted after it, say) must not become a pin of its own.
    extra = {
        "nothing": b"",
        "the rogue root": pki.rogue_root.cert_pem.bytes(),
        "an unrelated intermediate": pki.rogue_root.create_child_ca().cert_pem.bytes(),
        "a copy of the root": pki.root.cert_pem.bytes(),
    }[appended]
    chain = tmp_path / "fullchain.pem"
    pems = [blob.bytes() for blob in pki.leaf.cert_chain_pems]
    chain.write_bytes(b"".join([pems[0], extra, *pems[1:], pki.root.cert_pem.bytes()]))
    status, out, err = run(capsys, "pins", "--json", "--host", "api.example.com", str(chain))
    assert status == 0, err
    assert json.loads(out) == {"api.example.com": {"pins": [pki.intermediate_pin, pki.root_pin]}}
    left_out = "left out 1 CA certificate(s) that did not issue the first leaf" in err
    assert left_out == (appended in ("the rogue root", "an unrelated intermediate"))
    if appended == "the rogue root":
        assert pki.rogue_root_pin in err


def _certificate(
    subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = datetime.now(timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.BasicConstraints(ca=subject != "leaf.example", path_length=None), critical=True
        )
        .sign(signer, hashes.SHA256())
    )


def test_pins_json_of_a_file_takes_the_ca_that_signed_not_one_that_has_its_name(
    capsys: Capture, tmp_path: Path
) -> None:
    # An impostor CA with the issuer's name, and a key cryptography cannot
    # load (an unknown curve; in the wild SM2 or GOST): its signature cannot
    # be checked, so only the names speak for it, and the CA whose signature
    # verifies comes first, wherever it is in the file.
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    real = _certificate("Issuing CA", "Issuing CA", keys[0], keys[0])
    p256, unknown = bytes.fromhex("06082A8648CE3D030107"), bytes.fromhex("06082A8648CE3D030109")
    der = _certificate("Issuing CA", "Issuing CA", keys[1], keys[1]).public_bytes(DER)
    impostor = der.replace(p256, unknown)
    leaf = _certificate("leaf.example", "Issuing CA", keys[2], keys[0])
    path = tmp_path / "chain.pem"
    path.write_bytes(
        b"".join(
            ssl.DER_cert_to_PEM_cert(c).encode()
            for c in (leaf.public_bytes(DER), impostor, real.public_bytes(DER))
        )
    )
    status, out, err = run(capsys, "pins", "--json", "--host", "leaf.example", str(path))
    assert status == 0, err
    assert json.loads(out)["leaf.example"]["pins"] == [spki_pin(real.public_bytes(DER))]
    assert spki_pin(impostor) in err  # left out, and named
    # The twin: with no CA that signed, the one with the name is taken.
    path.write_bytes(
        b"".join(ssl.DER_cert_to_PEM_cert(c).encode() for c in (leaf.public_bytes(DER), impostor))
    )
    status, out, err = run(capsys, "pins", "--json", "--host", "leaf.example", str(path))
    assert json.loads(out)["leaf.example"]["pins"] == [spki_pin(impostor)]


def test_pins_json_of_a_file_with_two_leaves_pins_the_first_one_s_chain(
    capsys: Capture, pki: PKI, tmp_path: Path
) -> None:
    other = pki.rogue_root.issue_cert("other.example")
    path = tmp_path / "two.pem"
    path.write_bytes(
        other.cert_chain_pems[0].bytes() + b"".join(b.bytes() for b in pki.leaf.cert_chain_pems)
    )
    status, out, err = run(capsys, "pins", "--json", "--host", "other.example", str(path))
    assert status == 0, err
    # The first leaf's issuer is not in the file: its own key, not the other leaf's.
    assert json.loads(out) == {
        "other.example": {"pins": [spki_pin(other.cert_chain_pems[0].bytes())]}
    }
    assert "and 1 other leaf certificate(s)" in err
    assert pki.leaf_pin in err and pki.intermediate_pin in err


def test_pins_json_of_ca_certificates_warns_when_they_are_not_one_chain(
    capsys: Capture, pki: PKI, tmp_path: Path
) -> None:
    one_chain = tmp_path / "cas.pem"
    one_chain.write_bytes(pki.intermediate.cert_pem.bytes() + pki.root.cert_pem.bytes())
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.root.cert_pem.bytes() + pki.rogue_root.cert_pem.bytes())
    for path, pins in (
        (one_chain, [pki.intermediate_pin, pki.root_pin]),
        (bundle, [pki.root_pin, pki.rogue_root_pin]),
    ):
        status, out, err = run(capsys, "pins", "--json", "--host", "a.example", str(path))
        assert status == 0, err
        assert json.loads(out) == {"a.example": {"pins": pins}}  # CAs only: all of them
        assert ("are not one chain, each followed by its issuer" in err) == (path == bundle)


def test_pins_of_a_v2_certificate(capsys: Capture, pki: PKI, tmp_path: Path) -> None:
    # OpenSSL validates X.509 v2 certificates in a chain; cryptography cannot parse them.
    der = _der_of(pki.intermediate.cert_pem.bytes())
    fields = [element for _, _, element in tbs_fields(der)]
    fields[0] = der_tlv(0xA0, der_tlv(0x02, b"\x01"))
    v2 = tmp_path / "v2.der"
    v2.write_bytes(rebuild_cert(der, fields))
    status, out, err = run(capsys, "pins", str(v2))
    assert status == 0, err
    assert "X.509 v2: cryptography cannot parse it" in out
    assert pki.intermediate_pin in out


@pytest.mark.parametrize("what", ["leaf", "key"])
def test_pins_json_of_a_lone_leaf_says_how_to_pin_its_ca(
    capsys: Capture, pki: PKI, tmp_path: Path, what: str
) -> None:
    # Helper 57: a CA-issued leaf given alone was called "a self-signed
    # certificate or a bare key"; what helps is the full chain. A bare key
    # (the twin) is still called one.
    path = tmp_path / "leaf.pem"
    if what == "leaf":
        path.write_bytes(pki.leaf.cert_chain_pems[0].bytes())
    else:
        path.write_bytes(pki.leaf.private_key_pem.bytes())
    status, _, err = run(capsys, "pins", "--json", "--host", "a.example", str(path))
    assert status == 0, err
    full_chain = "the file holds the leaf only; give the full chain" in err
    assert full_chain == (what == "leaf")
    assert ("a self-signed certificate or a bare key" in err) == (what == "key")


def test_pins_of_a_private_key_never_shows_it(capsys: Capture, pki: PKI, tmp_path: Path) -> None:
    secret = pki.leaf.private_key_pem.bytes()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(secret)
    body = [line for line in secret.decode().splitlines() if "-----" not in line]
    outputs = []
    for argv in (
        ["pins", str(key_file)],
        ["pins", "--json", "--host", "localhost", str(key_file)],
    ):
        status, out, err = run(capsys, *argv)
        assert status == 0, err
        outputs.append(out + err)
        assert pki.leaf_pin in out  # the public half of the leaf's key
    assert "public key of a private key (only the public half is shown)" in outputs[0]
    assert "no CA certificate to pin" in outputs[1]
    for text in outputs:
        assert "PRIVATE KEY" not in text
        assert not any(line in text for line in body)


def test_pins_of_der_certificate_and_pem_public_key(
    capsys: Capture, pki: PKI, tmp_path: Path
) -> None:
    der = tmp_path / "root.der"
    der.write_bytes(_der_of(pki.root.cert_pem.bytes()))
    status, out, err = run(capsys, "pins", "--json", "--host", "**.example.org", str(der))
    assert status == 0, err
    assert json.loads(out) == {"**.example.org": {"pins": [pki.root_pin]}}
    public = tmp_path / "spare.pub"
    spare = trustme.CA().private_key_pem.bytes()
    key = serialization.load_pem_private_key(spare, password=None).public_key()
    public.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    status, out, err = run(capsys, "pins", str(public))
    assert status == 0, err
    assert key_pin(spare) in out


def _der_of(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_pins_of_a_file_that_is_not_a_certificate(capsys: Capture, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    status, out, err = run(capsys, "pins", str(junk))
    assert status == 2
    assert out == ""
    assert "neither a PEM or DER certificate" in err


# -- check ----------------------------------------------------------------------------


def test_check_passes(capsys: Capture, pki: PKI, good: TLSServer, tmp_path: Path) -> None:
    pins = write_pins(tmp_path, {"localhost": [pki.intermediate_pin, pki.root_pin]})
    status, out, err = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(good))
    assert status == 0, err
    assert out.startswith(f"PASS  {target(good)}\n")
    assert f"matched   {pki.intermediate_pin}" in out
    assert "entry     localhost (enforced; no expiry)" in out

    status, out, err = run(capsys, "check", "--json", "--ca-bundle", pki.bundle, pins, target(good))
    assert status == 0, err
    [record] = json.loads(out)
    assert record["ok"] is True
    assert record["status"] == "matched"
    assert record["matched"] == pki.intermediate_pin
    assert record["pattern"] == "localhost"
    assert [cert["pin"] for cert in record["checked"]] == [
        pki.leaf_pin,
        pki.intermediate_pin,
        pki.root_pin,
    ]
    assert record["expires"] is None and record["expires_in_days"] is None
    assert record["report_only"] is False and record["expired"] is False
    expected = {"target", "host", "port", "ok", "status", "reason", "pattern", "matched"}
    assert expected | {"checked", "expires", "expires_in_days", "report_only"} <= set(record)


@pytest.mark.parametrize("uri", ["https://collector.example/pkp", None])
def test_check_json_shows_a_report_uri_without_its_query(
    capsys: Capture, pki: PKI, good: TLSServer, tmp_path: Path, uri: str | None
) -> None:
    # Helper 60: made for monitoring, the output showed a collector's key.
    entry: dict[str, Any] = {"pins": [pki.intermediate_pin, pki.root_pin]}
    if uri is not None:
        entry["report_uri"] = uri + "?sentry_key=T0KEN#f"
    pins = write_pins(tmp_path, {"localhost": entry})
    status, out, err = run(capsys, "check", "--json", "--ca-bundle", pki.bundle, pins, target(good))
    assert status == 0, err
    [record] = json.loads(out)
    assert record["report_uri"] == uri
    assert "T0KEN" not in out


def test_check_fails_against_a_rogue_certificate_and_shows_what_is_served(
    capsys: Capture, pki: PKI, good: TLSServer, rogue: TLSServer, tmp_path: Path
) -> None:
    pins = write_pins(tmp_path, {"localhost": [pki.intermediate_pin, pki.root_pin]})
    argv = ["check", "--ca-bundle", pki.bundle, pins, target(good), target(rogue)]
    status, out, err = run(capsys, *argv)
    assert status == 1, err
    assert f"PASS  {target(good)}\n" in out
    assert f"FAIL  {target(rogue)}: no certificate of the verified chain matches a pin" in out
    assert f"        {pki.rogue_leaf_pin}  " in out
    assert f"        {pki.rogue_root_pin}  " in out
    assert f"pinned    {pki.root_pin}" in out
    assert out.endswith("2 target(s): 1 passed, 1 failed\n")

    status, out, _ = run(capsys, *argv[:1], "--json", *argv[1:])
    assert status == 1
    passed, failed = json.loads(out)
    assert passed["ok"] is True
    assert failed["ok"] is False and failed["status"] == "failed"
    assert failed["matched"] is None
    assert [c["pin"] for c in failed["checked"]] == [pki.rogue_leaf_pin, pki.rogue_root_pin]


def test_check_fails_without_an_entry(
    capsys: Capture, pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    pins = write_pins(tmp_path, {"example.com": [pki.intermediate_pin, pki.root_pin]})
    status, out, err = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(good))
    assert status == 1, err
    assert f"FAIL  {target(good)}: no pins are configured for this host\n" in out
    assert pki.leaf_pin in out  # what it would take


def test_check_judges_an_expired_entry_anyway(
    capsys: Capture, pki: PKI, good: TLSServer, rogue: TLSServer, tmp_path: Path
) -> None:
    config = {"localhost": {"pins": [pki.intermediate_pin, pki.root_pin], "expires": "2020-01-01"}}
    pins = write_pins(tmp_path, config)
    status, out, err = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(good))
    assert status == 0, err
    assert "EXPIRED: not enforced by the library; expired 2020-01-01" in out
    status, out, err = run(
        capsys, "check", "--json", "--ca-bundle", pki.bundle, pins, target(rogue)
    )
    assert status == 1, err
    [record] = json.loads(out)
    assert record["expired"] is True and record["status"] == "failed"
    assert record["expires"] == "2020-01-01T23:59:59+00:00"
    assert record["expires_in_days"] < -300


def test_check_judges_a_report_only_entry_anyway(
    capsys: Capture, pki: PKI, rogue: TLSServer, tmp_path: Path
) -> None:
    config = {
        "localhost": {
            "pins": [pki.intermediate_pin, pki.root_pin],
            "report_only": True,
            "expires": in_days(100),
        }
    }
    pins = write_pins(tmp_path, config)
    status, out, err = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(rogue))
    assert status == 1, err
    assert f"FAIL  {target(rogue)}" in out
    assert "report-only: failures are logged, connections proceed" in out
    assert "in 99 days" in out or "in 100 days" in out
    status, out, _ = run(capsys, "check", "--json", "--ca-bundle", pki.bundle, pins, target(rogue))
    [record] = json.loads(out)
    assert record["report_only"] is True and record["ok"] is False
    assert record["expires_in_days"] in (99, 100)


def test_check_fails_an_unreachable_target(capsys: Capture, pki: PKI, tmp_path: Path) -> None:
    pins = write_pins(tmp_path, {"127.0.0.1": [pki.intermediate_pin, pki.root_pin]})
    with refused_port() as port:
        status, out, err = run(
            capsys, "check", "--json", "--ca-bundle", pki.bundle, pins, f"127.0.0.1:{port}"
        )
    assert status == 1, err
    [record] = json.loads(out)
    assert record["status"] == "unreachable"
    assert record["pattern"] == "127.0.0.1"
    assert "Connection refused" in record["reason"]


@contextlib.contextmanager
def silent_servers(count: int) -> Iterator[list[str]]:
    """Targets that accept TCP connections (the kernel does) and never answer TLS."""
    with contextlib.ExitStack() as stack:
        targets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            targets.append(f"127.0.0.1:{sock.getsockname()[1]}")
        yield targets


def test_check_names_a_timed_out_target_once(capsys: Capture, pki: PKI, tmp_path: Path) -> None:
    pins = write_pins(tmp_path, {"127.0.0.1": [pki.intermediate_pin, pki.root_pin]})
    with silent_servers(1) as [silent]:
        status, out, err = run(
            capsys, "check", "--ca-bundle", pki.bundle, "--timeout", "0.5", pins, silent
        )
    assert status == 1, err
    assert out.splitlines() == [
        f"FAIL  {silent}: timed out after 0.5 s",
        "      entry     127.0.0.1 (enforced; no expiry)",
        f"      pinned    {pki.intermediate_pin}",
        f"      pinned    {pki.root_pin}",
        "1 target(s): 0 passed, 1 failed",
    ]


@pytest.mark.parametrize(("jobs", "at_least", "below"), [(None, 0.0, 2.5), ("1", 3.0, 60.0)])
def test_check_runs_targets_concurrently(
    capsys: Capture,
    pki: PKI,
    tmp_path: Path,
    jobs: str | None,
    at_least: float,
    below: float,
) -> None:
    """Three targets that time out after 1 s: about 1 s in all by default; 3 s one by one."""
    pins = write_pins(tmp_path, {"127.0.0.1": [pki.intermediate_pin, pki.root_pin]})
    options = ["--jobs", jobs] if jobs is not None else []
    with silent_servers(3) as silent:
        started = time.monotonic()
        status, out, err = run(
            capsys, "check", *options, "--ca-bundle", pki.bundle, "--timeout", "1", pins, *silent
        )
        elapsed = time.monotonic() - started
    assert status == 1, err
    assert at_least <= elapsed < below
    assert out.count("timed out after 1 s") == 3


def test_check_prints_results_as_they_arrive_and_json_in_target_order(
    capsys: Capture, pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    pins = write_pins(tmp_path, {"localhost": [pki.intermediate_pin, pki.root_pin]})
    with silent_servers(1) as [silent]:
        argv = ["check", "--ca-bundle", pki.bundle, "--timeout", "1", pins, silent, target(good)]
        status, out, _ = run(capsys, *argv)
        assert status == 1
        # The quick target's result comes first, while the slow one still waits.
        assert out.index(f"PASS  {target(good)}") < out.index(f"FAIL  {silent}")
        assert out.endswith("2 target(s): 1 passed, 1 failed\n")

        status, out, _ = run(capsys, "check", "--json", *argv[1:])
    assert status == 1
    assert [record["target"] for record in json.loads(out)] == [silent, target(good)]


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_check_jobs_must_be_a_positive_whole_number(capsys: Capture, jobs: str) -> None:
    status, out, err = run(capsys, "check", "--jobs", jobs, "pins.json", "localhost")
    assert status == 2
    assert out == ""
    assert err.startswith(f"requests-pinning: error: argument --jobs: {jobs!r} is not a")


def test_check_fails_when_ca_validation_fails(
    capsys: Capture, pki: PKI, untrusted: TLSServer, tmp_path: Path
) -> None:
    pins = write_pins(tmp_path, {"localhost": [pki.untrusted_leaf_pin, pki.root_pin]})
    status, out, err = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(untrusted))
    assert status == 1, err
    [line] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert line.startswith(f"FAIL  {target(untrusted)}: CA validation failed: ")
    assert line.count(target(untrusted)) == 1
    # With --insecure the leaf pin is what counts, as with verify=False.
    status, out, err = run(capsys, "check", "--insecure", pins, target(untrusted))
    assert status == 0, err
    assert "CA validation is OFF" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"localhost": ["sha256/short"]}', "is not base64 of a 32-byte SHA-256 digest"),
    ],
)
def test_check_with_a_bad_pin_file_exits_2(
    capsys: Capture, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "pins.json"
    path.write_text(content)
    status, out, err = run(capsys, "check", str(path), "localhost:1")
    assert status == 2
    assert out == ""
    assert err.startswith(f"requests-pinning: error: pin file {str(path)!r}")
    assert message in err


# -- lint -----------------------------------------------------------------------------

A, B, C, D = (
    "sha256/" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode() for seed in "abcd"
)


def test_lint_clean_file(capsys: Capture, tmp_path: Path) -> None:
    path = write_pins(
        tmp_path,
        {
            "api.example.com": [A, B],
            "**.example.com": {"pins": [A, B], "expires": in_days(365)},
            "api.example.com:8443": [A, B, C],  # more pins where it overrides: fine
        },
    )
    status, out, err = run(capsys, "lint", path)
    assert status == 0, out + err
    version = importlib.metadata.version("publicsuffixlist")
    assert out == (
        f"{path}: 3 entries, 0 warning(s)\n"
        f"{path}: public suffixes from the Public Suffix List (publicsuffixlist {version})\n"
    )


@pytest.mark.parametrize(
    ("config", "code", "message"),
    [
        ({"example.com": [A]}, "single-pin", "example.com: only one pin: add a backup pin"),
        (
            {"example.com": {"pins": [A, B], "expires": "2020-01-01"}},
            "expired",
            "example.com: expired 2020-01-01 23:59:59 UTC",
        ),
        (
            {"example.com": {"pins": [A, B], "expires": in_days(10)}},
            "expires-soon",
            "example.com: expires ",
        ),
        ({"*.com": [A, B]}, "public-suffix", "*.com: a wildcard over the public suffix 'com'"),
        (
            {"co.uk": {"pins": [A, B], "include_subdomains": True}},
            "public-suffix",
            "**.co.uk: a wildcard over the public suffix 'co.uk'",
        ),
        (
            {"**.example.com": [A, B], "api.example.com": [C, A]},
            "override",
            "api.example.com: overrides **.example.com where both apply, and its pins "
            "replace, not add to, those of **.example.com: 1 of the 2 pins of "
            "**.example.com is not accepted there [override]",
        ),
        (
            {"**.example.com": [A, B], "api.example.com": [C, D]},
            "override",
            "api.example.com: overrides **.example.com where both apply, and its pins "
            "replace, not add to, those of **.example.com: both pins of **.example.com "
            "are not accepted there [override]",
        ),
        (
            {"**.example.com": {"pins": [A, B], "deny": [C]}, "api.example.com": [A, B]},
            "override",
            "api.example.com: overrides **.example.com where both apply, and its pins "
            "replace, not add to, those of **.example.com: the only deny pin of "
            "**.example.com is not applied there [override]",
        ),
        (
            {"example.com": [A, B], "example.com:8443": [C, B]},
            "override",
            "example.com:8443: overrides example.com where both apply",
        ),
        # Helper 57: a narrower entry's switches weaken the broader one's
        # enforcement where it wins, with the same pins.
        (
            {"**.example.com": [A, B], "api.example.com": {"pins": [A, B], "report_only": True}},
            "override",
            "api.example.com: overrides **.example.com where both apply, and it is "
            "report-only, so nothing is enforced there, where **.example.com is [override]",
        ),
        (
            {
                "**.example.com": {"pins": [A, B], "expires": "2098-01-01"},
                "api.example.com": {"pins": [A, B], "expires": "2097-01-01"},
            },
            "override",
            "api.example.com: overrides **.example.com where both apply, and it expires "
            "2097-01-01 23:59:59 UTC, before **.example.com does: from then on no pins "
            "apply there at all [override]",
        ),
        (
            {"**.example.com": [A, B], "api.example.com": {"deny": [C]}},
            "override",
            "api.example.com: overrides **.example.com where both apply, and it has deny "
            "pins only, so any certificate it does not deny is accepted there, not only "
            "the pinned keys of **.example.com [override]",
        ),
        (
            {"example.com": [A, B, A]},
            "duplicate-pin",
            f"example.com: pin {A} is listed twice",
        ),
        (
            {"example.com": [A, B, "sha256//" + A[7:]]},
            "duplicate-pin",
            f"example.com: pin {A} is listed twice, as {A!r} and {'sha256//' + A[7:]!r}",
        ),
        (
            {"example.com": [A, "sha1/" + "A" * 27 + "="]},
            "sha1-pin",
            "example.com: SHA-1 SPKI pin sha1/",
        ),
        (
            {"example.com": [A, "ab" * 20]},
            "sha1-pin",
            "example.com: SHA-1 certificate fingerprint AB:AB:",
        ),
    ],
)
def test_lint_warnings(
    capsys: Capture, tmp_path: Path, config: dict[str, Any], code: str, message: str
) -> None:
    path = write_pins(tmp_path, config)
    status, out, err = run(capsys, "lint", path)
    assert status == 1, out + err
    lines = [line for line in out.splitlines() if line.endswith(f"[{code}]")]
    assert len(lines) == 1, out
    assert lines[0].startswith(f"{path}: {message}")
    assert err == ""
    assert run(capsys, "lint", "--warnings-ok", path)[0] == 0
    status, out, _ = run(capsys, "lint", "--json", path)
    assert status == 1
    report = json.loads(out)
    assert report["ok"] is False and report["entries"] == len(config)
    assert code in [warning["code"] for warning in report["warnings"]]


# Public suffixes that the built-in list lacks and the Public Suffix List has:
# a second-level registry, a wildcard over one, and a hosting platform's.
REAL_SUFFIX_ENTRIES = ["*.ac.be", "**.edu.pl", "**.s3.eu-west-1.amazonaws.com"]


@pytest.mark.parametrize("pattern", REAL_SUFFIX_ENTRIES)
def test_lint_uses_the_public_suffix_list(capsys: Capture, tmp_path: Path, pattern: str) -> None:
    path = write_pins(tmp_path, {pattern: [A, B], "*.example.ac.be": [A, B]})
    status, out, err = run(capsys, "lint", path)
    assert status == 1, out + err
    suffix = pattern.lstrip("*.")
    assert out.splitlines()[0] == (
        f"{path}: {pattern}: a wildcard over the public suffix {suffix!r}: it pins every "
        "site registered under it, not only yours [public-suffix]"
    )
    assert out.count("[public-suffix]") == 1  # *.example.ac.be is one registered site
    assert "public suffixes from the Public Suffix List (publicsuffixlist " in out
    report = json.loads(run(capsys, "lint", "--json", path)[1])
    assert report["public_suffixes"].startswith("the Public Suffix List (publicsuffixlist ")


@pytest.mark.parametrize("pattern", REAL_SUFFIX_ENTRIES)
def test_lint_without_publicsuffixlist_falls_back_to_the_built_in_list(
    capsys: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    monkeypatch.setitem(sys.modules, "publicsuffixlist", None)  # import fails
    path = write_pins(tmp_path, {pattern: [A, B], "**.co.uk": [A, B]})
    status, out, err = run(capsys, "lint", path)
    assert status == 1, out + err
    # The built-in list knows co.uk, not the three real suffixes: it says so.
    assert [line for line in out.splitlines() if "[public-suffix]" in line] == [
        f"{path}: **.co.uk: a wildcard over the public suffix 'co.uk': it pins every "
        "site registered under it, not only yours [public-suffix]"
    ]
    assert out.endswith(
        f"{path}: public suffixes from the built-in list (install requests-pinning[psl] "
        "for the full Public Suffix List)\n"
    )
    report = json.loads(run(capsys, "lint", "--json", path)[1])
    assert report["public_suffixes"].startswith("the built-in list")


def test_lint_warn_days(capsys: Capture, tmp_path: Path) -> None:
    path = write_pins(tmp_path, {"example.com": {"pins": [A, B], "expires": in_days(45)}})
    assert run(capsys, "lint", path)[0] == 0
    status, out, _ = run(capsys, "lint", "--warn-days", "60", path)
    assert status == 1
    assert "[expires-soon]" in out


@pytest.mark.parametrize("broader", ["expired", "report-only"])
def test_lint_override_is_not_reported_where_the_broader_entry_enforces_nothing(
    capsys: Capture, tmp_path: Path, broader: str
) -> None:
    # Helper 60: the override warning compared a deny-only narrower entry
    # with a broader one that had expired, or enforced nothing.
    options: dict[str, Any] = (
        {"expires": "2020-01-01"} if broader == "expired" else {"report_only": True}
    )
    path = write_pins(
        tmp_path,
        {"**.example.com": {"pins": [A, B], **options}, "api.example.com": {"deny": [C]}},
    )
    _, out, err = run(capsys, "lint", path)
    assert "[override]" not in out, out + err
    assert ("[expired]" in out) == (broader == "expired")


def test_lint_override_is_not_reported_for_unrelated_or_wider_entries(
    capsys: Capture, tmp_path: Path
) -> None:
    path = write_pins(
        tmp_path,
        {
            "*.example.com": [A, B],
            "**.example.com": [A, B],
            "a.b.example.com": [A, B, C],
            "example.org": [C, B],
            # The twins of the switch overrides: the narrower entry expires
            # later, or both entries are report-only.
            "**.example.net": {"pins": [A, B], "expires": "2097-01-01"},
            "api.example.net": {"pins": [A, B], "expires": "2098-01-01"},
            "**.example.info": {"pins": [A, B], "report_only": True},
            "api.example.info": {"pins": [A, B], "report_only": True},
        },
    )
    status, out, err = run(capsys, "lint", path)
    assert status == 0, out + err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"example.com": []}', "the list is empty"),
        ('{"a.example.com": [1], }', "is not valid JSON"),
        ('{"x": ["sha256/AAA="], "x": []}', "appears twice"),
    ],
)
def test_lint_bad_file_exits_2(capsys: Capture, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "pins.json"
    path.write_text(content)
    status, out, err = run(capsys, "lint", str(path))
    assert status == 2
    assert out == ""
    assert err.startswith("requests-pinning: error: pin file") and message in err


# -- demo and the module entry point --------------------------------------------------


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m requests_pinning`` in a process of its own; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "requests_pinning", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("proxy", [False, True])
def test_demo(capsys: Capture, monkeypatch: pytest.MonkeyPatch, proxy: bool) -> None:
    with refused_port() as port:
        if proxy:
            # Offline whatever the environment says (helper 57): with a proxy
            # that refuses every connection, the demo passes all the same.
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
        status, out, _ = run(capsys, "demo")
    assert status == 0
    assert "0 bytes" in out
    assert "PinMismatchError" in out


def test_the_demo_shows_the_library_s_warning_as_a_line_of_its_own() -> None:
    # In a process of its own, where nothing else handles the library's log
    # (pytest does): Python's bare fallback would print it on stderr.
    result = run_module("demo")
    line = (
        "   -> logged at WARNING by the logger 'requests_pinning': pin failure (connection refused)"
    )
    assert f"\n{line}\n" in result.stdout
    assert result.stderr == ""


def test_python_dash_m_help() -> None:
    result = run_module("--help")
    assert result.stdout.startswith("usage: requests-pinning")
    assert "examples:" in result.stdout
    for command in ("pins", "check", "lint", "demo"):
        assert command in result.stdout


def test_version_is_the_installed_distribution_version(capsys: Capture) -> None:
    installed = importlib.metadata.version("requests-pinning")
    assert requests_pinning.__version__ == installed
    status, out, err = run(capsys, "--version")
    assert status == 0, err
    assert out == f"requests-pinning {installed}\n"


@pytest.mark.parametrize("command", ["pins", "check", "lint", "demo"])
def test_subcommand_help_has_examples(capsys: Capture, command: str) -> None:
    status, out, _ = run(capsys, command, "--help")
    assert status == 0
    assert "examples:" in out
    assert f"requests-pinning {command}" in out


def test_pins_names_pem_blocks_it_cannot_pin(capsys: Capture, tmp_path: Path) -> None:
    path = tmp_path / "signed.p7"
    path.write_text(
        "-----BEGIN PKCS #7 SIGNED DATA-----\nAAAA\n-----END PKCS #7 SIGNED DATA-----\n"
    )
    status, out, err = run(capsys, "pins", str(path))
    assert status == 2
    assert out == ""
    assert "found: PKCS #7 SIGNED DATA" in err
