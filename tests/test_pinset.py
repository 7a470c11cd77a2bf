"""PinSet: the configuration format, host patterns, normalisation, precedence, loading.

Every rule has a passing case and a failing twin; every error is checked for
its message, which names the host key and the offending value.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import itertools
import json
import pickle
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from requests_pinning import HostPins, Pin, PinConfigError, PinSet, _pinset
from requests_pinning._pinset import normalize_host


def spki(n: int) -> str:
    return "sha256/" + base64.b64encode(bytes([n]) * 32).decode("ascii")


P1, P2, P3, P4 = spki(1), spki(2), spki(3), spki(4)
FINGERPRINT = ":".join(["AB"] * 32)
SLASH_PIN = "sha256/" + base64.b64encode(b"\xff" * 32).decode("ascii")  # "sha256//..."
assert SLASH_PIN.startswith("sha256//")

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


NOT_A_MAPPING = (
    'a pin configuration is an object mapping host patterns to pins, such as {"api.example.com": '
    '["sha256/..."]}'
)


def fullwidth(text: str) -> str:
    """The fullwidth forms (U+FF01..U+FF5E) of printable ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def pattern(pins: PinSet, host: str, port: int | None = 443) -> str | None:
    entry = pins.match(host, port)
    return None if entry is None else entry.pattern


def only(pins: PinSet) -> HostPins:
    [entry] = list(pins)
    return entry


# -- building a PinSet ---------------------------------------------------------------------


CONFIG: dict[str, Any] = {
    "api.example.com": [P1, P2],
    "*.example.org:8443": {"pins": [FINGERPRINT], "report_only": True},
    "example.net": {"pins": [P3], "include_subdomains": True, "expires": "2030-01-31"},
}


def test_every_constructor_gives_the_same_pin_set(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps(CONFIG), encoding="utf-8")
    reference = PinSet.from_dict(CONFIG)
    assert len(reference) == 3
    others = [
        PinSet(CONFIG),
        PinSet.from_json(str(path)),
        PinSet.from_json(path),
        PinSet.load(CONFIG),
        PinSet.load(str(path)),
        PinSet.load(path),
    ]
    for other in others:
        assert other == reference
        assert hash(other) == hash(reference)
    assert PinSet.load(reference) is reference


@pytest.mark.parametrize("source", [42, b"pins.json", None])
def test_load_rejects_other_sources(source: object) -> None:
    message = (
        'pins must be a mapping such as {"api.example.com": ["sha256/..."]}, a path to a '
        f"JSON file or a PinSet, not a {type(source).__name__}"
    )
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        PinSet.load(source)  # type: ignore[arg-type]


def test_an_empty_configuration_pins_nothing() -> None:
    pins = PinSet.from_dict({})
    assert len(pins) == 0
    assert list(pins) == []
    assert pins.to_dict() == {}
    assert pins.match("example.com") is None
    assert pins == PinSet({})
    assert pins != PinSet({"example.com": [P1]})


