"""The JSON Schema shipped for pin files agrees with the loader (issue 9, section 2).

It accepts every pin file in the README and every configuration the loader
accepts here, and rejects the documented errors that a schema can see.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import PinConfigError, PinSet

jsonschema = pytest.importorskip("jsonschema")

README = Path(__file__).resolve().parent.parent / "README.md"
PIN = "sha256/" + base64.b64encode(bytes(range(32))).decode("ascii")
OTHER = "sha256/" + base64.b64encode(bytes(32)).decode("ascii")


@pytest.fixture(scope="module")
def validator() -> Any:
    return _validator()


@functools.cache
def _validator() -> Any:
    text = resources.files("requests_pinning").joinpath("pin-file.schema.json").read_text()
    schema = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    return jsonschema.Draft202012Validator(schema)


def readme_pin_files() -> list[Any]:
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    documents = [json.loads(block) for block in blocks]
    # The README also shows a violation report; every other JSON block is a pin file.
    return [doc for doc in documents if "date-time" not in doc]


def test_the_readme_has_pin_files_to_check() -> None:
    assert len(readme_pin_files()) >= 2


@pytest.mark.parametrize("document", readme_pin_files())
def test_every_pin_file_in_the_readme_is_valid(validator: Any, document: Any) -> None:
    assert list(validator.iter_errors(document)) == []


VALID = [
    {},
    {"api.example.com": [PIN, OTHER]},
    {"$schema": "./pin-file.schema.json", "api.example.com": [PIN]},
    {
        "**.example.org:8443": {
            "pins": [PIN],
            "deny": [OTHER],
            "include_subdomains": True,
            "expires": "2027-06-30",
            "report_only": False,
            "report_uri": "https://collector.example/pkp",
            "comment": "CA key and its backup",
        }
    },
    {"a.example": {"deny": [OTHER]}},
    {"a.example": {"pins": [PIN], "expires": "2027-06-30T12:00:00+02:00"}},
    {"a.example": {"pins": [PIN], "expires": "2027-06-30T12:00:00Z"}},
    {"[2001:db8::1]:8443": [":".join(["AB"] * 32)], "192.0.2.7": [PIN]},
]

# The documented errors a schema can see; each one the loader refuses too.
INVALID = [
    {"a.example": PIN},  # a single pin must still be in a list
    {"a.example": []},  # an empty list
    {"a.example": {"pins": []}},
    {"a.example": {"pins": [PIN], "include_subdomain": True}},  # a typo is an error
    {"a.example": {"pins": [PIN], "report_only": "true"}},  # booleans are not strings
    {"a.example": {"pins": [PIN], "include_subdomains": 1}},
    {"a.example": {"report_only": True}},  # pins or deny is required
    {"a.example": {"pins": [PIN], "expires": "next year"}},
    {"a.example": {"pins": [PIN], "expires": "2027-06-30T12:00:00"}},  # no offset
    {"a.example": {"pins": [PIN], "report_uri": "ftp://collector.example/"}},
    {"a.example": {"pins": [PIN], "comment": 7}},
    {"a.example": {"pins": [7]}},
    {"https://a.example/": [PIN]},  # a URL, not a host pattern
    {"$schema": 7},
    {"a.example": None},
    [PIN],  # pins without a host
]


@pytest.mark.parametrize("config", VALID)
def test_what_the_loader_accepts_the_schema_accepts(validator: Any, config: Any) -> None:
    PinSet(config)
    assert list(validator.iter_errors(config)) == []


@pytest.mark.parametrize("config", INVALID)
def test_what_the_schema_rejects_the_loader_refuses(validator: Any, config: Any) -> None:
    assert list(validator.iter_errors(config)) != []
    with pytest.raises(PinConfigError):
        PinSet(config)


_EXPIRES_PIECES = st.lists(
    st.sampled_from(
        [
            *("2027", "-06", "-30", "T", "t", " ", "12", ":00", ":30", ".5", ".123456789"),
            *("Z", "z", "+02:00", "-0530", "+2", "W26", "-3", "0", ":", "+", "\u0662", "99"),
            "-13",
        ]
    ),
    max_size=9,
).map("".join)


@given(text=st.one_of(_EXPIRES_PIECES, st.text(max_size=30)))
@settings(max_examples=500, deadline=None)
def test_what_the_loader_reads_as_an_expiry_the_schema_allows(text: str) -> None:
    # The loader reads "expires" by the schema's grammar, the same on every
    # Python (datetime.fromisoformat reads more from 3.11 on). What the schema
    # allows is read unless no such moment exists (a 13th month, a 25th hour):
    # that, too, is the usual error.
    config = {"a.example": {"pins": [PIN], "expires": text}}
    allowed = list(_validator().iter_errors(config)) == []
    try:
        PinSet(config)
    except PinConfigError as exc:
        assert "is not an ISO 8601 date (2027-06-30)" in str(exc)
    else:
        assert allowed, text
