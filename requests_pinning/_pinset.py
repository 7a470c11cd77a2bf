"""PinSet and HostPins: host patterns, their normalisation, and loading dicts and JSON.

Matching never scans the entries. Every pattern is normalised once, at load,
into a key of one of three tables (exact hosts, ``*.`` wildcards, ``**.``
subtrees); a lookup normalises the host once and probes the tables with the
host and its label suffixes, most specific first. Its cost depends on the
number of labels in the host, not on the size of the pin set. The tables are
keyed by the host alone, so that a probe is one dictionary look-up: the rare
host that has an entry for a particular port maps to that pair, or to a small
dict by port.

Large pin files are read close to the speed of ``json.loads`` and kept small:

- Entries written as large files write them, with keys and pins in canonical
  spelling (``api.example.com``, ``*.example.com:8443``, ``sha256/<base64>``),
  are read directly (``_read_plain``); everything else takes the general
  reading, which gives the same result (property tests compare the two).
- Such an entry without an expiry is kept *packed*: its table holds only the
  pins' digests, end to end in one ``bytes``, and its :class:`HostPins` is
  made when a lookup or a listing first reaches it, then kept in its place.
  Everything was validated at load; unpacking cannot fail.
- Large files repeat the same few CA pins across many hosts: each distinct
  list of pins is read once and shared by the entries that spell it alike.
- A JSON file is read without handing every object to Python to catch a
  repeated key, when the keys can be proved not to repeat (``_loads_unique``).
"""

from __future__ import annotations

import binascii
import functools
import ipaddress
import json
import operator
import os
import re
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal, NamedTuple, NoReturn, TypeAlias, TypedDict, cast
from urllib.parse import urlsplit

import idna

from ._errors import PinConfigError, safe_repr
from ._pins import Pin

__all__ = [
    "HostOptions",
    "HostPins",
    "PinSet",
    "PinSource",
    "check_policy",
    "check_report_uri",
    "normalize_host",
    "openssl_address",
    "read_pin_file",
    "tls_ip_form",
]

_Kind = Literal["exact", "one", "tree"]
_PREFIX: dict[_Kind, str] = {"exact": "", "one": "*.", "tree": "**."}
# A label: 1 to 63 letters, digits, "-" or "_", with no "-" at either end.
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")  # one regex for the whole name: load time
# Possessive quantifiers (Python 3.11 and later) never give back what they
# took. Here that changes no match, only its time: a label is followed by "."
# or by the end of the name, never by a label character, so no shorter run of
# a label can be followed by either, and every "label." of a name comes before
# its last label. Without them, every match first tries each run of the last
# label as a "label." (a test compares the two on arbitrary text).
_TAKE_ALL = "+" if sys.version_info >= (3, 11) else ""
_WHOLE_LABEL = rf"(?!-)[a-z0-9_-]{{1,63}}{_TAKE_ALL}(?<!-)"
# A host pattern as pin files nearly always spell it: canonical already (lower
# case, no port, no trailing dot) and a name, not an IP literal (the last part
# of every IPv4 spelling the resolver takes starts with a digit).
_CANONICAL_PATTERN = re.compile(
    rf"(\*\*?\.)?((?:{_WHOLE_LABEL}\.)*{_TAKE_ALL}(?![0-9]){_WHOLE_LABEL})"
)
_KIND_OF_PREFIX: dict[str | None, _Kind] = {None: "exact", "*.": "one", "**.": "tree"}
_INET_ATON = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]+|[0-9]+)){0,3}")
_ENTRY_KEYS = (
    "pins",
    "deny",
    "include_subdomains",
    "expires",
    "report_only",
    "report_uri",
    "comment",
)
_KNOWN_KEYS = frozenset(_ENTRY_KEYS)
# A pin file may name its JSON Schema, so that editors can validate it. It can
# never be a host pattern ("$" is not allowed in host names).
_SCHEMA_KEY = "$schema"
_EXAMPLE = '{"api.example.com": ["sha256/..."]}'


class HostOptions(TypedDict, total=False):
    """The options of one pin-set entry, for type checkers: ``{"pins": [...], ...}``.

    A configuration maps each host pattern to a list of pins or to a
    ``HostOptions``; ``mypy --strict`` then catches a mistyped key or value
    before :class:`PinSet` would refuse it at run time.
    """

    pins: list[str] | tuple[str, ...]
    deny: list[str] | tuple[str, ...]
    include_subdomains: bool
    expires: str | date  # a datetime is a date; it must be aware
    report_only: bool
    report_uri: str
    comment: str


@dataclass(frozen=True, slots=True)
class HostPins:
    """The pinning policy for one host pattern of a :class:`PinSet`.

    Attributes:
        pattern: the entry's host pattern in canonical form (``api.example.com``,
            ``*.example.com:8443``, ``**.example.org``, ``[2001:db8::1]:443``).
        pins: the accepted pins; ``str(pin)`` is each one's canonical spelling.
            Empty for a deny-only entry.
        deny: pins that fail the connection whenever they match, even when an
            accepted pin matches too (to block a compromised intermediate).
        include_subdomains: whether the entry also covers every name below its host.
        expires: when the entry stops being enforced (an aware UTC datetime), or ``None``.
        report_only: failures are reported and logged but connections proceed.
        report_uri: where violation reports for this entry go, or ``None``.
    """

    pattern: str
    pins: tuple[Pin, ...]
    include_subdomains: bool = False
    expires: datetime | None = None
    report_only: bool = False
    deny: tuple[Pin, ...] = ()
    report_uri: str | None = None

    def is_expired(self, now: datetime | None = None) -> bool:
        """True once ``now`` (default: the current time) is past :attr:`expires`."""
        if self.expires is None:
            return False
        return (now or datetime.now(timezone.utc)) > self.expires

    def to_dict(self) -> dict[str, Any]:
        """The entry's value in the configuration format (without its key)."""
        value: dict[str, Any] = {}
        if self.pins:
            value["pins"] = [str(pin) for pin in self.pins]
        if self.deny:
            value["deny"] = [str(pin) for pin in self.deny]
        if self.report_uri is not None:
            value["report_uri"] = self.report_uri
        if self.expires is not None:
            value["expires"] = self.expires.isoformat()
        if self.report_only:
            value["report_only"] = True
        return value


# A packed entry: the SHA-256 SPKI digests of an entry read by _read_plain,
# each but the last followed by one zero byte (_STRIDE: what decoding the
# list's pins in one call gives, _packed_pins), without options other than
# its kind (which says include_subdomains) and port (which its slot says).
# Its HostPins is made when it is first matched.
_Packed: TypeAlias = bytes
_STRIDE = 33


class _AtPort(NamedTuple):
    """The only entry of one host and kind, and the one port it is for."""

    port: int
    entry: HostPins | _Packed


class _ByPort(dict[int | None, HostPins | _Packed]):
    """The entries of one host and kind that differ by port (``None``: any port)."""

    __slots__ = ()


# A table maps a host to its entry for any port (the common case, often
# packed), to its only entry when that one is for a port (a pair, not a dict:
# pin files with many ports stay small), or to its entries by port.
_Slot: TypeAlias = HostPins | _Packed | _AtPort | _ByPort
_Table: TypeAlias = dict[str, _Slot]


def _add(
    table: _Table, host: str, port: int | None, entry: HostPins | _Packed
) -> HostPins | _Packed | None:
    """Add ``entry``; if the table has one for that host and port already, return that one."""
    current = table.get(host)
    if current is None:
        table[host] = entry if port is None else _AtPort(port, entry)
        return None
    if isinstance(current, _AtPort):
        by_port = _ByPort({current.port: current.entry})
    elif isinstance(current, _ByPort):
        by_port = current
    else:
        by_port = _ByPort({None: current})
    if port in by_port:
        return by_port[port]
    by_port[port] = entry
    table[host] = by_port
    return None