def test_host_pins_fields() -> None:
    pins = PinSet.from_dict(CONFIG)
    api = pins.match("api.example.com")
    assert api is not None
    assert api.pattern == "api.example.com"
    assert api.pins == (Pin.parse(P1), Pin.parse(P2))
    assert (api.include_subdomains, api.expires, api.report_only) == (False, None, False)

    org = pins.match("x.example.org", 8443)
    assert org is not None
    assert org.pattern == "*.example.org:8443"
    assert org.pins == (Pin.parse(FINGERPRINT),)
    assert (org.include_subdomains, org.expires, org.report_only) == (False, None, True)

    net = pins.match("deep.www.example.net")
    assert net is not None
    assert net.pattern == "**.example.net"
    assert net.include_subdomains is True
    assert net.expires == datetime(2030, 1, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert net.report_only is False
    assert {entry.pattern for entry in pins} == {api.pattern, org.pattern, net.pattern}


def test_to_dict_is_canonical_and_round_trips() -> None:
    pins = PinSet.from_dict(
        {
            "API.Example.COM.": [P1, "sha256//" + P2[len("sha256/") :], FINGERPRINT.lower()],
            "bücher.example": {"pins": [P1], "include_subdomains": True, "report_only": True},
            "[2001:0DB8::1]:8443": [SLASH_PIN.replace("sha256/", "sha256//", 1)],
            "*.example.org": {"pins": [P3], "expires": "2030-06-30T12:00:00+02:00"},
            "192.0.2.1": {"pins": [P4], "include_subdomains": False, "report_only": False},
        }
    )
    assert pins.to_dict() == {
        "api.example.com": {"pins": [P1, P2, FINGERPRINT]},
        "**.xn--bcher-kva.example": {"pins": [P1], "report_only": True},
        "[2001:db8::1]:8443": {"pins": [SLASH_PIN]},
        "*.example.org": {"pins": [P3], "expires": "2030-06-30T10:00:00+00:00"},
        "192.0.2.1": {"pins": [P4]},
    }
    assert PinSet.from_dict(pins.to_dict()) == pins
    assert PinSet.from_dict(json.loads(json.dumps(pins.to_dict()))) == pins


def test_pin_sets_compare_by_content_not_order() -> None:
    a = PinSet({"a.example": [P1], "b.example": [P2]})
    b = PinSet({"b.example": [P2], "a.example": [P1]})
    assert a == b
    assert hash(a) == hash(b)
    assert a != PinSet({"a.example": [P1], "b.example": [P3]})
    assert a != PinSet({"a.example": [P1], "b.example": {"pins": [P2], "report_only": True}})
    assert a != PinSet({"a.example": [P1]})
    assert a != {"a.example": [P1], "b.example": [P2]}


def test_pin_set_is_immutable() -> None:
    pins = PinSet(CONFIG)
    with pytest.raises(AttributeError, match=r"^PinSet is immutable$"):
        pins._entries = ()
    with pytest.raises(AttributeError, match=r"^PinSet is immutable$"):
        pins.extra = 1
    entry = pins.match("api.example.com")
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.pins = ()  # type: ignore[misc]
    assert pins == PinSet(CONFIG)
    assert len(pins) == 3


def test_pin_set_pickles_and_copies() -> None:
    pins = PinSet(CONFIG)
    for clone in (pickle.loads(pickle.dumps(pins)), copy.deepcopy(pins), copy.copy(pins)):
        assert isinstance(clone, PinSet)
        assert clone == pins
        assert pattern(clone, "x.example.org", 8443) == "*.example.org:8443"
        assert pattern(clone, "x.example.org", 443) is None


def test_repr_counts_entries() -> None:
    assert repr(PinSet(CONFIG)) == "PinSet(3 entries)"


# -- the configuration format: entries -----------------------------------------------------


def test_duplicate_pins_in_one_list_merge_and_keep_their_order() -> None:
    body = P2[len("sha256/") :]
    entry = only(
        PinSet(
            {
                "a.example": [
                    P2,
                    "sha256//" + body,  # curl's spelling of the same pin
                    P1,
                    FINGERPRINT,
                    FINGERPRINT.lower().replace(":", ""),
                    P2,
                ]
            }
        )
    )
    assert entry.pins == (Pin.parse(P2), Pin.parse(P1), Pin.parse(FINGERPRINT))
    assert entry.to_dict() == {"pins": [P2, P1, FINGERPRINT]}


def test_a_tuple_is_accepted_like_a_list() -> None:
    assert PinSet({"a.example": (P1,)}) == PinSet({"a.example": [P1]})
    assert PinSet({"a.example": {"pins": (P1,)}}) == PinSet({"a.example": [P1]})


def test_an_entry_object_with_defaults_equals_a_list() -> None:
    assert PinSet({"a.example": {"pins": [P1]}}) == PinSet({"a.example": [P1]})
    assert PinSet(
        {"a.example": {"pins": [P1], "include_subdomains": False, "report_only": False}}
    ) == PinSet({"a.example": [P1]})
    assert PinSet({"a.example": {"pins": [P1], "report_only": True}}) != PinSet({"a.example": [P1]})


BAD_CONFIGS: list[tuple[object, str]] = [
    # -- top level
    (
        [],
        f"{NOT_A_MAPPING}, not a list",
    ),
    (
        "a.example",
        f"{NOT_A_MAPPING}, not a str",
    ),
    (
        42,
        f"{NOT_A_MAPPING}, not a int",
    ),
    ([["a.example", [P1]]], "a pin configuration is an object mapping host patterns to pins"),
    # -- keys
    ({1: [P1]}, "host pattern 1 is a int, not a string"),
    ({None: [P1]}, "host pattern None is a NoneType, not a string"),
    ({b"a.example": [P1]}, "host pattern b'a.example' is a bytes, not a string"),
    # -- the value of an entry
    (
        {"a.example": P1},
        f"entry for 'a.example': expected a list of pins or an object with 'pins', "
        f"got str {P1!r} (a single pin must still be in a list)",
    ),
    ({"a.example": None}, "entry for 'a.example': expected a list of pins or an object"),
    ({"a.example": 7}, "entry for 'a.example': expected a list of pins or an object"),
    ({"a.example": True}, "entry for 'a.example': expected a list of pins or an object"),
    ({"a.example": []}, "pins for 'a.example': the list is empty; give at least one pin"),
    (
        {"a.example": {"pins": []}},
        "pins for 'a.example': the list is empty; give at least one pin",
    ),
    (
        {"a.example": {"pins": P1}},
        f"pins for 'a.example': expected a list of pins, got str {P1!r}"
        " (a single pin must still be in a list)",
    ),
    ({"a.example": {"pins": None}}, "pins for 'a.example': expected a list of pins, got"),
    ({"a.example": {}}, "entry for 'a.example': 'pins' (or 'deny') is required"),
    ({"a.example": {"report_only": True}}, "entry for 'a.example': 'pins' (or 'deny') is required"),
    ({"a.example": {"deny": []}}, "deny for 'a.example': the list is empty"),
    ({"a.example": {"deny": P1}}, "deny for 'a.example': expected a list of pins, got str"),
    (
        {"a.example": {"pins": [P1, P2], "deny": [P2]}},
        f"entry for 'a.example': {P2!r} is in both 'pins' and 'deny'",
    ),
    *[
        (
            {"a.example": {"pins": [P1], "report_uri": value}},
            f"'report_uri' for 'a.example': {value!r} is not an http:// or https:// URL",
        )
        for value in ["ftp://x.example/r", "/relative", "https://", "example.com", 42, None]
    ],
    # -- null is not a value: "nothing defaulted silently"
    *[
        ({"a.example": {"pins": [P1], option: None}}, f"{option!r} for 'a.example'")
        for option in ("include_subdomains", "report_only", "expires")
    ],
    # -- unknown keys, typos and not-yet-supported keys
    *[
        (
            {"a.example": {"pins": [P1], key: value}},
            f"entry for 'a.example': unknown key {key!r} "
            "(known keys: pins, deny, include_subdomains, expires, report_only, report_uri, "
            "comment)",
        )
        for key, value in [
            ("include_subdomain", True),
            ("denied", [P2]),
            ("report-uri", "https://example.com/report"),
            ("Pins", [P1]),
            ("max_age", 3600),
        ]
    ],
    # -- booleans must be booleans
    *[
        (
            {"a.example": {"pins": [P1], option: value}},
            f"{option!r} for 'a.example' must be true or false, "
            f"not {type(value).__name__} {value!r}",
        )
        for option in ("include_subdomains", "report_only")
        for value in ("true", "false", 1, 0, [True])
    ],
    # -- the pins themselves
    (
        {"api.example.com": ["sha256/abc"]},
        "pins for 'api.example.com': 'sha256/abc' is not base64 of a 32-byte SHA-256 digest",
    ),
    ({"a.example": [P1, 42]}, "pins for 'a.example': 42 is a int, not a pin string"),
    (
        {"a.example": {"pins": [P1, "ab" * 16]}},
        f"pins for 'a.example': {'ab' * 16!r} looks like an MD5 fingerprint",
    ),
    (
        {"a.example": ["md5/" + base64.b64encode(bytes(16)).decode()]},
        "pins for 'a.example': 'md5/AAAAAAAAAAAAAAAAAAAAAA==' has an unknown hash algorithm",
    ),
    ({"a.example": [P1, ""]}, "pins for 'a.example': '' is neither an SPKI pin"),
    ({"a.example": [[P1]]}, f"pins for 'a.example': {[P1]!r} is a list, not a pin string"),
]


@pytest.mark.parametrize(("config", "message"), BAD_CONFIGS)
def test_bad_configurations_are_rejected(config: object, message: str) -> None:
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}"):
        PinSet.from_dict(config)  # type: ignore[arg-type]


# -- expires -------------------------------------------------------------------------------


def expires_of(value: object) -> datetime | None:
    return only(PinSet({"a.example": {"pins": [P1], "expires": value}})).expires


def test_a_date_expires_at_the_end_of_that_day_utc() -> None:
    expires = expires_of("2027-06-30")
    assert expires == datetime(2027, 6, 30, 23, 59, 59, tzinfo=timezone.utc)
    assert expires is not None and expires.utcoffset() == timedelta(0)
    entry = only(PinSet({"a.example": {"pins": [P1], "expires": "2027-06-30"}}))
    assert not entry.is_expired(datetime(2027, 6, 30, 23, 59, 59, tzinfo=timezone.utc))
    assert not entry.is_expired(datetime(2027, 6, 30, 12, 0, tzinfo=timezone(timedelta(hours=-9))))
    assert entry.is_expired(datetime(2027, 7, 1, 0, 0, 0, tzinfo=timezone.utc))
    # July 1st in UTC+2 but still June 30th in UTC: the day is counted in UTC.
    plus_two = timezone(timedelta(hours=2))
    assert not entry.is_expired(datetime(2027, 7, 1, 1, 0, 0, tzinfo=plus_two))
    assert entry.is_expired(datetime(2027, 7, 1, 2, 0, 0, tzinfo=plus_two))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-06-30T12:00:00+02:00", datetime(2027, 6, 30, 10, 0, tzinfo=timezone.utc)),
        ("2027-06-30T12:00:00-05:30", datetime(2027, 6, 30, 17, 30, tzinfo=timezone.utc)),
        ("2027-06-30T12:00:00+00:00", datetime(2027, 6, 30, 12, 0, tzinfo=timezone.utc)),
        ("2027-06-30T12:00:00Z", datetime(2027, 6, 30, 12, 0, tzinfo=timezone.utc)),
        ("2027-06-30T23:30:00-01:00", datetime(2027, 7, 1, 0, 30, tzinfo=timezone.utc)),
    ],
)
def test_a_date_time_with_an_offset_is_converted_to_utc(value: str, expected: datetime) -> None:
    expires = expires_of(value)
    assert expires == expected
    assert expires is not None and expires.tzinfo == timezone.utc


def test_expiry_in_the_past_and_in_the_future() -> None:
    assert only(PinSet({"a.example": {"pins": [P1], "expires": "2000-01-01"}})).is_expired()
    assert not only(PinSet({"a.example": {"pins": [P1], "expires": "9999-12-31"}})).is_expired()
    assert not only(PinSet({"a.example": [P1]})).is_expired()


