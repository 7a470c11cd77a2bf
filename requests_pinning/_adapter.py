"""PinningAdapter: the requests face of the urllib3 layer."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import requests.adapters
import requests.exceptions
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response
from requests.utils import get_auth_from_url, prepend_scheme_if_needed, select_proxy
from urllib3 import HTTPSConnectionPool

from ._contexts import TLSContexts
from ._mismatch import PinMismatchError
from ._pinset import PinSet, PinSource
from ._report import OnFailure, ReportStats
from ._urllib3 import (
    PinningPoolManager,
    PinningProxyManager,
    _PinningManagerMixin,
    _PinningPoolMixin,
    socks_proxy_manager,
)
from ._verify import PinningPolicy, make_policy

__all__ = ["PinningAdapter"]

# The types of ``verify`` and ``cert`` whose comparison PinningAdapter.cert_verify
# trusts (a tuple's items are compared too: it must hold exact strs).
_PLAIN_VERIFY = frozenset({bool, str})
_PLAIN_CERT = frozenset({type(None), str, tuple})


def _tls_state(conn: Any, url: str, verify: Any, cert: Any) -> tuple[object, ...] | None:
    """What requests' ``cert_verify`` reads and what it writes on a pool; None for
    arguments of other types than exact built-in ones, or a pool without those
    attributes yet (then nothing is skipped)."""
    # Exact types only: a subclass's own __eq__ must not decide that requests'
    # check was already done for these arguments.
    if type(verify) not in _PLAIN_VERIFY or type(cert) not in _PLAIN_CERT:
        return None
    if type(cert) is tuple and not all(type(item) is str for item in cert):
        return None
    scheme = url[:5]
    try:
        return (
            verify,
            cert,
            # requests tests url.lower().startswith("https"): the same, lower-cased
            # only when it must be.
            scheme == "https" or scheme.lower() == "https",
            # What requests reads for verify=True: a program may point it elsewhere.
            requests.adapters.DEFAULT_CA_BUNDLE_PATH,
            conn.cert_reqs,
            conn.ca_certs,
            conn.ca_cert_dir,
            conn.cert_file,
            conn.key_file,
        )
    except AttributeError:  # an http:// pool has none of them until requests sets them
        return None


def _no_session() -> None:
    return None


# Equal to no session's mounts (a session-less request audits again).
_UNSEEN = object()


def _forget(adapter: weakref.ref[PinningAdapter]) -> Callable[[object], None]:
    """A callback for when an audited session is gone: drop its copy of the mounts."""

    def forget(session: object) -> None:
        found = adapter()
        audited = found._mounts_audited if found is not None else None
        if found is not None and audited is not None and audited[0] is session:
            found._mounts_audited = None

    return forget


_REQUESTS_CERT_VERIFY = HTTPAdapter.cert_verify


def _next_cert_verify(cls: type) -> object:
    """The ``cert_verify`` after PinningAdapter's in ``cls``'s method order (remembered)."""
    mro = cls.__mro__
    for klass in mro[mro.index(PinningAdapter) + 1 :]:
        if "cert_verify" in klass.__dict__:
            found: object = klass.__dict__["cert_verify"]
            break
    else:
        found = None
    _NEXT_CERT_VERIFY[cls] = found
    return found


# Each adapter class's next cert_verify (the function found in its method order).
_NEXT_CERT_VERIFY: dict[type, object] = {}


class PinningAdapter(HTTPAdapter):
    """A requests transport adapter that checks certificate pins on every new TLS connection.

    ::

        session = requests.Session()
        session.mount("https://", PinningAdapter("pins.json"))
        session.get("https://api.example.com/")  # PinMismatchError on a foreign key

    ``pins`` is anything :meth:`PinSet.load` accepts: a mapping, the path of a
    JSON pin file, or a :class:`PinSet`; or a :class:`PinningPolicy`, which
    holds the pins and the switches below (then give no switches here).
    The check runs after the TLS handshake and before any request byte is
    sent, directly, through HTTP, HTTPS and SOCKS proxies, and after
    redirects. A failure raises
    :class:`PinMismatchError` after exactly one handshake, whatever
    ``max_retries`` says.

    Keyword arguments:
        report_only: log failures at WARNING and report them to ``on_failure``,
            but let connections proceed (a rollout stage; fails open on purpose).
        on_failure: called with a :class:`PinFailure` for every failed check.
            Exceptions it raises are logged and change nothing.
        allow_unpinned: when ``False``, hosts without an entry are refused.
        report_uri: where RFC 7469 violation reports go for entries without
            their own ``report_uri`` (``https://`` or ``http://``).

    Other keyword arguments (``pool_connections``, ``pool_maxsize``,
    ``max_retries``, ``pool_block``) go to ``HTTPAdapter``. The adapter
    pickles with its pins.
    """

    __attrs__: list[str] = [*HTTPAdapter.__attrs__, "policy", "share_tls_context"]  # noqa: RUF012

    def __init__(
        self,
        pins: PinSource | PinningPolicy,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
        share_tls_context: bool = True,
        **kwargs: Any,
    ) -> None:
        # One policy per adapter (or the one given), shared by all of its
        # pool managers, so that e.g. the expiry warning is logged once per entry.
        self._policy = make_policy(
            pins,
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
        )
        self._contexts = TLSContexts() if share_tls_context else None
        super().__init__(**kwargs)

    # The policy is read-only: the pools already hold it, so an assignment
    # after construction would silently change nothing. Make a new adapter.
    @property
    def policy(self) -> PinningPolicy:
        """The pins and switches this adapter enforces."""
        return self._policy

    @property
    def pinset(self) -> PinSet:
        """The pins this adapter enforces (``policy.pinset``)."""
        return self._policy.pinset

    # The session last audited (a weak reference: adapters outlive sessions)
    # and a copy of its mounts as they were then; see send().
    _mounts_audited: tuple[Callable[[], object], object] | None = None

    def _audit_mounts(self) -> None:
        # A per-host mount or a longer prefix for another adapter is a silent
        # bypass of the pins: say so, loudly, on the first request, and again
        # after the session's mounts change.
        from ._session import audit_mounts, calling_session  # _session imports this module

        # The session audited before, if it is still there: its mounts changed.
        audited = self._mounts_audited
        session = audited[0]() if audited is not None else None
        if session is None:
            session = calling_session()
        adapters = getattr(session, "adapters", None)
        if session is None:
            # Sent directly, not by a session: look again on the next request,
            # which may come from a session.
            self._mounts_audited = (_no_session, _UNSEEN)
        else:
            # A copy, not the mapping: a mount replaced in place leaves the
            # size as it was. It holds the session's adapters, so it goes
            # when the session does (a replaced one goes at the next audit).
            snapshot = dict(adapters) if isinstance(adapters, dict) else adapters
            self._mounts_audited = (weakref.ref(session, _forget(weakref.ref(self))), snapshot)
        audit_mounts(self, session)

    # The pool manager last found to be a pinning one (see _vet_manager).
    _vetted_manager: object = None

    def _vet_manager(self, request: PreparedRequest, proxies: Mapping[str, str] | None) -> None:
        """Refuse, before anything is sent, a pool manager whose pools would check nothing.

        A subclass (or a mixin such as requests-toolbelt's SourceAddressAdapter)
        may build its own urllib3 PoolManager in ``init_poolmanager`` or
        ``proxy_manager_for``. Only a pinning manager makes pinning pools (it
        refuses to make any other HTTPS pool), so the manager that will serve
        the request is checked: on every request through a proxy, otherwise
        once per pool manager, so that a kept-alive request pays one identity
        test here and no method call.
        """
        url = request.url or ""
        proxy = select_proxy(url, proxies) if proxies else None
        if proxy:
            # As requests finds it (HTTPAdapter.get_connection_with_tls_context).
            manager = self.proxy_manager_for(prepend_scheme_if_needed(proxy, "http"))  # type: ignore[no-untyped-call]
        else:
            manager = self.poolmanager
        if isinstance(manager, _PinningManagerMixin):
            if not proxy:
                self._vetted_manager = manager
        elif url.lower().startswith("https:") or str(proxy or "").lower().startswith("https:"):
            # Without TLS there is nothing to pin; but an https:// proxy is a
            # TLS peer of its own, for http:// URLs too.
            raise TypeError(
                f"{type(self).__name__} got a {type(manager).__name__}, which does not check "
                "pins: a subclass replaced the pinning pool manager; refusing to use it"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._policy = state["policy"]
        self._contexts = TLSContexts() if state.get("share_tls_context", True) else None
        skip = {"policy", "share_tls_context"}
        rest = {key: value for key, value in state.items() if key not in skip}
        super().__setstate__(rest)  # type: ignore[misc]

    @property
    def share_tls_context(self) -> bool:
        """Whether new connections share one TLS context per configuration (the default)."""
        return self._contexts is not None

    @property
    def report_stats(self) -> ReportStats:
        """Counters of violation reports: ``sent``, ``deduplicated``, ``dropped``, ``failed``.

        Reports are sent from a background thread; a report that finds the
        queue full is dropped and counted, so operators can see back-pressure.
        """
        return self._policy.report_stats

    def close(self) -> None:
        """Close the pools and stop the report worker (after the reports already queued)."""
        super().close()
        self._policy.close()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = PinningPoolManager(
            self._policy,
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            **pool_kwargs,
        )
        # One cache for all of the adapter's managers (None: sharing is off).
        self.poolmanager._pin_contexts = self._contexts
        self.poolmanager._serve_adapter()

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        if proxy in self.proxy_manager:
            return self.proxy_manager[proxy]
        common = {
            "num_pools": self._pool_connections,
            "maxsize": self._pool_maxsize,
            "block": self._pool_block,
            **proxy_kwargs,
        }
        manager: Any
        if proxy.lower().startswith("socks"):
            username, password = get_auth_from_url(proxy)
            try:
                manager = socks_proxy_manager(
                    self._policy, proxy, username=username, password=password, **common
                )
            except ImportError as missing:
                # What requests raises without PySocks (requests[socks]).
                raise requests.exceptions.InvalidSchema(
                    "Missing dependencies for SOCKS support."
                ) from missing
        else:
            manager = PinningProxyManager(
                self._policy, proxy, proxy_headers=self.proxy_headers(proxy), **common
            )
        manager._pin_contexts = self._contexts
        manager._serve_adapter()
        self.proxy_manager[proxy] = manager
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """requests' own ``cert_verify``, run once per pool and arguments, not per request.

        requests runs it for every request, each one on a kept-alive
        connection too: it looks the CA bundle (and a client certificate) up on
        disk, two ``stat`` calls or more (17 k instructions, 0.9 % of a
        kept-alive request), and sets the pool's TLS attributes to what they
        already are. It is skipped only when it would change nothing: the same
        ``verify``, ``cert``, scheme and requests default bundle as the last
        time it ran on this pool, of exact built-in types, the pool's
        attributes still as it left them, and requests' own ``cert_verify``
        next in the class's method order. A missing path is still refused on a
        pool's first request, as requests refuses it; a bundle deleted later is
        found by the next new connection, which cannot load it and fails.
        """
        # Fail closed: requests hands this method the pool that will carry
        # the request, whichever method found it. A subclass that makes its
        # own pool (say in get_connection_with_tls_context) gets past the
        # checks of the pool managers, not past this one. An https:// URL on
        # a cleartext pool would be sent without TLS at all.
        pinning = isinstance(conn, _PinningPoolMixin)
        if not pinning and (isinstance(conn, HTTPSConnectionPool) or url[:6].lower() == "https:"):
            raise TypeError(
                f"{type(self).__name__} got a {type(conn).__name__} for {url!r}, which does "
                "not check pins: a subclass replaced the pinning pools; refusing to use it"
            )
        # Only requests' own check is known to depend on nothing else: a class
        # of cert_verify's own later in a subclass's method order (a mixin),
        # or requests' replaced at run time, runs on every request, as it would
        # without pinning.
        found = _NEXT_CERT_VERIFY.get(type(self)) or _next_cert_verify(type(self))
        ours = found is _REQUESTS_CERT_VERIFY and HTTPAdapter.cert_verify is found
        state = _tls_state(conn, url, verify, cert) if ours else None
        if state is not None and state == getattr(conn, "_pinning_cert_verified", None):
            return
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        after = _tls_state(conn, url, verify, cert)
        if state is not None and after is not None:
            # For the next request on this pool to compare: the arguments as
            # requests read them before it ran (another thread may point its
            # default bundle elsewhere meanwhile: then the next request runs it
            # again), and the pool's attributes as it left them. A pool that
            # takes no attribute of ours is simply checked every time.
            with contextlib.suppress(AttributeError):
                conn._pinning_cert_verified = state[:4] + after[4:]

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> Response:
        # The signature is spelled out, not *args/**kwargs: this runs for every
        # request, including each one on a kept-alive connection.
        # The mount audit runs again when the audited session's mounts change:
        # exact and cheap (some 500 instructions for a few mounts), they are
        # compared with their copy key by key and adapter by adapter (identity
        # decides, unless an adapter class defines __eq__), in any order, as
        # the audit's findings do not depend on it. requests tells an adapter
        # nothing of its session, so the session audited is the one that sent
        # the adapter's first request, or, once it is gone (None has no
        # mounts), the next one's. Finding the sender of every request would
        # cost 5,500 instructions (0.3 % of a kept-alive request, CPython
        # 3.11), so an adapter mounted in two live sessions audits one.
        audited = self._mounts_audited
        if audited is None or getattr(audited[0](), "adapters", None) != audited[1]:
            self._audit_mounts()
        if proxies or self.poolmanager is not self._vetted_manager:
            self._vet_manager(request, proxies)
        try:
            return super().send(request, stream, timeout, verify, cert, proxies)
        except requests.exceptions.ConnectionError as wrapped:
            # requests wraps what the pools raise: MaxRetryError(reason=
            # PinMismatchError) in its SSLError, and the bare PinMismatchError
            # (retries=False) in a ConnectionError. Callers are promised the
            # PinMismatchError itself, whatever max_retries says.
            if isinstance(wrapped, PinMismatchError):
                raise
            cause = wrapped.args[0] if wrapped.args else None
            error = cause if isinstance(cause, PinMismatchError) else getattr(cause, "reason", None)
            if not isinstance(error, PinMismatchError):
                raise
            error.request = request
            raise error from None
