"""The client side of the HTTP benchmarks: the sessions compared, and their workloads.

Variants (one ``requests.Session`` each, all trusting the same root bundle):

* ``plain``: requests as it comes;
* ``pinned``: :class:`requests_pinning.PinningAdapter` mounted for ``https://``,
  with one pin on the intermediate certificate of the server's chain;
* ``fingerprint``: requests-toolbelt's ``FingerprintAdapter`` with the leaf's
  SHA-256 fingerprint (urllib3's ``assert_fingerprint``).

Workloads: ``new`` sends ``Connection: close`` with every request, so each one
pays a fresh TCP connection and TLS handshake (and, with pinning, a pin check);
``keepalive`` sends every request over one connection, opened by the first.

Run as ``python -m benchmarks.client --variant pinned --workload new --requests N
--port P --bundle ROOT.pem --pin sha256/... --fingerprint HEX``: it makes N
requests and exits. That is the process the instruction counts are taken of
(under ``valgrind --tool=callgrind``); nothing in it depends on time or chance.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from requests_pinning import PinningAdapter

from .pki import HOST

__all__ = [
    "VARIANTS",
    "WORKLOADS",
    "Target",
    "concurrent_round",
    "fingerprint_available",
    "main",
    "make_session",
    "run_requests",
]

VARIANTS = ("plain", "pinned", "fingerprint")
WORKLOADS = ("new", "keepalive")

_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class Target:
    """Where the server is and what the pinned variants check."""

    port: int
    bundle: Path
    intermediate_pin: str
    leaf_sha256: str

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}/"


def fingerprint_available() -> bool:
    """Is requests-toolbelt (the ``bench`` extra) installed?"""
    try:
        import requests_toolbelt.adapters.fingerprint  # noqa: F401
    except ImportError:
        return False
    return True


def make_session(variant: str, target: Target, pool_maxsize: int = 10) -> requests.Session:
    """A session of the given variant, trusting only the benchmark's root."""
    session = requests.Session()
    session.verify = str(target.bundle)
    # No proxies or .netrc from the environment: loopback only, and the same
    # work in every variant (trust_env costs each request a proxy lookup).
    session.trust_env = False
    adapter: HTTPAdapter
    if variant == "plain":
        adapter = HTTPAdapter(pool_maxsize=pool_maxsize)
    elif variant == "pinned":
        adapter = PinningAdapter({HOST: [target.intermediate_pin]}, pool_maxsize=pool_maxsize)
    elif variant == "fingerprint":
        from requests_toolbelt.adapters.fingerprint import FingerprintAdapter

        adapter = FingerprintAdapter(target.leaf_sha256, pool_maxsize=pool_maxsize)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    session.mount("https://", adapter)
    return session


def run_requests(session: requests.Session, url: str, count: int, *, new: bool) -> None:
    """Make ``count`` GET requests; raise on anything but ``200 ok``."""
    headers = _CLOSE if new else None
    for _ in range(count):
        response = session.get(url, headers=headers)
        if response.status_code != 200 or response.content != b"ok":
            raise RuntimeError(f"unexpected response {response.status_code} {response.content!r}")


def concurrent_round(
    session: requests.Session, url: str, *, threads: int, per_thread: int, new: bool
) -> tuple[float, int]:
    """``threads`` threads share ``session``, each making ``per_thread`` requests.

    Returns (seconds from the common start to the last thread's end, errors).
    An error is an exception or a response other than ``200 ok``.
    """
    headers = _CLOSE if new else None
    errors = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                response = session.get(url, headers=headers, timeout=60)
                if response.status_code != 200 or response.content != b"ok":
                    errors[index] += 1
            except Exception:
                errors[index] += 1

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start, sum(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client", description=__doc__)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--pin", required=True, help="the intermediate's SPKI pin")
    parser.add_argument("--fingerprint", required=True, help="the leaf's SHA-256, hex")
    args = parser.parse_args(argv)
    target = Target(args.port, args.bundle, args.pin, args.fingerprint)
    with make_session(args.variant, target) as session:
        run_requests(session, target.url, args.requests, new=args.workload == "new")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