def _in_slot(slot: _Slot, port: int | None) -> HostPins | _Packed | None:
    """The entry of ``slot`` for exactly ``port`` (``None``: for any port)."""
    if isinstance(slot, _AtPort):
        return slot.entry if slot.port == port else None
    if isinstance(slot, _ByPort):
        return slot.get(port)
    return slot if port is None else None


_KIND_CODES: tuple[_Kind, ...] = ("exact", "one", "tree")


class PinSet:
    """An immutable, validated set of pins per host pattern; safe to share between threads.

    Build one with :meth:`from_dict`, :meth:`from_json` or :meth:`load`
    (``PinSet(mapping)`` is the same as ``PinSet.from_dict(mapping)``). A
    configuration that cannot be understood raises :class:`PinConfigError`;
    nothing is ever loaded partially.
    """

    __slots__ = (
        "_exact",
        "_kinds",
        "_one",
        "_one_labels",
        "_order",
        "_tables",
        "_tree",
        "_tree_labels",
        "_unpacker",
    )

    # The entries in the order of the configuration: a HostPins, or where a
    # packed entry is, its host (for any port) or its host and port, in the
    # table named by the code at the same index of _kinds (an index into
    # _KIND_CODES).
    _order: tuple[HostPins | str | tuple[str, int], ...]
    _kinds: bytes
    _exact: _Table
    _one: _Table
    _tree: _Table
    _tables: dict[_Kind, _Table]
    # The fewest and the most labels of the keys of _one and of _tree
    # (_label_range).
    _one_labels: tuple[int, int]
    _tree_labels: tuple[int, int]
    _unpacker: _Unpacker

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise PinConfigError(
                f"a pin configuration is an object mapping host patterns to pins, "
                f"such as {_EXAMPLE}, not a {type(config).__name__}"
            )
        tables: dict[_Kind, _Table] = {"exact": {}, "one": {}, "tree": {}}
        codes = {kind: code for code, kind in enumerate(_KIND_CODES)}
        shared = _Shared()
        order: list[HostPins | str | tuple[str, int]] = []
        kinds = bytearray()
        for raw_key, value in config.items():
            if raw_key == _SCHEMA_KEY:
                if not isinstance(value, str):
                    raise PinConfigError(
                        f"'$schema' must be a string (a URL), not {_describe(value)}"
                    )
                continue
            entry, (kind, host, port) = _read_plain(raw_key, value, shared) or _parse_entry(
                raw_key, value, shared
            )
            table = tables[kind]
            if port is None and host not in table:  # the common case, without a call
                table[host] = entry
            elif _add(table, host, port, entry) is not None:
                _same_pattern(config, raw_key, (kind, host, port))
            if isinstance(entry, HostPins):
                order.append(entry)
            else:  # packed: found again by its host (and port) and kind
                order.append(host if port is None else (host, port))
            kinds.append(codes[kind])
        object.__setattr__(self, "_order", tuple(order))
        object.__setattr__(self, "_kinds", bytes(kinds))
        object.__setattr__(self, "_exact", tables["exact"])
        object.__setattr__(self, "_one", tables["one"])
        object.__setattr__(self, "_tree", tables["tree"])
        object.__setattr__(self, "_unpacker", shared.unpacker())
        object.__setattr__(self, "_tables", tables)
        object.__setattr__(self, "_one_labels", _label_range(tables["one"]))
        object.__setattr__(self, "_tree_labels", _label_range(tables["tree"]))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PinSet is immutable")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> PinSet:
        """Load a configuration given as a mapping of host patterns to pins."""
        return cls(mapping)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> PinSet:
        """Load a JSON pin file (UTF-8). Errors name the file, and line and column for syntax."""
        name = os.fspath(path)
        return cls._from_text(read_pin_file(name), name)

    @classmethod
    def _from_text(cls, text: str, name: str) -> PinSet:
        """Load the text of the JSON pin file ``name`` (read by :func:`read_pin_file`)."""
        try:
            data = _loads_unique(text)
            if data is _UNPROVEN:
                # The exact reading: every object's pairs pass through Python,
                # and a repeated key is an error, named.
                data = json.loads(
                    text,
                    object_pairs_hook=_no_duplicate_keys,
                    parse_int=_parse_int,
                    parse_constant=_no_constant,
                )
        except json.JSONDecodeError as exc:
            raise PinConfigError(
                f"pin file {name!r} is not valid JSON: {exc.msg} "
                f"at line {exc.lineno}, column {exc.colno}{_json_hint(text, exc.pos)}"
            ) from None
        except PinConfigError as exc:
            raise PinConfigError(f"pin file {name!r}: {exc}") from None
        except RecursionError:
            # A pin file is three levels deep (entries, options, lists of pins);
            # json's recursion limit is a parse error here, not a crash.
            raise PinConfigError(f"pin file {name!r}: nested too deeply") from None
        if data is None:
            raise PinConfigError(f"pin file {name!r}: null is not an object of entries")
        try:
            return cls(data)
        except PinConfigError as exc:
            raise PinConfigError(f"pin file {name!r}: {exc}") from None

    @classmethod
    def load(cls, source: PinSource) -> PinSet:
        """Load a mapping or a JSON file (``str`` or path-like path); a PinSet is returned as is."""
        given = cast(object, source)  # checked against what the type says, for users without mypy
        if isinstance(given, list | tuple | set | frozenset):
            raise PinConfigError(
                f"pins must map host patterns to pins, as in {_EXAMPLE}, not a "
                f"{type(given).__name__}: say which host the pins are for"
            )
        if not isinstance(given, PinSet | Mapping | str | os.PathLike):
            raise PinConfigError(
                f"pins must be a mapping such as {_EXAMPLE}, a path to a JSON file or a "
                f"PinSet, not a {type(given).__name__}"
            )
        if isinstance(source, PinSet):
            return source
        if isinstance(source, Mapping):
            return cls(source)
        if isinstance(source, str) and not os.path.exists(source) and _is_pin(source):
            # A pin where a file name was expected: no file has that name, so
            # say what was meant instead of "cannot read pin file".
            example = json.dumps({"api.example.com": [source.strip()]})
            raise PinConfigError(
                f"pins must map host patterns to pins, as in {example}: "
                f"{source!r} is a pin, not the path of a pin file"
            )
        return cls.from_json(source)

    def match(self, host: str, port: int | None = 443) -> HostPins | None:
        """Return the most specific entry for ``host`` and ``port``, or ``None``.

        Precedence: host and port, host, ``*.`` wildcards, then ``**.`` subtrees
        with the longest suffix first; at each level an entry with a port beats
        one without. ``host`` may be in any case, end in a dot, be an IDN, or
        be an IPv6 literal with or without brackets.
        """
        if port is None:
            port = 443
        name, is_ip = _lookup_form(host)
        # Each probe takes the common slot, one HostPins for any port, without
        # a call; _at answers the rest.
        found = self._exact.get(name)
        if found is not None:
            entry = found if type(found) is HostPins else self._at("exact", name, found, port)
            if entry is not None:
                return entry
        if is_ip:
            return None
        # Only names with as many labels as some key of a table are looked up
        # in it (the wildcards' and subtrees' tables are rarely deep).
        labels = name.count(".") + 1
        fewest, most = self._one_labels
        if fewest < labels <= most + 1:
            parent = name[name.find(".") + 1 :]
            found = self._one.get(parent)
            if found is not None:
                entry = found if type(found) is HostPins else self._at("one", parent, found, port)
                if entry is not None:
                    return entry
        # Subtrees, longest suffix first, from the longest that a key has.
        fewest, most = self._tree_labels
        if labels < fewest:
            return None
        suffix = name
        if labels > most:
            suffix = name.split(".", labels - most)[-1]
            labels = most
        tree = self._tree
        while True:
            found = tree.get(suffix)
            if found is not None:
                entry = found if type(found) is HostPins else self._at("tree", suffix, found, port)
                if entry is not None:
                    return entry
            if labels == fewest:
                return None
            suffix = suffix[suffix.find(".") + 1 :]
            labels -= 1

    def _at(self, kind: _Kind, host: str, found: _Slot, port: int) -> HostPins | None:
        """The entry of a table's slot for ``port``, unpacked if it is packed."""
        # What is found here may be unpacked and kept for every later
        # caller: it must be found by the host's text and the port's value,
        # as str and int read them, never by the methods of the caller's own
        # classes (_host_text, _port_number). The port is read only where it
        # chooses between a host's entries.
        if type(host) is not str:
            host = _host_text(host)
            slot = self._tables[kind].get(host)
            if slot is None or type(slot) is HostPins:
                return slot
            found = slot
        if type(port) is not int and isinstance(found, _AtPort | _ByPort):
            port = _port_number(port)
        # An entry for the port beats one for any port.
        at: int | None = port
        entry = _in_slot(found, port)
        if entry is None:
            at = None
            entry = _in_slot(found, None)
        if isinstance(entry, bytes):
            return self._unpack(self._tables[kind], kind, host, at, entry)
        return entry

    def _unpack(
        self, table: _Table, kind: _Kind, host: str, port: int | None, packed: _Packed
    ) -> HostPins:
        """The HostPins of a packed entry, made once and kept in its place."""
        with self._unpacker.lock:
            # Under the lock, so that every lookup and listing of the entry
            # gets the one object kept: a thread that waited finds it made.
            slot = table[host]
            current = _in_slot(slot, port)
            if isinstance(current, HostPins):
                return current
            entry = self._unpacker.entry(kind, host, port, packed)
            if isinstance(slot, _ByPort):
                slot[port] = entry
            elif isinstance(slot, _AtPort):
                table[host] = slot._replace(entry=entry)
            else:
                table[host] = entry
            return entry

    def to_dict(self) -> dict[str, Any]:
        """A mapping that :meth:`from_dict` accepts and that describes the same policy."""
        return {entry.pattern: entry.to_dict() for entry in self}

    def __iter__(self) -> Iterator[HostPins]:
        tables = (self._exact, self._one, self._tree)
        for item, code in zip(self._order, self._kinds, strict=True):
            if isinstance(item, HostPins):
                yield item
                continue
            # A packed entry, or what a lookup unpacked in its place: unpacked
            # and kept, so that each entry is always the same object.
            host, port = (item, None) if isinstance(item, str) else item
            table = tables[code]
            entry = _in_slot(table[host], port)
            assert entry is not None  # every entry of _order is in its table
            yield (
                entry
                if isinstance(entry, HostPins)
                else self._unpack(table, _KIND_CODES[code], host, port, entry)
            )

    def __len__(self) -> int:
        return len(self._order)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PinSet):
            return NotImplemented
        if self is other:
            # Without a listing: that would make every packed entry's object
            # (a session compares the policy of each adapter mounted on it).
            return True
        return set(self) == set(other)

    def __hash__(self) -> int:
        return hash(frozenset(self))

    def __repr__(self) -> str:
        return f"PinSet({len(self)} entries)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PinSet, (self.to_dict(),))


