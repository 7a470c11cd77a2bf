"""The README's statements that code can check: its sample texts and its lists."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from requests_pinning import PinConfigError, PinFailure, PinMismatchError, PinSet

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_sample_load_error_is_the_real_one() -> None:
    with pytest.raises(PinConfigError) as info:
        PinSet.from_dict({"api.example.com": ["sha256/abc"]})
    assert f"\n{info.value}\n" in README


def test_the_pin_mismatch_error_field_list_names_every_field() -> None:
    [listed] = re.findall(
        r"`PinMismatchError` is a .*?Its\s+fields: (.*?)\. The message", README, re.S
    )
    fields = set(re.findall(r"`(\w+)`", listed))
    error = PinMismatchError("x", host="h", port=1)
    inherited = {"args", "request", "response"}  # OSError's and requests' own
    public = {name for name in vars(error) if not name.startswith("_")} - inherited
    assert fields == public
    assert set(inspect.signature(PinMismatchError).parameters) >= public


def test_the_pin_failure_field_list_names_every_field() -> None:
    [listed] = re.findall(r"with a `PinFailure` \((.*?)\); its", README, re.S)
    fields = set(re.findall(r"`(\w+)`", listed))
    public = {field.name for field in dataclasses.fields(PinFailure)} | {"message"}
    assert fields == public


def test_the_runtime_dependencies_are_the_declared_ones() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    [block] = re.findall(r"^dependencies = \[(.*?)^\]", pyproject, re.S | re.M)
    declared = dict(re.findall(r'"([\w-]+)>=([\d.]+)', block))
    assert set(declared) == {"requests", "urllib3", "cryptography", "idna"}
    [sentence] = re.findall(r"Runtime dependencies: (.*?)Nothing else", README, re.S)
    sentence = " ".join(sentence.split())
    for name, floor in declared.items():
        assert f"{name} (>= {floor}" in sentence, name
