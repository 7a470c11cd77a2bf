"""The thread scaffolding of the race tests (tests/threads.py) does what they rely on."""

from __future__ import annotations

import sys
import threading

import pytest

from .threads import at_once, switching_often


def test_every_thread_runs_past_the_barrier_together() -> None:
    seen: list[int] = []
    inside = threading.Barrier(5)  # passes only if all five run at the same time

    def work(k: int) -> None:
        inside.wait(timeout=10)
        seen.append(k)

    at_once(work, 5)
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_what_a_thread_raises_fails_the_caller() -> None:
    def work(k: int) -> None:
        assert k != 2, "thread 2 failed"

    with pytest.raises(AssertionError, match="thread 2 failed"):
        at_once(work, 4)


def test_the_switch_interval_is_short_inside_and_restored_after() -> None:
    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError), switching_often():
        assert sys.getswitchinterval() < before
        raise RuntimeError
    assert sys.getswitchinterval() == before
