"""``python -m benchmarks``: run every benchmark, print the table, write the JSON.

Every comparison has an A/A control: plain requests twice, as the separate
variants ``plain`` and ``plain-2`` (for the httpx face, whose variants are
compared to plain httpx: ``httpx-plain`` and ``httpx-plain-2``). How far those
two are apart is the noise band of that comparison; it is printed beside every
ratio and difference, and each target's verdict says when the figure is closer
to its limit than that.

The targets of the HTTP benchmarks are judged on instruction counts
(callgrind, client process only), which repeat from run to run; the wall-clock
figures beside them interleave their variants (the order rotating from round to
round) and report medians over rounds, because absolute times on a shared
machine are not comparable between runs. The keep-alive target is judged over
several memory layouts (see ``_LAYOUT_COMPARISON``), where an A/A control in
the same layout would show nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import callgrind
from .callgrind import CHAIN_READERS, TYPE_CACHE_MISS, Job
from .client import (
    AA_CONTROLS,
    HTTPX_VARIANTS,
    baseline,
    concurrent_round,
    fingerprint_available,
    httpx_available,
    make_session,
    run_requests,
)
from .client import (
    Target as HttpTarget,
)
from .pki import Chain, make_certifi_overlay, make_chain, wait_until_settled
from .report import Target, machine, table
from .server import ServerProcess

__all__ = ["FULL", "QUICK", "Comparison", "Settings", "main"]

_RESULTS = Path(__file__).resolve().parent / "results"

_VERIFY_LABEL = {
    "bundle": "verify=<one-root bundle path>",
    "certifi": "verify=True (certifi)",
    "none": "verify=False",
}
_WORKLOAD_LABEL = {
    "new": "new connections (Connection: close, a TLS handshake per request)",
    "keepalive": "keep-alive (one connection, many requests)",
}
_ALL = ("plain", "plain-2", "pinned", "unpinned", "fingerprint", "injected")
_ADAPTERS = ("plain", "plain-2", "pinned", "unpinned")
_HTTPX = HTTPX_VARIANTS  # compared to httpx-plain, in the same comparisons


@dataclass(frozen=True)
class Comparison:
    """Variants counted against each other under callgrind: one table of the report."""

    workload: str
    verify: str
    chain: str
    variants: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.verify}/{self.chain}"

    @property
    def title(self) -> str:
        workload = _WORKLOAD_LABEL[self.workload]
        return (
            f"{workload[0].upper()}{workload[1:]}, {self.chain.upper()} chain, "
            f"{_VERIFY_LABEL[self.verify]}"
        )


@dataclass(frozen=True)
class Settings:
    rounds: int
    new_requests: int  # wall clock, per variant and round
    keepalive_requests: int
    comparisons: tuple[Comparison, ...]
    # (workload, verify) -> (short, long) requests of the two callgrind runs
    callgrind_requests: tuple[tuple[tuple[str, str], tuple[int, int]], ...]
    # None: count every job of the comparisons; else only these, and run the
    # others once natively (a smoke test that each configuration works)
    counted: tuple[tuple[str, str, str, str], ...] | None
    check_number: int
    match_sizes: tuple[int, ...]
    match_number: int
    mix_queries: int  # distinct hosts of the lookup mix
    load_entries: int
    load_repeat: int
    threads: int
    concurrent_new: int  # requests per thread and round
    concurrent_keepalive: int
    # Keep-alive across layouts (_layout_jobs): how many layouts each of plain,
    # pinned and plain-2 is counted in (0: none), and the (short, long)
    # requests of those runs.
    layouts: int = 0
    layout_requests: tuple[int, int] = (100, 300)


FULL = Settings(
    rounds=7,
    new_requests=100,
    keepalive_requests=1000,
    comparisons=(
        Comparison("new", "bundle", "ec", (*_ALL, *_HTTPX)),
        Comparison("new", "certifi", "ec", (*_ADAPTERS, "injected", *_HTTPX)),
        Comparison("new", "none", "ec", (*_ADAPTERS, "injected", *_HTTPX)),
        Comparison("new", "bundle", "rsa", _ADAPTERS),
        Comparison("keepalive", "bundle", "ec", (*_ALL, *_HTTPX)),
    ),
    callgrind_requests=(
        (("new", "bundle"), (5, 35)),
        (("new", "certifi"), (1, 6)),
        (("new", "none"), (1, 6)),
        (("keepalive", "bundle"), (100, 1100)),
    ),
    counted=None,
    check_number=2000,
    match_sizes=(10, 1_000, 100_000),
    match_number=300,
    mix_queries=50_000,
    load_entries=100_000,
    load_repeat=5,
    threads=8,
    concurrent_new=40,
    concurrent_keepalive=250,
    layouts=7,
    layout_requests=(100, 300),
)

_QUICK_NEW = ("plain", "pinned", "unpinned", "fingerprint")

# A smoke pass: every benchmark with tiny counts. Callgrind (seconds of
# interpreter start-up per run) runs only for plain and pinned keep-alive,
# short and long; every other configuration runs once natively.
QUICK = Settings(
    rounds=3,
    new_requests=4,
    keepalive_requests=20,
    comparisons=(
        Comparison("new", "bundle", "ec", (*_QUICK_NEW, "injected", "httpx-plain", "httpx-pinned")),
        Comparison("new", "certifi", "ec", ("plain", "pinned", "injected", "httpx-pinned")),
        Comparison("new", "none", "ec", ("plain", "pinned", "injected", "httpx-pinned")),
        Comparison("new", "bundle", "rsa", ("pinned",)),
        Comparison("keepalive", "bundle", "ec", ("plain", "pinned", "injected", "httpx-pinned")),
    ),
    callgrind_requests=(
        (("new", "bundle"), (1, 2)),
        (("new", "certifi"), (1, 2)),
        (("new", "none"), (1, 2)),
        (("keepalive", "bundle"), (1, 3)),
    ),
    counted=(("plain", "keepalive", "bundle", "ec"), ("pinned", "keepalive", "bundle", "ec")),
    check_number=50,
    match_sizes=(10, 100, 1_000),
    match_number=5,
    mix_queries=2_000,
    load_entries=2_000,
    load_repeat=2,
    threads=8,
    concurrent_new=2,
    concurrent_keepalive=5,
    layouts=1,
    layout_requests=(1, 3),
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
    variants = ("plain", "plain-2", "pinned")
    errors: dict[str, list[str]] = {variant: [] for variant in variants}

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

    summary = _summary(_interleaved(variants, settings.rounds, measure), cost=False)
    for variant, figures in summary.items():
        figures["errors"] = len(errors[variant])
        # What each error was, by kind: a count alone cannot tell a refusal
        # from a connection the loaded machine dropped.
        figures["error_kinds"] = dict(Counter(errors[variant]))
    return {
        "threads": settings.threads,
        "requests_per_thread": per_thread,
        "variants": summary,
    }


def _jobs(comparisons: Sequence[Comparison], variants: Sequence[str]) -> list[Job]:
    return [
        Job(variant, c.workload, c.verify, c.chain)
        for c in comparisons
        for variant in c.variants
        if variant in variants
    ]


# Keep-alive across layouts (issue 11). Which (type, name) pairs collide in
# CPython's type-attribute cache depends on where earlier, unrelated objects
# landed, and moves a keep-alive request by up to 0.3 %, more than the target's
# margin: one layout's pinned / plain is one draw of that. So plain and pinned
# are also counted in several layouts (callgrind.LAYOUT_VARIABLE), and the
# target is judged on the ratio of their medians. The A/A control plain-2 runs
# in layouts of its own, between theirs, so that the A/A band shows what layout
# alone does to a median (an A/A control in the same layout agrees to a few
# instructions and shows nothing).
_LAYOUT_COMPARISON = "keepalive/bundle/ec"
_LAYOUT_VARIANTS = ("plain", "pinned", "plain-2")


def _layout_jobs(settings: Settings, counted: Sequence[Job]) -> list[Job]:
    """The keep-alive jobs of plain and pinned in layouts 0, 2, 4, ..., and of
    plain-2 in layouts 1, 3, 5, ...: those of the three counted in the default
    layout, if plain is (nothing is compared without it)."""
    base = {
        job.variant
        for job in counted
        if f"{job.workload}/{job.verify}/{job.chain}" == _LAYOUT_COMPARISON
    }
    if not settings.layouts or "plain" not in base:
        return []
    return [
        Job(variant, "keepalive", "bundle", "ec", 2 * index + (variant == "plain-2"))
        for index in range(settings.layouts)
        for variant in _LAYOUT_VARIANTS
        if variant in base
    ]


def _layout_figures(counts: Sequence[callgrind.Count], settings: Settings) -> dict[str, Any]:
    """Each variant's instructions per request in each of its layouts, their median,
    and the medians' ratios to plain's (``aa_ratio``: plain-2's distance from 1)."""
    variants: dict[str, dict[str, Any]] = {}
    for count in sorted(counts, key=lambda count: count.layout or 0):
        figures = variants.setdefault(
            count.variant, {"layouts": [], "per_request": [], "type_misses_per_request": []}
        )
        figures["layouts"].append(count.layout)
        figures["per_request"].append(count.per_request)
        figures["type_misses_per_request"].append(count.type_misses_per_request)
    result: dict[str, Any] = {
        "comparison": _LAYOUT_COMPARISON,
        "step_bytes": callgrind.LAYOUT_STEP,
        "requests": list(settings.layout_requests),
        "variants": variants,
    }
    for figures in variants.values():
        figures["median"] = statistics.median(figures["per_request"])
    plain = variants.get("plain")
    if plain is None:
        return result
    for figures in variants.values():
        figures["ratio_to_plain"] = figures["median"] / plain["median"]
    if "plain-2" in variants:
        result["aa_ratio"] = abs(variants["plain-2"]["ratio_to_plain"] - 1)
    pinned = variants.get("pinned")
    if pinned is not None and pinned["layouts"] == plain["layouts"]:
        result["pinned_per_layout"] = [
            a / b for a, b in zip(pinned["per_request"], plain["per_request"], strict=True)
        ]
    return result


def _job_key(job: Job) -> tuple[str, str, str, str]:
    return job.variant, job.workload, job.verify, job.chain


def _split_band(layouts: dict[str, Any]) -> float | None:
    """The A/A band across layouts: plain's and plain-2's counts pooled, the 90th
    percentile of ``|median(A) / median(B) - 1|`` over every split of them into two
    sets as large as plain's; None without two or more of each.

    plain-2's median against plain's is one such split, one draw: it may land
    near 1 by chance. Pooled, the counts of plain's code in all its layouts give
    the spread of a ratio of medians that layout alone makes.
    """
    variants = layouts.get("variants", {})
    if "plain" not in variants or "plain-2" not in variants:
        return None
    plain, control = variants["plain"]["per_request"], variants["plain-2"]["per_request"]
    if len(plain) < 2 or len(control) < 2:
        return None
    values: list[float] = [*plain, *control]
    size = len(plain)
    ratios: list[float] = []
    for chosen in itertools.combinations(range(len(values)), size):
        picked = set(chosen)
        a = [value for index, value in enumerate(values) if index in picked]
        b = [value for index, value in enumerate(values) if index not in picked]
        ratios.append(abs(statistics.median(a) / statistics.median(b) - 1))
    ratios.sort()
    return ratios[int(0.9 * (len(ratios) - 1))]


def _instructions(
    targets: dict[str, HttpTarget],
    overlay: Path,
    settings: Settings,
    jobs: Sequence[Job],
    parallel: int,
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, Any] | None]:
    """{comparison key: {variant: figures}}, each with its difference and ratio to the plain
    variant of its face (``*_to_plain``: to ``httpx-plain`` for the httpx face); and the
    keep-alive figures across layouts (:func:`_layout_figures`), or None."""
    layout_jobs = _layout_jobs(settings, jobs)
    counts = callgrind.count_per_request(
        targets,
        overlay,
        [*jobs, *layout_jobs],
        dict(settings.callgrind_requests),
        parallel=parallel,
        layout_requests=settings.layout_requests,
    )
    layouts = [count for count in counts if count.layout is not None]
    counts = [count for count in counts if count.layout is None]
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for count in counts:
        key = f"{count.workload}/{count.verify}/{count.chain}"
        result.setdefault(key, {})[count.variant] = {
            **asdict(count),
            "per_request": count.per_request,
            "chain_reads_per_request": count.chain_reads_per_request,
            "type_misses_per_request": count.type_misses_per_request,
        }
    for figures in result.values():
        for name, variant in figures.items():
            plain = figures.get(baseline(name))
            if plain is None:
                variant["delta_to_plain"] = variant["ratio_to_plain"] = None
                continue
            variant["delta_to_plain"] = variant["per_request"] - plain["per_request"]
            variant["ratio_to_plain"] = variant["per_request"] / plain["per_request"]
        for base, control in AA_CONTROLS.items():
            if base in figures and control in figures:
                aa = figures[control]
                # The noise band: how far plain is from itself.
                figures[base]["aa_delta"] = abs(aa["delta_to_plain"])
                figures[base]["aa_ratio"] = abs(aa["ratio_to_plain"] - 1)
    return result, (_layout_figures(layouts, settings) if layouts else None)


