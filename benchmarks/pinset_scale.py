"""How the pin set scales: ``PinSet.match`` latency by size, and loading a large JSON file.

The pin sets are made up but shaped like real ones: exact hosts (some with a
port), ``*.`` wildcards, ``**.`` subtrees and ``include_subdomains`` entries,
two pins each (a primary and a backup), a few with an expiry date. The lookups
are the same mix for every size: hits of each kind spread over the whole set,
and misses (a miss of a deep name probes every suffix: the longest path).

Loading is measured in a fresh process (``python -m benchmarks.pinset_scale
--load FILE``) so that its memory figures are its own: the resident-set growth
while the first loaded set is kept, and tracemalloc's peak and retained bytes
(of a separate load: tracing slows loading down). Each timed load starts with
nothing else loaded alive.
"""

from __future__ import annotations

import argparse
import base64
import gc
import hashlib
import json
import statistics
import subprocess
import sys
import time
import timeit
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from requests_pinning import PinSet

from .server import child_environment

__all__ = ["main", "make_config", "measure_load", "measure_match", "queries_for"]

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


def make_config(size: int) -> dict[str, Any]:
    """A pin configuration of ``size`` entries (deterministic)."""
    config: dict[str, Any] = {}
    for index in range(size):
        host, port, kind = _host(index)
        pins = [_pin(index, 0), _pin(index, 1)]
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


def write_config(path: Path, size: int) -> int:
    """Write a ``size``-entry pin file; return its size in bytes."""
    path.write_text(json.dumps(make_config(size), indent=1))
    return path.stat().st_size


def measure_load(folder: Path, size: int, *, repeat: int) -> dict[str, Any]:
    """Write a ``size``-entry JSON pin file and time ``PinSet.from_json`` in a fresh process."""
    path = folder / f"pins-{size}.json"
    file_bytes = write_config(path, size)
    command = [sys.executable, "-m", "benchmarks.pinset_scale", "--load", str(path)]
    command += ["--repeat", str(repeat)]
    result = subprocess.run(
        command, cwd=_REPO, env=child_environment(), capture_output=True, check=True
    )
    figures: dict[str, Any] = json.loads(result.stdout)
    figures["file_bytes"] = file_bytes
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
    for _ in range(repeat - 1):
        gc.collect()
        start = time.perf_counter()
        again = PinSet.from_json(path)
        seconds.append(time.perf_counter() - start)
        del again
    gc.collect()
    tracemalloc.start()
    kept = PinSet.from_json(path)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return {
        "entries": entries,
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "rss_delta_bytes": None if before is None or after is None else after - before,
        "tracemalloc_peak_bytes": peak,
        "tracemalloc_retained_bytes": retained,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pinset_scale")
    parser.add_argument("--load", type=Path, required=True, help="a JSON pin file to time")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(_load(args.load, max(1, args.repeat))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
