"""``python -m benchmarks``: run every benchmark, print the table, write the JSON.

Each comparison runs its variants interleaved (the order rotating from round
to round) and reports medians over rounds and their ratios, because absolute
times on a shared machine are not comparable between runs. The figures the
targets are judged on for the HTTP benchmarks are instruction counts
(callgrind), which repeat; the wall-clock ratios are reported beside them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import callgrind
from .check import cache_bounds, measure_check
from .client import (
    Target as HttpTarget,
)
from .client import (
    concurrent_round,
    fingerprint_available,
    make_session,
    run_requests,
)
from .pinset_scale import measure_load, measure_match
from .pki import Chain, make_chain
from .report import Target, machine, table
from .server import ServerProcess

__all__ = ["FULL", "QUICK", "Settings", "main"]

_RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    rounds: int
    new_requests: int  # per variant and round
    keepalive_requests: int
    callgrind_jobs: tuple[tuple[str, str], ...]  # (variant, workload)
    callgrind_short: tuple[tuple[str, int], ...]  # workload -> requests
    callgrind_long: tuple[tuple[str, int], ...]
    check_number: int
    match_sizes: tuple[int, ...]
    match_number: int
    load_entries: int
    load_repeat: int
    threads: int
    concurrent_new: int  # requests per thread and round
    concurrent_keepalive: int


FULL = Settings(
    rounds=7,
    new_requests=100,
    keepalive_requests=1000,
    callgrind_jobs=(
        ("plain", "new"),
        ("pinned", "new"),
        ("fingerprint", "new"),
        ("plain", "keepalive"),
        ("pinned", "keepalive"),
    ),
    callgrind_short=(("new", 20), ("keepalive", 100)),
    callgrind_long=(("new", 120), ("keepalive", 1100)),
    check_number=2000,
    match_sizes=(10, 1_000, 100_000),
    match_number=300,
    load_entries=100_000,
    load_repeat=5,
    threads=8,
    concurrent_new=40,
    concurrent_keepalive=250,
)

# A smoke pass: every benchmark with tiny counts. Callgrind (seconds of
# interpreter start-up per run) runs only for pinned keep-alive, short and long.
QUICK = Settings(
    rounds=3,
    new_requests=4,
    keepalive_requests=20,
    callgrind_jobs=(("pinned", "keepalive"),),
    callgrind_short=(("new", 1), ("keepalive", 1)),
    callgrind_long=(("new", 2), ("keepalive", 3)),
    check_number=50,
    match_sizes=(10, 100, 1_000),
    match_number=5,
    load_entries=2_000,
    load_repeat=2,
    threads=8,
    concurrent_new=2,
    concurrent_keepalive=5,
)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rotated(variants: Sequence[str], round_index: int) -> list[str]:
    k = round_index % len(variants)
    return [*variants[k:], *variants[:k]]


def _interleaved(
    variants: Sequence[str], rounds: int, measure: Callable[[str], float]
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {variant: [] for variant in variants}
    for round_index in range(rounds):
        for variant in _rotated(variants, round_index):
            samples[variant].append(measure(variant))
    return samples


def _summary(samples: dict[str, list[float]], *, cost: bool) -> dict[str, dict[str, Any]]:
    """Medians, ratios of medians to ``plain`` and the range of the per-round ratios."""
    base = samples["plain"]
    result: dict[str, dict[str, Any]] = {}
    for variant, values in samples.items():
        round_ratios = [value / plain for value, plain in zip(values, base, strict=True)]
        result[variant] = {
            "rounds": values,
            "median": statistics.median(values),
            "ratio_to_plain": statistics.median(values) / statistics.median(base),
            "round_ratio_min": min(round_ratios),
            "round_ratio_max": max(round_ratios),
            "ratio_means": "time per request, variant / plain" if cost else "throughput",
        }
    return result


def _http_wall(
    target: HttpTarget, variants: Sequence[str], *, workload: str, rounds: int, count: int
) -> dict[str, dict[str, Any]]:
    new = workload == "new"

    def measure(variant: str) -> float:
        with make_session(variant, target) as session:
            run_requests(session, target.url, 1, new=new)  # pool and first connection
            start = time.perf_counter()
            run_requests(session, target.url, count, new=new)
            return (time.perf_counter() - start) / count * 1e6

    return _summary(_interleaved(variants, rounds, measure), cost=True)


def _concurrency(target: HttpTarget, settings: Settings, workload: str) -> dict[str, Any]:
    new = workload == "new"
    per_thread = settings.concurrent_new if new else settings.concurrent_keepalive
    errors = {"plain": 0, "pinned": 0}

    def measure(variant: str) -> float:
        with make_session(variant, target, pool_maxsize=settings.threads) as session:
            _, warm_errors = concurrent_round(
                session, target.url, threads=settings.threads, per_thread=1, new=new
            )
            seconds, timed_errors = concurrent_round(
                session, target.url, threads=settings.threads, per_thread=per_thread, new=new
            )
        errors[variant] += warm_errors + timed_errors
        return settings.threads * per_thread / seconds

    summary = _summary(_interleaved(("plain", "pinned"), settings.rounds, measure), cost=False)
    for variant, figures in summary.items():
        figures["errors"] = errors[variant]
    return {
        "threads": settings.threads,
        "requests_per_thread": per_thread,
        "variants": summary,
    }


def _instructions(
    target: HttpTarget, settings: Settings, jobs: Sequence[tuple[str, str]], parallel: int
) -> dict[str, dict[str, dict[str, Any]]]:
    counts = callgrind.count_per_request(
        target,
        jobs,
        dict(settings.callgrind_short),
        dict(settings.callgrind_long),
        parallel=parallel,
    )
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for count in counts:
        result.setdefault(count.workload, {})[count.variant] = {
            **asdict(count),
            "per_request": count.per_request,
        }
    for figures in result.values():
        plain = figures.get("plain")
        for variant in figures.values():
            variant["ratio_to_plain"] = (
                variant["per_request"] / plain["per_request"] if plain else None
            )
    return result


def _fmt_ratio(figures: dict[str, Any]) -> str:
    return (
        f"{figures['ratio_to_plain']:.3f} "
        f"({figures['round_ratio_min']:.2f}-{figures['round_ratio_max']:.2f})"
    )


def _http_table(wall: dict[str, dict[str, Any]], counts: dict[str, dict[str, Any]]) -> str:
    rows = []
    for variant, figures in wall.items():
        count = counts.get(variant)
        rows.append(
            [
                variant,
                f"{figures['median']:,.0f}",
                f"{1e6 / figures['median']:,.0f}",
                _fmt_ratio(figures),
                "-" if count is None else f"{count['per_request']:,.0f}",
                "-"
                if count is None or count["ratio_to_plain"] is None
                else f"{count['ratio_to_plain']:.4f}",
            ]
        )
    headers = [
        "variant",
        "us/request",
        "req/s",
        "ratio (round range)",
        "instructions/request",
        "ratio",
    ]
    return table(headers, rows)


def _target_value(figures: dict[str, Any] | None, key: str) -> float | None:
    if figures is None:
        return None
    value = figures.get(key)
    return None if value is None else float(value)


def _targets(results: dict[str, Any]) -> list[Target]:
    counts = results.get("instructions") or {}
    new_pinned = counts.get("new", {}).get("pinned")
    keepalive_pinned = counts.get("keepalive", {}).get("pinned")
    targets = [
        Target(
            "1. new connections: instructions pinned/plain per request",
            _target_value(new_pinned, "ratio_to_plain"),
            1.005,
            1.01,
            "lower",
        ),
        Target(
            "2. keep-alive: instructions pinned/plain per request",
            _target_value(keepalive_pinned, "ratio_to_plain"),
            1.001,
            1.003,
            "lower",
        ),
    ]
    for name, figures in results["check"].items():
        if name == "spki_cache":
            continue
        targets.append(
            Target(
                f"3. pin check per handshake, {name.upper()} chain of 3",
                figures["total_us"],
                10.0,
                25.0,
                "lower",
                " us",
            )
        )
    match = results["pinset"]["match"]
    sizes = match["sizes"]
    targets.append(
        Target(
            f"4. PinSet.match, {sizes[-1]:,} / {sizes[0]:,} entries",
            match["ratio_largest_to_smallest"],
            1.5,
            None,
            "lower",
        )
    )
    load = results["pinset"]["load"]
    targets.append(
        Target(
            f"4. load a {load['entries']:,}-entry JSON pin file",
            load["median_s"],
            2.0,
            None,
            "lower",
            " s",
        )
    )
    for workload, figures in results["concurrency"].items():
        pinned = figures["variants"]["pinned"]
        targets.append(
            Target(
                f"5. {figures['threads']} threads, {workload}: throughput pinned/plain",
                pinned["ratio_to_plain"],
                0.95,
                None,
                "higher",
            )
        )
        targets.append(
            Target(
                f"5. {figures['threads']} threads, {workload}: errors (pinned)",
                float(pinned["errors"]),
                0.0,
                None,
                "lower",
            )
        )
    return targets


def _render(results: dict[str, Any], targets: list[Target]) -> str:
    out: list[str] = []
    m = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    s = results["settings"]
    out.append(f"requests-pinning benchmarks: {results['command']}")
    out.append(
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['system']}; {m['python']}; {m['openssl']}"
    )
    out.append(f"packages: {packages}; requests_pinning at {m['library']}")
    out.append(
        "setup: server in its own process on 127.0.0.1, chain leaf <- intermediate <- root "
        "(the root alone in the client's trust store); ECDSA P-256 keys for the HTTP benchmarks; "
        "sessions with verify=<root bundle>, trust_env=False; pinned = one pin on the intermediate"
    )
    if results["quick"]:
        out.append("QUICK SMOKE PASS: tiny counts, the figures mean nothing")
    for note in results["notes"]:
        out.append(f"note: {note}")

    counts = results.get("instructions") or {}
    for number, workload, title, per_round in (
        (
            "1",
            "new",
            "New connections (Connection: close, a TLS handshake per request)",
            s["new_requests"],
        ),
        ("2", "keepalive", "Keep-alive (one connection, many requests)", s["keepalive_requests"]),
    ):
        short, long = dict(s["callgrind_short"])[workload], dict(s["callgrind_long"])[workload]
        out.append("")
        out.append(f"{number}. {title}")
        cg = (
            f"callgrind: client process, ({long} - {short} requests) / {long - short}"
            if counts.get(workload)
            else "callgrind: not run"
        )
        out.append(
            f"  wall clock: medians of {s['rounds']} rounds x {per_round} requests per variant, "
            f"interleaved; ratio = time per request / plain's; {cg}"
        )
        out.append(_http_table(results[workload], counts.get(workload, {})))

    check = results["check"]
    out.append("")
    out.append(
        f"3. The pin check per handshake, in process (us per call, median of {s['rounds']} "
        f"rounds x {s['check_number']} calls; a verified chain of 3, one intermediate pin)"
    )
    names = [name for name in check if name != "spki_cache"]
    parts = list(check[names[0]]["median_us"])
    rows = [[part, *(f"{check[name]['median_us'][part]:.2f}" for name in names)] for part in parts]
    rows.insert(
        3,
        [
            "peer_chain + Enforcer.check, cold cache, net",
            *(f"{check[name]['cold_total_us']:.2f}" for name in names),
        ],
    )
    out.append(table(["part", *(name.upper() for name in names)], rows))
    bounds = check["spki_cache"]
    out.append(
        "  SPKI caches: "
        + ", ".join(f"{k} = {v}" for k, v in bounds.items())
        + (" (bounded)" if all(v is not None for v in bounds.values()) else " (UNBOUNDED)")
    )

    pinset = results["pinset"]
    match = pinset["match"]
    out.append("")
    out.append(
        f"4. Pin set scale: PinSet.match, us per lookup (median of {s['rounds']} rounds x "
        f"{match['number']} x {match['queries']} lookups: hits of every kind and misses)"
    )
    base = match["median_us"][str(match["sizes"][0])]
    rows = [
        [
            f"{size:,}",
            f"{match['median_us'][str(size)]:.3f}",
            f"{match['median_us'][str(size)] / base:.3f}",
        ]
        for size in match["sizes"]
    ]
    out.append(table(["entries", "us/match", "ratio"], rows))
    load = pinset["load"]
    rss = load["rss_delta_bytes"]
    out.append(
        f"  load {load['entries']:,}-entry JSON file ({load['file_bytes'] / 1e6:.1f} MB) in a "
        f"fresh process: median {load['median_s']:.2f} s of {len(load['seconds'])} "
        f"(first {load['seconds'][0]:.2f} s); RSS "
        f"{'?' if rss is None else f'+{rss / 1e6:.0f} MB'}; tracemalloc peak "
        f"{load['tracemalloc_peak_bytes'] / 1e6:.0f} MB, retained "
        f"{load['tracemalloc_retained_bytes'] / 1e6:.0f} MB"
    )

    out.append("")
    conc = results["concurrency"]
    first = next(iter(conc.values()))
    out.append(
        f"5. Concurrency: {first['threads']} threads sharing one session (medians of "
        f"{s['rounds']} rounds, interleaved; ratio = throughput / plain's)"
    )
    rows = []
    for workload, figures in conc.items():
        for variant, values in figures["variants"].items():
            rows.append(
                [
                    f"{workload} ({figures['requests_per_thread']}/thread)",
                    variant,
                    f"{values['median']:,.0f}",
                    _fmt_ratio(values),
                    str(values["errors"]),
                ]
            )
    out.append(table(["workload", "variant", "req/s", "ratio (round range)", "errors"], rows))

    out.append("")
    out.append("Targets" + (" (quick pass: not judged)" if results["quick"] else ""))
    rows = [[t.status, t.name, t.describe()] for t in targets]
    out.append(table(["status", "target", "value  target"], rows, align="llr"))
    out.append("")
    out.append(f"total time: {results['duration_s']:.0f} s")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke pass: tiny counts, < 60 s")
    parser.add_argument("--no-valgrind", action="store_true", help="skip the instruction counts")
    parser.add_argument("--rounds", type=int, help="rounds per comparison (default 7; quick 3)")
    parser.add_argument("--parallel", type=int, default=2, help="valgrind runs at a time")
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the figures "
        "(default benchmarks/results/latest.json; quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = Settings(**{**asdict(settings), "rounds": args.rounds})
    command = "python -m benchmarks" + (" " + " ".join(argv) if argv else "")
    if argv is None:
        command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    json_path = args.json or _RESULTS / ("quick.json" if args.quick else "latest.json")
    started = time.monotonic()
    notes: list[str] = []
    variants = ["plain", "pinned"]
    if fingerprint_available():
        variants.append("fingerprint")
    else:
        notes.append(
            "requests-toolbelt is not installed (pip install -e '.[bench]'): "
            "FingerprintAdapter skipped"
        )
    jobs = [job for job in settings.callgrind_jobs if job[0] in variants]
    valgrind = callgrind.available()
    if args.no_valgrind:
        notes.append("valgrind skipped (--no-valgrind): no instruction counts")
        jobs = []
    elif valgrind is None:
        notes.append("valgrind is not installed: skipped, no instruction counts")
        jobs = []
    elif args.quick:
        notes.append("quick: callgrind only for " + ", ".join("/".join(j) for j in jobs))
    for note in notes:
        _progress(f"note: {note}")

    results: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": asdict(settings),
        "notes": notes,
    }
    with tempfile.TemporaryDirectory(prefix="bench-pki-") as name:
        folder = Path(name)
        chains: dict[str, Chain] = {key: make_chain(folder, key) for key in ("ec", "rsa")}
        with ServerProcess(folder, list(chains)) as server:
            ec = chains["ec"]
            target = HttpTarget(server.ports["ec"], ec.bundle, ec.intermediate_pin, ec.leaf_sha256)
            _progress(f"server: pid {server.pid}, ports {server.ports}")
            _progress("1. new connections, wall clock")
            results["new"] = _http_wall(
                target,
                variants,
                workload="new",
                rounds=settings.rounds,
                count=settings.new_requests,
            )
            _progress("2. keep-alive, wall clock")
            results["keepalive"] = _http_wall(
                target,
                variants,
                workload="keepalive",
                rounds=settings.rounds,
                count=settings.keepalive_requests,
            )
            _progress("3. the pin check, in process")
            results["check"] = {
                key: measure_check(
                    chain, server.ports[key], number=settings.check_number, rounds=settings.rounds
                )
                for key, chain in chains.items()
            }
            results["check"]["spki_cache"] = cache_bounds()
            _progress("5. concurrency")
            results["concurrency"] = {
                workload: _concurrency(target, settings, workload)
                for workload in ("new", "keepalive")
            }
            if jobs:
                _progress(
                    f"1-2. instruction counts: {len(jobs) * 2} callgrind runs "
                    f"({args.parallel} at a time)"
                )
                results["instructions"] = _instructions(target, settings, jobs, args.parallel)
        _progress("4. pin set scale")
        results["pinset"] = {
            "match": measure_match(
                settings.match_sizes, number=settings.match_number, rounds=settings.rounds
            ),
            "load": measure_load(folder, settings.load_entries, repeat=settings.load_repeat),
        }
    results["duration_s"] = time.monotonic() - started
    targets = _targets(results)
    results["targets"] = [target.to_json() for target in targets]
    print(_render(results, targets))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {json_path}")
    return 0