def test_a_naive_date_time_is_rejected() -> None:
    with pytest.raises(
        PinConfigError,
        match=r"^'expires' for 'a\.example': '2027-06-30T12:00:00' is not an ISO 8601 date.*"
        r": the date-time has no offset$",
    ):
        expires_of("2027-06-30T12:00:00")


@pytest.mark.parametrize(
    "value",
    [
        "2027-02-30",
        "2027-13-01",
        "30/06/2027",
        "2027-6-30",
        "tomorrow",
        "",
        "2027-06-30T25:00:00+00:00",
        "9999-12-31T23:59:59-01:00",  # beyond datetime's range in UTC
        2027,
        20270630,
        True,
        ["2027-06-30"],
        {"date": "2027-06-30"},
    ],
)
def test_an_unreadable_expiry_is_rejected(value: object) -> None:
    message = (
        f"'expires' for 'a.example': {value!r} is not an ISO 8601 date (2027-06-30) "
        "or date-time with an offset (2027-06-30T12:00:00+00:00)"
    )
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        expires_of(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-06-30T12:00+0200", datetime(2027, 6, 30, 10, 0, tzinfo=timezone.utc)),
        ("2027-06-30 12:00:00z", datetime(2027, 6, 30, 12, 0, tzinfo=timezone.utc)),
        ("2027-06-30t12:00:00.5Z", datetime(2027, 6, 30, 12, 0, 0, 500000, tzinfo=timezone.utc)),
        # Beyond the microsecond, as datetime keeps it: cut, not rounded.
        (
            "2027-06-30T12:00:00.123456789Z",
            datetime(2027, 6, 30, 12, 0, 0, 123456, tzinfo=timezone.utc),
        ),
    ],
)
def test_expires_reads_every_spelling_the_schema_allows(value: str, expected: datetime) -> None:
    assert expires_of(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        # Python 3.11's datetime.fromisoformat reads these, 3.10's does not: a
        # pin file must mean the same on every Python, so none reads them.
        "2027-W26-3T12:00Z",
        "20270630T120000Z",
        "2027-06-30T12+00:00",
        "2027-06-30T12:00:00+02:00:30",
        "2027-181",
        # Digits that are not ASCII digits (int() would read them).
        "\u0662\u0660\u0662\u0667-06-30",
        "2027-06-30T12:00:00+24:00",
        # Minutes of an offset past 59 (timedelta carried them into hours).
        "2027-06-30T12:00:00+05:99",
        "2027-06-30T12:00:00-0075",
    ],
)
def test_expires_reads_the_schema_s_spellings_only(value: str) -> None:
    with pytest.raises(PinConfigError, match=r"is not an ISO 8601 date \(2027-06-30\) or"):
        expires_of(value)


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))),
    ],
)
def test_an_aware_datetime_that_utc_cannot_hold_is_a_config_error(value: datetime) -> None:
    # Moved to UTC, these fall outside datetime's range: an OverflowError escaped.
    with pytest.raises(PinConfigError, match=r"^'expires' for 'a\.example': datetime\.datetime"):
        expires_of(value)


# -- JSON files ----------------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "pins.json"
    message = f"cannot read pin file {str(path)!r}: No such file or directory"
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        PinSet.from_json(path)
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        PinSet.load(str(path))


def test_a_directory_is_not_a_pin_file(tmp_path: Path) -> None:
    with pytest.raises(
        PinConfigError, match=rf"^cannot read pin file {re.escape(repr(str(tmp_path)))}"
    ):
        PinSet.from_json(tmp_path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            f'{{\n  "a.example": ["{P1}"]\n  "b.example": ["{P2}"]\n}}',
            r"Expecting ',' delimiter at line 3, column 3",
        ),
        ("", r"Expecting value at line 1, column 1"),
        ('{"a.example": tru}', r"Expecting value at line 1, column 15"),
        ('{"a.example": ["x"]}}', r"Extra data at line 1, column 21"),
        (
            "{'a.example': []}",
            r"Expecting property name enclosed in double quotes at line 1, column 2",
        ),
    ],
)
def test_malformed_json_is_reported_with_file_line_and_column(
    tmp_path: Path, text: str, where: str
) -> None:
    path = tmp_path / "pins.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(
        PinConfigError, match=rf"^pin file {re.escape(repr(str(path)))} is not valid JSON: {where}$"
    ):
        PinSet.from_json(path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'{{"a.example": ["{P1}"], "a.example": ["{P2}"]}}', "a.example"),
        (f'{{"a.example": {{"pins": ["{P1}"], "pins": ["{P2}"]}}}}', "pins"),
        (
            f'{{"a.example": {{"pins": ["{P1}"], "report_only": true, "report_only": false}}}}',
            "report_only",
        ),
    ],
)
def test_duplicate_keys_in_a_json_object_are_rejected(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "pins.json"
    path.write_text(text, encoding="utf-8")
    message = f"pin file {str(path)!r}: key {key!r} appears twice in one object"
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        PinSet.from_json(path)


def test_configuration_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"a.example": P1}), encoding="utf-8")
    message = f"pin file {str(path)!r}: entry for 'a.example': expected a list of pins"
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}"):
        PinSet.from_json(path)
    path.write_text("[]", encoding="utf-8")
    message = f"pin file {str(path)!r}: a pin configuration is an object"
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}"):
        PinSet.load(path)


def test_a_file_that_is_not_utf8_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_bytes(b'{"caf\xe9.example": []}')
    with pytest.raises(
        PinConfigError, match=rf"^pin file {re.escape(repr(str(path)))} is not UTF-8"
    ):
        PinSet.from_json(path)


def test_a_utf8_file_with_idn_keys_and_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"bücher.example": [P1]}, ensure_ascii=False).encode()
    )
    assert PinSet.from_json(path) == PinSet({"xn--bcher-kva.example": [P1]})


def test_an_empty_json_object_is_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text("{}\n", encoding="utf-8")
    assert len(PinSet.from_json(path)) == 0


# -- host patterns: what each kind matches -------------------------------------------------


def test_an_exact_host_matches_that_host_on_any_port() -> None:
    pins = PinSet({"api.example.com": [P1]})
    for host, port in [
        ("api.example.com", 443),
        ("api.example.com", 8443),
        ("api.example.com", None),
    ]:
        assert pattern(pins, host, port) == "api.example.com"
    for host in [
        "example.com",
        "x.api.example.com",
        "api.example.co",
        "api.example.com.evil",
        "pi.example.com",
    ]:
        assert pins.match(host) is None


def test_a_host_and_port_matches_only_that_port() -> None:
    pins = PinSet({"api.example.com:8443": [P1]})
    assert pattern(pins, "api.example.com", 8443) == "api.example.com:8443"
    assert pins.match("api.example.com", 443) is None
    assert pins.match("api.example.com", None) is None
    assert pins.match("api.example.com") is None
    assert pins.match("x.api.example.com", 8443) is None


def test_port_none_means_443() -> None:
    pins = PinSet({"api.example.com:443": [P1], "api.example.com": [P2]})
    assert pattern(pins, "api.example.com", None) == "api.example.com:443"
    assert pattern(pins, "api.example.com") == "api.example.com:443"
    assert pattern(pins, "api.example.com", 8443) == "api.example.com"


def test_one_star_matches_exactly_one_more_label() -> None:
    pins = PinSet({"*.example.com": [P1]})
    for host in ["a.example.com", "www.example.com", "A.EXAMPLE.COM.", "xn--bcher-kva.example.com"]:
        assert pattern(pins, host) == "*.example.com"
        assert pattern(pins, host, 8443) == "*.example.com"
    for host in [
        "example.com",
        "a.b.example.com",
        "aexample.com",
        "a.example.com.evil.com",
        "a.example.org",
    ]:
        assert pins.match(host) is None


