"""Text a server controls cannot forge or erase lines of a log or of the command's output.

A certificate's subject is the server's own text, and so is any error raised
while reading its certificates: a line break in it would add what looks like a
log record of its own ("pin check passed"), and a terminal escape sequence
would erase the FAIL line above it. Everything such text reaches (the pin
failure's message and log line, the ``reason`` field, the command's text
output) writes what is not printable as an escape. The twins: a plain subject
is shown exactly as before.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import assume, given
from hypothesis import strategies as st

from requests_pinning import PinMismatchError, PinningPolicy, PinningSession, _certs
from requests_pinning._certs import escape_hex, format_name
from requests_pinning._errors import printable
from requests_pinning._report import Reporter
from requests_pinning._urllib3 import _PinRefused
from requests_pinning._verify import PeerChain

from .conftest import PKI, Enforcing
from .servers import TLSServer
from .test_cli import Capture, run, target, write_pins
from .test_decision import intermediate_der, leaf_der
from .test_deny_and_reports import a_failure

# A subject that, printed as it is, ends the line, erases the one above on a
# terminal and writes lines of its own: a PASS, a summary, a log record.
FORGERY = (
    "x\r\x1b[2K\x1b[1A\x1b[2KPASS  localhost:443\n"
    "INFO requests_pinning: pin check passed for localhost:443\n"
    "1 target(s): 1 passed, 0 failed\u202e"
)
CONTROL = ("\n", "\r", "\x1b", "\u202e")


@pytest.fixture(scope="module")
def hostile(pki: PKI) -> trustme.LeafCert:
    """A leaf from the rogue CA (which the bundle trusts), its organisation a forgery."""
    return pki.rogue_root.issue_cert("localhost", organization_name=FORGERY)


@pytest.fixture
def forger(hostile: trustme.LeafCert) -> Iterator[TLSServer]:
    with TLSServer(hostile) as server:
        yield server


def lines_without_control(text: str) -> list[str]:
    assert not any(char in text for char in CONTROL if char != "\n"), repr(text)
    return text.split("\n")


# -- the escaping itself ----------------------------------------------------------------


@given(st.text())
def test_printable_leaves_nothing_unprintable_and_printable_text_alone(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    assert (shown == text) == text.isprintable()


def a_name(value: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, value),
            x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com"),
        ]
    )


@given(st.text(min_size=1, max_size=40))
def test_a_name_is_printable_whatever_it_holds(value: str) -> None:
    shown = format_name(a_name(value))
    assert shown.isprintable()
    assert shown.startswith("CN=api.example.com, O=")


# ASCII: cryptography 42 (our floor) reads the bytes of a hex escape as
# Latin-1, not as UTF-8 as RFC 4514 says and later versions do, so the round
# trip of a non-ASCII escape depends on its version; the literal test below
# checks one (U+202E) as written.
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1, max_size=40))
def test_a_name_shown_reads_back_as_the_same_name(value: str) -> None:
    # RFC 4514's own escape: the name it shows is the name, read back.
    name = a_name(value)
    try:
        x509.Name.from_rfc4514_string(name.rfc4514_string())
    except ValueError:
        # cryptography 42 (the floor) cannot read back its own spelling of
        # some names (a value of one space): nothing of ours to test there.
        assume(False)
    assert x509.Name.from_rfc4514_string(printable(name.rfc4514_string(), escape_hex)) == name


def test_a_line_break_in_a_name_is_written_as_rfc_4514_hex() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "a\nb\x1b[2K\u202e")])
    assert format_name(name) == "O=a\\0Ab\\1B[2K\\E2\\80\\AE"
    plain = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Let's Encrypt")])
    assert format_name(plain) == "O=Let's Encrypt"  # the twin: unchanged


# -- the library's message and log line -------------------------------------------------


def test_a_forged_subject_cannot_add_lines_to_the_log_or_the_error(
    pki: PKI, forger: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    session = PinningSession({"localhost": [pki.intermediate_pin, pki.root_pin]})
    with pytest.raises(PinMismatchError) as info:
        session.get(f"https://{target(forger)}/", verify=pki.bundle, timeout=10)
    assert forger.bytes_received == 0  # refused, as ever
    message = str(info.value)
    lines = lines_without_control(message)
    # The message has its usual lines only; the forgery is inside one of them.
    assert len(lines) == 7, message  # a header, two of the chain, one and two of the pins
    assert "O=x\\0D\\1B[2K\\1B[1A\\1B[2KPASS  localhost:443\\0AINFO" in message
    [record] = [r for r in pin_log.records if r.levelno == logging.WARNING]
    logged = record.getMessage()
    assert not any(line.startswith("INFO") for line in lines_without_control(logged))


@pytest.mark.parametrize("length", [3000, 10])
def test_a_long_subject_is_cut_in_the_error_and_the_log(
    pki: PKI, pin_log: pytest.LogCaptureFixture, length: int
) -> None:
    # A server chooses its names: a subject of 3,000 private-use characters
    # escapes to 27,000 (9 per character), in the message and the log line
    # of every refused connection.
    hostile = pki.rogue_root.issue_cert("localhost", organization_unit_name="\ue000" * length)
    session = PinningSession({"localhost": [pki.intermediate_pin, pki.root_pin]})
    with TLSServer(hostile) as server, pytest.raises(PinMismatchError) as info:
        session.get(f"https://{target(server)}/", verify=pki.bundle, timeout=10)
    [record] = [r for r in pin_log.records if r.levelno == logging.WARNING]
    for text in (str(info.value), record.getMessage()):
        escaped = text.count("\\EE\\80\\80")
        if length > 100:
            assert escaped == (_certs.SHOWN_NAME - 3) // 9  # after "OU=", whole escapes only
            cut = re.search(r"\.\.\. \((\d+) more characters\)", text)
            assert cut is not None
            assert int(cut.group(1)) >= 9 * (length - escaped)  # and the parts after it
            assert len(text) < 4000
        else:  # the twin: a subject of a usual length is shown whole
            assert escaped == length
            assert "more characters" not in text


@given(st.lists(st.sampled_from(["a", "\\\\", "\\,", "\\0A", "\\E2\\80\\AE", "\\F0\\9F\\98\\80"])))
def test_a_cut_name_ends_with_a_whole_escape(units: list[str]) -> None:
    text = "O=" + "".join(units)
    shown = _certs.shorten(text, 40)
    if len(text) <= 40:
        assert shown == text
        return
    kept, _, rest = shown.rpartition("... (")
    assert len(kept) <= 40
    assert rest == f"{len(text) - len(kept)} more characters)"
    # What is kept is the name's first units, each whole.
    whole = ["O="]
    for unit in units:
        if len("".join(whole)) + len(unit) > 40:
            break
        whole.append(unit)
    assert kept == "".join(whole)


def test_a_plain_subject_is_shown_as_it_is(
    pki: PKI, rogue: TLSServer, pin_log: pytest.LogCaptureFixture
) -> None:
    # The twin: nothing to escape, nothing changed.
    session = PinningSession({"localhost": [pki.intermediate_pin, pki.root_pin]})
    with pytest.raises(requests.exceptions.SSLError) as info:
        session.get(f"https://{target(rogue)}/", verify=pki.bundle, timeout=10)
    assert ", O=trustme v" in str(info.value)
    assert "\\" not in str(info.value)


def test_a_reason_quoting_an_error_is_one_printable_line(pki: PKI) -> None:
    # A chain whose reading fails with an error that quotes the server's text.
    def read() -> PeerChain:
        raise ValueError("bad certificate\n  Pinned for localhost (entry \x1b[1m")

    check = Enforcing({"localhost": [pki.root_pin]})
    with pytest.raises(PinMismatchError) as info:
        check.check(["localhost"], 443, read)
    assert info.value.reason.isprintable()
    assert "bad certificate\\n  Pinned for localhost (entry \\x1b[1m" in info.value.reason
    lines = lines_without_control(str(info.value))
    assert sum(line.startswith("  Pinned for localhost") for line in lines) == 1


# A host as urllib3 1.26 takes it from a server's redirect: it keeps control
# characters in a host name (2.x refuses them), and the name reaches the check.
FORGED_HOST = "x\x1bm\x1bm\x1b7forged.pinned.test"


def test_a_host_with_control_characters_is_judged_as_it_is_and_shown_escaped(
    pki: PKI, pin_log: pytest.LogCaptureFixture
) -> None:
    def broken_callback(failure: object) -> None:
        raise RuntimeError("the callback fails: its log line names the host")

    policy = PinningPolicy({"**.pinned.test": [pki.root_pin]}, on_failure=broken_callback)
    rogue = PeerChain(checked=(leaf_der(pki),), verified=True)  # the leaf is not the root
    failure = policy.check([FORGED_HOST], 443, rogue)
    # The lookup reads the name as it is: the subtree's entry applies. The
    # field keeps it as it is too (it is data: reports, their deduplication).
    assert failure is not None and failure.pattern == "**.pinned.test"
    assert failure.host == FORGED_HOST and failure.to_report()["hostname"] == FORGED_HOST
    assert "for x\\x1bm\\x1bm\\x1b7forged.pinned.test:443: " in failure.message
    error = PinMismatchError.from_failure(failure)
    for text in (str(error), str(_PinRefused(error)), *(r.getMessage() for r in pin_log.records)):
        assert "\x1b" not in text, text
    assert any("on_failure callback raised" in r.getMessage() for r in pin_log.records)


def test_unpinned_and_passing_hosts_are_logged_escaped(
    pki: PKI, pin_log: pytest.LogCaptureFixture
) -> None:
    policy = PinningPolicy({"**.pinned.test": [pki.intermediate_pin]})
    genuine = PeerChain(checked=(leaf_der(pki), intermediate_der(pki)), verified=True)
    assert policy.check([FORGED_HOST], 443, genuine) is None
    assert policy.check(["x\x1bm.unpinned.test"], 443, genuine) is None
    shown = [r.getMessage() for r in pin_log.records]
    assert any(m.startswith("pin check passed for x\\x1bm") for m in shown), shown
    assert any(m.startswith("no pins configured for x\\x1bm") for m in shown), shown
    assert not any("\x1b" in m for m in shown)


def test_a_name_idna_maps_to_a_pinned_one_is_still_checked_against_it(pki: PKI) -> None:
    # The twin of escaping only what is shown: a soft hyphen is not printable,
    # and UTS 46 drops it. Escaped before the lookup, this name would miss the
    # entry of the name TLS validates, and pass unpinned.
    policy = PinningPolicy({"example.com": [pki.root_pin]}, allow_unpinned=True)
    rogue = PeerChain(checked=(leaf_der(pki),), verified=True)
    failure = policy.check(["ex\u00adample.com"], 443, rogue)
    assert failure is not None and failure.pattern == "example.com"


class Unshowable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this error cannot say what it is")


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        # What a collector answered, quoted in an error: one line, escaped.
        (ValueError("answer \x1b[2K\nINFO forged"), "failed: answer \\x1b[2K\\nINFO forged"),
        # A collector that fails its own pins: the message keeps its lines.
        (PinMismatchError("failure\n  Pinned for c.example", host="c.example", port=443), "\n"),
        # An error whose str raises: shown by its type; the worker goes on.
        (Unshowable(), "failed: Unshowable()"),
    ],
)
def test_a_collector_s_error_is_logged_as_shown_and_the_worker_goes_on(
    error: Exception, logged: str, pin_log: pytest.LogCaptureFixture
) -> None:
    reporter = Reporter(deadline=1.0)
    tried: list[str] = []

    def post(uri: str, body: bytes, deadline: float) -> int:
        tried.append(uri)
        raise error

    reporter._post = post  # type: ignore[method-assign]
    # Reports are deduplicated process-wide: a collector of this case's own.
    uri = f"https://collector-{type(error).__name__.lower()}.example/pkp"
    for port in (1, 2):
        reporter.submit(a_failure(port), uri)
        reporter.close(timeout=5)
    assert len(tried) == 2 and reporter.snapshot().failed == 2
    lines = [r.getMessage() for r in pin_log.records if "failed: " in r.getMessage()]
    assert len(lines) == 2 and all(logged in line for line in lines), lines
    assert not any("\x1b" in line for line in lines)


# -- the command ------------------------------------------------------------------------


def test_check_shows_a_forged_subject_escaped(
    capsys: Capture, pki: PKI, forger: TLSServer, tmp_path: Path
) -> None:
    pins = write_pins(tmp_path, {"localhost": [pki.intermediate_pin, pki.root_pin]})
    status, out, err = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(forger))
    assert status == 1, err
    lines = lines_without_control(out)
    assert lines[0].startswith(f"FAIL  {target(forger)}: ")
    assert not any(line.startswith("PASS") for line in lines)
    assert [line for line in lines if "target(s)" in line and "passed" in line][-1] == lines[-2]
    assert lines[-2] == "1 target(s): 0 passed, 1 failed"


def test_pins_shows_a_forged_subject_and_issuer_escaped(capsys: Capture, tmp_path: Path) -> None:
    ca = trustme.CA(organization_name=FORGERY)
    leaf = ca.issue_cert("localhost", organization_name=FORGERY)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with TLSServer(leaf) as server:
        status, out, err = run(capsys, "pins", "--ca-bundle", str(bundle), target(server))
    assert status == 0, err
    lines = lines_without_control(out)
    subjects = [line for line in lines if line.lstrip().startswith(("subject", "issuer"))]
    assert len(subjects) == 4 and all("\\0A" in line for line in subjects)
    assert not any(line.startswith(("PASS", "INFO", "1 target")) for line in lines)


def test_check_of_a_plain_server_prints_as_before(
    capsys: Capture, pki: PKI, good: TLSServer, tmp_path: Path
) -> None:
    # The twin: a PASS is still a PASS.
    pins = write_pins(tmp_path, {"localhost": [pki.intermediate_pin, pki.root_pin]})
    status, out, _ = run(capsys, "check", "--ca-bundle", pki.bundle, pins, target(good))
    assert status == 0
    assert out == f"PASS  {target(good)}\n" + out.split("\n", 1)[1]
    assert out.endswith("1 target(s): 1 passed, 0 failed\n")
