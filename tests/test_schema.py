"""The JSON Schema shipped for pin files agrees with the loader (issue 9, section 2).

It accepts every pin file in the README and every configuration the loader
accepts here, and rejects the documented errors that a schema can see.
"""

from __future__ import annotations

import base64
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from requests_pinning import PinConfigError, PinSet

jsonschema = pytest.importorskip("jsonschema")

README = Path(__file__).resolve().parent.parent / "README.md"
PIN = "sha256/" + base64.b64encode(bytes(range(32))).decode("ascii")
OTHER = "sha256/" + base64.b64encode(bytes(32)).decode("ascii")


@pytest.fixture(scope="module")
def validator() -> Any:
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
