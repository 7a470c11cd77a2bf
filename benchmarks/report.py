"""Tables, targets and the machine description for the benchmark report."""

from __future__ import annotations

import os
import platform
import ssl
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

__all__ = ["Target", "library_state", "machine", "table"]


@dataclass(frozen=True)
class Target:
    """One target of the issue: the figure, its limit, and the A/A noise band beside it.

    ``noise`` is how far two runs of the same thing (plain against plain) were
    apart in the same unit; when the figure is closer to the limit than that,
    the status says so: the verdict could flip on a re-run.
    """

    name: str
    value: float | None
    limit: float
    better: Literal["lower", "higher"]
    unit: str = ""
    noise: float | None = None
    why_missing: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        verdict = "met" if self._within(self.limit) else "MISSED"
        if self.noise is not None and abs(self.value - self.limit) <= self.noise:
            verdict += " (inside A/A band)"
        return verdict

    def _within(self, bound: float) -> bool:
        assert self.value is not None
        return self.value <= bound if self.better == "lower" else self.value >= bound

    def describe(self) -> str:
        sign = "<=" if self.better == "lower" else ">="
        bound = f"{sign} {_num(self.limit)}{self.unit}"
        value = "-" if self.value is None else f"{_num(self.value)}{self.unit}"
        band = "" if self.noise is None else f"A/A band +-{_num(self.noise)}{self.unit}"
        return f"{value:>14}  {bound:<12}  {band}".rstrip()

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1.5:
        return f"{value:.2f}"
    if abs(value) >= 0.001:
        return f"{value:.4f}"
    return f"{value:.1e}"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str] | None],
    align: str = "",
    indent: str = "  ",
) -> str:
    """A plain-text table; ``align``: ``l`` or ``r`` per column (default ``l`` then ``r``).

    A row that is ``None`` is drawn as a rule, like the one under the headers:
    it separates groups of rows."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [len(header) for header in headers]
    for row in rows:
        for i, cell in enumerate(row or ()):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return (indent + "  ".join(parts)).rstrip()

    rule = indent + "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(rule if row is None else line(row) for row in rows)])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for row in cpuinfo:
                if row.startswith("model name"):
                    return row.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_state() -> str:
    """The commit the library was measured at, and whether its files differed from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "requests_pinning"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}" + (" + uncommitted changes" if changed.strip() else "")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "cpus": cpus,
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "openssl": ssl.OPENSSL_VERSION,
        "library": library_state(),
        "packages": {
            name: _version(name)
            for name in (
                "requests-pinning",
                "requests",
                "urllib3",
                "cryptography",
                "requests-toolbelt",
                "trustme",
                "httpx",
                "httpcore",
            )
        },
    }
