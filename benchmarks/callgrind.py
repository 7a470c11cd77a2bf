"""Instructions executed per request by the client process, counted by callgrind.

Each count is the difference between a long and a short run of
``python -m benchmarks.client`` under ``valgrind --tool=callgrind``, divided by
the difference in requests, so that interpreter start-up, imports and the
first request's one-time work cancel out. The server runs in its own process,
outside valgrind. The client runs with ``PYTHONHASHSEED=0`` and has no
randomness or clock in its paths, so a count repeats from run to run (to a few
instructions per request; OpenSSL's random numbers vary, its work does not).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .client import Target
from .server import child_environment

__all__ = ["Count", "available", "count_per_request", "total_instructions"]

_REPO = Path(__file__).resolve().parent.parent
_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Count:
    """Instructions of one variant and workload: the two runs and the figure per request."""

    variant: str
    workload: str
    short_requests: int
    long_requests: int
    short_total: int
    long_total: int

    @property
    def per_request(self) -> float:
        return (self.long_total - self.short_total) / (self.long_requests - self.short_requests)


def available() -> str | None:
    """The path of valgrind, or None when it is not installed."""
    return shutil.which("valgrind")


def total_instructions(out_file: Path) -> int:
    """The total instruction count in a callgrind output file ("summary:" or "totals:")."""
    match = _TOTAL.search(out_file.read_bytes())
    if match is None:
        raise ValueError(f"no summary or totals line in {out_file}")
    return int(match.group(1))


def _client_command(target: Target, variant: str, workload: str, requests: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.client",
        "--variant",
        variant,
        "--workload",
        workload,
        "--requests",
        str(requests),
        "--port",
        str(target.port),
        "--bundle",
        str(target.bundle),
        "--pin",
        target.intermediate_pin,
        "--fingerprint",
        target.leaf_sha256,
    ]


def _env() -> dict[str, str]:
    # Same hashes every run; no .pyc written under valgrind (a short run that
    # compiled what the long run then read would not cancel out).
    return child_environment(PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")


def _run(valgrind: str, folder: Path, target: Target, job: tuple[str, str, int]) -> int:
    variant, workload, requests = job
    out_file = folder / f"callgrind.{variant}.{workload}.{requests}.out"
    command = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        *_client_command(target, variant, workload, requests),
    ]
    result = subprocess.run(command, cwd=_REPO, env=_env(), capture_output=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"callgrind run {variant}/{workload}/{requests} failed:\n{tail}")
    return total_instructions(out_file)


def count_per_request(
    target: Target,
    jobs: Sequence[tuple[str, str]],
    short: dict[str, int],
    long: dict[str, int],
    parallel: int = 2,
) -> list[Count]:
    """Count each (variant, workload) of ``jobs`` with ``short[workload]`` and ``long[workload]``
    requests; up to ``parallel`` valgrinds at a time (counts do not depend on timing)."""
    valgrind = available()
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    # Once natively first, so that every .pyc the client needs exists before
    # the counted runs: then all of them read the same files.
    for workload in sorted({workload for _variant, workload in jobs}):
        for variant in sorted({variant for variant, w in jobs if w == workload}):
            subprocess.run(
                _client_command(target, variant, workload, 1),
                cwd=_REPO,
                env=child_environment(PYTHONHASHSEED="0"),
                check=True,
            )
    runs = [
        (variant, workload, n)
        for variant, workload in jobs
        for n in (short[workload], long[workload])
    ]
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        folder = Path(name)
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            totals = list(pool.map(lambda job: _run(valgrind, folder, target, job), runs))
    by_run = dict(zip(runs, totals, strict=True))
    return [
        Count(
            variant=variant,
            workload=workload,
            short_requests=short[workload],
            long_requests=long[workload],
            short_total=by_run[(variant, workload, short[workload])],
            long_total=by_run[(variant, workload, long[workload])],
        )
        for variant, workload in jobs
    ]
