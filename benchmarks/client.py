"""The client side of the HTTP benchmarks: the sessions compared, and their workloads.

Variants (one ``requests.Session`` each, ``trust_env=False``):

* ``plain``: requests as it comes;
* ``plain-2``: the same again, run as a separate variant: the A/A control, whose
  difference from ``plain`` is the noise band of every comparison;
* ``pinned``: :class:`requests_pinning.PinningAdapter` mounted for ``https://``
  with the server's host pinned: one pin on the intermediate (on the leaf with
  ``verify=False``, where only the leaf is checked);
* ``unpinned``: the same adapter whose pin set has no entry for the server's
  host (one for another host): what the adapter costs a host it does not pin;
* ``fingerprint``: requests-toolbelt's ``FingerprintAdapter`` with the leaf's
  SHA-256 fingerprint (urllib3's ``assert_fingerprint``);
* ``injected``: plain requests with :func:`requests_pinning.inject_into_urllib3`
  in force for the whole process, with the pin of ``pinned`` (see :func:`session_for`).

The httpx face (:data:`HTTPX_VARIANTS`, one ``httpx.Client`` each): see
:mod:`benchmarks.client_httpx`. Each variant is compared to the plain variant
of its own face (:func:`baseline`), with that face's A/A control beside it
(:data:`AA_CONTROLS`).

``verify`` configurations: ``bundle`` (a path to a bundle holding the
benchmark's root alone), ``certifi`` (``verify=True``: certifi's bundle; see
:func:`benchmarks.pki.make_certifi_overlay`) and ``none`` (``verify=False``).

Workloads: ``new`` sends ``Connection: close`` with every request, so each one
pays a fresh TCP connection and TLS handshake (and, with pinning, a pin check);
``keepalive`` sends every request over one connection, opened by the first.

Run as ``python -m benchmarks.client --variant pinned --workload new --verify
bundle --requests N --port P --bundle ROOT.pem --pin sha256/... --leaf-pin
sha256/... --fingerprint HEX``: it makes N requests and exits. That is the
process the instruction counts are taken of (under ``valgrind
--tool=callgrind``); nothing in it depends on time or chance. Trailing ``_``
and leading ``0`` are ignored in ``--variant``, ``--verify`` and
``--requests``, so that the runner can give every run arguments of equal
length (see :mod:`benchmarks.callgrind`).
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from requests_pinning import PinningAdapter, extract_from_urllib3, inject_into_urllib3

from .pki import HOST

__all__ = [
    "AA_CONTROLS",
    "HTTPX_VARIANTS",
    "OTHER_HOST",
    "VARIANTS",
    "VERIFY",
    "WORKLOADS",
    "Target",
    "baseline",
    "concurrent_round",
    "fingerprint_available",
    "httpx_available",
    "main",
    "make_session",
    "run_requests",
    "session_for",
]

#: The requests face's variants (``injected`` included: it is plain requests).
VARIANTS = ("plain", "plain-2", "pinned", "unpinned", "fingerprint", "injected")
#: The httpx face's variants (:mod:`benchmarks.client_httpx`).
HTTPX_VARIANTS = ("httpx-plain", "httpx-plain-2", "httpx-pinned")
#: Each face's plain variant, and its A/A control: plain again.
AA_CONTROLS = {"plain": "plain-2", "httpx-plain": "httpx-plain-2"}
WORKLOADS = ("new", "keepalive")
VERIFY = ("bundle", "certifi", "none")

#: The host the ``unpinned`` variant's pin set names instead of the server's.
OTHER_HOST = "pinned.invalid"

_CLOSE = {"Connection": "close"}


@dataclass(frozen=True)
class Target:
    """Where the server is and what the pinned variants check."""

    port: int
    bundle: Path
    intermediate_pin: str
    leaf_pin: str
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


def baseline(variant: str) -> str:
    """The variant ``variant`` is compared to: the plain variant of its face."""
    return "httpx-plain" if variant in HTTPX_VARIANTS else "plain"


def pin_for(target: Target, verify: str) -> str:
    """The one pin of the pinned variants: the intermediate's, or the leaf's with
    ``verify=False`` (where only the leaf is checked, so an intermediate pin could
    never pass)."""
    return target.leaf_pin if verify == "none" else target.intermediate_pin


def httpx_available() -> bool:
    """Are httpx and httpcore (the ``httpx`` extra, in ``bench``) installed?"""
    try:
        import requests_pinning.httpx  # noqa: F401
    except ImportError:
        return False
    return True


def make_session(
    variant: str, target: Target, *, verify: str = "bundle", pool_maxsize: int = 10
) -> requests.Session:
    """A session of the given variant and ``verify`` configuration (see the module's docstring).

    ``injected`` gets plain requests' session: the injection, process-wide, is
    :func:`session_for`'s."""
    session = requests.Session()
    if verify == "bundle":
        session.verify = str(target.bundle)
    elif verify == "certifi":
        session.verify = True
    elif verify == "none":
        session.verify = False
    else:
        raise ValueError(f"unknown verify configuration {verify!r}")
    # No proxies or .netrc from the environment: loopback only, and the same
    # work in every variant (trust_env costs each request a proxy lookup).
    session.trust_env = False
    pin = pin_for(target, verify)
    adapter: HTTPAdapter
    if variant in ("plain", "plain-2", "injected"):
        adapter = HTTPAdapter(pool_maxsize=pool_maxsize)
    elif variant == "pinned":
        adapter = PinningAdapter({HOST: [pin]}, pool_maxsize=pool_maxsize)
    elif variant == "unpinned":
        adapter = PinningAdapter({OTHER_HOST: [pin]}, pool_maxsize=pool_maxsize)
    elif variant == "fingerprint":
        from requests_toolbelt.adapters.fingerprint import FingerprintAdapter

        adapter = FingerprintAdapter(target.leaf_sha256, pool_maxsize=pool_maxsize)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    session.mount("https://", adapter)
    return session


@contextlib.contextmanager
def session_for(
    variant: str, target: Target, *, verify: str = "bundle"
) -> Iterator[requests.Session]:
    """:func:`make_session`, with ``inject_into_urllib3`` in force for ``injected``
    (the pin of ``pinned``) until the session is closed; then extracted again."""
    if variant != "injected":
        with make_session(variant, target, verify=verify) as session:
            yield session
        return
    inject_into_urllib3({HOST: [pin_for(target, verify)]})
    try:
        with make_session(variant, target, verify=verify) as session:
            yield session
    finally:
        extract_from_urllib3()


def run_requests(session: requests.Session, url: str, count: int, *, new: bool) -> None:
    """Make ``count`` GET requests; raise on anything but ``200 ok``."""
    headers = _CLOSE if new else None
    for _ in range(count):
        response = session.get(url, headers=headers)
        if response.status_code != 200 or response.content != b"ok":
            raise RuntimeError(f"unexpected response {response.status_code} {response.content!r}")


def concurrent_round(
    session: requests.Session, url: str, *, threads: int, per_thread: int, new: bool
) -> tuple[float, list[str]]:
    """``threads`` threads share ``session``, each making ``per_thread`` requests.

    Returns (seconds from the common start to the last thread's end, errors).
    An error is an exception or a response other than ``200 ok``, each said in
    a line (the exception's type and message), so that a run that had one says
    which.
    """
    headers = _CLOSE if new else None
    errors: list[list[str]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                response = session.get(url, headers=headers, timeout=60)
                if response.status_code != 200 or response.content != b"ok":
                    errors[index].append(f"response {response.status_code}")
            except Exception as error:  # every failure is counted, and named
                errors[index].append(f"{type(error).__name__}: {error}"[:300])

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    start = time.perf_counter()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start, [error for found in errors for error in found]


def _unpadded(text: str) -> str:
    return text.rstrip("_")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client", description=__doc__)
    parser.add_argument(
        "--variant", type=_unpadded, choices=VARIANTS + HTTPX_VARIANTS, required=True
    )
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--verify", type=_unpadded, choices=VERIFY, default="bundle")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--pin", required=True, help="the intermediate's SPKI pin")
    parser.add_argument("--leaf-pin", required=True, help="the leaf's SPKI pin")
    parser.add_argument("--fingerprint", required=True, help="the leaf's SHA-256, hex")
    args = parser.parse_args(argv)
    # verify=False is what is being measured; the warning about it is not.
    warnings.simplefilter("ignore", InsecureRequestWarning)
    target = Target(args.port, args.bundle, args.pin, args.leaf_pin, args.fingerprint)
    if args.variant in HTTPX_VARIANTS:
        # Imported here only: the requests face's runs never import httpx.
        from . import client_httpx

        with client_httpx.make_client(args.variant, target, verify=args.verify) as client:
            client_httpx.run_requests(client, target.url, args.requests, new=args.workload == "new")
        return 0
    with session_for(args.variant, target, verify=args.verify) as session:
        run_requests(session, target.url, args.requests, new=args.workload == "new")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
