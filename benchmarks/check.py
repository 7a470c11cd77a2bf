"""The pin check itself, timed inside the process: what ``connect()`` adds to a handshake.

A real urllib3 ``HTTPSConnection`` is connected to the benchmark server (a
three-certificate chain: leaf and intermediate served, root from the trust
store) and kept open; then, with timeit-style loops (garbage collection off
while timing), the median over rounds of:

* ``peer_chain(sock)``: reading the served and verified chains off the socket;
* ``PinningPolicy.check(...)``: deciding, with one pin on the intermediate;
* both together, as ``connect()`` runs them: the figure the target is about;
* both together with the SPKI caches emptied before each call (certificates
  never seen before), less the cost of emptying them;
* and a breakdown of where those microseconds go.
"""

from __future__ import annotations

import ssl
import statistics
import timeit
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from urllib3.connection import HTTPSConnection

from requests_pinning import PinSet
from requests_pinning._certs import _cached_spki_digest, _cached_spki_of, spki_digest
from requests_pinning._pinset import normalize_host
from requests_pinning._tls import peer_chain
from requests_pinning._verify import PinningPolicy, evaluate

from .pki import HOST, Chain

__all__ = ["cache_bounds", "measure_check"]

_DER: int = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)  # not ssl.ENCODING_DER


def _per_call_us(func: Callable[[], object], number: int, rounds: int) -> list[float]:
    timer = timeit.Timer(func)
    return [timer.timeit(number) / number * 1e6 for _ in range(rounds)]


def measure_check(chain: Chain, port: int, *, number: int, rounds: int) -> dict[str, Any]:
    """Time the parts of the check for ``chain`` (served on ``port``); microseconds per call."""
    conn = HTTPSConnection(HOST, port, ca_certs=str(chain.bundle), cert_reqs="CERT_REQUIRED")
    try:
        conn.connect()
        sock: Any = conn.sock
        enforcer = PinningPolicy(PinSet({HOST: [chain.intermediate_pin]}))
        peer = peer_chain(sock)
        if len(peer.checked) != 3 or not peer.verified:
            raise RuntimeError(f"expected a verified chain of 3, got {len(peer.checked)}")
        if enforcer.check([HOST], port, peer) is not None:
            raise RuntimeError("the pin does not match")
        tls: Any = sock if hasattr(sock, "get_verified_chain") else sock._sslobj
        entry = enforcer.pinset.match(HOST, port)

        def both() -> None:
            enforcer.check([HOST], port, peer_chain(sock))

        def clear() -> None:
            _cached_spki_digest.cache_clear()
            _cached_spki_of.cache_clear()

        def cold() -> None:
            clear()
            enforcer.check([HOST], port, peer_chain(sock))

        parts: dict[str, Callable[[], object]] = {
            "peer_chain + PinningPolicy.check": both,
            "peer_chain": lambda: peer_chain(sock),
            "PinningPolicy.check": lambda: enforcer.check([HOST], port, peer),
            "getpeercert(binary_form=True)": lambda: sock.getpeercert(binary_form=True),
            "verified chain as DER (3 certificates)": lambda: [
                cert.public_bytes(_DER) for cert in tls.get_verified_chain()
            ],
            "served chain as DER (2 certificates)": lambda: [
                cert.public_bytes(_DER) for cert in tls.get_unverified_chain()
            ],
            "normalize_host": lambda: normalize_host(HOST),
            "PinSet.match": lambda: enforcer.pinset.match(HOST, port),
            "datetime.now(timezone.utc)": lambda: datetime.now(timezone.utc),
            "evaluate (cached SPKI digests)": lambda: evaluate(
                entry, peer, allow_unpinned=True, now=datetime.now(timezone.utc)
            ),
            "spki_digest, cache hit": lambda: spki_digest(peer.checked[1], "sha256"),
            # last in each round: they leave the caches empty
            "(peer_chain + PinningPolicy.check after emptying them)": cold,
            "(emptying the SPKI caches)": clear,
        }
        samples: dict[str, list[float]] = {name: [] for name in parts}
        for _round in range(rounds):  # the parts interleaved, one loop of each per round
            for name, func in parts.items():
                samples[name] += _per_call_us(func, number, 1)
        _cached_spki_digest.cache_clear()
        _cached_spki_of.cache_clear()
    finally:
        conn.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    cold_net = (
        medians["(peer_chain + PinningPolicy.check after emptying them)"]
        - medians["(emptying the SPKI caches)"]
    )
    return {
        "key_type": chain.name,
        "chain_der_bytes": [len(der) for der in peer.checked],
        "number": number,
        "rounds": rounds,
        "total_us": medians["peer_chain + PinningPolicy.check"],
        "cold_total_us": cold_net,
        "median_us": medians,
        "rounds_us": samples,
    }


def cache_bounds() -> dict[str, int | None]:
    """The bounds of the library's SPKI caches (``None`` would mean unbounded)."""
    return {
        "spki_digest.maxsize": _cached_spki_digest.cache_info().maxsize,
        "spki_of_der_cert.maxsize": _cached_spki_of.cache_info().maxsize,
    }
