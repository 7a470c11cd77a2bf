"""The Python API checks what the JSON loader checks (issue 9, section 2).

Every face refuses a wrongly typed switch at construction, with the loader's
wording; dicts take date objects for ``expires``; a list of pins or a single
pin where a configuration belongs gets the form to write; pin files may carry
"$schema" and "comment"; a JSON syntax error says when it looks like a comment
or a trailing comma.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from requests_pinning import (
    PinConfigError,
    PinningAdapter,
    PinningPoolManager,
    PinningProxyManager,
    PinningSession,
    PinSet,
)
from requests_pinning._urllib3 import socks_proxy_manager

PIN = "sha256/" + base64.b64encode(bytes(range(32))).decode("ascii")
PINS = {"api.example.com": [PIN]}
EXAMPLE = '{"api.example.com": ["sha256/..."]}'

FACES: dict[str, Callable[..., object]] = {
    "PinningAdapter": PinningAdapter,
    "PinningSession": PinningSession,
    "PinningPoolManager": PinningPoolManager,
    "PinningProxyManager": lambda pins, **kw: PinningProxyManager(pins, "http://127.0.0.1:9", **kw),
    "SOCKSProxyManager": lambda pins, **kw: socks_proxy_manager(
        pins, "socks5h://127.0.0.1:9", **kw
    ),
}

BAD_SWITCHES = [
    ({"report_only": "yes"}, "'report_only' must be True or False, not str 'yes'"),
    ({"report_only": 1}, "'report_only' must be True or False, not int 1"),
    ({"allow_unpinned": "false"}, "'allow_unpinned' must be True or False, not str 'false'"),
    ({"allow_unpinned": None}, "'allow_unpinned' must be True or False, not NoneType None"),
    (
        {"on_failure": "print"},
        "'on_failure' must be a function that takes a PinFailure, or None, not str 'print'",
    ),
    (
        {"report_uri": "ftp://collector.example/"},
        "'report_uri' for the adapter: 'ftp://collector.example/' is not an http:// or "
        "https:// URL",
    ),
    (
        {"report_uri": b"https://collector.example/"},
        "'report_uri' for the adapter: b'https://collector.example/' is not an http:// or "
        "https:// URL",
    ),
]


@pytest.mark.parametrize("face", sorted(FACES))
@pytest.mark.parametrize(("switches", "message"), BAD_SWITCHES)
def test_every_face_refuses_a_wrongly_typed_switch_at_construction(
    face: str, switches: dict[str, Any], message: str
) -> None:
    with pytest.raises(PinConfigError) as info:
        FACES[face](PINS, **switches)
    assert str(info.value) == message


@pytest.mark.parametrize("face", sorted(FACES))
def test_every_face_accepts_well_typed_switches(face: str) -> None:
    # The twin of the refusals: the same switches with the right types.
    failures: list[object] = []
    made: Any = FACES[face](
        PINS,
        report_only=True,
        on_failure=failures.append,
        allow_unpinned=False,
        report_uri="https://collector.example/pkp",
    )
    assert made.pinset == PinSet(PINS)
    made.close() if hasattr(made, "close") else made.clear()


def test_switch_messages_match_the_loaders() -> None:
    with pytest.raises(PinConfigError) as loaded:
        PinSet({"api.example.com": {"pins": [PIN], "report_only": "yes"}})
    with pytest.raises(PinConfigError) as constructed:
        PinningAdapter(PINS, report_only="yes")  # type: ignore[arg-type]
    assert (
        str(loaded.value)
        == "'report_only' for 'api.example.com' must be true or false, not str 'yes'"
    )
    assert str(constructed.value) == "'report_only' must be True or False, not str 'yes'"


# -- expires as date objects -------------------------------------------------------------------


def expires_of(value: object) -> datetime | None:
    entry = PinSet({"a.example": {"pins": [PIN], "expires": value}}).match("a.example")
    assert entry is not None
    return entry.expires


def test_expires_takes_a_date_as_the_end_of_that_day_in_utc() -> None:
    assert expires_of(date(2030, 6, 30)) == expires_of("2030-06-30")
    assert expires_of(date(2030, 6, 30)) == datetime(2030, 6, 30, 23, 59, 59, tzinfo=timezone.utc)


def test_expires_takes_an_aware_datetime_in_any_zone() -> None:
    zone = timezone(timedelta(hours=2))
    moment = datetime(2030, 6, 30, 12, 0, tzinfo=zone)
    assert expires_of(moment) == datetime(2030, 6, 30, 10, 0, tzinfo=timezone.utc)
    assert expires_of(moment) == expires_of("2030-06-30T12:00:00+02:00")
    # to_dict() writes the ISO string, which loads back to the same entry.
    pins = PinSet({"a.example": {"pins": [PIN], "expires": moment}})
    assert pins.to_dict()["a.example"]["expires"] == "2030-06-30T10:00:00+00:00"
    assert PinSet(pins.to_dict()) == pins


def test_expires_refuses_a_naive_datetime() -> None:
    with pytest.raises(PinConfigError) as info:
        expires_of(datetime(2030, 6, 30, 12, 0))
    assert str(info.value) == (
        "'expires' for 'a.example': datetime.datetime(2030, 6, 30, 12, 0) is a naive datetime; "
        "give it a time zone (datetime(..., tzinfo=timezone.utc)) or pass a date"
    )


def test_expires_still_refuses_other_types() -> None:
    with pytest.raises(PinConfigError, match=r"^'expires' for 'a.example': 1893456000 is not an"):
        expires_of(1893456000)


# -- pins without a host ----------------------------------------------------------------------


@pytest.mark.parametrize("pins", [[PIN], (PIN,), {PIN}])
def test_a_list_of_pins_without_a_host_gets_the_form_to_write(pins: object) -> None:
    message = (
        f"pins must map host patterns to pins, as in {EXAMPLE}, not a {type(pins).__name__}: "
        "say which host the pins are for"
    )
    with pytest.raises(PinConfigError) as loaded:
        PinSet.load(pins)  # type: ignore[arg-type]
    assert str(loaded.value) == message
    with pytest.raises(PinConfigError) as adapter:
        PinningAdapter(pins)  # type: ignore[arg-type]
    assert str(adapter.value) == message


@pytest.mark.parametrize("pin", [PIN, f" {PIN}\n", ":".join(["AB"] * 32)])
def test_a_single_pin_string_is_not_taken_for_a_file_name(pin: str) -> None:
    with pytest.raises(PinConfigError) as info:
        PinningSession(pin)
    assert str(info.value) == (
        f'pins must map host patterns to pins, as in {{"api.example.com": ["{pin.strip()}"]}}: '
        f"{pin!r} is a pin, not the path of a pin file"
    )


def test_a_missing_file_whose_name_is_no_pin_is_still_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PinConfigError, match=r"^cannot read pin file .*pins\.json"):
        PinSet.load(str(tmp_path / "pins.json"))


# -- "$schema" and "comment" ------------------------------------------------------------------


def test_schema_and_comments_are_accepted_and_change_nothing(tmp_path: Path) -> None:
    config = {
        "$schema": "https://example.com/pin-file.schema.json",
        "api.example.com": {"pins": [PIN], "comment": "CA key and backup, rotated 2026-05"},
    }
    path = tmp_path / "pins.json"
    path.write_text(json.dumps(config))
    plain = PinSet({"api.example.com": [PIN]})
    assert PinSet(config) == plain
    assert PinSet.from_json(path) == plain
    assert len(PinSet(config)) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"$schema": 7}, "'$schema' must be a string (a URL), not int 7"),
        (
            {"a.example": {"pins": [PIN], "comment": ["x"]}},
            "'comment' for 'a.example' must be a string, not list ['x']",
        ),
        (
            {"a.example": {"pins": [PIN], "comments": "x"}},
            "entry for 'a.example': unknown key 'comments' (known keys: pins, deny, "
            "include_subdomains, expires, report_only, report_uri, comment)",
        ),
        (
            {"a.example": {"comment": "why"}},
            "entry for 'a.example': 'pins' (or 'deny') is required",
        ),
    ],
)
def test_schema_and_comment_of_the_wrong_type_are_refused(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(PinConfigError) as info:
        PinSet(config)
    assert str(info.value) == message


# -- JSON syntax errors -----------------------------------------------------------------------

HINT = " (JSON has no comments or trailing commas)"


@pytest.mark.parametrize(
    ("text", "hinted"),
    [
        (f'{{\n  // our API\n  "a.example": ["{PIN}"]\n}}', True),
        (f'{{"a.example": ["{PIN}"] /* CA key */}}', True),
        (f'{{"a.example": ["{PIN}"]}} # done', True),
        (f'{{"a.example": ["{PIN}"],}}', True),
        (f'{{"a.example": ["{PIN}",]}}', True),
        (f'{{"a.example": ["{PIN}"],\n}}', True),
        (f'{{"a.example": ["{PIN}"] "b.example": []}}', False),
        ("{'a.example': []}", False),
        ('{"a.example": tru}', False),
    ],
)
def test_a_json_error_says_when_it_looks_like_a_comment_or_trailing_comma(
    tmp_path: Path, text: str, hinted: bool
) -> None:
    path = tmp_path / "pins.json"
    path.write_text(text)
    with pytest.raises(PinConfigError) as info:
        PinSet.from_json(path)
    message = str(info.value)
    assert message.startswith(f"pin file {str(path)!r} is not valid JSON: ")
    assert message.endswith(HINT) is hinted