def test_two_stars_match_the_domain_and_any_depth_below() -> None:
    pins = PinSet({"**.example.com": [P1]})
    for host in [
        "example.com",
        "a.example.com",
        "a.b.example.com",
        "x.y.z.w.example.com",
        "EXAMPLE.com.",
    ]:
        assert pattern(pins, host) == "**.example.com"
    for host in ["notexample.com", "example.com.evil.com", "com", "example.org", "a-example.com"]:
        assert pins.match(host) is None


def test_include_subdomains_is_the_same_as_two_stars() -> None:
    flag = PinSet({"example.com": {"pins": [P1], "include_subdomains": True}})
    stars = PinSet({"**.example.com": [P1]})
    assert flag == stars
    entry = only(flag)
    assert (entry.pattern, entry.include_subdomains) == ("**.example.com", True)
    assert pattern(flag, "example.com") == pattern(flag, "a.b.example.com") == "**.example.com"
    assert only(PinSet({"**.example.com": {"pins": [P1], "include_subdomains": True}})) == entry
    # Without the flag, only the host itself.
    plain = PinSet({"example.com": {"pins": [P1], "include_subdomains": False}})
    assert only(plain).include_subdomains is False
    assert plain.match("a.example.com") is None


def test_include_subdomains_contradicting_the_pattern_is_rejected() -> None:
    with pytest.raises(
        PinConfigError,
        match=re.escape(
            "host pattern '**.example.com': 'include_subdomains: false' contradicts a '**.' pattern"
        ),
    ):
        PinSet({"**.example.com": {"pins": [P1], "include_subdomains": False}})
    with pytest.raises(
        PinConfigError,
        match=re.escape(
            "host pattern '*.example.com': 'include_subdomains: true' contradicts a '*.' pattern"
        ),
    ):
        PinSet({"*.example.com": {"pins": [P1], "include_subdomains": True}})
    # The twin: false on '*.' is just the default.
    entry = only(PinSet({"*.example.com": {"pins": [P1], "include_subdomains": False}}))
    assert entry.pattern == "*.example.com"


def test_wildcards_may_carry_a_port() -> None:
    pins = PinSet({"*.example.com:8443": [P1], "**.example.org:8443": [P2]})
    assert pattern(pins, "a.example.com", 8443) == "*.example.com:8443"
    assert pins.match("a.example.com", 443) is None
    assert pattern(pins, "example.org", 8443) == "**.example.org:8443"
    assert pattern(pins, "a.b.example.org", 8443) == "**.example.org:8443"
    assert pins.match("a.b.example.org") is None


def test_only_whole_labels_match() -> None:
    pins = PinSet({"*.foo.com": [P1], "**.bar.com": [P2], "baz.com": [P3]})
    for host in [
        "bar.foo.com.notfoo.com",
        "x.notfoo.com",
        "notbar.com",
        "bar.com.evil.com",
        "x.bar.com.evil.com",
        "notbaz.com",
        "baz.com.evil.com",
        "xbar.com",
    ]:
        assert pins.match(host) is None, host
    assert pattern(pins, "bar.foo.com") == "*.foo.com"
    assert pattern(pins, "x.bar.com") == "**.bar.com"


# -- IP addresses --------------------------------------------------------------------------


def test_ipv4_literals_match_as_addresses() -> None:
    pins = PinSet({"192.0.2.1": [P1], "198.51.100.7:8443": [P2]})
    assert pattern(pins, "192.0.2.1") == "192.0.2.1"
    assert pattern(pins, "192.0.2.1", 8443) == "192.0.2.1"
    assert pattern(pins, "198.51.100.7", 8443) == "198.51.100.7:8443"
    assert pins.match("198.51.100.7") is None
    assert pins.match("192.0.2.2") is None
    assert pins.match("192.0.2.10") is None


def test_ipv6_literals_match_as_addresses_in_any_spelling() -> None:
    pins = PinSet({"2001:db8::1": [P1], "[::1]:8443": [P2]})
    assert only(PinSet({"2001:db8::1": [P1]})).pattern == "2001:db8::1"
    for host in ["2001:db8::1", "2001:0db8:0000::1", "2001:DB8:0:0:0:0:0:1", "[2001:db8::1]"]:
        for port in (443, 8443, None):
            assert pattern(pins, host, port) == "2001:db8::1", (host, port)
    for host in ["::1", "[::1]", "0:0:0:0:0:0:0:1", "[0000::0001]"]:
        assert pattern(pins, host, 8443) == "[::1]:8443"
        assert pins.match(host, 443) is None
        assert pins.match(host, None) is None
    assert pins.match("2001:db8::2") is None


@pytest.mark.parametrize(
    "key",
    [
        "[fe80::1%eth0]",
        "fe80::1%eth0",
        "[fe80::1%25eth0]:8443",
        "[::1%1]",
        "FE80::1%0",
        "[::ffff:127.0.0.1%eth0]",
    ],
)
def test_an_ipv6_zone_id_in_a_pattern_is_refused(key: str) -> None:
    # Lookups drop the zone id (urllib3 validates the address without it): an
    # entry keeping it would never apply, and the address would go unpinned.
    with pytest.raises(PinConfigError, match="without its zone id"):
        PinSet({key: [P1]})


def test_ipv6_key_spellings_are_one_pattern() -> None:
    assert PinSet({"[2001:db8::1]": [P1]}) == PinSet({"2001:0DB8:0::1": [P1]})
    assert only(PinSet({"[2001:0DB8::1]:8443": [P1]})).pattern == "[2001:db8::1]:8443"


def test_addresses_are_never_matched_by_name_wildcards() -> None:
    # "0.2.1" is itself an address to the resolver (0.2.0.1), so no wildcard over it.
    for key in ("**.0.2.1", "*.0.2.1"):
        with pytest.raises(PinConfigError, match="an IP address cannot have"):
            PinSet({key: [P1]})
    pins = PinSet({"**.2.1x": [P1], "*.2.1x": [P2]})  # odd, but valid host names
    assert pattern(pins, "x.2.1x") == "*.2.1x"
    assert pins.match("192.0.2.1") is None
    assert pins.match("192.0.2.1.") is None


@pytest.mark.parametrize(
    "spelling",
    [
        "127.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "2130706433",
        "::ffff:127.0.0.1",
        "[::ffff:127.0.0.1]",
        "127.0.0.1.",
    ],
)
def test_every_spelling_of_an_ipv4_address_finds_its_entry(spelling: str) -> None:
    """The resolver dials all of these as 127.0.0.1: none may be an unpinned way round."""
    pins = PinSet({"127.0.0.1": [P1]})
    assert pattern(pins, spelling) == "127.0.0.1"
    if spelling == "0177.0.0.1":
        # OpenSSL validates it as 177.0.0.1: a key that means two addresses
        # is refused (test_tls_ip_readings).
        with pytest.raises(PinConfigError, match="ambiguous"):
            PinSet({spelling: [P1]})
        return
    assert PinSet({spelling: [P1]}) == pins  # and keys are read the same way


# -- normalisation -------------------------------------------------------------------------


# Characters that change what a host normalises to: dots (and the dots IDNA
# maps to "."), brackets, zone ids, IPv6 colons, digits and hex of IPv4
# spellings, letters in both cases, and non-ASCII that IDNA maps or refuses.
_HOST_ALPHABET = "abcfxzABFXZ0123456789.-_[]%:\uff0e\u3002\uff11\u00fc\u00df\u0130\u212a "