def _label_range(table: _Table) -> tuple[int, int]:
    """The fewest and the most labels of the table's keys (for no key, a range no name has).

    A suffix with another number of labels (dots, plus one) than every key
    cannot be a key, so it is not looked up.
    """
    labels = [host.count(".") + 1 for host in table]
    return (min(labels), max(labels)) if labels else (256, 0)


class _Unpacker:
    """Makes the HostPins of packed entries, sharing what the file repeats.

    A load notes which lists of pins more than one entry has (``lists``) and
    which pins more than one list has (``pins``); those are made once, when
    first unpacked, and shared, as the entries of a file read at once share
    them. Everything else is made for its entry alone: a set whose entries
    all differ keeps nothing more for them than the entries themselves.
    Unpacking takes ``lock``.
    """

    __slots__ = ("lists", "lock", "pins")

    def __init__(self, lists: Iterable[_Packed], pins: Iterable[bytes]) -> None:
        self.lists: dict[_Packed, tuple[Pin, ...] | None] = dict.fromkeys(lists)
        self.pins: dict[bytes, Pin | None] = dict.fromkeys(pins)
        self.lock = threading.Lock()

    def entry(self, kind: _Kind, host: str, port: int | None, packed: _Packed) -> HostPins:
        """The HostPins that a packed entry of the table ``kind`` for ``host`` and
        ``port`` stands for."""
        pins = self.lists.get(packed)
        if pins is None:
            pins = tuple([self._pin(packed[i : i + 32]) for i in range(0, len(packed), _STRIDE)])
            if packed in self.lists:
                self.lists[packed] = pins
        return HostPins(_format_pattern(kind, host, port), pins, kind == "tree")

    def _pin(self, digest: bytes) -> Pin:
        if digest not in self.pins:
            return Pin("spki", "sha256", digest)
        pin = self.pins[digest]
        if pin is None:
            pin = self.pins[digest] = Pin("spki", "sha256", digest)
        return pin


def _same_pattern(
    config: Mapping[str, Any], raw_key: str, key: tuple[_Kind, str, int | None]
) -> NoReturn:
    """Refuse ``raw_key``, whose pattern is that of a key before it in ``config``."""
    # Every key before raw_key was read without error: read them again to find
    # the first with that pattern (an error path, so time does not matter).
    shared = _Shared()
    first_key: object = None
    for first_key, value in config.items():
        if first_key != _SCHEMA_KEY and _parse_entry(first_key, value, shared)[1] == key:
            break
    raise PinConfigError(
        f"host patterns {first_key!r} and {raw_key!r} are the same "
        f"pattern ({_format_pattern(*key)!r}): merge their pins into one entry"
    )


#: What ``pins`` may be wherever pins are given: a :class:`PinSet`, a mapping
#: of host patterns to a list of pins or to a :class:`HostOptions`, or the path
#: of a JSON pin file.
PinSource: TypeAlias = (
    PinSet | Mapping[str, list[str] | tuple[str, ...] | HostOptions] | str | os.PathLike[str]
)


# No pin file is this large (a million entries, each with its own pins, take
# about 120 MiB): anything larger is not read to its end, so that a device
# such as /dev/zero given as the file is refused instead of filling memory.
_MAX_FILE_BYTES = 256 * 1024 * 1024


