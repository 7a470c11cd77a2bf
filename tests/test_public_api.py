"""The public surface: what __all__ promises is there, documented, and nothing else leaks."""

from __future__ import annotations

import inspect

import requests_pinning


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(requests_pinning).items()
        if not name.startswith("_") and not inspect.ismodule(value)  # e.g. the cli submodule
    }
    assert public == set(requests_pinning.__all__)


def test_every_public_name_has_a_docstring_for_users() -> None:
    for name in requests_pinning.__all__:
        obj = getattr(requests_pinning, name)
        doc = inspect.getdoc(obj)
        assert doc and len(doc) > 40, f"{name} needs a docstring"