def _fmt_ratio(figures: dict[str, Any]) -> str:
    return (
        f"{figures['ratio_to_plain']:.3f} "
        f"({figures['round_ratio_min']:.2f}-{figures['round_ratio_max']:.2f})"
    )


def _wall_table(wall: dict[str, dict[str, Any]]) -> str:
    rows = [
        [
            variant,
            f"{figures['median']:,.0f}",
            f"{1e6 / figures['median']:,.0f}",
            _fmt_ratio(figures),
        ]
        for variant, figures in wall.items()
    ]
    return table(["variant", "us/request", "req/s", "ratio (round range)"], rows)


def _count_table(figures: dict[str, dict[str, Any]]) -> str:
    rows: list[list[str] | None] = []
    face = None
    for variant, count in figures.items():
        delta, ratio = count["delta_to_plain"], count["ratio_to_plain"]
        if face is not None and baseline(variant) != face:
            rows.append(None)  # a rule: the next face's rows, against its own plain
        face = baseline(variant)
        rows.append(
            [
                variant + (" (A/A)" if variant in AA_CONTROLS.values() else ""),
                f"{count['per_request']:,.0f}",
                "-" if delta is None else f"{delta:+,.0f}",
                "-" if ratio is None else f"{ratio:.4f}",
                f"{count['chain_reads_per_request']:g}",
                _fmt_misses(count),
            ]
        )
    headers = [
        "variant",
        "instructions/request",
        "minus plain",
        "/ plain",
        "chain reads",
        "type-cache misses",
    ]
    return table(headers, rows)


