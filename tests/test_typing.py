"""``mypy --strict`` on user code catches what PinSet would refuse at run time (issue 9, §2).

Runs mypy on a small program that uses the library: the mistakes must be
reported where they are, and the correct uses next to them must pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")  # mypy is a development tool, not a test dependency

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = """\
from datetime import date

from requests_pinning import HostOptions, PinningAdapter, PinningPoolManager, PinningSession

PIN = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

# correct uses
PinningSession({"api.example.com": [PIN]})
PinningAdapter({"api.example.com": {"pins": [PIN], "expires": date(2030, 1, 1)}})
PinningPoolManager("pins.json")
options: HostOptions = {"pins": [PIN], "include_subdomains": True, "comment": "CA key"}
PinningSession({"**.example.org": options}, report_only=True)

# mistakes
PinningAdapter([PIN])  # line 15: pins without a host
PinningSession({"api.example.com": {"pins": [PIN], "include_subdomain": True}})  # line 16
PinningPoolManager({"api.example.com": {"pins": [PIN], "report_only": "yes"}})  # line 17
PinningSession({"api.example.com": PIN})  # line 18: a single pin not in a list
PinningAdapter({"api.example.com": [PIN]}, report_only="yes")  # line 19
"""


def test_mypy_strict_reports_the_mistakes_and_passes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # this checkout, installed or not
    program = tmp_path / "user_code.py"
    program.write_text(USER_CODE)
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(program),
        ]
    )
    assert status == 1, stdout + stderr
    lines = {int(m.group(1)) for m in re.finditer(r"user_code\.py:(\d+): error", stdout)}
    assert lines == {15, 16, 17, 18, 19}, stdout
    # One error per mistake. (Errors inside the library are not counted: with
    # MYPYPATH on the source, mypy checks it as if it were the user's, against
    # whatever requests stubs this environment has; CI's mypy step checks it
    # with the development stubs, and a user's mypy never reports them.)
    assert stdout.count("user_code.py") == 5, stdout
    assert "[dict-item]" in stdout, stdout  # the mistyped options, inside the mapping
