"""Running test code in threads that overlap as much as CPython lets them.

The thread-safety tests race threads on one object (a pin set being unpacked,
a session's TLS contexts). Two things make such a race likely rather than
lucky: the interpreter switches threads every microsecond instead of every
5 ms (:func:`switching_often`), and the threads start their work together,
past a barrier (:func:`at_once`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def switching_often() -> Iterator[None]:
    """Within the block, CPython switches threads every microsecond."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def at_once(work: Callable[[int], None], count: int) -> None:
    """Call ``work(k)`` for k in 0 .. count - 1, each in its own thread, all
    released together by a barrier; return once all have ended.

    What a thread raises is raised here (the first, by thread number), so a
    failed assertion inside ``work`` fails the test that called this.
    """
    barrier = threading.Barrier(count)
    errors: list[BaseException | None] = [None] * count

    def run(k: int) -> None:
        barrier.wait()
        try:
            work(k)
        except BaseException as exc:  # handed to the calling thread below
            errors[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
