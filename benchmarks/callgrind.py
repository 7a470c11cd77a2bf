"""Instructions executed per request by the client process, counted by callgrind.

Each count is the difference between a long and a short run of
``python -m benchmarks.client`` under ``valgrind --tool=callgrind``, divided by
the difference in requests, so that interpreter start-up, imports and the
first request's one-time work cancel out. The server runs in its own process,
outside valgrind. The client runs with ``PYTHONHASHSEED=0`` and has no
randomness or clock in its paths, so a count repeats from run to run (to a few
instructions per request; OpenSSL's random numbers vary, its work does not).

Every run gets arguments of the same lengths: variant and ``verify`` names are
padded with ``_`` and request counts with leading zeros (the client ignores
both). The strings of ``argv`` are allocated at start-up, and their lengths
alone shift the allocator's layout enough to move a keep-alive request by about
0.2 % (issue 11); with equal lengths the A/A control (``plain`` against ``plain-2``)
agrees to under 0.01 %. The environment is the same for every run. Variant
names are padded to the longest of their face (:data:`~benchmarks.client.VARIANTS`
for requests, :data:`~benchmarks.client.HTTPX_VARIANTS` for httpx), the one
every ratio is taken within: the requests face's runs keep the arguments they
had before the httpx face was added.

Still, how many types, strings and objects the process made before, and
where, decides which (type, name) pairs collide in CPython's type-attribute
cache, and that moves a keep-alive request by -0.1 % to +0.3 %
(issue 11): the same commit gave pinned / plain from 0.9990 to 1.0026 with
nothing changed but an unused environment variable or the checkout's
directory. So a job may run in one of several *layouts*
(:data:`LAYOUT_VARIABLE`, a padding the client ignores, ``16 * layout``
bytes long), and a ratio can be taken over several layouts rather than one.

Callgrind counts user-space instructions only: time in the kernel (sockets,
``read`` of the CA bundle) and waiting for the server are not in the counts.

Besides the total, each run counts the calls into the functions through which
anything reads a peer's certificate chain (:data:`CHAIN_READERS`): ``0`` per
connection means no chain was extracted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from .client import HTTPX_VARIANTS, VARIANTS, VERIFY, Target
from .server import child_environment

__all__ = [
    "CHAIN_READERS",
    "LAYOUT_VARIABLE",
    "TYPE_CACHE_MISS",
    "Count",
    "Job",
    "available",
    "chain_reads",
    "count_per_request",
    "total_instructions",
    "type_cache_misses",
]

_REPO = Path(__file__).resolve().parent.parent
_TOTAL = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)
_NAMED = re.compile(rb"^c?fn=\((\d+)\)(?: (.*))?$")

#: OpenSSL's ways to the verified chain, the served chain, and a certificate's
#: DER encoding (``getpeercert(binary_form=True)``, ``Certificate.public_bytes``).
CHAIN_READERS = frozenset(
    {"SSL_get0_verified_chain", "SSL_get_peer_cert_chain", "i2d_X509", "i2d_X509_bio"}
)

#: CPython's walk of a type's MRO when its type-attribute cache misses. In a
#: steady state (keep-alive) nearly every miss is two hot (type, name) pairs
#: evicting each other from the 4096-slot cache, whose slots depend on type
#: version tags and string addresses: on how many types and objects earlier,
#: unrelated code made. Changing nothing but the first connection's code moves
#: these by thousands of instructions per request, in either direction; the
#: A/A control, an identical process, cannot show that, so it is counted apart.
TYPE_CACHE_MISS = "find_name_in_mro"

#: The environment variable that sets a counted run's layout (see the module's
#: docstring): absent by default; ``"_" * (LAYOUT_STEP * layout)`` for a layout.
#: The environment is copied at start-up, before anything is imported, so its
#: size shifts where everything after it lands (16 bytes is the smallest step
#: that does: smaller ones are rounded up by the allocator).
LAYOUT_VARIABLE = "REQUESTS_PINNING_BENCHMARK_LAYOUT"
LAYOUT_STEP = 16

_VARIANT_WIDTH = max(len(name) for name in VARIANTS)
_HTTPX_VARIANT_WIDTH = max(len(name) for name in HTTPX_VARIANTS)
_VERIFY_WIDTH = max(len(name) for name in VERIFY)
_COUNT_WIDTH = 6


@dataclass(frozen=True)
class Job:
    """One thing to count: a variant's workload with a ``verify`` configuration and chain."""

    variant: str
    workload: str
    verify: str = "bundle"
    chain: str = "ec"
    #: None: the default layout (no LAYOUT_VARIABLE); else that layout.
    layout: int | None = None