def read_pin_file(name: str) -> str:
    """The text of the pin file ``name``, or PinConfigError saying why it cannot be read.

    A named pipe is read like a file (``<(...)`` in a shell): reading waits
    for its writer, as any program's does.
    """
    try:
        with open(name, "rb") as file:
            raw = read_at_most(file, _MAX_FILE_BYTES)
    except OSError as exc:
        raise PinConfigError(f"cannot read pin file {name!r}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a name open() refuses: a NUL, a lone surrogate
        raise PinConfigError(f"cannot read pin file {safe_repr(name)}: {exc}") from None
    if raw is None:
        raise PinConfigError(
            f"pin file {name!r} is larger than {_MAX_FILE_BYTES >> 20} MiB: not a pin file"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PinConfigError(f"pin file {name!r} is not UTF-8: {exc}") from None


def read_at_most(file: Any, most: int) -> bytes | None:
    """All of ``file``'s bytes if it holds at most ``most``, else None (nothing kept).

    Asks for no more memory than the file holds (``file.read(most)`` would
    set ``most`` bytes aside before reading), and never for twice the limit
    (a device such as /dev/zero is dropped as soon as it passes the limit,
    before its pieces would be joined). A file is read in one call, of its
    size and one byte more; a pipe or a device, whose size is 0, in pieces
    until its end.
    """
    limit = most + 1
    size = os.fstat(file.fileno()).st_size
    want = min(size + 1, limit) if size > 0 else 1 << 16
    parts: list[bytes] = []
    total = 0
    while total < limit:
        asked = min(want, limit - total)
        chunk = file.read(asked)
        parts.append(chunk)
        total += len(chunk)
        # A file's read returns less than asked only at its end; a pipe's
        # may return less at any time, and nothing only at its end.
        if not chunk or (size > 0 and len(chunk) < asked):
            break
        want = 1 << 16
    if total > most:
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _json_hint(text: str, pos: int) -> str:
    """Why a pin file is likely not JSON, when it looks like JSON5 or JavaScript."""
    rest = text[pos:]
    before = text[:pos].rstrip()
    # Python 3.13 and later point at the comma itself ("Illegal trailing comma").
    trailing_comma = (before.endswith(",") and rest[:1] in ("}", "]")) or (
        rest[:1] == "," and rest[1:].lstrip()[:1] in ("}", "]")
    )
    if rest.startswith(("//", "/*", "#")) or trailing_comma:
        return " (JSON has no comments or trailing commas)"
    return ""


def _is_pin(text: str) -> bool:
    try:
        Pin.parse(text)
    except ValueError:
        return False
    return True


def check_policy(
    *, report_only: object, on_failure: object, allow_unpinned: object, report_uri: object
) -> None:
    """Check the adapter-wide switches as the loader checks an entry's; raise PinConfigError."""
    for name, value in (("report_only", report_only), ("allow_unpinned", allow_unpinned)):
        if not isinstance(value, bool):
            raise PinConfigError(f"{name!r} must be True or False, not {_describe(value)}")
    if on_failure is not None and not callable(on_failure):
        raise PinConfigError(
            f"'on_failure' must be a function that takes a PinFailure, or None, "
            f"not {_describe(on_failure)}"
        )
    if report_uri is not None:
        check_report_uri(report_uri, "the adapter")


# What _loads_unique returns when it cannot prove that no key repeats.
_UNPROVEN: Any = object()
# The end of a key: a string's closing quote, JSON white space, and ":".
_KEY_END = re.compile(r'"[ \t\n\r]*:')
# A key end with white space before its ":" (rare: when the text has none,
# every key end is '":', and str.count counts them faster than a regex).
_SPACED_KEY_END = re.compile(r'"[ \t\n\r]+:')


def _loads_unique(text: str) -> Any:
    """``json.loads(text)``, when it can prove that no object repeats a key; else _UNPROVEN.

    json.loads keeps the last of two equal keys, and handing every object's
    pairs to Python to catch that doubles the time a large pin file takes to
    read. So the file is read as it is, and then the pairs are counted in the
    text and in what was read; if the two counts agree, no key repeated. The
    proof: in a text without backslashes (so without escapes), every '"' opens
    or closes a string, and ``_KEY_END`` matches at the end of every key, and
    elsewhere only where a string's content starts with ":" (after white
    space): it counts every pair of every object in the text, and perhaps
    more. The objects read hold each pair once, less one for every repeated
    key (and less the pairs of any object a repeat threw away); the count
    below takes only the top two levels, so it can only be smaller. Equal
    counts therefore mean no pair was lost. Anything else, including any
    error, takes the exact reading, which also says what is wrong as ever.
    """
    if "\\" in text:
        return _UNPROVEN
    try:
        data = json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    except (ValueError, RecursionError, PinConfigError):
        return _UNPROVEN
    if type(data) is not dict:
        return _UNPROVEN
    read = len(data) + sum([len(value) for value in data.values() if type(value) is dict])
    if _SPACED_KEY_END.search(text) is None:
        key_ends = text.count('":')
    else:
        key_ends = len(_KEY_END.findall(text))
    if key_ends != read:
        return _UNPROVEN
    return data


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a pin file that says two
    # things about one host must not be half-understood.
    result = dict(pairs)
    if len(result) < len(pairs):  # a key repeats: name the first repeat
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise PinConfigError(f"key {key!r} appears twice in one object")
            seen.add(key)
    return result


def _parse_int(text: str) -> int:
    # No pin file has a number in it, and int() refuses (ValueError) more than
    # 4,300 digits: refuse a long one here, before int() is asked.
    if len(text) > 20:
        raise PinConfigError(f"number too long ({len(text)} digits)")
    return int(text)


def _no_constant(text: str) -> float:
    raise PinConfigError(f"{text} is not JSON (Python's json module accepts it; nothing else does)")


def _parse_entry(
    raw_key: object, value: object, shared: _Shared
) -> tuple[HostPins, tuple[_Kind, str, int | None]]:
    """The entry, and its table key: (kind, normalised host, port or None)."""
    if not isinstance(raw_key, str):
        raise PinConfigError(
            f"host pattern {safe_repr(raw_key)} is a {type(raw_key).__name__}, not a string"
        )
    options: Mapping[str, Any]
    if isinstance(value, list | tuple):
        options = {"pins": value}
    elif isinstance(value, Mapping):
        options = value
        if not _KNOWN_KEYS.issuperset(options):
            unknown = [key for key in options if key not in _ENTRY_KEYS]
            known = ", ".join(_ENTRY_KEYS)
            raise PinConfigError(
                f"entry for {raw_key!r}: unknown key {safe_repr(unknown[0])} (known keys: {known})"
            )
        if "pins" not in options and "deny" not in options:
            raise PinConfigError(f"entry for {raw_key!r}: 'pins' (or 'deny') is required")
    else:
        raise PinConfigError(
            f"entry for {raw_key!r}: expected a list of pins or an object with 'pins', "
            f"got {_describe(value)} (a single pin must still be in a list)"
        )
    if "comment" in options and not isinstance(options["comment"], str):
        raise PinConfigError(
            f"'comment' for {raw_key!r} must be a string, not {_describe(options['comment'])}"
        )
    include_subdomains = _optional_bool(raw_key, options, "include_subdomains")
    report_only = _optional_bool(raw_key, options, "report_only")
    kind, host, port = _parse_pattern(raw_key, include_subdomains)
    pins = _parse_pins(raw_key, "pins", options["pins"], shared) if "pins" in options else ()
    deny = _parse_pins(raw_key, "deny", options["deny"], shared) if "deny" in options else ()
    if deny:
        denied = set(deny)  # a set: with a tuple, long lists of both were quadratic
        both = [pin for pin in pins if pin in denied]
        if both:
            raise PinConfigError(
                f"entry for {raw_key!r}: {str(both[0])!r} is in both 'pins' and 'deny'"
            )
    report_uri = None
    if "report_uri" in options:
        report_uri = check_report_uri(options["report_uri"], repr(raw_key))
    expires = _parse_expires(raw_key, options["expires"]) if "expires" in options else None
    entry = HostPins(
        pattern=_format_pattern(kind, host, port),
        pins=pins,
        include_subdomains=kind == "tree",
        expires=expires,
        report_only=bool(report_only),
        deny=deny,
        report_uri=report_uri,
    )
    return entry, (kind, host, port)


# The options an entry may have and still be read by _read_plain.
_PLAIN_OPTIONS = frozenset({"pins", "include_subdomains", "expires"})


def _read_plain(
    raw_key: object, value: object, shared: _Shared
) -> tuple[HostPins | _Packed, tuple[_Kind, str, int | None]] | None:
    """An entry as large pin files write it, read directly; None leaves it to _parse_entry.

    That is a host pattern in canonical spelling (a name), and a list of
    canonical SHA-256 SPKI pins (or such a list as "pins", with
    "include_subdomains" and "expires" or not). The result is the one
    _parse_entry gives (a hypothesis test compares the two on arbitrary
    entries): this reading skips only steps that change nothing and checks
    that cannot fail. It never refuses anything itself: whatever is unusual
    or wrong returns None, so that every error comes from the general reading
    and says the same as ever (the one exception, an unreadable "expires", is
    the general reading's last check, raised by the same function).
    """
    include: object = None  # not given
    if type(value) is list:
        texts: object = value
        options = None
    elif (
        type(value) is dict
        and "pins" in value
        and (len(value) == 1 or value.keys() <= _PLAIN_OPTIONS)
    ):
        options = value
        texts = value["pins"]
        if "include_subdomains" in value:
            include = value["include_subdomains"]
            if type(include) is not bool:
                return None
    else:
        return None
    if type(raw_key) is not str or type(texts) is not list or not texts or len(raw_key) > 256:
        return None
    name, port = raw_key, None
    if ":" in raw_key:
        name, _, digits = raw_key.rpartition(":")
        # Only a port as str(port) spells it (the pattern stays the key).
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 5) or digits[0] == "0":
            return None
        port = int(digits)
        if port > 65535:
            return None
    canonical = _CANONICAL_PATTERN.fullmatch(name)
    if canonical is None:
        return None
    prefix, host = canonical.groups()
    if len(host) > 253:
        return None
    kind = _KIND_OF_PREFIX[prefix]
    pattern = raw_key
    if include is True:
        if kind == "one":
            return None  # a contradiction, for the general reading to say
        if kind == "exact":
            kind = "tree"
            pattern = _format_pattern(kind, host, port)
    elif include is False and kind == "tree":
        return None
    packed = _packed_pins(texts, shared)
    if packed is None:
        return None
    if options is None or "expires" not in options:
        return packed, (kind, host, port)
    # An entry with an expiry is made now (an expiry is rare, and checked by
    # the general reading's own function).
    expires = _parse_expires(raw_key, options["expires"])
    pins = _pins_of(packed, shared)
    return HostPins(pattern, pins, kind == "tree", expires), (kind, host, port)


# A list of pins in canonical spelling, joined with line breaks (a pin has
# none). Canonical to the last character: the bits of a digest's last base64
# character that fall outside the digest are zero (a spelling with others is
# the same pin, for the general reading), so two pins are the same digest
# exactly when their texts are equal.
_PIN_LINE = r"sha256/[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]="
_PIN_LINES = re.compile(rf"{_PIN_LINE}(?:\n{_PIN_LINE})*")


def _packed_pins(texts: list[Any], shared: _Shared) -> _Packed | None:
    """Distinct canonical SHA-256 SPKI pins as their digests (_STRIDE apart), or None."""
    # Items of exactly str (a subclass may read otherwise in the general
    # reading) and 51 characters: checked before they are joined, so that a
    # list repeating one long string is never copied into one text.
    for text in texts:
        if type(text) is not str or len(text) != 51:
            return None
    # The list as one string: the key under which a file's repeats of it are
    # found, and, checked once, the text its digests are decoded from.
    lines = "\n".join(texts)
    # Only then is the text looked up: a text read before is n canonical pins,
    # one a line, and n items of 51 characters join to it only if its n - 1
    # line breaks are all the join's, that is, if each item is one pin.
    packed = shared.packed.get(lines)
    if packed is not None:
        shared.reused.add(packed)
        return packed
    # A new text is read only if it is such pins, one a line, and distinct:
    # two spellings of one pin are for the general reading to merge. (Two
    # pins, the usual list, are compared without making a set.)
    if _PIN_LINES.fullmatch(lines) is None:
        return None
    if len(texts) == 2:
        if texts[0] == texts[1]:
            return None
    elif len(set(texts)) < len(texts):
        return None
    # Decoded in one call: each pin's "=" and the next pin's "sha256/" become
    # one "A" (six zero bits), which makes the list one base64 text. Each
    # digest but the last is then followed by a zero byte: its last
    # character's two spare bits and the "A"'s first six.
    packed = binascii.a2b_base64(lines[7:].replace("=\nsha256/", "A"))
    shared.remember(lines, texts, packed)
    return packed


def _pins_of(packed: _Packed, shared: _Shared) -> tuple[Pin, ...]:
    """The pins of packed digests, for an entry made at load: the lists and the pins
    made for such entries before are shared (and, at the end of the load, with
    the entries unpacked later: _Shared.unpacker)."""
    pins = shared.unpacked.get(packed)
    if pins is None:
        made: list[Pin] = []
        for at in range(0, len(packed), _STRIDE):
            digest = packed[at : at + 32]
            pin = shared.made.get(digest)
            if pin is None:
                pin = shared.made[digest] = Pin("spki", "sha256", digest)
            made.append(pin)
        pins = shared.unpacked[packed] = tuple(made)
    return pins


def _describe(value: object) -> str:
    text = safe_repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _optional_bool(raw_key: str, options: Mapping[str, Any], name: str) -> bool | None:
    if name not in options:
        return None
    value = options[name]
    if isinstance(value, bool):
        return value
    raise PinConfigError(f"{name!r} for {raw_key!r} must be true or false, not {_describe(value)}")


# The distinct lists of pins that one load remembers at a time (_Shared.remember).
# Real files repeat a few dozen lists (of CA pins) all through, and each of
# those is found again within any window of this many new lists. A file of
# mostly distinct lists would otherwise hold every list's text until the end
# of the load: twice, at the peak, the memory of the set being made.
_REMEMBERED = 4096


def _repeated(texts: list[str]) -> list[bytes]:
    """The digests of the pins that appear more than once in ``texts``.

    ``texts`` holds the pins of distinct packed lists, each list holding a pin
    once, so a pin seen twice is in two lists; its text is canonical
    (_PIN_LINES), so one digest has one text.
    """
    if len(set(texts)) == len(texts):  # the usual answer, found faster than by counting
        return []
    return [binascii.a2b_base64(text[7:]) for text, count in Counter(texts).items() if count > 1]


@dataclass
class _Shared:
    """The pins and lists of pins parsed so far in one load, for the entries that repeat them."""

    lists: dict[tuple[str, ...], tuple[Pin, ...]] = field(default_factory=dict)
    pins: dict[str, Pin] = field(default_factory=dict)
    # Packed lists by their pins' text, one per line (_packed_pins).
    packed: dict[str, _Packed] = field(default_factory=dict)
    # The lists and the pins of the entries made at load (_pins_of).
    unpacked: dict[_Packed, tuple[Pin, ...]] = field(default_factory=dict)
    made: dict[bytes, Pin] = field(default_factory=dict)
    # For the unpacker: the packed lists that more than one entry has; the pins
    # of the packed lists remembered now; the pins found in more than one
    # list of those remembered before (remember).
    reused: set[_Packed] = field(default_factory=set)
    texts: list[str] = field(default_factory=list)
    repeated: list[bytes] = field(default_factory=list)

    def remember(self, lines: str, texts: list[str], packed: _Packed) -> None:
        """Note a new packed list, decoded from ``lines``, its ``texts`` joined."""
        if len(self.packed) == _REMEMBERED:
            # Forget the lists remembered so far, keeping which pins repeated
            # among them. A list seen again is read again, and repeated from
            # then on; its entries' pins are still equal, only not shared.
            self.repeated += _repeated(self.texts)
            self.packed = {}
            self.texts = []
        self.packed[lines] = packed
        self.texts += texts

    def unpacker(self) -> _Unpacker:
        """What unpacks the entries of this load, sharing what they repeat."""
        # What was made at load is what the unpacker shares, when shared.
        unpacker = _Unpacker(self.reused, self.repeated + _repeated(self.texts))
        for packed in unpacker.lists:
            unpacker.lists[packed] = self.unpacked.get(packed)
        for digest in unpacker.pins:
            unpacker.pins[digest] = self.made.get(digest)
        return unpacker

    def pin(self, text: str) -> Pin:
        pin = self.pins.get(text)
        if pin is None:
            pin = self.pins[text] = Pin.parse(text)
        return pin


def _parse_pins(raw_key: str, name: str, value: object, shared: _Shared) -> tuple[Pin, ...]:
    if not isinstance(value, list | tuple):
        raise PinConfigError(
            f"{name} for {raw_key!r}: expected a list of pins, got {_describe(value)}"
            " (a single pin must still be in a list)"
        )
    if not value:
        raise PinConfigError(f"{name} for {raw_key!r}: the list is empty; give at least one pin")
    texts = tuple(value)
    if not all(type(text) is str for text in texts):
        # Not a list of plain strings: an error, or str subclasses (not shared).
        return _parse_pin_list(raw_key, name, texts, Pin.parse)
    pins = shared.lists.get(texts)
    if pins is None:
        pins = shared.lists[texts] = _parse_pin_list(raw_key, name, texts, shared.pin)
    return pins


def _parse_pin_list(
    raw_key: str, name: str, value: tuple[Any, ...], parse: Callable[[str], Pin]
) -> tuple[Pin, ...]:
    pins: dict[Pin, None] = {}  # ordered, and spelling variants of one pin merge
    for item in value:
        try:
            pins[parse(item)] = None
        except ValueError as exc:
            raise PinConfigError(f"{name} for {raw_key!r}: {exc}") from None
    return tuple(pins)


def check_report_uri(value: object, where: str) -> str:
    """Return ``value`` if it is an http(s) URL with a host, else raise PinConfigError."""
    # A URI with an "@" may hold a password: no message shows it (helper 60).
    shown = (
        "the URI (not shown: it holds an '@', which may come with a password)"
        if isinstance(value, str) and "@" in value
        else safe_repr(value)
    )
    problem = f"'report_uri' for {where}: {shown} is not an http:// or https:// URL"
    if not isinstance(value, str) or not value.isascii() or any(c.isspace() for c in value):
        raise PinConfigError(problem)
    uri = _HTTP_URI.fullmatch(value)
    if uri is None or not _is_uri_host(uri.group(1).rpartition("@")[2]):
        raise PinConfigError(problem)
    try:
        split = urlsplit(value)
        stdlib_host = split.hostname or ""
    except ValueError:
        raise PinConfigError(problem) from None
    if "@" in uri.group(1) or "@" in split.netloc:
        # Not shown: it may hold a password. Reports are sent without
        # credentials, so they would only ever appear in log lines.
        raise PinConfigError(
            f"'report_uri' for {where}: remove the user name and password from it; "
            "reports are sent without credentials"
        )
    host = _URI_HOST_PORT.fullmatch(uri.group(1))
    written = "" if host is None else host.group(1)
    if not written.startswith("[") and "%" in written:
        raise PinConfigError(
            f"'report_uri' for {where}: {safe_repr(value)} has percent-escapes in its host; "
            "write the host plainly"
        )
    if written.strip("[]").lower() != stdlib_host:
        # The reporter judges "is the collector the failing host?" with the
        # standard library's reading, and the delivery goes where urllib3
        # reads: a URI the two read apart could never be sent a report.
        raise PinConfigError(
            f"'report_uri' for {where}: {safe_repr(value)} names its host ambiguously "
            f"({written!r} or {stdlib_host!r})"
        )
    return value


# A report URI is accepted exactly when urllib3 2's parse_url reads it as an
# http(s) URL with a host (RFC 3986, with RFC 6874 zone ids), so that the
# pin-set core needs no HTTP client; a hypothesis test compares the two. The
# text has been checked to be ASCII without white space. The authority ends at
# the first "/", "?", "#" or "\\"; the host and port follow its last "@".
_HTTP_URI = re.compile(r"(?i:https?)://([^\\/?#]*)(?:[\\/?#].*)?", re.DOTALL)
_H16 = "[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|(?:[0-9]{{1,3}}\.){{3}}[0-9]{{1,3}})"
_IPV6 = "|".join(
    [
        rf"(?:{_H16}:){{6}}{_LS32}",
        rf"::(?:{_H16}:){{5}}{_LS32}",
        rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
        rf"(?:(?:{_H16}:)?{_H16})?::(?:{_H16}:){{3}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
        rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
        rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
        rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
        rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
    ]
)
_ZONE_ID = r"(?:%25|%)(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+"
_REG_NAME = r"(?:[^\[\]%:/?#]|%[0-9A-Fa-f]{2})*"
# Groups: the host, an IPv6 address's zone id (with its "%" or "%25"), the port.
_URI_HOST_PORT = re.compile(rf"(\[(?:{_IPV6})({_ZONE_ID})?\]|{_REG_NAME})(?::([0-9]*))?", re.DOTALL)
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_uri_host(host_port: str) -> bool:
    """Does ``host_port`` name a host (and a port from 0 to 65535), as urllib3 2 reads it?"""
    match = _URI_HOST_PORT.fullmatch(host_port)
    if match is None:
        return False
    host, zone, port = match.groups()
    # Leading zeros are allowed; six significant digits are too many (and int()
    # refuses very long texts).
    if port and int(port.lstrip("0")[:6] or "0") > 65535:
        return False
    if not host or _CONTROL.search(host):
        return False
    if not host.startswith("["):
        escaped = host
    elif zone is None:
        return True
    else:
        # The zone id is read without its "%25" (or "%") separator.
        escaped = zone[3:] if zone.startswith("%25") and zone != "%25" else zone[1:]
    # No escape may stand for a control character.
    codes = [int(code, 16) for code in _PERCENT_ESCAPE.findall(escaped)]
    return all(code >= 0x20 and code != 0x7F for code in codes)


def _parse_expires(raw_key: str, value: object) -> datetime:
    problem = (
        f"'expires' for {raw_key!r}: {safe_repr(value)} is not an ISO 8601 date (2027-06-30) "
        "or date-time with an offset (2027-06-30T12:00:00+00:00)"
    )
    try:
        if isinstance(value, datetime):  # before date: a datetime is a date
            return _aware_utc(raw_key, value)
        if isinstance(value, date):
            # A date means the whole of that day, in UTC, as in a pin file.
            return datetime.combine(value, time(23, 59, 59), tzinfo=timezone.utc)
        if not isinstance(value, str):
            raise PinConfigError(problem)
        return _parse_moment(value, problem)
    except PinConfigError:
        raise  # a ValueError too, but already says what is wrong
    except (ValueError, OverflowError):
        # Out of range: a day that does not exist, or an aware datetime that
        # is not a datetime any more once moved to UTC.
        raise PinConfigError(problem) from None


def _aware_utc(raw_key: str, value: datetime) -> datetime:
    """An aware datetime ``expires``, in UTC, as a plain ``datetime``.

    Read with ``datetime``'s own methods, never with a subclass's (whose
    ``astimezone`` may answer a string or a naive time, kept to fail every
    later comparison), and made anew of ``datetime`` itself.
    """
    try:
        if datetime.utcoffset(value) is not None:
            moment = datetime.astimezone(value, timezone.utc)
            return datetime.combine(moment, datetime.time(moment), tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise  # out of range, said by the caller
    except Exception as exc:
        # A tzinfo is the caller's code, and may answer anything (utcoffset()
        # returning an int is a TypeError): never an error of another kind.
        raise PinConfigError(
            f"'expires' for {raw_key!r}: the time zone of {safe_repr(value)} "
            f"cannot be read ({type(exc).__name__}: {safe_repr(str(exc))[1:-1]})"
        ) from None
    raise PinConfigError(
        f"'expires' for {raw_key!r}: {safe_repr(value)} is a naive datetime; give "
        "it a time zone (datetime(..., tzinfo=timezone.utc)) or pass a date"
    )


# "expires" as the pin file's schema spells it: a date, or a date-time with an
# offset ("Z", "+02:00" or "+0200"; seconds and their fraction optional; an
# offset's minutes below 60, which timedelta would carry into hours). Read
# by this pattern, and not by datetime.fromisoformat, which reads more from
# Python 3.11 on: a pin file must mean the same on every Python.
_EXPIRES = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-5][0-9]))?)?"
)


