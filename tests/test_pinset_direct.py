"""The direct readings of large pin files agree with the general ones.

A pin file of 100,000 entries is read without the general, step-by-step
reading where it can be: keys and pins in canonical spelling are read
directly and their pins kept packed (``_read_plain``), and a JSON text is
read without handing every object to Python when its keys can be proved
not to repeat (``_loads_unique``). Each shortcut must give what the general
reading gives, or step aside; these properties compare them on arbitrary
input, and the twins below show the shortcuts are taken at all.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import Pin, PinConfigError, PinSet, _pinset


def spki(n: int) -> str:
    return "sha256/" + base64.b64encode(bytes([n]) * 32).decode("ascii")


def wide(n: int) -> str:
    """A pin of its own for each ``n`` below 65,536."""
    return "sha256/" + base64.b64encode(n.to_bytes(2, "big") * 16).decode("ascii")


P1, P2, P3 = spki(1), spki(2), spki(3)
# The same digest as P1 with non-zero padding bits: read as P1 by both readings.
P1_ODD_BITS = P1[:-2] + "F="
assert P1_ODD_BITS != P1

_PIN_ITEMS = st.sampled_from(
    [
        P1,
        P2,
        P3,
        P1_ODD_BITS,
        P1[:-1],  # no padding
        "sha256//" + P1[7:],  # curl's spelling
        P1.upper(),
        " " + P2,
        "sha384/" + base64.b64encode(bytes(48)).decode(),
        ":".join(["AB"] * 32),
        # Line breaks: the direct reading checks a list as its items joined
        # by line breaks, so items that hold one must never pass for pins.
        P1 + "\n" + P2,
        P1 + "\n",
        "\n" + P2,
        P1[:20] + "\n" + P1[21:],
        "",
        1,
        None,
        [P1],
        {"pins": [P1]},
    ]
)
_PIN_LISTS = st.one_of(
    st.lists(st.sampled_from([P1, P2, P3, P1_ODD_BITS]), min_size=1, max_size=3),
    st.lists(_PIN_ITEMS, max_size=3),
)
_OPTIONS = st.fixed_dictionaries(
    {"pins": st.one_of(_PIN_LISTS, st.sampled_from([P1, None, (P1,)]))},
    optional={
        "include_subdomains": st.sampled_from([True, False, None, 1, "true"]),
        "expires": st.sampled_from(["2099-12-31", "2099-12-31T10:00:00Z", "1999-01-01", "soon", 5]),
        "comment": st.sampled_from(["x", 1]),
        "deny": st.just([P3]),
        "report_only": st.just(True),
    },
)
# The options the direct reading takes, without the rest.
_PLAIN_OPTIONS = st.fixed_dictionaries(
    {"pins": _PIN_LISTS},
    optional={
        "include_subdomains": st.sampled_from([True, False, None]),
        "expires": st.sampled_from(["2099-12-31", "soon"]),
    },
)
_SAMPLE_KEYS = [
    "a.example",
    "*.a.example",
    "**.a.example",
    "a.example:8443",
    "**.a.example:8443",
    "*.a.example:08443",
    "a.example:0",
    "a.example:65536",
    "A.example",
    "a.example.",
    "-a.example",
    "a.1b",
    "1.2.3.4",
    "a..example",
]
_KEYS = st.one_of(
    st.sampled_from(_SAMPLE_KEYS),
    st.from_regex(
        r"(\*\*?\.)?([a-z0-9_-]{1,4}\.){0,3}[a-z0-9_-]{1,4}(:[0-9]{1,6})?", fullmatch=True
    ),
    st.text(alphabet="*.abxzAZ019_-:[]/ \n\uff0e\u00fc", max_size=24),
    st.builds(lambda n: "a" * n + ".example", st.integers(58, 70)),
    st.builds(lambda n: "*." + ".".join(["a" * 60] * 5)[:n], st.integers(248, 258)),
    st.sampled_from([1, None, "$schema", "[::1]:443", "127.0.0.1"]),
)


# The host pattern of the direct reading, as it was written before it took
# possessive quantifiers where Python has them (3.11 and later).
_CLASSIC_PATTERN = re.compile(rf"(\*\*?\.)?((?:{_pinset._LABEL}\.)*(?![0-9]){_pinset._LABEL})")
_NEAR_63 = st.integers(60, 66).map(lambda n: "a" * (n - 1) + "b")


@settings(max_examples=3000, deadline=None)
@given(
    text=st.one_of(
        st.text(alphabet="ab19_-.*:A", max_size=30),
        st.lists(st.one_of(_NEAR_63, st.sampled_from(["a", "-", "1", "a-", "-a", "1a", ""])))
        .map(".".join)
        .flatmap(lambda name: st.sampled_from([name, "*." + name, "**." + name, name + "."])),
    )
)
def test_the_host_pattern_matches_what_it_matched_without_possessive_quantifiers(
    text: str,
) -> None:
    classic = _CLASSIC_PATTERN.fullmatch(text)
    taken = _pinset._CANONICAL_PATTERN.fullmatch(text)
    assert (classic and classic.groups()) == (taken and taken.groups())


def _general(key: object, value: object) -> object:
    try:
        return _pinset._parse_entry(key, value, _pinset._Shared())
    except PinConfigError as error:
        return str(error)


@settings(max_examples=3000, deadline=None)
@given(key=_KEYS, value=st.one_of(_PIN_LISTS, _PLAIN_OPTIONS, _OPTIONS, st.integers(), st.none()))
def test_the_direct_entry_reading_agrees_with_the_general_reading(key: Any, value: Any) -> None:
    _agrees(key, value)


def _agrees(key: Any, value: Any) -> None:
    try:
        plain = _pinset._read_plain(key, value, _pinset._Shared())
    except PinConfigError as error:
        # Only ever the general reading's own error (an unreadable "expires").
        assert _general(key, value) == str(error)
        return
    if plain is None:
        return  # left to the general reading
    entry, table_key = plain
    if isinstance(entry, bytes):  # packed: what it unpacks to
        entry = _pinset._Unpacker((), ()).entry(*table_key, entry)
    assert (entry, table_key) == _general(key, value), (key, value)


def test_the_direct_entry_reading_agrees_on_every_combination_of_its_options() -> None:
    # The grid the property above samples thinly: every key of _SAMPLE_KEYS
    # with every combination of the options the direct reading takes.
    for key in _SAMPLE_KEYS:
        for pins in (
            [P1, P2],
            [P1_ODD_BITS],
            [P1, P1_ODD_BITS],
            [P1[:-1]],
            [],
            [P1 + "\n" + P2],  # two pins' lines in one item
            [P1 + "\n" + P2[:20], P2[20:]],  # a line break moved into an item
            [P1, P2[:-1], "=" + P3],  # a character moved between items
            [P1, P2, 3],
        ):
            _agrees(key, pins)
            for include in (None, True, False, "absent"):
                for expires in ("2099-12-31", "soon", "absent"):
                    value: dict[str, Any] = {"pins": pins}
                    if include != "absent":
                        value["include_subdomains"] = include
                    if expires != "absent":
                        value["expires"] = expires
                    _agrees(key, value)


def test_canonical_entries_are_read_directly_and_packed() -> None:
    # The twin of the property above: the direct reading is taken, and packs
    # what it can (an entry with an expiry is made at once).
    shared = _pinset._Shared()
    for key, value in [
        ("api.example.com", [P1, P2]),
        ("*.example.net", {"pins": [P1]}),
        ("example.org", {"pins": [P2, P3], "include_subdomains": True}),
        ("api.example.com:8443", [P1]),
        ("example.org:8443", {"pins": [P1], "include_subdomains": True}),
    ]:
        plain = _pinset._read_plain(key, value, shared)
        assert plain is not None and isinstance(plain[0], bytes), key
    for key, value in [
        ("api.example.com", {"pins": [P1], "expires": "2099-12-31"}),
        ("api.example.com:8443", {"pins": [P1], "expires": "2099-12-31"}),
    ]:
        plain = _pinset._read_plain(key, value, shared)
        assert plain is not None and not isinstance(plain[0], bytes), key


def test_a_packed_set_behaves_as_the_general_reading_built_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks.pinset_scale import make_config, mix_queries

    config = make_config(400)
    config.update({"edge2.example.net": [P1], "zone3.example.org:8443": [P2]})
    packed = PinSet(config)
    queries = [*mix_queries(400, 600), ("edge2.example.net", 443), ("zone3.example.org", 8443)]
    answers = [packed.match(host, port) for host, port in queries]  # before anything unpacks
    monkeypatch.setattr(_pinset, "_read_plain", lambda *args: None)
    general = PinSet(config)
    assert answers == [general.match(host, port) for host, port in queries]
    assert sum(answer is not None for answer in answers) > 300
    assert list(packed) == list(general)  # the same entries, in the same order
    assert packed == general and hash(packed) == hash(general)
    assert packed.to_dict() == general.to_dict()
    # Each entry is one object, however it is reached.
    for host in ("api4.svc4.example.com", "x.edge2.example.net", "a.b.zone3.example.org"):
        entry = packed.match(host)
        assert entry is not None and entry is packed.match(host.upper() + ".")
        assert any(listed is entry for listed in packed)


def test_packed_entries_for_ports_are_found_by_port_and_made_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Entries for a port are kept packed too: alone on their host (_AtPort),
    # beside an entry for any port and others for ports (_ByPort), with one
    # list shared by two ports. Each is found at its port only (another port
    # gets the entry for any port, or nothing), and is one object however it
    # is reached, in whatever order lookups and listing unpack them.
    config: dict[str, Any] = {
        "solo.example:8443": [P1, P2],
        "many.example": [P1],
        "many.example:8443": [P1, P2],
        "many.example:9443": [P1, P2],
        "**.tree.example:8443": [P3],
        "sub.example:8443": {"pins": [P2], "include_subdomains": True},
    }
    queries = [
        ("solo.example", 8443),
        ("solo.example", 443),
        ("many.example", 8443),
        ("many.example", 9443),
        ("many.example", 443),
        ("many.example", None),
        ("a.b.tree.example", 8443),
        ("a.b.tree.example", 443),
        ("x.sub.example", 8443),
        ("sub.example", 8443),
        ("sub.example", 80),
    ]
    for listed_first in (True, False):
        packed = PinSet(config)
        slots = [packed._exact["solo.example"], packed._exact["many.example"]]
        assert isinstance(slots[0], _pinset._AtPort) and isinstance(slots[0].entry, bytes)
        assert isinstance(slots[1], _pinset._ByPort) and isinstance(slots[1][8443], bytes)
        listed = list(packed) if listed_first else []
        answers = [packed.match(host, port) for host, port in queries]
        listed = listed or list(packed)
        patterns = [None if answer is None else answer.pattern for answer in answers]
        assert patterns == [
            "solo.example:8443",
            None,
            "many.example:8443",
            "many.example:9443",
            "many.example",
            "many.example",
            "**.tree.example:8443",
            None,
            "**.sub.example:8443",
            "**.sub.example:8443",
            None,
        ]
        for answer in answers:
            assert answer is None or any(entry is answer for entry in listed)
        assert [packed.match(host, port) for host, port in queries] == answers
        assert all(
            again is first
            for again, first in zip(
                [packed.match(host, port) for host, port in queries], answers, strict=True
            )
        )
        assert [entry.pattern for entry in listed] == [
            "solo.example:8443",
            "many.example",
            "many.example:8443",
            "many.example:9443",
            "**.tree.example:8443",
            "**.sub.example:8443",
        ]
    monkeypatch.setattr(_pinset, "_read_plain", lambda *args: None)
    general = PinSet(config)
    assert list(general) == list(packed) and general.to_dict() == packed.to_dict()
    assert [general.match(host, port) for host, port in queries] == answers


def test_a_packed_entry_for_a_port_is_named_by_its_own_port_whatever_the_lookup_passed() -> None:
    # A port of an int subclass (an int enum, True for 1) finds its entry by
    # its value; the entry it unpacks names the port as the configuration
    # wrote it (it was "api.example.com:Port.ALT" for good, so to_dict(),
    # equality and pickling broke). A port that is no integer is an error.
    import enum
    import pickle

    class Port(int, enum.Enum):
        ALT = 8443

    config: dict[str, Any] = {
        "api.example.com:8443": [P1],
        "api.example.com": [P2],
        "one.example.com:1": [P1],
        "alt.example.com:8443": [P3],
    }
    pins = PinSet(config)
    found = [pins.match("api.example.com", Port.ALT), pins.match("one.example.com", True)]
    assert [entry and entry.pattern for entry in found] == [
        "api.example.com:8443",
        "one.example.com:1",
    ]
    assert found[0] is pins.match("api.example.com", 8443)
    for port in (8443.0, "8443", b"8443"):
        with pytest.raises(TypeError, match="port must be an int or None"):
            pins.match("alt.example.com", port)  # type: ignore[arg-type]
    # Only where it chooses between a host's entries, and whatever came
    # before: a host with one entry for any port answers any port, packed or
    # not, as the general reading does.
    fresh = PinSet({"any.example.com": [P1]})
    for _ in range(2):  # packed, then unpacked
        assert fresh.match("any.example.com", 8443.0) is fresh.match("any.example.com")  # type: ignore[arg-type]
    assert pins.to_dict() == PinSet(config).to_dict()
    assert list(pins.to_dict()) == list(config)
    assert pins == PinSet(config) and pickle.loads(pickle.dumps(pins)) == pins


def test_a_lookup_s_own_objects_never_change_what_later_lookups_find(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a lookup passes may unpack an entry, kept for every later caller,
    # and fills a cache shared by all: where it reaches either, a port or
    # host of the caller's own class, with its own __eq__, __hash__, lower()
    # or rstrip(), is read by its value, as int and str read it. (An int
    # subclass equal to anything stored another port's pins as the host's
    # entry for any port; a str subclass wrote its own pattern into the set,
    # or poisoned the cache.) What a lying object's own lookup returns is
    # its caller's alone; every later lookup is as the general reading's.
    class AnyPort(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    class Sneaky(str):
        def lower(self) -> str:
            return Sneaky("EVIL.example.com")

        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash("x.example.net")

    class Hostile(str):
        def rstrip(self, chars: str | None = None) -> str:
            return "evil.example"

    class Benign(str):
        pass

    config: dict[str, Any] = {
        "api.example.com": [P1],
        "api.example.com:80": [P2],
        "api.example.com:8443": [P3],
        "*.example.net:8443": [P1],
        "xn--bcher-kva.example": [P2],
    }
    queries: list[tuple[str, int | None]] = [
        ("api.example.com", 443),
        ("api.example.com", 80),
        ("api.example.com", 8443),
        ("x.example.net", 8443),
        ("bücher.example", 443),
        ("xn--bcher-kva.example", None),
    ]
    monkeypatch.setattr(_pinset, "_read_plain", lambda *args: None)
    general = PinSet(config)
    expected = [general.match(host, port) for host, port in queries]
    monkeypatch.undo()
    pins = PinSet(config)
    assert pins.match("api.example.com", AnyPort(8443)) == expected[2]
    pins.match(Sneaky("x.example.net"), 8443)
    pins.match(Sneaky("api.example.com"), 80)
    assert pins.match(Hostile("bücher.example")) == expected[4]
    assert pins.match(Benign("bücher.example")) == expected[4] is not None
    assert _pinset.normalize_host(Benign("bücher.example")) == "xn--bcher-kva.example"
    assert [pins.match(host, port) for host, port in queries] == expected
    assert pins.to_dict() == general.to_dict() and pins == general
    assert all(type(entry.pattern) is str for entry in pins)
    for host in (b"api.example.com", None, 5):
        with pytest.raises((TypeError, AttributeError)):
            pins.match(host)  # type: ignore[arg-type]


def _canonical(digest: bytes) -> str:
    return "sha256/" + base64.b64encode(digest).decode("ascii")


# A digest whose base64 holds "sha256/" itself: the direct reading decodes a
# list in one call after replacing each "=\n" + "sha256/" between two pins,
# which must never reach into a pin.
_SHA256_INSIDE = base64.b64decode("sha256/" + "A" * 35 + "Q=")
assert "sha256/" in _canonical(_SHA256_INSIDE)[7:]


@settings(max_examples=500, deadline=None)
@given(
    digests=st.lists(
        st.one_of(st.binary(min_size=32, max_size=32), st.just(_SHA256_INSIDE)),
        min_size=1,
        max_size=6,
        unique=True,
    ),
    include=st.sampled_from([None, True]),
)
def test_a_list_decoded_in_one_call_holds_each_pin_s_own_digest(
    digests: list[bytes], include: bool | None
) -> None:
    texts = [_canonical(digest) for digest in digests]
    value: Any = texts if include is None else {"pins": texts, "include_subdomains": include}
    shared = _pinset._Shared()
    plain = _pinset._read_plain("api.example.com", value, shared)
    assert plain is not None and isinstance(plain[0], bytes)  # taken, and packed
    entry = _pinset._Unpacker((), ()).entry(*plain[1], plain[0])
    assert [pin.digest for pin in entry.pins] == digests
    assert entry.pins == tuple(Pin.parse(text) for text in texts)
    # The same list again: found by its text, the same packed digests.
    again = _pinset._read_plain("api.example.net", list(texts), shared)
    assert again is not None and again[0] is plain[0]


def test_entries_made_at_load_share_pins_with_every_other_entry() -> None:
    # An entry for a port or with an expiry is made at load, the others when
    # first reached; either way, once every entry is made, one digest is one
    # Pin object and one list of pins one tuple, as in the general reading.
    leaf1, leaf2, ca = spki(21), spki(22), spki(23)
    config: dict[str, Any] = {
        "a.example:8443": [leaf1, ca],
        "b.example:8443": [leaf2, ca],
        "c.example": [leaf1, ca],  # a's list, unpacked later
        "d.example": {"pins": [ca, leaf2], "expires": "2099-12-31"},
        "e.example": [ca],
        "f.example": [leaf2, ca],  # b's list
    }
    entries = list(PinSet(config))
    by_digest: dict[bytes, set[int]] = {}
    for entry in entries:
        for pin in entry.pins:
            by_digest.setdefault(pin.digest, set()).add(id(pin))
    assert len(by_digest) == 3 and all(len(ids) == 1 for ids in by_digest.values())
    assert entries[0].pins is entries[2].pins and entries[1].pins is entries[5].pins
    assert [str(pin) for pin in entries[3].pins] == [ca, leaf2]


def test_a_load_forgets_its_lists_in_windows_and_still_shares_what_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A load remembers a window of _REMEMBERED new lists at a time (here 4).
    # A list seen again after its window closed is read again; it still shares
    # within its new window, and its entries are equal to the first ones.
    monkeypatch.setattr(_pinset, "_REMEMBERED", 4)
    ca1, ca2, shared_ca = spki(30), spki(31), spki(32)
    config: dict[str, Any] = {"first.example": [ca1, ca2]}
    for i in range(10):  # closes windows: ten lists of their own
        config[f"own{i}.example"] = [spki(100 + i), shared_ca]
    config["again.example"] = [ca1, ca2]
    config["once-more.example"] = [ca1, ca2]
    entries = {entry.pattern: entry for entry in PinSet(config)}
    first, again, once_more = (
        entries[name].pins for name in ("first.example", "again.example", "once-more.example")
    )
    assert again is once_more  # within one window: one list, one tuple
    assert again == first  # equal, read again after its window closed
    # A pin in several lists of one window is one Pin: own0..own3 share
    # shared_ca, and so do own4..own7.
    backups = [entries[f"own{i}.example"].pins[1] for i in range(10)]
    assert backups[0] is backups[1] is backups[2] is backups[3]
    assert backups[4] is backups[5] is backups[6] is backups[7]
    assert len({str(pin) for pin in backups}) == 1


def test_a_load_of_distinct_lists_keeps_little_beyond_what_it_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every list's text was kept to the end of the load, to find repeats: at
    # the peak, more than twice the memory of the set being made. Now only a
    # window of lists is remembered at a time (here 64 of 4,000).
    import gc
    import tracemalloc

    monkeypatch.setattr(_pinset, "_REMEMBERED", 64)
    config = {f"h{i}.example": [wide(2 * i), wide(2 * i + 1)] for i in range(4000)}
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        pins = PinSet(config)
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(pins) == 4000
    # Unbounded, the peak was 1.5 MB above what was kept (534 kB), on 3.11.
    assert peak - retained < (retained - start) / 4


# -- JSON without the pairs hook ---------------------------------------------------------

_WHITE = st.sampled_from(["", " ", "\n", "\t ", "\r\n  "])
# Strings without quotes or backslashes (the text the proof is about), and
# with them (escaped: such texts always take the exact reading).
_STRINGS = st.one_of(
    st.text(alphabet="a: \t{}[],$", max_size=5), st.text(alphabet='a:"\\ ', max_size=4)
).map(json.dumps)
_JSON_KEYS = st.one_of(st.sampled_from(["a", "b", ":", " :", "$schema"]), st.text(max_size=2)).map(
    json.dumps
)


def _objects(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(st.tuples(_JSON_KEYS, _WHITE, _WHITE, children), max_size=4)
    return pairs.map(lambda items: "{" + ",".join(f"{k}{a}:{b}{v}" for k, a, b, v in items) + "}")


_VALUES = st.recursive(
    st.one_of(_STRINGS, st.sampled_from(["1", "true", "null", "[]", "{}"])),
    lambda children: st.one_of(
        _objects(children), st.lists(children, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]")
    ),
    max_leaves=12,
)


def _exact(text: str) -> object:
    try:
        return json.loads(
            text,
            object_pairs_hook=_pinset._no_duplicate_keys,
            parse_int=_pinset._parse_int,
            parse_constant=_pinset._no_constant,
        )
    except (ValueError, PinConfigError) as error:
        return error


@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(_objects(_VALUES), _VALUES))
def test_json_is_read_without_the_hook_only_when_no_key_repeats(text: str) -> None:
    read = _pinset._loads_unique(text)
    if read is not _pinset._UNPROVEN:
        assert _exact(text) == read


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [], "a": []}',
        '{"a" : [], "a": []}',  # white space before ":" is counted too
        '{"a": ":", "a": 1}',  # a string that starts with ":" only adds to the count
        '{"a": {"b": 1, "b": 2}}',
        '{"x": [{"b": 1, "b": 2}]}',  # deeper than the levels counted
    ],
)
def test_a_repeated_key_is_never_read_past(text: str, tmp_path: Path) -> None:
    assert _pinset._loads_unique(text) is _pinset._UNPROVEN
    path = tmp_path / "pins.json"
    path.write_text(text)
    with pytest.raises(PinConfigError, match="appears twice in one object"):
        PinSet.from_json(path)


def test_a_large_file_is_read_without_the_hook() -> None:
    # The twin: the usual file is proved, so the shortcut is taken at all.
    from benchmarks.pinset_scale import make_config

    for text in (json.dumps(make_config(300), indent=1), json.dumps(make_config(300))):
        assert _pinset._loads_unique(text) == json.loads(text)
