"""The keep-alive figures across memory layouts (benchmarks/run.py): which runs
are made, and how their counts become the judged ratio and its A/A band.

No valgrind here: the counts are given, as a run's JSON holds them.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

from benchmarks import callgrind
from benchmarks.callgrind import Job
from benchmarks.run import FULL, QUICK, _keepalive_target, _layout_jobs, _split_band


def _keepalive(*variants: str) -> list[Job]:
    return [Job(variant, "keepalive", "bundle", "ec") for variant in variants]


def test_plain_and_pinned_in_the_even_layouts_and_plain_2_in_the_odd_ones() -> None:
    jobs = _layout_jobs(FULL, _keepalive("plain", "plain-2", "pinned", "unpinned"))
    layouts = {
        variant: [job.layout for job in jobs if job.variant == variant]
        for variant in ("plain", "pinned", "plain-2")
    }
    assert layouts == {
        "plain": [0, 2, 4, 6, 8, 10, 12],
        "pinned": [0, 2, 4, 6, 8, 10, 12],
        "plain-2": [1, 3, 5, 7, 9, 11, 13],
    }
    assert {job.variant for job in jobs} == {"plain", "pinned", "plain-2"}
    assert all(
        (job.workload, job.verify, job.chain) == ("keepalive", "bundle", "ec") for job in jobs
    )


def test_no_layouts_without_plain_or_without_keep_alive_or_when_switched_off() -> None:
    assert _layout_jobs(FULL, _keepalive("pinned", "plain-2")) == []
    assert _layout_jobs(FULL, [Job("plain", "new"), Job("pinned", "new")]) == []
    assert _layout_jobs(replace(FULL, layouts=0), _keepalive("plain", "pinned")) == []
    # The quick pass counts plain and pinned, so it runs the layouts' code once.
    quick = _layout_jobs(QUICK, _keepalive("plain", "pinned"))
    assert [(job.variant, job.layout) for job in quick] == [("plain", 0), ("pinned", 0)]


def test_a_layout_is_a_padding_of_16_bytes_per_step_and_absent_by_default(tmp_path: Any) -> None:
    default = callgrind._counted_env(tmp_path, None)
    assert callgrind.LAYOUT_VARIABLE not in default
    assert callgrind._counted_env(tmp_path, 0)[callgrind.LAYOUT_VARIABLE] == ""
    assert callgrind._counted_env(tmp_path, 3)[callgrind.LAYOUT_VARIABLE] == "_" * 48
    # Everything else is the default layout's environment.
    third = callgrind._counted_env(tmp_path, 3)
    del third[callgrind.LAYOUT_VARIABLE]
    assert third == default


def _layouts(plain: list[float], control: list[float], pinned: list[float]) -> dict[str, Any]:
    variants: dict[str, dict[str, Any]] = {
        "plain": {"per_request": plain},
        "plain-2": {"per_request": control},
        "pinned": {"per_request": pinned},
    }
    for figures in variants.values():
        figures["median"] = statistics.median(figures["per_request"])
        figures["ratio_to_plain"] = figures["median"] / statistics.median(plain)
    return {
        "variants": variants,
        "aa_ratio": abs(variants["plain-2"]["ratio_to_plain"] - 1),
        "pinned_per_layout": [a / b for a, b in zip(pinned, plain, strict=True)],
    }


def test_the_band_is_the_90th_percentile_over_every_split_of_plain_s_counts() -> None:
    # Identical counts: no split can tell them apart.
    assert _split_band(_layouts([100.0] * 3, [100.0] * 3, [100.0] * 3)) == 0
    # Four counts, two sets of two: of the six splits, four put a 100 and a
    # 110 on each side (ratio 1), one puts the 100s in A (100 / 110) and one
    # the 110s (110 / 100). Sorted, |ratio - 1| is 0, 0, 0, 0, 1/11, 1/10, and
    # the 90th percentile, at index int(0.9 * 5) = 4, is 1/11.
    band = _split_band(_layouts([100.0, 110.0], [100.0, 110.0], [100.0, 100.0]))
    assert band == abs(100 / 110 - 1)
    # plain-2's own median can land on plain's while the pooled counts spread.
    layouts = _layouts([100.0, 104.0, 96.0], [100.0, 96.0, 104.0], [100.0] * 3)
    assert layouts["aa_ratio"] == 0
    band = _split_band(layouts)
    assert band is not None and band > 0.03


def test_no_band_without_a_control_or_with_a_single_layout() -> None:
    layouts = _layouts([100.0, 101.0], [100.0, 101.0], [100.0, 101.0])
    del layouts["variants"]["plain-2"]
    assert _split_band(layouts) is None
    assert _split_band(_layouts([100.0], [101.0], [100.0])) is None


def test_keep_alive_is_judged_on_the_medians_across_layouts_when_there_are_any() -> None:
    # The default layout alone would miss (1.003); across layouts the medians
    # are 1.001 apart, with a band of their own.
    pinned, plain = {"ratio_to_plain": 1.003, "per_request": 1003.0}, {"per_request": 1000.0}
    layouts = _layouts([1000.0, 1000.5, 999.5], [1000.2, 999.8, 1000.0], [1001.0, 1004.0, 1000.0])
    target = _keepalive_target({"layouts": layouts}, pinned, plain)
    assert target.value == 1001.0 / 1000.0
    assert target.noise == _split_band(layouts)
    assert target.noise is not None and target.noise < 0.001
    assert target.status == "met"
    assert "median of 3 layouts" in target.name and "default layout: 1.0030" in target.name
    # Without layouts (a run's JSON from before them), the default layout's
    # ratio is the judged one, as it was.
    alone = _keepalive_target({}, pinned, {**plain, "aa_ratio": 0.0})
    assert alone.value == 1.003
    assert alone.status == "MISSED"