def _fmt_misses(count: dict[str, Any]) -> str:
    # Figures written before the column existed have no such key.
    misses = count.get("type_misses_per_request")
    return "-" if misses is None else f"{misses:,.0f}"


def _layout_lines(layouts: dict[str, Any]) -> list[str]:
    short, long = layouts["requests"]
    variants = layouts["variants"]
    out = [
        "",
        f"  Keep-alive across layouts, EC chain, {_VERIFY_LABEL['bundle']}: "
        f"({long} - {short} requests) / {long - short}; layout k = an environment "
        f"variable of {layouts['step_bytes']}·k bytes, which the client ignores "
        "(plain and pinned in the even layouts, the A/A control plain-2 in the odd ones)",
    ]
    rows = []
    for variant, figures in variants.items():
        per_request = figures["per_request"]
        ratio = figures.get("ratio_to_plain")
        rows.append(
            [
                variant + (" (A/A)" if variant == "plain-2" else ""),
                ", ".join(str(layout) for layout in figures["layouts"]),
                f"{figures['median']:,.0f}",
                "-" if ratio is None else f"{ratio:.4f}",
                f"{min(per_request):,.0f} - {max(per_request):,.0f}",
                f"{statistics.median(figures['type_misses_per_request']):,.0f}",
            ]
        )
    headers = ["variant", "layouts", "median", "/ plain's", "range", "type-cache misses (median)"]
    out.append(table(headers, rows))
    per_layout = layouts.get("pinned_per_layout")
    if per_layout:
        out.append("  pinned / plain in each layout: " + ", ".join(f"{r:.4f}" for r in per_layout))
    if "aa_ratio" in layouts:
        out.append(f"  A/A (|plain-2's median / plain's - 1|): {layouts['aa_ratio'] * 100:.4f} %")
    band = _split_band(layouts)
    if band is not None:
        size = len(variants["plain"]["per_request"])
        out.append(
            f"  A/A band (plain's and plain-2's {2 * size} counts pooled, split every way into "
            f"two sets of {size}: |ratio of medians - 1| at the 90th percentile): "
            f"{band * 100:.4f} %"
        )
    return out