@settings(max_examples=2000, deadline=None)
@given(
    host=st.one_of(
        st.text(alphabet=_HOST_ALPHABET, max_size=24),
        st.text(max_size=24),
        st.from_regex(r"[\[\]%.]{0,2}[0-9a-fx.:%\[\]]{0,20}\.{0,2}", fullmatch=True),
    )
)
def test_the_lookup_fast_path_agrees_with_the_general_normalisation(host: str) -> None:
    # _lookup_form answers plain ASCII names itself; it must say exactly what
    # the step-by-step normalisation says, for every string.
    general = _pinset._general_lookup_form.__wrapped__
    assert _pinset._lookup_form(host) == general(host)
    assert normalize_host(host) == general(host)[0]


# Characters of host patterns: the prefixes' stars, labels' characters in
# both cases, IPv4 and IPv6 literals, ports, and what is not allowed.
_PATTERN_ALPHABET = "*.abxzAZ019_-:[]/ \n\uff0e\u00fc"


@settings(max_examples=2000, deadline=None)
@given(
    key=st.one_of(
        st.text(alphabet=_PATTERN_ALPHABET, max_size=24),
        st.from_regex(r"(\*\*?\.)?([a-z0-9_-]{0,4}\.){0,3}[a-z0-9_-]{0,4}", fullmatch=True),
        st.from_regex(
            r"(\*\*?\.)?(0x[0-9a-f]{1,3}|[0-9]{1,4})(\.[0-9a-fx]{1,4}){0,3}", fullmatch=True
        ),
        st.builds(lambda n: "a" * n + ".example", st.integers(58, 70)),
        st.builds(lambda n: "*." + ".".join(["a" * 60] * 5)[:n], st.integers(248, 258)),
    ),
    include_subdomains=st.sampled_from([None, True, False]),
)
def test_the_pattern_fast_path_agrees_with_the_general_reading(
    key: str, include_subdomains: bool | None
) -> None:
    # _parse_pattern reads canonical keys itself; it must say exactly what the
    # general reading says (or raise the same error), for every string.
    def read(parse: Any) -> object:
        try:
            return parse(key, include_subdomains)
        except PinConfigError as error:
            return str(error)

    assert read(_pinset._parse_pattern) == read(_pinset._parse_any_pattern)


def test_the_lookup_fast_path_leaves_every_ip_spelling_to_the_general_normalisation() -> None:
    spellings = {
        "127.1": "127.0.0.1",
        "0x7f.0.0.1": "127.0.0.1",
        "2130706433": "127.0.0.1",
        "[::1%eth0]": "::1",
        "::ffff:127.0.0.1": "127.0.0.1",
        "1.2.3.4.": "1.2.3.4",
    }
    for host, address in spellings.items():
        assert _pinset._lookup_form(host) == (address, True), host
    assert _pinset._lookup_form("Api.Example.COM") == ("api.example.com", False)


def test_idna_keys_and_lookups_are_normalised_alike() -> None:
    pins = PinSet({"bücher.example": [P1], "*.münchen.example": [P2], "**.BÜCHER.test": [P3]})
    assert {entry.pattern for entry in pins} == {
        "xn--bcher-kva.example",
        "*.xn--mnchen-3ya.example",
        "**.xn--bcher-kva.test",
    }
    for host in [
        "bücher.example",
        "BÜCHER.example",
        "xn--bcher-kva.example",
        "XN--BCHER-KVA.EXAMPLE.",
        "bücher.example.",
    ]:
        assert pattern(pins, host) == "xn--bcher-kva.example", host
    assert pattern(pins, "shop.münchen.example") == "*.xn--mnchen-3ya.example"
    assert pattern(pins, "shop.xn--mnchen-3ya.example") == "*.xn--mnchen-3ya.example"
    assert pattern(pins, "a.b.bücher.test") == "**.xn--bcher-kva.test"
    assert pins.match("bucher.example") is None
    assert pins.match("shop.munchen.example") is None


def test_fullwidth_letters_and_dots_are_normalised() -> None:
    ideographic_full_stop = "\u3002"
    pins = PinSet(
        {
            fullwidth("example") + ".com": [P1],
            "*." + fullwidth("EXAMPLE") + ideographic_full_stop + "org": [P2],
        }
    )
    assert {entry.pattern for entry in pins} == {"example.com", "*.example.org"}
    assert pins == PinSet({"example.com": [P1], "*.example.org": [P2]})
    assert pattern(pins, fullwidth("example.com")) == "example.com"
    assert pattern(pins, fullwidth("www") + ".example.org") == "*.example.org"


def test_case_and_trailing_dots_are_normalised() -> None:
    pins = PinSet({"API.Example.COM.": [P1]})
    assert only(pins).pattern == "api.example.com"
    hosts = ["api.example.com", "API.EXAMPLE.COM", "api.example.com.", "Api.Example.Com."]
    # urllib3 strips every trailing dot before it validates the certificate,
    # so every count of dots must find the entry (it was a bypass).
    hosts += ["api.example.com..", "api.example.com.....", "API.EXAMPLE.COM\u3002\uff0e"]
    for host in hosts:
        assert pattern(pins, host) == "api.example.com"
    with pytest.raises(PinConfigError, match="not a valid host name"):
        PinSet({"api.example.com..": [P1]})  # in a pattern, two dots are a typo


def test_a_host_idna_refuses_is_still_matched_by_its_lower_cased_labels() -> None:
    pins = PinSet({"my_host.example.com": [P1], "*.example.org": [P2], "**.example.net": [P3]})
    assert only(PinSet({"my_host.example.com": [P1]})).pattern == "my_host.example.com"
    assert pattern(pins, "MY_HOST.example.com") == "my_host.example.com"
    assert pattern(pins, "my_host.example.com.") == "my_host.example.com"
    assert pins.match("myhost.example.com") is None
    # Labels IDNA cannot encode still find the wildcards above them.
    assert pattern(pins, "MY_HÓST.example.org") == "*.example.org"
    assert pattern(pins, "a_b.c_d.EXAMPLE.net.") == "**.example.net"
    assert pins.match("a_b.c_d.example.org") is None


# -- precedence ----------------------------------------------------------------------------


LAYERS = {
    "a.b.example.com:8443": [P1],
    "a.b.example.com": [P1],
    "*.b.example.com:8443": [P1],
    "*.b.example.com": [P1],
    "**.b.example.com:8443": [P1],
    "**.b.example.com": [P1],
    "**.example.com:8443": [P1],
    "**.example.com": [P1],
}


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("a.b.example.com", 8443, "a.b.example.com:8443"),
        ("a.b.example.com", 443, "a.b.example.com"),
        ("x.b.example.com", 8443, "*.b.example.com:8443"),
        ("x.b.example.com", 443, "*.b.example.com"),
        ("y.x.b.example.com", 8443, "**.b.example.com:8443"),
        ("y.x.b.example.com", 443, "**.b.example.com"),
        ("b.example.com", 8443, "**.b.example.com:8443"),
        ("b.example.com", 443, "**.b.example.com"),
        ("c.example.com", 8443, "**.example.com:8443"),
        ("c.example.com", 443, "**.example.com"),
        ("example.com", None, "**.example.com"),
        ("example.org", 443, None),
    ],
)
def test_precedence_from_host_and_port_down_to_the_shortest_subtree(
    host: str, port: int | None, expected: str | None
) -> None:
    assert pattern(PinSet(LAYERS), host, port) == expected


def test_each_layer_falls_through_to_the_next_when_removed() -> None:
    # Every layer applies to a.b.example.com:8443; remove them from the top.
    order = list(LAYERS)
    for index, key in enumerate(order):
        remaining = {k: LAYERS[k] for k in order[index:]}
        assert pattern(PinSet(remaining), "a.b.example.com", 8443) == key
    assert pattern(PinSet({}), "a.b.example.com", 8443) is None