@dataclass(frozen=True)
class Count:
    """Instructions and chain reads of one job: the two runs and the figures per request."""

    variant: str
    workload: str
    verify: str
    chain: str
    short_requests: int
    long_requests: int
    short_total: int
    long_total: int
    short_chain_reads: int
    long_chain_reads: int
    short_type_misses: int = 0
    long_type_misses: int = 0
    layout: int | None = None

    @property
    def per_request(self) -> float:
        return (self.long_total - self.short_total) / (self.long_requests - self.short_requests)

    @property
    def type_misses_per_request(self) -> float:
        """Instructions per request in CPython's type-attribute cache misses (TYPE_CACHE_MISS)."""
        extra = self.long_type_misses - self.short_type_misses
        return extra / (self.long_requests - self.short_requests)

    @property
    def chain_reads_per_request(self) -> float:
        extra = self.long_chain_reads - self.short_chain_reads
        return extra / (self.long_requests - self.short_requests)


def available() -> str | None:
    """The path of valgrind, or None when it is not installed."""
    return shutil.which("valgrind")


def total_instructions(out_file: Path) -> int:
    """The total instruction count in a callgrind output file ("summary:" or "totals:")."""
    match = _TOTAL.search(out_file.read_bytes())
    if match is None:
        raise ValueError(f"no summary or totals line in {out_file}")
    return int(match.group(1))


def chain_reads(out_file: Path) -> int:
    """Calls into :data:`CHAIN_READERS` recorded in a callgrind output file."""
    return _scan(out_file)[0]


def type_cache_misses(out_file: Path) -> int:
    """Instructions spent in calls into :data:`TYPE_CACHE_MISS` (inclusive) in a callgrind file."""
    return _scan(out_file)[1]


def _scan(out_file: Path) -> tuple[int, int]:
    """(calls into CHAIN_READERS, inclusive instructions of calls into TYPE_CACHE_MISS)."""
    names: dict[bytes, bytes] = {}
    wanted = {name.encode() for name in CHAIN_READERS}
    miss = TYPE_CACHE_MISS.encode()
    callee = b""
    calls = 0
    missed = 0
    cost_follows = False
    with out_file.open("rb") as lines:
        for line in lines:
            if cost_follows:
                # The line after "calls=" is the call's position and inclusive cost.
                cost_follows = False
                fields = line.split()
                if len(fields) > 1:
                    missed += int(fields[1])
            elif line.startswith((b"fn=", b"cfn=")):
                match = _NAMED.match(line.rstrip(b"\n"))
                if match is None:
                    continue
                ident, name = match.groups()
                if name is not None:
                    names[ident] = name
                if line.startswith(b"cfn="):
                    callee = names.get(ident, b"")
            elif line.startswith(b"calls="):
                if callee in wanted:
                    calls += int(line[6:].split()[0])
                cost_follows = callee == miss
    return calls, missed


def _client_command(target: Target, job: Job, requests: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.client",
        "--variant",
        job.variant.ljust(
            _HTTPX_VARIANT_WIDTH if job.variant in HTTPX_VARIANTS else _VARIANT_WIDTH, "_"
        ),
        "--workload",
        job.workload,
        "--verify",
        job.verify.ljust(_VERIFY_WIDTH, "_"),
        "--requests",
        str(requests).zfill(_COUNT_WIDTH),
        "--port",
        str(target.port),
        "--bundle",
        str(target.bundle),
        "--pin",
        target.intermediate_pin,
        "--leaf-pin",
        target.leaf_pin,
        "--fingerprint",
        target.leaf_sha256,
    ]