def _parse_moment(text: str, problem: str) -> datetime:
    """The UTC moment of an "expires" text (_EXPIRES); ValueError if there is no such moment."""
    match = _EXPIRES.fullmatch(text)
    if match is None:
        raise PinConfigError(problem)
    year, month, day, hour, minute, second, fraction, zulu, sign, hours, minutes = match.groups()
    if hour is None:  # a date means the whole of that day, in UTC
        return datetime(int(year), int(month), int(day), 23, 59, 59, tzinfo=timezone.utc)
    if zulu is None and sign is None:
        raise PinConfigError(f"{problem}: the date-time has no offset")
    offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
    moment = datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second or 0),
        int((fraction or "")[:6].ljust(6, "0")),  # to the microsecond, as datetime keeps it
        tzinfo=timezone(-offset if sign == "-" else offset),
    )
    return moment.astimezone(timezone.utc)


def _parse_pattern(raw_key: str, include_subdomains: bool | None) -> tuple[_Kind, str, int | None]:
    """The table key of a host pattern: (kind, normalised host, port or None)."""
    canonical = _CANONICAL_PATTERN.fullmatch(raw_key)
    if canonical is None or len(canonical.group(2)) > 253:
        return _parse_any_pattern(raw_key, include_subdomains)
    # What the general reading below makes of it, without the steps that
    # change nothing.
    prefix, name = canonical.groups()
    return _subdomains(raw_key, _KIND_OF_PREFIX[prefix], include_subdomains), name, None