def test_a_host_without_port_beats_a_wildcard_with_the_port() -> None:
    pins = PinSet({"a.example.com": [P1], "*.example.com:8443": [P2], "**.example.com:8443": [P3]})
    assert pattern(pins, "a.example.com", 8443) == "a.example.com"
    assert pattern(pins, "b.example.com", 8443) == "*.example.com:8443"


def test_one_star_beats_a_longer_subtree() -> None:
    pins = PinSet({"*.example.com": [P1], "**.a.example.com": [P2]})
    assert pattern(pins, "a.example.com") == "*.example.com"
    assert pattern(pins, "x.a.example.com") == "**.a.example.com"


def test_the_longest_subtree_beats_a_port_specific_shorter_one() -> None:
    pins = PinSet({"**.example.com:8443": [P1], "**.b.example.com": [P2]})
    assert pattern(pins, "x.b.example.com", 8443) == "**.b.example.com"
    assert pattern(pins, "x.c.example.com", 8443) == "**.example.com:8443"


# -- duplicates and rejected keys ----------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "canonical"),
    [
        ("API.example.com", "api.example.com.", "api.example.com"),
        ("bücher.example", "xn--bcher-kva.example", "xn--bcher-kva.example"),
        (fullwidth("example") + ".com", "example.com", "example.com"),
        ("2001:db8::1", "2001:0db8:0000::1", "2001:db8::1"),
        ("[2001:db8::1]:8443", "[2001:0DB8::1]:8443", "[2001:db8::1]:8443"),
        ("*.Example.com:8443", "*.example.com.:8443", "*.example.com:8443"),
        ("**.example.com", "**.EXAMPLE.com", "**.example.com"),
        ("192.0.2.1", "192.0.2.1.", "192.0.2.1"),
    ],
)
def test_two_keys_for_one_pattern_are_rejected(first: str, second: str, canonical: str) -> None:
    message = (
        f"host patterns {first!r} and {second!r} are the same pattern ({canonical!r}): "
        "merge their pins into one entry"
    )
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        PinSet({first: [P1], second: [P2]})
    # Either one alone is fine, and they are the same pattern.
    assert PinSet({first: [P1]}) == PinSet({second: [P1]})


def test_include_subdomains_and_two_stars_in_one_config_are_duplicates() -> None:
    with pytest.raises(
        PinConfigError,
        match=r"^host patterns 'example\.com' and '\*\*\.example\.com' are the same pattern",
    ):
        PinSet({"example.com": {"pins": [P1], "include_subdomains": True}, "**.example.com": [P2]})


def test_different_patterns_for_one_host_coexist() -> None:
    pins = PinSet(
        {
            "example.com": [P1],
            "example.com:443": [P2],
            "*.example.com": [P3],
            "**.example.com": [P4],
            "**.example.com:443": [P4],
        }
    )
    assert len(pins) == 5


NOT_A_NAME = (
    "not a valid host name (labels of letters, digits, '-' or '_', "
    "1 to 63 characters, separated by single dots)"
)
STAR = "'*' is allowed only as a leading '*.' or '**.' followed by a domain"
URL = "write a host name, not a URL (no scheme, no path)"
IP_WILDCARD = "an IP address cannot have subdomains or wildcards"
BRACKETS = "write IPv6 addresses as [2001:db8::1] or [2001:db8::1]:8443"
BARE_V6 = "not an IPv6 address (to give a port, write [2001:db8::1]:8443)"


def port_error(text: str) -> str:
    return f"port {text!r} is not a number from 1 to 65535"


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("*", STAR),
        ("**", STAR),
        ("a.*.com", STAR),
        ("*example.com", STAR),
        ("***.x.com", STAR),
        ("**.*.x.com", STAR),
        ("*.*.x.com", STAR),
        ("x.com*", STAR),
        ("*.", NOT_A_NAME),
        ("**.", NOT_A_NAME),
        ("", NOT_A_NAME),
        (".", NOT_A_NAME),
        ("a..b", NOT_A_NAME),
        (".a.com", NOT_A_NAME),
        ("a.com..", NOT_A_NAME),
        ("bücher.example..", NOT_A_NAME),
        ("a b.com", NOT_A_NAME),
        ("a!.com", NOT_A_NAME),
        ("a@b.com", NOT_A_NAME),
        ("a.com\n", NOT_A_NAME),
        ("-a.com", NOT_A_NAME),
        ("a-.com", NOT_A_NAME),
        ("a" * 64 + ".com", NOT_A_NAME),
        (".".join(["a" * 63] * 4) + ".com", NOT_A_NAME),  # 259 characters
        ("my_hóst.example", NOT_A_NAME),  # IDNA refuses it as a key
        ("example.com:0", port_error("0")),
        ("example.com:65536", port_error("65536")),
        ("example.com:-1", port_error("-1")),
        ("example.com:http", port_error("http")),
        ("example.com:44 3", port_error("44 3")),
        ("example.com:" + fullwidth("123"), port_error(fullwidth("123"))),
        ("example.com:" + "9" * 5000, port_error("9" * 5000)),
        ("*.example.com:99999", port_error("99999")),
        ("[::1]:0", port_error("0")),
        ("example.com:", "empty port after ':'"),
        ("https://x.com", URL),
        ("x.com/path", URL),
        ("x.com/", URL),
        ("//x.com", URL),
        ("*.192.0.2.1", IP_WILDCARD),
        ("**.192.0.2.1", IP_WILDCARD),
        ("*.192.0.2.1.", IP_WILDCARD),
        ("*." + fullwidth("192.0.2.1"), IP_WILDCARD),
        ("[::1", BRACKETS),
        ("[::1]:", BRACKETS),
        ("[::1]x", BRACKETS),
        ("[example.com]:443", "'example.com' in brackets is not an IPv6 address"),
        ("[192.0.2.1]:443", "'192.0.2.1' in brackets is not an IPv6 address"),
        ("2001:db8::zz", BARE_V6),
        ("a.com:443:1", BARE_V6),
        ("*.[::1]", BARE_V6),
    ],
)
def test_bad_host_patterns_are_rejected_naming_the_key(key: str, why: str) -> None:
    message = f"host pattern {key!r}: {why}"
    with pytest.raises(PinConfigError) as info:
        PinSet({key: [P1]})
    if len(message) <= 1000:
        assert str(info.value) == message
    else:  # a long message keeps its start and its end
        assert str(info.value) == f"{message[:700]} [...] {message[-300:]}"


@pytest.mark.parametrize("key", ["192.0.2.1", "2001:db8::1", "[::1]:8443"])
def test_include_subdomains_on_an_address_is_rejected(key: str) -> None:
    message = f"host pattern {key!r}: {IP_WILDCARD}"
    with pytest.raises(PinConfigError, match=f"^{re.escape(message)}$"):
        PinSet({key: {"pins": [P1], "include_subdomains": True}})
    assert (
        only(PinSet({key: {"pins": [P1], "include_subdomains": False}})).include_subdomains is False
    )


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("example.com:1", "example.com:1"),
        ("example.com:65535", "example.com:65535"),
        ("a_b.example", "a_b.example"),
        ("a-b.example", "a-b.example"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        ("x", "x"),
        ("localhost:8443", "localhost:8443"),
        ("*.x", "*.x"),
        ("**.x:1", "**.x:1"),
        ("192.0.2.1.", "192.0.2.1"),
        ("[::1]", "::1"),
        ("[::1]:443", "[::1]:443"),
    ],
)
def test_good_host_patterns_at_the_edges(key: str, canonical: str) -> None:
    entry = only(PinSet({key: [P1]}))
    assert entry.pattern == canonical
    assert PinSet({canonical: [P1]}) == PinSet({key: [P1]})


