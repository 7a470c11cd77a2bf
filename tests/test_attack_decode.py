"""Attacks on 7ba0617: a new list of canonical pins decoded in one call.

The direct reading of pin files (``_read_plain``, ``_packed_pins``) now joins
a list's pins with line breaks, turns each pin's "=" and the next pin's
"sha256/" into one "A", and decodes the whole list with one
``binascii.a2b_base64`` call: each 32-byte digest but the last is followed by
a zero byte (``_STRIDE``). Pins must be canonical to the last base64
character, so that two pins are one digest exactly when their texts are
equal; duplicates and the pins shared between lists are found by text.

These tests compare whole pin sets built with and without the direct
reading on hostile lists (bodies that hold "sha256/", "+" and "/", zero and
0xff bytes, every last character, look-alikes, line breaks and "=" moved
between items, str subclasses, repeats), on JSON files with escapes, on long
lists, and with several threads unpacking one fresh set at once.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import HostPins, Pin, PinConfigError, PinSet, _pinset

from .threads import at_once, switching_often

_BASE64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
_CANONICAL_LAST = "AEIMQUYcgkosw048"  # the 16 last characters with zero spare bits


def spki(digest: bytes) -> str:
    return "sha256/" + base64.b64encode(digest).decode("ascii")


def body_pin(body: str) -> str:
    """The pin ``sha256/<body>=`` for 43 base64 characters (canonical if its last is)."""
    assert len(body) == 43
    return f"sha256/{body}="


# Canonical pins chosen to trouble one decoding of a joined list: bodies that
# hold "sha256/" (the text the replace removes at boundaries), that are all
# "A" (what the replace inserts), all "/" or "+", and digests of zero bytes
# (what the stride skips) and of 0xff bytes.
TRICKY = [
    body_pin("sha256/" + "A" * 36),
    body_pin("sha256/sha256/sha256/sha256/sha256/sha256/A"),
    body_pin("A" * 42 + "Q"),
    body_pin("/" * 42 + "w"),
    body_pin("+" * 42 + "8"),
    body_pin("AAAAsha256/" + "A" * 32),
    spki(bytes(32)),
    spki(b"\xff" * 32),
    spki(b"\x00" * 31 + b"\x01"),
    spki(b"\x01" + b"\x00" * 31),
    spki(bytes(range(32))),
]
assert len(set(TRICKY)) == len(TRICKY)
for _pin in TRICKY:
    assert str(Pin.parse(_pin)) == _pin, _pin  # each is canonical

P1, P2, P3 = spki(b"\x01" * 32), spki(b"\x02" * 32), spki(b"\x03" * 32)

# Items that are one character away from a canonical pin, or that spell one
# of the pins above otherwise: never read as the pin they look like by the
# direct reading (or, if they are one, read as the general reading reads it).
LOOKALIKES = [
    P1[:-2] + "F=",  # non-zero spare bits: the same digest as P1
    P1[:-2] + "B=",
    P1[:-1] + "\n",  # "=" replaced by a line break
    P1[:-1],
    "\n" + P1[1:],
    P1[:20] + "\u0410" + P1[21:],  # Cyrillic A
    P1[:20] + "\uff21" + P1[21:],  # fullwidth A
    P1[:20] + "\u0661" + P1[21:],  # Arabic-Indic one (str.isdigit())
    P1[:20] + "\x00" + P1[21:],
    P1[:20] + " " + P1[21:],  # a2b_base64 skips white space
    P1[:20] + "-" + P1[21:],  # base64url
    P1[:20] + "=" + P1[21:],
    P1[:-2] + "A\u003d",  # "=" escaped in JSON: the same text as P1[:-2] + "A="
    "SHA256/" + P1[7:],
    "sha256//" + P1[7:-1],
    " " + P1[:-1],
    P1 + "=",
]

_CANONICAL_PINS = st.one_of(
    st.sampled_from([*TRICKY, P1, P2, P3]),
    st.binary(min_size=32, max_size=32).map(spki),
    st.tuples(
        st.text(alphabet=_BASE64_ALPHABET, min_size=42, max_size=42),
        st.sampled_from(_CANONICAL_LAST),
    ).map(lambda parts: body_pin(parts[0] + parts[1])),
)


class Text(str):
    """A str subclass: never read directly (the general reading reads it)."""

    __slots__ = ()


_ITEMS = st.one_of(
    _CANONICAL_PINS,
    _CANONICAL_PINS,
    _CANONICAL_PINS,
    st.sampled_from(LOOKALIKES),
    _CANONICAL_PINS.map(Text),
    st.tuples(
        st.text(alphabet=_BASE64_ALPHABET, min_size=42, max_size=42),
        st.sampled_from(sorted(set(_BASE64_ALPHABET) - set(_CANONICAL_LAST))),
    ).map(lambda parts: body_pin(parts[0] + parts[1])),
)


@st.composite
def _lists(draw: st.DrawFn, pool: list[str]) -> list[str]:
    """A list of pins: from a small pool (so lists repeat and share pins) or anything."""
    if draw(st.booleans()):
        size = draw(st.integers(1, min(4, len(pool))))
        items: list[str] = draw(st.permutations(pool))[:size]
        if draw(st.integers(0, 9)) == 0:
            items.append(items[0])  # a repeat: for the general reading to merge
    else:
        items = draw(st.lists(_ITEMS, min_size=1, max_size=4))
    if len(items) >= 2 and draw(st.integers(0, 9)) == 0:
        # One character, or a line break, moved across the boundary of two items.
        i = draw(st.integers(0, len(items) - 2))
        if draw(st.booleans()):
            items[i : i + 2] = [items[i][:-1], items[i][-1] + items[i + 1]]
        else:
            items[i : i + 2] = [items[i] + "\n" + items[i + 1][:10], items[i + 1][10:]]
    return items


_HOSTS = ["a.example", "b.example", "c.example.net", "d.example.org"]
_PREFIXES = ["", "*.", "**."]
_PORTS = ["", "", "", ":8443", ":443"]


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    pool = draw(st.lists(_CANONICAL_PINS, min_size=1, max_size=6, unique=True))
    config: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 8))):
        key = draw(st.sampled_from(_PREFIXES)) + draw(st.sampled_from(_HOSTS))
        key += draw(st.sampled_from(_PORTS))
        pins = draw(_lists(pool))
        shape = draw(st.integers(0, 5))
        value: Any = pins
        if shape == 1:
            value = {"pins": pins, "include_subdomains": draw(st.booleans())}
        elif shape == 2:
            value = {"pins": pins, "expires": draw(st.sampled_from(["2099-12-31", "soon"]))}
        elif shape == 3:
            value = {"pins": pins, "include_subdomains": True, "expires": "2099-12-31"}
        config[key] = value
    return config


@contextmanager
def _general_reading() -> Iterator[None]:
    """The direct reading disabled: every entry takes the step-by-step reading."""
    original = _pinset._read_plain
    _pinset._read_plain = lambda *args: None
    try:
        yield
    finally:
        _pinset._read_plain = original


def _load(config: dict[str, Any], direct: bool) -> PinSet | str:
    try:
        if direct:
            return PinSet(config)
        with _general_reading():
            return PinSet(config)
    except PinConfigError as error:
        return f"PinConfigError: {error}"


_QUERIES = [
    (prefix + host, port)
    for host in _HOSTS
    for prefix in ("", "x.", "y.x.")
    for port in (443, 8443, 80)
]


def _expected_pins(value: Any) -> tuple[Pin, ...]:
    """What the texts of an entry are, parsed one by one (repeats merged, in order)."""
    texts = value["pins"] if isinstance(value, dict) else value
    return tuple(dict.fromkeys(Pin.parse(text) for text in texts))


def _assert_same_sets(config: dict[str, Any]) -> None:
    direct = _load(config, direct=True)
    general = _load(config, direct=False)
    if isinstance(direct, str) or isinstance(general, str):
        assert direct == general
        return
    # Looked up before anything is listed (lookups unpack first), then listed.
    answers = [direct.match(host, port) for host, port in _QUERIES]
    assert answers == [general.match(host, port) for host, port in _QUERIES]
    listed, expected = list(direct), list(general)
    assert listed == expected  # the same entries, in the same order
    for entry, value in zip(listed, config.values(), strict=True):
        assert entry.pins == _expected_pins(value), entry.pattern
        for pin in entry.pins:
            assert type(pin.digest) is bytes and len(pin.digest) == 32
    assert direct == general and hash(direct) == hash(general)
    assert direct.to_dict() == general.to_dict()
    # Each entry is one object, however it is reached.
    for (host, port), answer in zip(_QUERIES, answers, strict=True):
        assert answer is direct.match(host, port)
        assert answer is None or any(entry is answer for entry in listed)
    # Pin objects are shared only between equal pins.
    by_id: dict[int, Pin] = {}
    for entry in listed:
        for pin in entry.pins:
            assert by_id.setdefault(id(pin), pin) == pin


@settings(max_examples=1500, deadline=None)
@given(config=_configs())
def test_a_set_read_directly_is_the_set_read_step_by_step(config: dict[str, Any]) -> None:
    _assert_same_sets(config)


@settings(max_examples=500, deadline=None)
@given(config=_configs())
def test_a_pin_file_read_directly_is_the_file_read_step_by_step(
    config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    # str subclasses cannot be in a file; JSON may escape every character.
    plain = json.loads(json.dumps(config))
    path = tmp_path_factory.mktemp("pins") / "pins.json"
    for text in (json.dumps(plain), json.dumps(plain, indent=1, ensure_ascii=True)):
        # "=" and "/" escaped: the same strings once read.
        text = text.replace('=",', '\\u003d",').replace("sha256/", "sha256\\/")
        path.write_text(text, encoding="utf-8")
        try:
            direct: PinSet | str = PinSet.from_json(path)
        except PinConfigError as error:
            direct = str(error)
        with _general_reading():
            try:
                general: PinSet | str = PinSet.from_json(path)
            except PinConfigError as error:
                general = str(error)
        if isinstance(direct, str) or isinstance(general, str):
            assert direct == general
            continue
        reference = _load(plain, direct=False)
        assert isinstance(reference, PinSet)
        assert list(direct) == list(general) == list(reference)
        assert direct.to_dict() == general.to_dict()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 64, 1000])
def test_a_long_list_of_tricky_pins_is_decoded_to_each_pin(size: int) -> None:
    # Every pin of a list of `size` is its own digest (none shifted by the
    # zero byte between digests, none cut), for the lazily unpacked entry and
    # for those made at once (a port, an expiry).
    texts = [*TRICKY, *(spki((256 + i).to_bytes(2, "big") * 16) for i in range(size))][:size]
    config = {
        "a.example": texts,
        "**.b.example": {"pins": texts, "include_subdomains": True},
        "c.example:8443": texts,
        "d.example": {"pins": texts, "expires": "2099-12-31"},
    }
    direct = PinSet(config)
    expected = tuple(Pin.parse(text) for text in texts)
    for entry in direct:
        assert entry.pins == expected
        assert [str(pin) for pin in entry.pins] == texts
    _assert_same_sets(config)


def test_one_decoding_of_a_list_is_the_decoding_of_each_pin() -> None:
    # The identity the change rests on, over every canonical last character
    # and the characters around a boundary ("A" and "/" before it, "sha256/"
    # after it): two and three pins decode to their digests, 33 bytes apart.
    bodies = ["A" * 42, "/" * 42, "sha256/" * 6, "+" * 42, "w" * 42]
    pins = [body_pin(body + last) for body in bodies for last in _CANONICAL_LAST]
    for first, second in itertools.combinations(pins, 2):
        third = next(pin for pin in pins if pin not in (first, second))
        for texts in ([first, second], [second, first, third]):
            packed = _pinset._packed_pins(texts, _pinset._Shared())
            assert packed is not None
            digests = [binascii.a2b_base64(text[7:]) for text in texts]
            assert packed == b"\x00".join(digests)


@pytest.mark.parametrize("item", LOOKALIKES)
def test_a_lookalike_is_read_as_the_general_reading_reads_it(item: str) -> None:
    for texts in ([item], [P2, item], [item, P2], [P2, item, P3], [P1, item]):
        config = {"a.example": texts, "b.example": [P2, P3], "c.example": list(texts)}
        _assert_same_sets(config)


def test_items_that_join_to_a_list_read_before_are_read_as_themselves() -> None:
    # The packed lists are found by their joined text before the lines are
    # checked: items that join to the same text must be the same pins.
    first = [P1, TRICKY[0], TRICKY[1]]
    lines = "\n".join(first)
    for later in (
        [lines],
        [first[0] + "\n" + first[1], first[2]],
        [first[0], first[1] + "\n" + first[2]],
        [lines[:50], lines[50:102], lines[102:]],
        [lines[:52], lines[52:103], lines[104:]],
        [Text(first[0]), first[1], first[2]],
    ):
        _assert_same_sets({"a.example": first, "b.example": later, "c.example": first})


def test_a_list_that_repeats_a_pin_is_merged_as_the_general_reading_merges_it() -> None:
    for texts in (
        [P1, P1],
        [P1, P2, P1],
        [P1, P2, P3, P2],
        [P1, P1[:-2] + "F="],  # two spellings of one digest
        [P1[:-2] + "F=", P1, P2],
    ):
        _assert_same_sets({"a.example": texts, "b.example:8443": texts, "c.example": [P1, P2]})


def test_pins_repeated_across_lists_are_one_object_once_unpacked() -> None:
    # Sharing by text: a pin in several distinct lists is one Pin object in
    # every lazily unpacked entry that has it, and no entry gets another's.
    leaves = [spki(bytes([n]) * 32) for n in range(10, 20)]
    ca1, ca2 = TRICKY[0], TRICKY[6]
    config = {f"h{n}.example": [leaf, ca1, ca2] for n, leaf in enumerate(leaves)}
    config["only.example"] = [ca2]
    config["pair.example"] = [ca2, ca1]
    pins = PinSet(config)
    entries = [pins.match(host) for host in config]
    first = entries[0]
    assert first is not None
    for entry, (host, texts) in zip(entries, config.items(), strict=True):
        assert entry is not None and entry.pattern == host
        assert [str(pin) for pin in entry.pins] == texts
        for pin in entry.pins:
            if str(pin) == ca1:
                assert pin is first.pins[1]
            elif str(pin) == ca2:
                assert pin is first.pins[2]


def test_threads_unpacking_one_fresh_set_get_the_same_objects() -> None:
    # Several threads look up and list a fresh set at once: each entry is one
    # object, with its own pins, and a pin shared by lists is one object.
    leaves = [spki(bytes([n, 7]) * 16) for n in range(40)]
    config: dict[str, Any] = {
        f"h{n}.example": [leaf, TRICKY[n % 3], TRICKY[3 + n % 2]] for n, leaf in enumerate(leaves)
    }
    config["h0.example:8443"] = [TRICKY[0], leaves[1]]
    hosts = [f"h{n}.example" for n in range(40)]
    with switching_often():
        for _ in range(30):
            pins = PinSet(config)
            got: list[list[HostPins | None]] = [[] for _ in range(4)]

            def work(k: int, pins: PinSet = pins, got: list[list[HostPins | None]] = got) -> None:
                if k % 2:
                    got[k] = [*list(pins)[:40]]
                else:
                    got[k] = [pins.match(host) for host in reversed(hosts)][::-1]

            at_once(work, 4)
            listed = list(pins)[:40]
            shared: dict[str, Pin] = {}
            for n, entry in enumerate(listed):
                assert [str(pin) for pin in entry.pins] == config[hosts[n]]
                for row in got:
                    assert row[n] is entry
                for pin in entry.pins[1:]:
                    assert shared.setdefault(str(pin), pin) is pin