def _aa_line(figures: dict[str, dict[str, Any]]) -> str:
    lines = []
    for base, control in AA_CONTROLS.items():
        if not any(baseline(variant) == base for variant in figures):
            continue  # no variant of this face in the comparison
        plain = figures.get(base, {})
        if "aa_delta" not in plain:
            lines.append(f"  A/A band: not measured (no {control} in this comparison)")
            continue
        lines.append(
            f"  A/A band (|{control} - {base}|): {plain['aa_delta']:,.0f} instructions per "
            f"request, {plain['aa_ratio'] * 100:.4f} % of {base}"
        )
    return "\n".join(lines)


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Scalar leaves of nested dicts as (dotted key, value); lists are summarised."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        if value and all(isinstance(item, (int, float)) for item in value):
            yield prefix, "[" + ", ".join(_short(item) for item in value) + "]"
        else:
            yield prefix, f"[{len(value)} items]"
    else:
        yield prefix, value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pinset_lines(pinset: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """The pin-set figures as :mod:`benchmarks.pinset_scale` returns them, whatever their
    shape: the known ones as a table, every other figure as a line."""
    out: list[str] = []
    for key, title in (
        ("match", "the same {queries} queries, {number} times"),
        ("match_mix", "a mix of {queries:,} distinct hosts, each once"),
    ):
        match = pinset.get(key)
        if not (isinstance(match, dict) and "sizes" in match and "median_us" in match):
            continue
        what = title.format(queries=match.get("queries", 0), number=match.get("number", "?"))
        out.append(
            f"  PinSet.match, us per lookup (median of {match.get('rounds', s['rounds'])} rounds "
            f"of {what})"
        )
        sizes = match["sizes"]
        base = match["median_us"][str(sizes[0])]
        # The floors (bare dictionary probes on the same tables, same hosts),
        # when the figures have them: what no lookup through these tables beats.
        floors: dict[str, dict[str, float]] = match.get("floor_us") or {}
        names = list(floors.get(str(sizes[0]), {}))
        rows = [
            [
                f"{size:,}",
                f"{match['median_us'][str(size)]:.3f}",
                f"{match['median_us'][str(size)] / base:.3f}",
                *(f"{floors[str(size)][name]:.3f}" for name in names),
            ]
            for size in sizes
        ]
        out.append(table(["entries", "us/match", "ratio", *(f"floor: {n}" for n in names)], rows))
    shown = {
        f"{key}.{name}"
        for key in ("match", "match_mix")
        for name in ("sizes", "median_us", "rounds_us", "number", "rounds", "floor_us")
    }
    for key, value in _flat(pinset):
        if key in shown or any(key.startswith(f"{name}.") for name in shown):
            continue
        out.append(f"  {key}: {_short(value)}")
    return out


def _number(figures: dict[str, Any] | None, key: str) -> float | None:
    if not isinstance(figures, dict):
        return None
    value = figures.get(key)
    return None if value is None else float(value)


def _targets(results: dict[str, Any]) -> list[Target]:
    counts: dict[str, dict[str, dict[str, Any]]] = results.get("instructions") or {}

    def pair(key: str, variant: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        figures = counts.get(key, {})
        return figures.get(variant), figures.get("plain", {})

    targets = []
    for key, limit, label in (
        ("new/bundle/ec", 0.8, "one-root bundle"),
        ("new/certifi/ec", 0.1, "verify=True"),
    ):
        pinned, plain = pair(key, "pinned")
        targets.append(
            Target(
                f"new connection, {label}: instructions pinned / plain",
                _number(pinned, "ratio_to_plain"),
                limit,
                "lower",
                noise=_number(plain, "aa_ratio"),
            )
        )
    targets.append(_keepalive_target(results, *pair("keepalive/bundle/ec", "pinned")))
    for chain in ("ec", "rsa"):
        figures = counts.get(f"new/bundle/{chain}", {})
        pinned, unpinned = figures.get("pinned"), figures.get("unpinned")
        delta = (
            None
            if pinned is None or unpinned is None
            else pinned["per_request"] - unpinned["per_request"]
        )
        targets.append(
            Target(
                f"the check, {chain.upper()}: instructions per connection, pinned - unpinned host",
                delta,
                40_000,
                "lower",
                noise=_number(figures.get("plain"), "aa_delta"),
            )
        )
    unpinned, plain = pair("new/bundle/ec", "unpinned")
    reads = None
    if unpinned is not None and plain:
        reads = unpinned["chain_reads_per_request"] - plain["chain_reads_per_request"]
    targets.append(
        Target(
            "unpinned host: chain reads per connection, minus plain's",
            reads,
            0,
            "lower",
        )
    )
    pinset = results.get("pinset") or {}
    for key, label in (("load", "unique pins"), ("load_shared", "shared CA pins")):
        load = pinset.get(key)
        entries = _number(load, "entries")
        retained = _number(load, "tracemalloc_retained_bytes")
        targets.append(
            Target(
                f"load a {entries or 0:,.0f}-entry pin file ({label})",
                _number(load, "median_s"),
                0.5,
                "lower",
                " s",
            )
        )
        targets.append(
            Target(
                f"pin file ({label}): bytes kept per entry (tracemalloc)",
                None if not entries or retained is None else retained / entries,
                300,
                "lower",
                " B",
            )
        )
    mix = pinset.get("match_mix")
    largest = None
    floor = ""
    if isinstance(mix, dict) and mix.get("sizes") and "median_us" in mix:
        largest = float(mix["median_us"][str(mix["sizes"][-1])])
        bare = (mix.get("floor_us") or {}).get(str(mix["sizes"][-1]), {}).get("three probes")
        if bare is not None:
            floor = f" (three bare dict probes: {bare:.3f})"
    targets.append(
        Target(
            f"PinSet.match, a mix of distinct hosts, largest set: us per lookup{floor}",
            largest,
            0.5,
            "lower",
            " us",
        )
    )
    for workload, figures in results.get("concurrency", {}).items():
        targets.append(
            Target(
                f"{figures['threads']} threads, {workload}: errors (pinned)",
                float(figures["variants"]["pinned"]["errors"]),
                0,
                "lower",
            )
        )
    return targets


def _keepalive_target(
    results: dict[str, Any], pinned: dict[str, Any] | None, plain: dict[str, Any]
) -> Target:
    """Keep-alive pinned / plain: the ratio of the medians over layouts when they were
    counted (see _LAYOUT_COMPARISON), else the default layout's (runs before them)."""
    one = _number(pinned, "ratio_to_plain")
    # Beside it, the default layout's ratio, with and without the type-attribute
    # cache's misses (they move by thousands of instructions per request with
    # the layout, whatever the code per request): informational, not judged.
    notes = []
    if one is not None:
        notes.append(f"default layout: {one:.4f}")
    if pinned is not None and plain and "type_misses_per_request" in pinned:
        ratio = (pinned["per_request"] - pinned["type_misses_per_request"]) / (
            plain["per_request"] - plain["type_misses_per_request"]
        )
        notes.append(f"without type-cache misses: {ratio:.4f}")
    layouts = results.get("layouts") or {}
    per_layout = layouts.get("pinned_per_layout")
    if per_layout:
        notes.insert(0, f"per layout {min(per_layout):.4f} - {max(per_layout):.4f}")
        return Target(
            f"keep-alive, median of {len(per_layout)} layout{'s' if len(per_layout) != 1 else ''}: "
            "instructions pinned / plain "
            f"({'; '.join(notes)})",
            _number(layouts["variants"]["pinned"], "ratio_to_plain"),
            1.002,
            "lower",
            noise=_split_band(layouts) or _number(layouts, "aa_ratio"),
        )
    detail = f" ({notes[-1]})" if len(notes) > 1 else ""
    return Target(
        f"keep-alive: instructions pinned / plain{detail}",
        one,
        1.002,
        "lower",
        noise=_number(plain, "aa_ratio"),
    )


def _faces_setup(settings: dict[str, Any]) -> str:
    """What the setup line says of ``injected`` and the httpx face, when they were run."""
    names = {name for raw in settings["comparisons"] for name in raw["variants"]}
    text = ""
    if "injected" in names:
        text += "; injected = plain requests with inject_into_urllib3 (the pin of pinned) in force"
    if names & set(HTTPX_VARIANTS):
        text += (
            "; httpx-plain, httpx-plain-2 (A/A), httpx-pinned = a sync httpx.Client over "
            "HTTP/1.1 with httpx.HTTPTransport or PinningTransport (the pin of pinned), "
            "trust_env=False, compared to httpx-plain"
        )
    return text


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
        "setup: server in its own process on 127.0.0.1, chain leaf <- intermediate <- root; "
        "sessions with trust_env=False; pinned = the adapter with one pin on the intermediate "
        "(on the leaf with verify=False); unpinned = the same adapter, the host not in its pins; "
        "plain-2 = plain again (the A/A control)" + _faces_setup(s)
    )
    if results["quick"]:
        out.append("QUICK SMOKE PASS: tiny counts, the figures mean nothing")
    for note in results["notes"]:
        out.append(f"note: {note}")

    counts = results.get("instructions") or {}
    requests = {f"{w}/{v}": n for (w, v), n in s["callgrind_requests"]}
    out.append("")
    out.append(
        "1. Instructions per request, client process (callgrind: user space only; "
        "(long - short run) / (long - short requests)); chain reads = calls into "
        + ", ".join(sorted(CHAIN_READERS))
        + ("; httpx-* rows: minus and / httpx-plain" if "httpx" in _faces_setup(s) else "")
        + f"; type-cache misses = instructions per request in CPython's {TYPE_CACHE_MISS} "
        "(its type-attribute cache missing: they move with the layout of types and "
        "strings, by thousands per request, whatever the code per request; the A/A "
        "control, an identical process, does not show that)"
    )
    for raw in s["comparisons"]:
        comparison = Comparison(
            raw["workload"], raw["verify"], raw["chain"], tuple(raw["variants"])
        )
        figures = counts.get(comparison.key)
        if not figures:
            continue
        short, long = requests[f"{comparison.workload}/{comparison.verify}"]
        out.append("")
        out.append(f"  {comparison.title}: ({long} - {short} requests) / {long - short}")
        out.append(_count_table(figures))
        out.append(_aa_line(figures))
    if results.get("layouts"):
        out.extend(_layout_lines(results["layouts"]))
    if not counts:
        out.append("  not run")

    out.append("")
    if "new" not in results:
        out.append("2. Wall clock: not measured (--only)")
    else:
        out.append(
            f"2. Wall clock, EC chain, {_VERIFY_LABEL['bundle']} (medians of {s['rounds']} "
            "rounds, variants interleaved; ratio = time per request / plain's, with the range "
            "over rounds)"
        )
    for workload, per_round in (("new", s["new_requests"]), ("keepalive", s["keepalive_requests"])):
        if workload in results:
            out.append(f"  {_WORKLOAD_LABEL[workload]}, {per_round} requests per variant and round")
            out.append(_wall_table(results[workload]))

    check = results.get("check")
    out.append("")
    if check:
        out.append(
            f"3. The pin check's parts, in process (us per call, median of {s['rounds']} "
            f"rounds x {s['check_number']} calls; a verified chain of 3, one intermediate pin)"
        )
        names = [name for name in check if name != "spki_cache"]
        parts = list(check[names[0]]["median_us"])
        rows = [
            [part, *(f"{check[name]['median_us'][part]:.2f}" for name in names)] for part in parts
        ]
        out.append(table(["part", *(name.upper() for name in names)], rows))
        bounds = check["spki_cache"]
        out.append("  SPKI caches: " + ", ".join(f"{k} = {v}" for k, v in bounds.items()))
    else:
        out.append("3. The pin check's parts: not measured (see the notes)")

    out.append("")
    out.append("4. Pin set scale (benchmarks/pinset_scale.py)")
    pinset = results.get("pinset")
    out.extend(_pinset_lines(pinset, s) if pinset else ["  not measured (see the notes)"])

    out.append("")
    conc = results.get("concurrency")
    if not conc:
        out.append("5. Concurrency: not measured (--only)")
    else:
        _concurrency_lines(out, conc, s)

    out.append("")
    out.append("Targets" + (" (quick pass: not judged)" if results["quick"] else ""))
    rows = [[t.status, t.name, t.describe()] for t in targets]
    out.append(table(["status", "target", "value  target  noise"], rows, align="lll"))
    out.append("")
    out.append(f"total time: {results['duration_s']:.0f} s")
    return "\n".join(out)


def _concurrency_lines(out: list[str], conc: dict[str, Any], s: dict[str, Any]) -> None:
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
    for workload, figures in conc.items():
        for variant, values in figures["variants"].items():
            for kind, count in (values.get("error_kinds") or {}).items():
                out.append(f"  {workload}, {variant}: {count} x {kind}")


def _measure_check(
    chains: dict[str, Chain], ports: dict[str, int], settings: Settings, notes: list[str]
) -> dict[str, Any] | None:
    # The breakdown reaches into the library's private modules, which may move;
    # the targets do not depend on it.
    try:
        from .check import cache_bounds, measure_check
    except ImportError as error:
        notes.append(f"the pin check's parts not measured: {error}")
        return None
    check: dict[str, Any] = {
        key: measure_check(chain, ports[key], number=settings.check_number, rounds=settings.rounds)
        for key, chain in chains.items()
    }
    check["spki_cache"] = cache_bounds()
    return check


def _measure_pinset(folder: Path, settings: Settings, notes: list[str]) -> dict[str, Any] | None:
    # pinset_scale.py has its own owner; its figures are shown as they come.
    try:
        from .pinset_scale import measure_load, measure_match, measure_match_mix

        return {
            "match": measure_match(
                settings.match_sizes, number=settings.match_number, rounds=settings.rounds
            ),
            "match_mix": measure_match_mix(
                settings.match_sizes, count=settings.mix_queries, rounds=settings.rounds
            ),
            "load": measure_load(folder, settings.load_entries, repeat=settings.load_repeat),
            "load_shared": measure_load(
                folder, settings.load_entries, repeat=settings.load_repeat, shared=True
            ),
        }
    except Exception as error:  # reported in the notes; the rest still runs
        notes.append(f"pin set scale not measured: {type(error).__name__}: {error}")
        _progress(f"note: {notes[-1]}")
        return None


def _selected(
    settings: Settings,
    only: Sequence[str],
    variants: Sequence[str] | None,
    parser: argparse.ArgumentParser,
) -> Settings:
    """``settings`` with the comparisons whose key starts with one of ``only``, and
    (if given) only ``variants`` in them, all counted: ``--only`` and ``--variant``."""
    comparisons = []
    for comparison in settings.comparisons:
        if not any(comparison.key.startswith(prefix.strip("/")) for prefix in only):
            continue
        kept = tuple(v for v in comparison.variants if not variants or v in variants)
        if kept:
            comparisons.append(
                Comparison(comparison.workload, comparison.verify, comparison.chain, kept)
            )
    if not comparisons:
        keys = ", ".join(comparison.key for comparison in settings.comparisons)
        parser.error(f"--only {' '.join(only)} selects no comparison (there are: {keys})")
    return Settings(**{**asdict(settings), "comparisons": tuple(comparisons), "counted": None})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke pass: tiny counts, < 60 s")
    parser.add_argument("--no-valgrind", action="store_true", help="skip the instruction counts")
    parser.add_argument("--rounds", type=int, help="rounds per comparison (default 7; quick 3)")
    parser.add_argument("--parallel", type=int, default=2, help="valgrind runs at a time")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the report of figures written by an earlier run",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the figures "
        "(default benchmarks/results/latest.json; quick.json with --quick, only.json with --only)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="KEY",
        help="count only the comparisons whose key (workload/verify/chain, e.g. new/bundle/ec) "
        "starts with KEY (repeatable), and measure nothing else: no wall clock, check parts, "
        "concurrency or pin set figures",
    )
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME",
        help="with --only: count only these variants (repeatable; e.g. pinned, unpinned)",
    )
    args = parser.parse_args(argv)
    if args.variant and not args.only:
        parser.error("--variant needs --only")
    if args.render:
        saved: dict[str, Any] = json.loads(args.render.read_text())
        print(_render(saved, _targets(saved)))
        return 0
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = replace(settings, rounds=args.rounds)
    if args.only:
        settings = _selected(settings, args.only, args.variant, parser)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    default = "only.json" if args.only else "quick.json" if args.quick else "latest.json"
    json_path = args.json or _RESULTS / default
    started = time.monotonic()
    notes: list[str] = []
    variants = [*_ALL, *_HTTPX]
    if not httpx_available():
        variants = [variant for variant in variants if variant not in _HTTPX]
        notes.append("httpx is not installed (pip install -e '.[bench]'): the httpx face skipped")
    if not fingerprint_available():
        variants.remove("fingerprint")
        notes.append(
            "requests-toolbelt is not installed (pip install -e '.[bench]'): "
            "FingerprintAdapter skipped"
        )
    jobs = _jobs(settings.comparisons, variants)
    counted = jobs
    if settings.counted is not None:
        counted = [job for job in jobs if _job_key(job) in settings.counted]
    valgrind = callgrind.available()
    if args.no_valgrind:
        notes.append("valgrind skipped (--no-valgrind): no instruction counts")
        counted = []
    elif valgrind is None:
        notes.append("valgrind is not installed: skipped, no instruction counts")
        counted = []
    elif args.quick:
        notes.append(
            "quick: callgrind only for "
            + ", ".join("/".join(_job_key(job)) for job in counted)
            + "; every other configuration runs once natively"
        )
    if args.only:
        notes.append(
            "--only: instruction counts of "
            + ", ".join(f"{c.key} ({', '.join(c.variants)})" for c in settings.comparisons)
            + " alone; nothing else measured"
        )
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
    wall_variants = [v for v in ("plain", "plain-2", "pinned", "fingerprint") if v in variants]
    with tempfile.TemporaryDirectory(prefix="bench-pki-") as name:
        folder = Path(name)
        chains: dict[str, Chain] = {key: make_chain(folder, key) for key in ("ec", "rsa")}
        overlay = make_certifi_overlay(folder, list(chains.values()))
        wait_until_settled()
        with ServerProcess(folder, list(chains)) as server:
            targets = {
                key: HttpTarget(
                    server.ports[key],
                    chain.bundle,
                    chain.intermediate_pin,
                    chain.leaf_pin,
                    chain.leaf_sha256,
                )
                for key, chain in chains.items()
            }
            target = targets["ec"]
            _progress(f"server: pid {server.pid}, ports {server.ports}")
            if counted != jobs and not args.only:
                _progress("0. every configuration once, natively")
                for job in jobs:
                    if job not in counted:
                        callgrind.run_natively(targets[job.chain], overlay, job, 2)
            if not args.only:
                _measure_rest(results, target, wall_variants, chains, server.ports, settings, notes)
            if counted:
                _progress(
                    f"1. instruction counts: "
                    f"{(len(counted) + len(_layout_jobs(settings, counted))) * 2} callgrind runs "
                    f"({args.parallel} at a time)"
                )
                results["instructions"], layouts = _instructions(
                    targets, overlay, settings, counted, args.parallel
                )
                if layouts is not None:
                    results["layouts"] = layouts
        if not args.only:
            _progress("4. pin set scale")
            results["pinset"] = _measure_pinset(folder, settings, notes)
    results["duration_s"] = time.monotonic() - started
    verdicts = _targets(results)
    results["targets"] = [verdict.to_json() for verdict in verdicts]
    print(_render(results, verdicts))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {json_path}")
    return 0


def _measure_rest(
    results: dict[str, Any],
    target: HttpTarget,
    wall_variants: Sequence[str],
    chains: dict[str, Chain],
    ports: dict[str, int],
    settings: Settings,
    notes: list[str],
) -> None:
    """Sections 2, 3 and 5: wall clock, the check's parts, concurrency (not with --only)."""
    _progress("2. wall clock: new connections")
    results["new"] = _http_wall(
        target,
        wall_variants,
        workload="new",
        rounds=settings.rounds,
        count=settings.new_requests,
    )
    _progress("2. wall clock: keep-alive")
    results["keepalive"] = _http_wall(
        target,
        wall_variants,
        workload="keepalive",
        rounds=settings.rounds,
        count=settings.keepalive_requests,
    )
    _progress("3. the pin check's parts, in process")
    results["check"] = _measure_check(chains, ports, settings, notes)
    _progress("5. concurrency")
    results["concurrency"] = {
        workload: _concurrency(target, settings, workload) for workload in ("new", "keepalive")
    }