# -- a large set ---------------------------------------------------------------------------


def test_a_hundred_thousand_hosts_are_matched_correctly() -> None:
    shared = [P1]
    config: dict[str, Any] = {f"host{i}.example.com": shared for i in range(100_000)}
    config.update(
        {
            "*.example.com": [P2],
            "**.example.org": [P3],
            "host7.example.com:8443": [P4],
            "**.deep.host5.example.com": [P4],
        }
    )
    pins = PinSet(config)
    assert len(pins) == 100_004
    assert pattern(pins, "host0.example.com") == "host0.example.com"
    assert pattern(pins, "HOST99999.example.com.") == "host99999.example.com"
    assert pattern(pins, "host100000.example.com") == "*.example.com"
    assert pattern(pins, "host7.example.com", 8443) == "host7.example.com:8443"
    assert pattern(pins, "host7.example.com", 443) == "host7.example.com"
    assert pattern(pins, "a.deep.host5.example.com") == "**.deep.host5.example.com"
    assert pattern(pins, "a.b.example.org") == "**.example.org"
    assert pins.match("x.host5.example.com") is None
    assert pins.match("example.com") is None
    assert pins.match("host5.example.com.evil") is None


# -- properties ----------------------------------------------------------------------------

VALID_PINS = [
    P1,
    P2,
    SLASH_PIN,
    "sha256//" + P3[len("sha256/") :],
    FINGERPRINT,
    FINGERPRINT.lower().replace(":", ""),
    "sha1/" + base64.b64encode(bytes(20)).decode(),
    "sha384/" + base64.b64encode(bytes(48)).decode(),
]

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
PIN_ITEMS = st.one_of(
    st.sampled_from(VALID_PINS),
    st.sampled_from(VALID_PINS).flatmap(
        lambda p: st.integers(0, len(p) - 1).map(lambda i: p[:i] + p[i + 1 :])
    ),
    st.text(max_size=10),
    JSON,
)
PIN_LISTS = st.one_of(
    st.lists(st.sampled_from(VALID_PINS), min_size=1, max_size=3),
    st.lists(PIN_ITEMS, max_size=3),
)
EXPIRES = st.one_of(
    st.sampled_from(
        [
            "2030-06-30",
            "2030-06-30T12:00:00+02:00",
            "2030-06-30T12:00:00Z",
            "2030-06-30T12:00:00.250000-03:00",
            "2030-06-30T12:00:00",
            "2030-02-30",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31",
            "soon",
        ]
    ),
    JSON,
)
VALID_EXPIRES = st.sampled_from(
    ["2030-06-30", "2030-06-30T12:00:00+02:00", "2030-06-30T12:00:00Z", "9999-12-31"]
)
# Entries that load, unless the key contradicts them (include_subdomains).
CLEAN_ENTRIES = st.one_of(
    st.lists(st.sampled_from(VALID_PINS), min_size=1, max_size=3),
    st.fixed_dictionaries(
        {"pins": st.lists(st.sampled_from(VALID_PINS), min_size=1, max_size=3)},
        optional={
            "include_subdomains": st.booleans(),
            "report_only": st.booleans(),
            "expires": VALID_EXPIRES,
        },
    ),
)
ENTRY_OBJECTS = st.fixed_dictionaries(
    {"pins": PIN_LISTS},
    optional={
        "include_subdomains": st.booleans(),
        "report_only": st.booleans(),
        "expires": EXPIRES,
        "deny": PIN_LISTS,
        "report_uri": st.sampled_from(["https://r.example/pkp", "http://127.0.0.1:9/r"]),
    },
)
ODD_ENTRY_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "pins": PIN_ITEMS,
        "include_subdomains": st.one_of(st.booleans(), JSON),
        "report_only": st.one_of(st.booleans(), JSON),
        "expires": EXPIRES,
        "include_subdomain": st.booleans(),
        "deny": PIN_LISTS,
        "report_uri": st.text(max_size=5),
    },
)
DIRTY_ENTRIES = st.one_of(PIN_LISTS, ENTRY_OBJECTS, ODD_ENTRY_OBJECTS, JSON)


class Key(NamedTuple):
    """A host key built from parts, and how to look it up."""

    text: str
    host: str
    port: int | None
    exact: bool


GOOD_LABELS = [
    "a",
    "b",
    "api",
    "example",
    "com",
    "xn--bcher-kva",
    "bücher",
    "my_host",
    "API",
    fullwidth("ex"),
    "1",
]
BAD_LABELS = ["-x", "", "*", "a b"]
NAMES = {
    clean: st.lists(
        st.sampled_from(GOOD_LABELS + ([] if clean else BAD_LABELS)), min_size=1, max_size=4
    ).map(".".join)
    for clean in (True, False)
}
ADDRESSES = st.sampled_from(
    [
        "192.0.2.1",
        "192.0.2.1.",
        "2001:db8::1",
        "2001:0DB8:0000::1",
        "::1",
        "::ffff:192.0.2.1",
        "1.2.3",
    ]
)


@st.composite
def structured_keys(draw: st.DrawFn, clean: bool) -> Key:
    address = draw(st.integers(0, 3)) == 0
    host = draw(ADDRESSES if address else NAMES[clean])
    good_prefixes = [""] if address else ["", "", "*.", "**."]
    prefix = draw(st.sampled_from(good_prefixes + ([] if clean else ["*", "***.", "*."])))
    good_ports = [None, None, 443, 8443, 1, 65535]
    port = draw(st.sampled_from(good_ports + ([] if clean else [0, 65536])))
    if host.count(":") < 2:
        host += draw(st.sampled_from(["", "", "."]))
        text = prefix + host + ("" if port is None else f":{port}")
        lookup = host
    else:
        text = f"[{prefix}{host}]:{port}" if port is not None else prefix + host
        lookup = f"[{host}]" if draw(st.booleans()) else host
    return Key(text, lookup, port, exact=prefix == "")


@st.composite
def configs(draw: st.DrawFn) -> tuple[object, dict[str, Key]]:
    """A configuration, and the parts of the keys that were built from parts.

    Half of them are built to load (they fail only when two keys normalise to
    one pattern or an entry contradicts its key); the others are anything.
    """
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON), {}
    clean = draw(st.booleans())
    config: dict[object, object] = {}
    keys: dict[str, Key] = {}
    for _ in range(draw(st.integers(0, 5))):
        choice = 0 if clean else draw(st.integers(0, 9))
        entries = CLEAN_ENTRIES if clean or draw(st.booleans()) else DIRTY_ENTRIES
        if choice < 7:
            key = draw(structured_keys(clean))
            if key.text not in config:
                keys[key.text] = key
            config[key.text] = draw(entries)
        elif choice < 9:
            config[draw(st.text(max_size=12))] = draw(entries)
        else:
            config[draw(st.one_of(st.integers(), st.none(), st.booleans()))] = draw(entries)
    return config, keys


def exact_lookup(entry_pattern: str) -> tuple[str, int | None]:
    """Host and port to look an exact pattern up with."""
    if entry_pattern.startswith("["):
        host, _, port = entry_pattern[1:].partition("]:")
        return host, int(port)
    if entry_pattern.count(":") == 1:
        host, port = entry_pattern.split(":")
        return host, int(port)
    return entry_pattern, None


def is_exact(entry: HostPins) -> bool:
    return not entry.include_subdomains and not entry.pattern.startswith("*.")


