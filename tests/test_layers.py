"""The layers: the decision imports no HTTP client, and data flows one way.

The core (pins, pin sets, certificates, the decision, failures and reports,
reading a chain off a TLS object) must be usable by any face, so it may import
neither requests nor urllib3 nor httpx. Checked in a fresh interpreter that
loads only the core modules (not the package's ``__init__``, which imports
the faces), so a stray import anywhere in the core shows up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import requests_pinning

PACKAGE = Path(requests_pinning.__file__).parent
CORE = ["_errors", "_certs", "_pins", "_pinset", "_report", "_verify", "_tls"]
CLIENTS = ("requests", "urllib3", "httpx", "httpcore")

PROBE = """
import importlib, json, sys, types
package = types.ModuleType("requests_pinning")
package.__path__ = [{path!r}]
sys.modules["requests_pinning"] = package
for name in {modules!r}:
    importlib.import_module("requests_pinning." + name)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def loaded_by(modules: list[str]) -> set[str]:
    code = PROBE.format(path=str(PACKAGE), modules=modules)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def test_the_core_imports_no_http_client() -> None:
    assert loaded_by(CORE) & set(CLIENTS) == set()


@pytest.mark.parametrize(("face", "client"), [("_urllib3", "urllib3"), ("_adapter", "requests")])
def test_twin_the_probe_sees_a_face_import_its_client(face: str, client: str) -> None:
    assert client in loaded_by([face])