def _parse_any_pattern(
    raw_key: str, include_subdomains: bool | None
) -> tuple[_Kind, str, int | None]:
    def bad(why: str) -> PinConfigError:
        return _bad_pattern(raw_key, why)

    if "/" in raw_key or "://" in raw_key:
        raise bad("write a host name, not a URL (no scheme, no path)")
    host, port = _split_port(raw_key, bad)
    kind: _Kind = "exact"
    if host.startswith("**."):
        kind, host = "tree", host[3:]
    elif host.startswith("*."):
        kind, host = "one", host[2:]
    if "*" in host:
        raise bad("'*' is allowed only as a leading '*.' or '**.' followed by a domain")
    name = _normalize_name(host)
    # IP literals are recognised after normalisation, as in lookups: "1.2.3.4."
    # (or in fullwidth digits) is an address, not a name that may take wildcards.
    ip = None if name is None else _ip_form(name)
    tls_ip = None if name is None else tls_ip_form(name)
    if tls_ip is not None and tls_ip != ip:
        # The resolver and OpenSSL read it as different things (127.0.0.010:
        # 127.0.0.8 dialled, 127.0.0.10 validated): which did the user mean?
        dialled = f"the resolver dials {ip}" if ip else "the resolver reads it as a name"
        raise bad(
            f"ambiguous: {dialled}, but TLS validates the address {tls_ip}; write the "
            "address meant as four decimal numbers without leading zeros"
        )
    if ip is not None and name is not None:
        if "%" in name:
            # A zone id names an interface of this machine, not the server, and
            # lookups drop it as urllib3 does: an entry keeping it would never
            # apply, leaving the address unpinned without a word (and one
            # that an IPv4-mapped address loses would be a second spelling).
            address, zone = name.split("%", 1)
            plain = ip.split("%", 1)[0]
            entry = f"[{plain}]" if ":" in plain else plain
            raise bad(
                f"a connection to [{address}%{zone}] is checked against the entry "
                f"of {entry}: write the address without its zone id (%{zone})"
            )
        if kind != "exact" or include_subdomains:
            raise bad("an IP address cannot have subdomains or wildcards")
        return "exact", ip, port
    if name is None or not _valid_name(name):
        raise bad(
            "not a valid host name (labels of letters, digits, '-' or '_', "
            "1 to 63 characters, separated by single dots)"
        )
    return _subdomains(raw_key, kind, include_subdomains), name, port