def check_loaded(pins: PinSet, keys: Mapping[str, Key], config: Mapping[Any, Any]) -> None:
    assert PinSet.from_dict(pins.to_dict()) == pins
    assert PinSet.from_dict(json.loads(json.dumps(pins.to_dict()))) == pins
    assert pickle.loads(pickle.dumps(pins)) == pins
    assert len(pins) == len(config)
    # A port no entry uses, so that a port-less entry cannot be shadowed.
    used = {int(m.group(1)) for e in pins for m in [re.search(r":(\d+)$", e.pattern)] if m}
    free = min(set(range(1, 100)) - used)
    for entry in pins:
        # Accepted pins, or deny pins only (a deny-list entry): never neither.
        assert all(isinstance(pin, Pin) for pin in (*entry.pins, *entry.deny))
        assert entry.pins or entry.deny
        if is_exact(entry):
            host, port = exact_lookup(entry.pattern)
            assert pins.match(host, free if port is None else port) is entry
    for text, key in keys.items():
        single = only(PinSet({text: config[text]}))
        [entry] = [e for e in pins if e == single]
        if key.exact and is_exact(entry):
            assert pins.match(key.host, free if key.port is None else key.port) is entry, text


@PROPERTY
@given(drawn=configs())
def test_any_value_loads_or_raises_pin_config_error(
    drawn: tuple[object, dict[str, Key]],
) -> None:
    config, keys = drawn
    try:
        pins = PinSet.from_dict(config)  # type: ignore[arg-type]
    except PinConfigError as exc:
        assert str(exc)
        return
    if config is None:  # PinSet(None), like PinSet(), is empty
        assert pins == PinSet({})
        return
    assert isinstance(config, Mapping)
    check_loaded(pins, keys, config)


def test_the_property_above_also_generates_configs_that_load() -> None:
    def loads_with_three_entries(drawn: tuple[object, dict[str, Key]]) -> bool:
        config = drawn[0]
        try:
            return isinstance(config, Mapping) and len(PinSet.from_dict(config)) >= 3
        except PinConfigError:
            return False

    config, _ = find(
        configs(),
        loads_with_three_entries,
        settings=settings(max_examples=5000, database=None, phases=[Phase.generate]),
    )
    assert isinstance(config, Mapping)
    assert len(PinSet.from_dict(config)) >= 3


# A model of matching that scans every entry and ranks the candidates, to
# compare against the table lookups.

MODEL_LABELS = st.sampled_from(["a", "b", "c"])
MODEL_SUFFIXES = st.lists(MODEL_LABELS, min_size=1, max_size=3).map(".".join)


class ModelEntry(NamedTuple):
    kind: str  # "exact", "one", "tree"
    suffix: str
    port: int | None

    @property
    def pattern(self) -> str:
        prefix = {"exact": "", "one": "*.", "tree": "**."}[self.kind]
        return prefix + self.suffix + ("" if self.port is None else f":{self.port}")

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.kind == "exact":
            return host == self.suffix
        if self.kind == "one":
            return (
                host.split(".", 1)[-1] == self.suffix
                and host.count(".") == self.suffix.count(".") + 1
            )
        return host == self.suffix or host.endswith("." + self.suffix)

    def rank(self) -> tuple[int, int, int]:
        level = {"exact": 0, "one": 1, "tree": 2}[self.kind]
        depth = -len(self.suffix.split(".")) if self.kind == "tree" else 0
        return (level, depth, 0 if self.port is not None else 1)


def model_match(entries: list[ModelEntry], host: str, port: int) -> str | None:
    candidates = [entry for entry in entries if entry.matches(host, port)]
    return min(candidates, key=ModelEntry.rank).pattern if candidates else None


MODEL_ENTRIES = st.lists(
    st.builds(
        ModelEntry,
        st.sampled_from(["exact", "one", "tree"]),
        MODEL_SUFFIXES,
        st.sampled_from([None, 8443]),
    ),
    max_size=8,
    unique=True,
)


def test_matching_agrees_with_the_scanning_model_at_every_depth() -> None:
    # Lookups skip tables whose keys have another number of labels than the
    # host (or its parent): every pair of these entries, at every depth of
    # host up to four labels, so that each boundary of those ranges is met.
    keys = [("one", "a"), ("one", "b.a"), ("tree", "a"), ("tree", "c.b.a"), ("exact", "b.a")]
    models = [ModelEntry(kind, suffix, None) for kind, suffix in keys]
    hosts = [
        ".".join(labels)
        for depth in range(1, 5)
        for labels in itertools.product("abc", repeat=depth)
    ]
    for pair in itertools.combinations(models, 2):
        entries = list(pair)
        pins = PinSet({entry.pattern: [P1] for entry in entries})
        for host in hosts:
            assert pattern(pins, host) == model_match(entries, host, 443), (entries, host)


@PROPERTY
@given(
    entries=MODEL_ENTRIES,
    flags=st.lists(st.booleans(), min_size=8, max_size=8),
    lookups=st.lists(
        st.tuples(
            st.lists(MODEL_LABELS, min_size=1, max_size=4).map(".".join),
            st.sampled_from([443, 8443, None]),
            st.sampled_from(["lower", "upper", "dot"]),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_matching_agrees_with_a_scanning_model(
    entries: list[ModelEntry], flags: list[bool], lookups: list[tuple[str, int | None, str]]
) -> None:
    config: dict[str, Any] = {}
    patterns = {entry.pattern for entry in entries}
    for entry, flag in zip(entries, flags[: len(entries)], strict=True):
        key = entry.suffix + ("" if entry.port is None else f":{entry.port}")
        if entry.kind == "tree" and flag and key not in patterns:
            config[key] = {"pins": [P1], "include_subdomains": True}  # same as "**." + key
        else:
            config[entry.pattern] = [P1]
    pins = PinSet(config)
    # Looked up before anything lists the entries (which unpacks them all).
    for host, port, spelling in lookups:
        expected = model_match(entries, host, 443 if port is None else port)
        looked_up = {"lower": host, "upper": host.upper(), "dot": host + "."}[spelling]
        assert pattern(pins, looked_up, port) == expected, (looked_up, port)
    assert {entry.pattern for entry in pins} == {entry.pattern for entry in entries}


HOSTISH = st.one_of(
    st.text(max_size=30),
    st.lists(
        st.sampled_from(
            ["a", "B", "example", "com", "*", "", "xn--", "ü", "_", "1", "::1", "[", "]"]
        ),
        max_size=5,
    ).map(".".join),
)
FIXED = PinSet(
    {
        "example.com": [P1],
        "*.example.com:8443": [P2],
        "**.example.org": [P3],
        "2001:db8::1": [P4],
        "a.com:443": [P1],
    }
)


@PROPERTY
@given(host=HOSTISH, port=st.one_of(st.none(), st.integers(1, 65535)))
def test_match_accepts_any_host_text(host: str, port: int | None) -> None:
    result = FIXED.match(host, port)
    assert result is None or result in list(FIXED)
    if host.isascii() and not host.endswith("."):
        assert FIXED.match(host.upper(), port) is result
        assert FIXED.match(host.lower() + ".", port) is result


def test_entries_that_spell_the_same_pins_share_them() -> None:
    # A 100,000-entry file repeats a few CA pins: each list is parsed once.
    pins = PinSet(
        {
            "a.example.com": [P1, P2],
            "b.example.com": {"pins": [P1, P2]},
            "c.example.com": [P3, P2],
            "d.example.com": [P1.replace("sha256/", 'pin-sha256="') + '"', P2],  # HPKP's spelling
        }
    )
    a, b, c, d = (pins.match(f"{name}.example.com") for name in "abcd")
    assert a is not None and b is not None and c is not None and d is not None
    assert a.pins is b.pins
    assert c.pins[1] is a.pins[1]
    assert d.pins == a.pins and d.pins is not a.pins  # equal, parsed from its own spelling
