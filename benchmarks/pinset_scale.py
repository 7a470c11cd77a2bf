"""How the pin set scales: ``PinSet.match`` latency by size, and loading a large JSON file.

The pin sets are made up but shaped like real ones: exact hosts (some with a
port), ``*.`` wildcards, ``**.`` subtrees and ``include_subdomains`` entries,
two pins each (a primary and a backup), a few with an expiry date. Two pin
files: every entry with pins of its own (the worst case for memory), and a
realistic one where most entries pin one of a few dozen CA pairs
(intermediate and backup root) and one in ten pins its own leaf beside a CA.

Two lookup benchmarks. The small one repeats the same 48 queries (hits of each
kind spread over the whole set, and misses; a miss of a deep name probes every
suffix: the longest path). The mix is 50,000 distinct host names per size
(exact hits in varying letter case, ``*.`` and ``**.`` hits under many
names, shallow and deep misses), so that no cache of normalised names can
hide what a lookup costs.

Loading is measured in a fresh process (``python -m benchmarks.pinset_scale
--load FILE``) so that its memory figures are its own: the resident-set growth
while the first loaded set is kept, and tracemalloc's peak and retained bytes
(of a separate load: tracing slows loading down). Each timed load starts with
nothing else loaded alive. The floor, ``json.loads`` of the same text, is
timed in the same process, interleaved with the loads.

``python -m benchmarks.pinset_scale`` runs all of it on its own and prints a
summary (``--quick`` for a smoke pass).
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from requests_pinning import PinSet

from .server import child_environment

__all__ = [
    "main",
    "make_config",
    "measure_load",
    "measure_match",
    "measure_match_mix",
    "mix_queries",
    "queries_for",
]

_REPO = Path(__file__).resolve().parent.parent


def _pin(index: int, which: int) -> str:
    digest = hashlib.sha256(f"{index}/{which}".encode()).digest()
    return "sha256/" + base64.b64encode(digest).decode("ascii")


def _host(index: int) -> tuple[str, int | None, str]:
    """(host name, port or None, kind) of entry ``index``."""
    kind = index % 4
    if kind == 0:
        return f"api{index}.svc{index % 97}.example.com", None, "exact"
    if kind == 1:
        return (
            f"api{index}.svc{index % 97}.example.com",
            (8443 if index % 8 == 1 else None),
            "exact",
        )
    if kind == 2:
        return f"edge{index}.example.net", None, "one"
    return f"zone{index}.example.org", None, "tree"


_CA_PAIRS = 40  # (intermediate, backup root) pairs in the realistic file


def _pins(index: int, shared: bool) -> list[str]:
    if not shared:
        return [_pin(index, 0), _pin(index, 1)]
    pair = index % _CA_PAIRS
    if index % 10 == 7:  # its own leaf, and a CA as the backup
        return [_pin(index, 0), _pin(-1 - pair, 1)]
    return [_pin(-1 - pair, 0), _pin(-1 - pair, 1)]


def make_config(size: int, *, shared: bool = False) -> dict[str, Any]:
    """A pin configuration of ``size`` entries (deterministic).

    ``shared``: most entries pin one of a few CA pairs, as real files do;
    otherwise every entry has two pins of its own.
    """
    config: dict[str, Any] = {}
    for index in range(size):
        host, port, kind = _host(index)
        pins = _pins(index, shared)
        value: dict[str, Any] = {"pins": pins}
        if index % 50 == 0:
            value["expires"] = "2099-12-31"
        if kind == "exact":
            key = host if port is None else f"{host}:{port}"
        elif kind == "one":
            key = f"*.{host}"
        elif index % 8 == 3:
            key = f"**.{host}"
        else:
            key = host
            value["include_subdomains"] = True
        config[key] = value
    return config


def queries_for(size: int) -> list[tuple[str, int]]:
    """The lookups timed for a set of ``size`` entries: 32 hits of 4 kinds and 16 misses."""
    queries: list[tuple[str, int]] = []
    for k in range(8):
        base = (k * size) // 8
        for kind in range(4):
            index = min(base - base % 4 + kind, size - 1)
            host, port, _ = _host(index)
            if index % 4 == 2:
                host = f"www.{host}"
            elif index % 4 == 3:
                host = f"a.b.{host}"
            queries.append((host, port or 443))
    for k in range(8):
        queries.append((f"nohost{k}.example.com", 443))
        queries.append((f"x.y.unknown{k}.example.org", 443))
    return queries


def measure_match(sizes: Sequence[int], *, number: int, rounds: int) -> dict[str, Any]:
    """Microseconds per ``PinSet.match``, median over rounds (sizes interleaved in each)."""
    sets = {size: PinSet(make_config(size)) for size in sizes}
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    hits: dict[int, int] = {}
    for size, pinset in sets.items():
        queries = queries_for(size)
        hits[size] = sum(pinset.match(host, port) is not None for host, port in queries)
    for _round in range(rounds):
        for size, pinset in sets.items():
            queries = queries_for(size)
            match = pinset.match

            def lookups(queries: list[tuple[str, int]] = queries, match: Any = match) -> None:
                for host, port in queries:
                    match(host, port)

            seconds = timeit.Timer(lookups).timeit(number)
            samples[size].append(seconds / number / len(queries) * 1e6)
    medians = {size: statistics.median(values) for size, values in samples.items()}
    return {
        "sizes": list(sizes),
        "queries": len(queries_for(sizes[0])),
        "hits": {str(size): hits[size] for size in sizes},
        "number": number,
        "rounds": rounds,
        "median_us": {str(size): medians[size] for size in sizes},
        "rounds_us": {str(size): samples[size] for size in sizes},
        "ratio_largest_to_smallest": medians[sizes[-1]] / medians[sizes[0]],
    }


def _vary_case(host: str, variant: int) -> str:
    """``host`` with the letters picked by the bits of ``variant`` in upper case."""
    letters = [i for i, char in enumerate(host) if char.isalpha()]
    chars = list(host)
    for bit, i in enumerate(letters):
        if variant >> bit & 1:
            chars[i] = chars[i].upper()
    return "".join(chars)


def mix_queries(size: int, count: int, *, seed: int = 11) -> list[tuple[str, int]]:
    """``count`` distinct lookups for a ``size``-entry set: 30 % exact hits, 20 % ``*.``
    hits, 20 % ``**.`` hits, 30 % misses (half of them deep), shuffled."""
    chooser = random.Random(seed)
    by_kind: dict[str, list[int]] = {"exact": [], "one": [], "tree": []}
    for index in range(size):
        by_kind[_host(index)[2]].append(index)
    queries: set[tuple[str, int]] = set()
    variant = 0
    while len(queries) < count:
        roll = chooser.random()
        if roll < 0.3 and by_kind["exact"]:
            host, port, _ = _host(chooser.choice(by_kind["exact"]))
            variant += 1
            queries.add((_vary_case(host, variant), port or 443))
        elif roll < 0.5 and by_kind["one"]:
            host, _, _ = _host(chooser.choice(by_kind["one"]))
            queries.add((f"h{chooser.randrange(10**9)}.{host}", 443))
        elif roll < 0.7 and by_kind["tree"]:
            host, _, _ = _host(chooser.choice(by_kind["tree"]))
            queries.add((f"n{chooser.randrange(10**9)}.b.{host}", 443))
        elif roll < 0.85:
            queries.add((f"nohost{chooser.randrange(10**9)}.example.com", 443))
        else:
            queries.add((f"x.y{chooser.randrange(10**9)}.unknown.example.org", 443))
    ordered = sorted(queries)
    chooser.shuffle(ordered)
    return ordered


def _fresh(queries: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return [("".join(list(host)), port) for host, port in queries]


def _kinds(pinset: PinSet, queries: list[tuple[str, int]]) -> dict[str, int]:
    """How many of the queries find an exact, ``*.`` or ``**.`` entry, or none."""
    kinds = {"exact": 0, "*.": 0, "**.": 0, "miss": 0}
    for host, port in queries:
        entry = pinset.match(host, port)
        if entry is None:
            kinds["miss"] += 1
        elif entry.pattern.startswith("**.") or entry.include_subdomains:
            kinds["**."] += 1
        elif entry.pattern.startswith("*."):
            kinds["*."] += 1
        else:
            kinds["exact"] += 1
    return kinds


def _floors(pinset: PinSet) -> dict[str, Any]:
    """Bare lookups on the set's own tables, for the floor beside ``PinSet.match``.

    ``one probe``: the host lower-cased and looked up once, in the table of
    exact hosts: what any lookup through a dictionary costs at least.
    ``three probes``: the host, its parent and its grandparent looked up in
    the three tables (exact, ``*.``, ``**.``), the first answer kept: the
    probes a lookup of the mix makes, with none of the checks that make it
    right (IP literals, IDNA, ports, label counts).
    """
    exact, one, tree = pinset._exact, pinset._one, pinset._tree

    def one_probe(host: str, port: int) -> object:
        return exact.get(host.lower())

    def three_probes(host: str, port: int) -> object:
        name = host.lower()
        parent = name[name.find(".") + 1 :]
        return exact.get(name) or one.get(parent) or tree.get(parent[parent.find(".") + 1 :])

    return {"one probe": one_probe, "three probes": three_probes}


def measure_match_mix(sizes: Sequence[int], *, count: int, rounds: int) -> dict[str, Any]:
    """Microseconds per ``PinSet.match`` over ``count`` distinct hosts, median over rounds.

    Each round looks every query up once, so a cache of normalised names
    smaller than ``count`` never answers (least recently used goes first).
    Beside it, in the same rounds, the floors (:func:`_floors`): bare
    dictionary probes on the same tables with the same hosts.
    """
    # The queries first, then the sets, and every host a fresh string made in
    # lookup order (as a client's host, just parsed from its URL, is): timed
    # otherwise, the 100,000-entry figure also measured where the strings
    # happened to lie in a heap that building the set had fragmented.
    queries = {size: _fresh(mix_queries(size, count)) for size in sizes}
    sets = {size: PinSet(make_config(size)) for size in sizes}
    hits = {
        size: sum(sets[size].match(host, port) is not None for host, port in queries[size])
        for size in sizes
    }
    floors = {size: _floors(sets[size]) for size in sizes}
    samples: dict[int, list[float]] = {size: [] for size in sizes}
    floor_samples: dict[int, dict[str, list[float]]] = {
        size: {name: [] for name in floors[size]} for size in sizes
    }
    for _round in range(rounds):
        for size, pinset in sets.items():
            mix = queries[size]
            for name, lookup in [("match", pinset.match), *floors[size].items()]:
                start = time.perf_counter()
                for host, port in mix:
                    lookup(host, port)
                seconds = (time.perf_counter() - start) / len(mix) * 1e6
                (samples[size] if name == "match" else floor_samples[size][name]).append(seconds)
    medians = {size: statistics.median(values) for size, values in samples.items()}
    return {
        "sizes": list(sizes),
        "queries": count,
        "kinds": _kinds(sets[sizes[-1]], queries[sizes[-1]]),
        "best_us": {str(size): min(samples[size]) for size in sizes},
        "hits": {str(size): hits[size] for size in sizes},
        "rounds": rounds,
        "median_us": {str(size): medians[size] for size in sizes},
        "rounds_us": {str(size): samples[size] for size in sizes},
        "ratio_largest_to_smallest": medians[sizes[-1]] / medians[sizes[0]],
        "floor_us": {
            str(size): {name: statistics.median(values) for name, values in by_name.items()}
            for size, by_name in floor_samples.items()
        },
    }


def write_config(path: Path, size: int, *, shared: bool = False) -> int:
    """Write a ``size``-entry pin file; return its size in bytes."""
    path.write_text(json.dumps(make_config(size, shared=shared), indent=1))
    return path.stat().st_size


def measure_load(folder: Path, size: int, *, repeat: int, shared: bool = False) -> dict[str, Any]:
    """Write a ``size``-entry JSON pin file and time ``PinSet.from_json`` in a fresh process.

    ``shared``: the realistic file, where most entries pin one of a few CA pairs.
    """
    path = folder / f"pins-{size}{'-shared' if shared else ''}.json"
    file_bytes = write_config(path, size, shared=shared)
    command = [sys.executable, "-m", "benchmarks.pinset_scale", "--load", str(path)]
    command += ["--repeat", str(repeat)]
    result = subprocess.run(
        command, cwd=_REPO, env=child_environment(), capture_output=True, check=True
    )
    figures: dict[str, Any] = json.loads(result.stdout)
    figures["file_bytes"] = file_bytes
    figures["shared"] = shared
    return figures


def _rss() -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _time_json_loads(path: Path) -> float:
    # The floor: what json.loads alone takes to read the same file.
    start = time.perf_counter()
    data = json.loads(path.read_bytes().decode("utf-8"))
    seconds = time.perf_counter() - start
    del data
    return seconds


def _load(path: Path, repeat: int) -> dict[str, Any]:
    # Every timed load starts from the same heap (nothing else loaded is alive):
    # the cyclic collector's work grows with the live objects.
    gc.collect()
    before = _rss()
    start = time.perf_counter()
    kept = PinSet.from_json(path)
    seconds = [time.perf_counter() - start]
    after = _rss()
    entries = len(kept)
    del kept
    json_seconds = []
    for _ in range(repeat - 1):
        gc.collect()
        json_seconds.append(_time_json_loads(path))
        gc.collect()
        start = time.perf_counter()
        again = PinSet.from_json(path)
        seconds.append(time.perf_counter() - start)
        del again
    gc.collect()
    json_seconds.append(_time_json_loads(path))
    gc.collect()
    tracemalloc.start()
    kept = PinSet.from_json(path)
    retained, peak = tracemalloc.get_traced_memory()
    for _entry in kept:  # every entry made: what a set holds once all were looked up
        pass
    unpacked, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    median = statistics.median(seconds)
    json_median = statistics.median(json_seconds)
    return {
        "entries": entries,
        "seconds": seconds,
        "median_s": median,
        "best_s": min(seconds),
        "json_loads_seconds": json_seconds,
        "json_loads_median_s": json_median,
        "json_loads_best_s": min(json_seconds),
        "ratio_to_json_loads": median / json_median,
        "best_ratio_to_json_loads": min(seconds) / min(json_seconds),
        "rss_delta_bytes": None if before is None or after is None else after - before,
        "tracemalloc_peak_bytes": peak,
        "tracemalloc_retained_bytes": retained,
        "bytes_per_entry": retained / max(1, entries),
        "unpacked_bytes_per_entry": unpacked / max(1, entries),
    }


def _summary(match: dict[str, Any], mix: dict[str, Any], loads: list[dict[str, Any]]) -> str:
    lines = []
    kinds = ", ".join(f"{count:,} {kind}" for kind, count in mix["kinds"].items())
    for title, figures in (
        (f"{match['queries']} repeated queries", match),
        (
            f"a mix of {mix['queries']:,} distinct hosts ({kinds} at the largest size; "
            "each host looked up once per round, so no cache of names answers)",
            mix,
        ),
    ):
        lines.append(f"PinSet.match, {title}, us per lookup, median (best) of rounds:")
        for size in figures["sizes"]:
            best = figures.get("best_us", {}).get(str(size))
            floor = figures.get("floor_us", {}).get(str(size))
            lines.append(
                f"  {size:>9,} entries: {figures['median_us'][str(size)]:.3f}"
                + ("" if best is None else f" ({best:.3f})")
                + f"  ({figures['hits'][str(size)]:,} hits)"
                + (
                    ""
                    if floor is None
                    else "; floors, bare: "
                    + ", ".join(f"{name} {value:.3f}" for name, value in floor.items())
                )
            )
        lines.append(f"  largest/smallest: {figures['ratio_largest_to_smallest']:.2f}")
    for load in loads:
        kind = "shared CA pins" if load["shared"] else "unique pins"
        lines.append(
            f"load {load['entries']:,} entries ({kind}, {load['file_bytes'] / 1e6:.1f} MB), "
            f"median (best) of {len(load['seconds'])}: PinSet.from_json "
            f"{load['median_s']:.3f} s ({load['best_s']:.3f}), json.loads of the same file "
            f"{load['json_loads_median_s']:.3f} s ({load['json_loads_best_s']:.3f}), ratio "
            f"{load['ratio_to_json_loads']:.2f} ({load['best_ratio_to_json_loads']:.2f})"
        )
        lines.append(
            f"  memory: {load['bytes_per_entry']:.0f} bytes/entry retained (tracemalloc, "
            f"the PinSet alone), {load['unpacked_bytes_per_entry']:.0f} once every entry "
            f"was made (listed, or looked up: entries are kept packed until then); "
            f"peak {load['tracemalloc_peak_bytes'] / 1e6:.0f} MB while loading"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pinset_scale",
        description="Pin-set benchmarks on their own: lookups by size, and loading a 100,000-"
        "entry file (unique and shared pins). With --load, time one file (a child process).",
    )
    parser.add_argument("--load", type=Path, help="a JSON pin file to time, in this process")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke pass: small sizes")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.load is not None:
        print(json.dumps(_load(args.load, max(1, args.repeat))))
        return 0
    sizes = (10, 100, 1_000) if args.quick else (10, 1_000, 100_000)
    entries = 2_000 if args.quick else 100_000
    rounds = 3 if args.quick else max(1, args.rounds)
    repeat = 2 if args.quick else max(2, args.repeat)
    match = measure_match(sizes, number=5 if args.quick else 300, rounds=rounds)
    mix = measure_match_mix(sizes, count=5_000 if args.quick else 50_000, rounds=rounds)
    with tempfile.TemporaryDirectory() as folder:
        loads = [
            measure_load(Path(folder), entries, repeat=repeat, shared=shared)
            for shared in (False, True)
        ]
    print(_summary(match, mix, loads))
    if args.json is not None:
        figures = {"match": match, "match_mix": mix, "load": loads}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