def _subdomains(raw_key: str, kind: _Kind, include_subdomains: bool | None) -> _Kind:
    """The kind of a name's pattern, given its ``include_subdomains`` option."""
    if include_subdomains is True:
        if kind == "one":
            raise _bad_pattern(raw_key, "'include_subdomains: true' contradicts a '*.' pattern")
        return "tree"
    if include_subdomains is False and kind == "tree":
        raise _bad_pattern(raw_key, "'include_subdomains: false' contradicts a '**.' pattern")
    return kind


def _bad_pattern(raw_key: str, why: str) -> PinConfigError:
    return PinConfigError(f"host pattern {raw_key!r}: {why}")


def _split_port(raw_key: str, bad: Any) -> tuple[str, int | None]:
    if raw_key.startswith("["):
        match = re.fullmatch(r"\[([^\]]*)\](?::([0-9]+))?", raw_key)
        if match is None:
            raise bad("write IPv6 addresses as [2001:db8::1] or [2001:db8::1]:8443")
        host, port_text = match.group(1), match.group(2)
        if _ip_form(host) is None or ":" not in host:
            raise bad(f"{host!r} in brackets is not an IPv6 address")
    elif raw_key.count(":") > 1:
        host, port_text = raw_key, None  # a bare IPv6 address, no port
        if _ip_form(host) is None:
            raise bad("not an IPv6 address (to give a port, write [2001:db8::1]:8443)")
    elif ":" in raw_key:
        host, port_text = raw_key.split(":")
        if not port_text:
            raise bad("empty port after ':'")
    else:
        host, port_text = raw_key, None
    if port_text is None:
        return host, None
    # (the length test keeps int() away from its limit on digits, a ValueError)
    if (
        not (port_text.isascii() and port_text.isdigit())
        or len(port_text) > 5
        or not 1 <= int(port_text) <= 65535
    ):
        raise bad(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _format_pattern(kind: _Kind, host: str, port: int | None) -> str:
    if ":" in host:  # IPv6
        host = f"[{host}]" if port is not None else host
    text = _PREFIX[kind] + host
    return text if port is None else f"{text}:{port}"


def _ip_form(host: str) -> str | None:
    """The canonical form of an IP literal, or None when ``host`` is not one.

    The resolver dials ``127.1``, ``0x7f.0.0.1``, ``017700000001`` and
    ``2130706433`` as 127.0.0.1, and ``::ffff:127.0.0.1`` reaches the IPv4
    host too: each spelling must find the entry of the address it dials, or
    a different spelling would be an unpinned way to the same server.
    """
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" not in host and not _INET_ATON.fullmatch(host):
        return None  # the common case, a name: skip ipaddress's exception (load time)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _INET_ATON.fullmatch(host):
            return None
        try:  # the classic BSD forms that getaddrinfo still accepts
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


# OpenSSL's reading of an IPv4 address (ipv4_from_asc: sscanf("%d.%d.%d.%d%n")
# and then the end of the text or a space): C's whitespace before each number,
# a sign, decimal digits only, leading zeros ignored; after the fourth number,
# nothing or a space and anything.
_C_SPACE = " \t\n\v\f\r"
_SCANF_INT = rf"[{_C_SPACE}]*([+-]?[0-9]+)"
_TLS_IPV4 = re.compile(
    rf"{_SCANF_INT}\.{_SCANF_INT}\.{_SCANF_INT}\.{_SCANF_INT}(?:[{_C_SPACE}].*)?", re.S
)
_LONG = 2**63
# What may begin a name that OpenSSL reads as an address: a digit, a sign,
# C's whitespace, or a bracket.
_IP_START = frozenset("0123456789+-[" + _C_SPACE)


def tls_ip_form(host: str) -> str | None:
    """The IP address TLS validates the certificate against for ``host``, or None.

    ``ssl`` hands OpenSSL the name (IDNA-encoded), and OpenSSL reads it as an
    address where it can, its own way: ``127.0.0.010`` is 127.0.0.10 to it
    (decimal), while the resolver dials 127.0.0.8 (octal), the address
    :func:`normalize_host` gives. It also takes ``127.0.0.+10``,
    ``127.0.0. 10``, ``127.0.0.10 x``, a number past 32 bits wrapped into
    one, and ``:`` for ``::``. The pinned name is the authenticated name, so
    this reading is looked up beside the resolver's: a spelling read two ways
    can only add pins. Brackets around an IPv6 literal are dropped first, as
    urllib3 drops them before TLS; the form is that of the keys (an
    IPv4-mapped address is its IPv4 address).
    """
    if type(host) is not str:
        host = _host_text(host)  # its text, never a subclass's methods
    if host.isascii() and host[:1] not in _IP_START and ":" not in host:
        return None  # the common case, a name beginning with a letter
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = openssl_address(host)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def openssl_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address OpenSSL validates a certificate against when ``ssl`` starts TLS
    with ``host``, exactly (a2i_IPADDRESS), or None: then it is checked as a name.

    OpenSSL compares an address with a certificate's IP addresses byte for
    byte: ``::ffff:127.0.0.10`` is not 127.0.0.10 there.
    """
    if type(host) is not str:
        host = _host_text(host)  # the cache answers every caller of that text
    return _openssl_address(host)


# A connection's names repeat (this is per new connection): each is read once.
@functools.lru_cache(maxsize=4096)
def _openssl_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        text = host.encode("idna").decode("ascii")  # what ssl hands OpenSSL
    except UnicodeError:
        return None  # ssl refuses to start TLS with it (an empty label, say)
    if ":" not in text:
        quad = _tls_ipv4(text)
        return None if quad is None else ipaddress.IPv4Address(quad)
    if text == ":":
        # OpenSSL splits the text at colons: a lone one is two empty
        # elements, which it reads as "::" (Python's reading refuses it).
        return ipaddress.IPv6Address("::")
    # IPv6, whose last group may be an IPv4 address read as above.
    head, _, last = text.rpartition(":")
    if "." in last:
        quad = _tls_ipv4(last)
        if quad is None:
            return None
        text = f"{head}:{quad}"
    if "%" in text:
        return None  # a zone id, which Python's reading takes and OpenSSL's does not
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _tls_ipv4(text: str) -> str | None:
    match = _TLS_IPV4.fullmatch(text)
    if match is None:
        return None
    parts = []
    for number in match.groups():
        # As glibc's scanf stores %d: strtol's long (saturated), cut to an int.
        # (Digits past a long's are not converted: int() refuses 4,300.)
        digits = number.lstrip("+-").lstrip("0")
        value = int(digits or "0") if len(digits) <= 19 else _LONG
        value = max(-_LONG, min(_LONG - 1, -value if number[0] == "-" else value))
        value = (value + 2**31) % 2**32 - 2**31
        if not 0 <= value <= 255:
            return None
        parts.append(str(value))
    return ".".join(parts)


def _normalize_name(name: str, *, all_dots: bool = False) -> str | None:
    """IDNA (UTS 46) and lower case, trailing dots removed; None when IDNA refuses it.

    Pattern keys lose one trailing dot (``api.example.com.`` is a fully
    qualified name; two dots are a typo). Lookups (``all_dots``) lose all of
    them, as urllib3 does before validating.
    """
    if name.isascii():
        # For ASCII input, UTS 46 mapping is lower-casing: skip the (slow) codec.
        if all_dots:
            return name.rstrip(".").lower()
        return (name[:-1] if name.endswith(".") else name).lower()
    try:
        # Map first (fullwidth and ideographic full stops become "."), so that
        # the trailing dots can be seen and removed before encoding.
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        if all_dots:
            mapped = mapped.rstrip(".")
        elif mapped.endswith("."):
            mapped = mapped[:-1]
        encoded = idna.encode(mapped).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None
    return encoded


def _valid_name(name: str) -> bool:
    return len(name) <= 253 and _NAME.fullmatch(name) is not None


# A lookup may unpack an entry, made from what the lookup passed and kept for
# every later caller, and fills a cache shared by all: a host or port of the
# caller's own class, with its own lower(), __eq__, __hash__ or __str__, must
# never decide which entry that is or what it says ("host:True", another
# port's pins, another host's answer). So, where a lookup reaches either,
# both are read as str and int read them (a port: an int, an int subclass
# or anything with __index__), and anything else is an error, not a guess.
# (A plain lookup's hot path tests neither: what it returns then is the
# caller's alone.)


def _host_text(host: str) -> str:
    """A lookup's host as a plain str: its text, for a str subclass."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    return str.__str__(host)


def _port_number(port: int | None) -> int:
    """A lookup's port as a plain int (None: 443): the value of an int subclass
    or of anything with ``__index__``; TypeError for anything else."""
    if port is None:
        return 443
    try:
        return operator.index(port)  # an int subclass's value, never its methods
    except TypeError:
        raise TypeError(f"port must be an int or None, not {type(port).__name__}") from None


def _lookup_form(host: str) -> tuple[str, bool]:
    """Normalise a host being looked up into the form of the keys made at load.

    The common case, a plain ASCII name, takes a few string tests and a
    ``lower()``; everything else takes :func:`_general_lookup_form`, the
    straightforward reading of the rules below. The two give the same result
    for every string (a hypothesis test compares them on arbitrary text).
    """
    # A plain name is returned lower-cased and nothing else applies to it:
    # no trailing dot to strip; no brackets or "%" (a zone id), so nothing to
    # strip that could leave an IP literal; no ":" (IPv6) and a first
    # character that is not a digit, so no IPv4 spelling (every one starts
    # with a digit); ASCII, so IDNA (UTS 46) maps it by lower-casing alone.
    if (
        host.isascii()
        and host[-1:] != "."
        and not host[:1].isdigit()
        and ":" not in host
        and "[" not in host
        and "]" not in host
        and "%" not in host
    ):
        return host.lower(), False
    if type(host) is not str:
        host = _host_text(host)  # the cache answers every caller of that text
    return _general_lookup_form(host)


# IDNA is slow: names that need it are remembered (plain names never get here).
@functools.lru_cache(maxsize=4096)
def _general_lookup_form(host: str) -> tuple[str, bool]:
    """:func:`_lookup_form` for every host, step by step.

    The rule is "the pinned name is the authenticated name": a lookup must
    reach the entry of whatever name the TLS layer validated the certificate
    against, however the URL spelled it. So every transformation urllib3 and
    ``ssl`` apply before validating is applied here too, and never fewer:

    - brackets around an IPv6 literal go, and so does its zone id
      (``[::1%eth0]``): urllib3 2.x validates the address without it;
    - *every* trailing dot goes (``api.example.com..``): urllib3 strips them
      all before SNI and hostname validation;
    - IDNA (UTS 46) and lower case, and every IPv4 spelling the resolver
      accepts becomes the dotted quad it dials.

    A host that IDNA refuses is still matched, by its lower-cased text: a
    lookup must never be skipped because the name could not be normalised.
    (The TLS layer itself only ever validates ASCII names, and the caller
    looks those up too.)
    """
    # In urllib3's order: trailing dots, then brackets and a zone id, kept
    # only if what remains is an IP address.
    text = host.rstrip(".")
    address = text.strip("[]")
    if "%" in address:
        address = address[: address.rfind("%")]
    if address != text and _ip_form(address) is not None:
        text = address
    name = _normalize_name(text, all_dots=True)
    if name is None:
        name = text.rstrip(".").lower()
    ip = _ip_form(name)
    if ip is not None:
        return ip, True
    return name, False


def normalize_host(host: str) -> str:
    """The form in which a host is matched: IDNA A-labels, lower case, IPs compressed.

    Brackets, IPv6 zone ids and all trailing dots are removed first, as urllib3
    does before it validates a certificate.
    """
    return _lookup_form(host)[0]
