"""Attacks on the packed reading of pin files (commits c168b3b..main)."""

from __future__ import annotations

import base64
import json
import pathlib
import tracemalloc

import pytest

from requests_pinning import PinConfigError, PinSet

from .threads import at_once, switching_often


def spki(digest: bytes) -> str:
    return "sha256/" + base64.b64encode(digest).decode("ascii")


P = spki(bytes(32))
CA1, CA2 = spki(b"\x01" * 32), spki(b"\x02" * 32)


def test_concurrent_first_lookups_return_the_listed_entry() -> None:
    # Before the change, match() returned the one HostPins that iteration
    # lists. Now two threads that unpack one packed entry at once each make
    # a HostPins; only one is stored, and the other thread gets an equal but
    # distinct object, never listed (the PinningPolicy dedups found entries
    # by id(), and "each entry is always the same object" is documented).
    with switching_often():
        for _ in range(200):
            pins = PinSet({f"h{i}.example": [P] for i in range(50)})
            got: list[list[object]] = [[None] * 50 for _ in range(8)]

            def work(k: int, pins: PinSet = pins, got: list[list[object]] = got) -> None:
                for i in range(50):
                    got[k][i] = pins.match(f"h{i}.example")

            at_once(work, 8)
            listed = list(pins)
            for i in range(50):
                for row in got:
                    assert row[i] is listed[i], (i, row[i], listed[i])


def test_unpacked_entries_share_the_ca_pins_they_repeat() -> None:
    # The assertion c168b3b's test_entries_that_spell_the_same_pins_share_them
    # made (weakened to == by the change): a CA pin repeated across entries
    # with different lists is one Pin object. Packed entries now each unpack
    # their own Pin objects (and digests), so a 100,000-entry file of
    # [leaf, CA1, CA2] takes ~74 MB once listed/compared/pickled/matched
    # throughout, against ~32 MB before.
    pins = PinSet(
        {"a.example": [spki(b"\x0a" * 32), CA1, CA2], "b.example": [spki(b"\x0b" * 32), CA1, CA2]}
    )
    a, b = pins.match("a.example"), pins.match("b.example")
    assert a is not None and b is not None
    assert a.pins[1] is b.pins[1] and a.pins[2] is b.pins[2]


# Attacks on 2aafc72 (a list of pins found and checked as its lines).


@pytest.mark.parametrize(
    "later",
    [
        [CA1 + "\n" + CA2],  # two pins' lines in one item
        [P, CA1 + "\n" + CA2],  # the last two of [P, CA1, CA2] in one item
        [P + "\n" + CA1, CA2],
    ],
)
def test_an_item_of_two_pins_lines_is_refused_after_a_list_that_joins_the_same(
    later: list[str],
) -> None:
    # _packed_pins looks the joined list up in shared.packed before it checks
    # the length and the lines: a list whose items hold line breaks, and that
    # joins to the text of a valid list read before it, is taken for that list.
    # The old reading (and _parse_entry) refuses the item: it is not a pin.
    first = [CA1, CA2] if len(later) == 1 else [P, CA1, CA2]
    config = {"a.example": first, "b.example": later}
    with pytest.raises(PinConfigError, match="is not base64"):
        PinSet(config)


def test_a_pin_file_item_of_two_pins_lines_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "pins.json"
    path.write_text(json.dumps({"a.example": [CA1, CA2], "b.example": [CA1 + "\n" + CA2]}))
    with pytest.raises(PinConfigError, match="not base64"):
        PinSet.from_json(path)


def test_a_list_repeating_one_long_string_is_refused_without_joining_it() -> None:
    # The old reading refused at the first item (~2 MB traced here); the join
    # copies the item once per reference before any check: 64 MB here, and a
    # config such as {"h": ["A" * 10**7] * 1000} asks for 10 GB.
    config = {"a.example": ["A" * 10**6] * 64}
    tracemalloc.start()
    try:
        with pytest.raises(PinConfigError):
            PinSet(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 10**6, peak
