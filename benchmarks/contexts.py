"""``python -m benchmarks.contexts``: wall clock per new connection, plain requests vs pinned.

What sharing the TLS context saves, measured the simplest way: one loopback
server, every request on a new connection (``Connection: close``), plain
``requests.Session`` against ``PinningSession`` with sharing on and off,
interleaved, medians of rounds in one run. Wall clock on a shared machine is
noisy: read the ratios, not the milliseconds. The instruction counts of
``python -m benchmarks`` are the figures the targets are judged on.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import requests

from requests_pinning import PinningSession

from .pki import make_chain, wait_until_settled
from .server import ServerProcess

ROUNDS = 5
CONNECTIONS = 40


def _per_connection(session: requests.Session, url: str, verify: bool | str) -> float:
    start = time.perf_counter()
    for _ in range(CONNECTIONS):
        session.get(url, verify=verify, headers={"Connection": "close"}).close()
    return (time.perf_counter() - start) / CONNECTIONS * 1e3


def main() -> None:
    warnings.simplefilter("ignore")  # verify=False warns on every request
    with tempfile.TemporaryDirectory() as folder:
        chain = make_chain(Path(folder), "ec")
        wait_until_settled()
        pin = chain.leaf_pin  # the leaf: it is all that counts under verify=False
        with ServerProcess(Path(folder), ["ec"]) as server:
            url = f"https://localhost:{server.ports['ec']}/"
            for verify in (str(chain.bundle), False):
                times: dict[str, list[float]] = {"plain": [], "pinned": [], "no-share": []}
                for _ in range(ROUNDS):
                    with requests.Session() as plain:
                        plain.trust_env = False
                        times["plain"].append(_per_connection(plain, url, verify))
                    for name, share in (("pinned", True), ("no-share", False)):
                        with PinningSession({"localhost": [pin]}, share_tls_context=share) as s:
                            s.trust_env = False
                            times[name].append(_per_connection(s, url, verify))
                medians = {name: statistics.median(values) for name, values in times.items()}
                label = "one-root bundle" if verify else "verify=False"
                base = medians["plain"]
                print(
                    f"{label:16}  plain {base:6.2f} ms  "
                    f"pinned {medians['pinned']:6.2f} ms ({medians['pinned'] / base:.2f})  "
                    f"sharing off {medians['no-share']:6.2f} ms ({medians['no-share'] / base:.2f})"
                )


if __name__ == "__main__":
    main()