def _env(overlay: Path, **extra: str) -> dict[str, str]:
    env = child_environment(**extra)
    env["PYTHONPATH"] = os.pathsep.join([str(overlay), env["PYTHONPATH"]])
    return env


def _counted_env(overlay: Path, layout: int | None) -> dict[str, str]:
    # Same hashes every run; no .pyc written under valgrind (a short run that
    # compiled what the long run then read would not cancel out).
    env = _env(overlay, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop(LAYOUT_VARIABLE, None)
    if layout is not None:
        env[LAYOUT_VARIABLE] = "_" * (LAYOUT_STEP * layout)
    return env


def _run(
    valgrind: str, folder: Path, target: Target, overlay: Path, job: Job, requests: int
) -> tuple[int, int, int]:
    name = f"{job.variant}.{job.workload}.{job.verify}.{job.chain}.{job.layout}.{requests}"
    out_file = folder / f"callgrind.{name}.out"
    command = [
        valgrind,
        "--tool=callgrind",
        f"--callgrind-out-file={out_file}",
        *_client_command(target, job, requests),
    ]
    result = subprocess.run(
        command, cwd=_REPO, env=_counted_env(overlay, job.layout), capture_output=True, check=False
    )
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"callgrind run {name} failed:\n{tail}")
    totals = (total_instructions(out_file), *_scan(out_file))
    out_file.unlink()
    return totals


def run_natively(target: Target, overlay: Path, job: Job, requests: int) -> None:
    """Run the client once without valgrind (raises if a request fails)."""
    subprocess.run(
        _client_command(target, job, requests),
        cwd=_REPO,
        env=_env(overlay, PYTHONHASHSEED="0"),
        check=True,
    )


def count_per_request(
    targets: Mapping[str, Target],
    overlay: Path,
    jobs: Sequence[Job],
    requests: Mapping[tuple[str, str], tuple[int, int]],
    parallel: int = 2,
    layout_requests: tuple[int, int] | None = None,
) -> list[Count]:
    """Count each job against ``targets[job.chain]`` with the (short, long) numbers of
    requests ``requests[(workload, verify)]`` (``layout_requests`` for a job with a
    layout); up to ``parallel`` valgrinds at a time (counts do not depend on
    timing). ``overlay``: see :func:`benchmarks.pki.make_certifi_overlay`."""
    valgrind = available()
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")

    def requests_of(job: Job) -> tuple[int, int]:
        if job.layout is not None and layout_requests is not None:
            return layout_requests
        return requests[(job.workload, job.verify)]

    # Once natively first, so that every .pyc the client needs exists before
    # the counted runs (then all of them read the same files), and a failing
    # configuration fails in seconds rather than under valgrind.
    for job in {replace(job, layout=None): None for job in jobs}:
        run_natively(targets[job.chain], overlay, job, 1)
    runs = [(job, n) for job in jobs for n in requests_of(job)]
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as name:
        folder = Path(name)
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            totals = list(
                pool.map(
                    lambda run: _run(valgrind, folder, targets[run[0].chain], overlay, *run),
                    runs,
                )
            )
    by_run = dict(zip(runs, totals, strict=True))
    counts = []
    for job in jobs:
        short, long = requests_of(job)
        counts.append(
            Count(
                variant=job.variant,
                workload=job.workload,
                verify=job.verify,
                chain=job.chain,
                short_requests=short,
                long_requests=long,
                short_total=by_run[(job, short)][0],
                long_total=by_run[(job, long)][0],
                short_chain_reads=by_run[(job, short)][1],
                long_chain_reads=by_run[(job, long)][1],
                short_type_misses=by_run[(job, short)][2],
                long_type_misses=by_run[(job, long)][2],
                layout=job.layout,
            )
        )
    return counts
