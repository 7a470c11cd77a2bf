"""PinningSession, and the mount audit that catches a PinningAdapter mounted so it can be bypassed.

requests picks the adapter for a URL by string prefix (the longest mounted
prefix that the lower-cased URL starts with). So a pinning adapter mounted on
``"https://api.example.com"`` never sees ``https://user@api.example.com/``,
``https://api.example.com./`` or ``https://93.184.215.14/``, and any other
adapter mounted on a longer ``https://`` prefix takes those URLs away from the
pinning adapter. Neither is visible to the adapter itself: it only sees the
requests it is given. Hence two defences:

- :class:`PinningSession`, which mounts the adapter where it cannot be
  bypassed and refuses, loudly, anything that would take URLs away from it;
- for a plain ``requests.Session``, an audit on the adapter's first request
  that looks at how the session mounted it and warns about every bypass.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from typing import Any

import requests
from requests.adapters import BaseAdapter

from ._adapter import PinningAdapter
from ._pinset import PinSet, PinSource
from ._report import OnFailure
from ._verify import PinningPolicy

__all__ = ["PinningMountWarning", "PinningSession", "audit_mounts"]

log = logging.getLogger("requests_pinning")

_SCHEMES = ("https://", "http://")


class PinningMountWarning(UserWarning):
    """A :class:`PinningAdapter` is mounted so that some URLs of pinned hosts bypass it.

    Raised as a warning (and logged) on the adapter's first request when it is
    mounted on a per-host prefix instead of ``"https://"``, or when another
    adapter is mounted on a longer ``https://`` prefix. Use
    :class:`PinningSession`, which cannot be mounted wrongly.
    """


# requests matches a URL against the mounted prefixes as it is written, but
# the parsers that then connect read it otherwise: urllib.parse removes tabs
# and line breaks anywhere ("ht\ttps://host" is sent to https://host) and
# strips leading whitespace and control characters, as urllib3 does. So the
# mount audit reads a prefix with every such character removed: a web URL
# cannot hide behind one. (PinningSession's checks, _may_be_web, go further.)
_INVISIBLE = "".join(map(chr, range(33)))
_REMOVE_INVISIBLE = str.maketrans("", "", _INVISIBLE)


def _as_parsed(text: str) -> str:
    """``text`` lower-cased, with every character a URL parser may drop removed."""
    return text.translate(_REMOVE_INVISIBLE).lower()


# A scheme at the very start of a URL, as urllib.parse and urllib3's
# parse_url both read one (urllib3's is the narrower: no "."), in ASCII only.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+-]*:")


def _may_be_web(text: str) -> bool:
    """Whether ``text``, a URL or a mount prefix, may be (or start) an http(s) URL.

    Only text that starts with a scheme of its own, other than those two, is
    not (``http+unix://`` of requests-unixsocket and docker-py): both parsers
    read that scheme, urllib3 has no pool for it, and every URL under such a
    prefix has it too. Fail closed: anything else may be; urllib3 sends a URL
    without a scheme with http (``//host/``, ``127.0.0.1:80``), urllib.parse
    drops tabs and leading control characters (``"\\thttps://"``), and a
    prefix that stops short of its colon (``"ftp"``) also starts URLs without
    one (``ftp.example:80``).
    """
    scheme = _SCHEME.match(text)
    return scheme is None or scheme.group().lower() in ("http:", "https:")


def _covers_web_urls(prefix: str, schemes: tuple[str, ...] = _SCHEMES) -> bool:
    """Whether a URL that connects with one of ``schemes`` can start with ``prefix``."""
    prefix = _as_parsed(prefix)
    return any(prefix.startswith(scheme) or scheme.startswith(prefix) for scheme in schemes)


class PinningSession(requests.Session):
    """A ``requests.Session`` whose HTTPS requests can only go through one :class:`PinningAdapter`.

    ::

        session = PinningSession("pins.json")
        session.get("https://api.example.com/")  # PinMismatchError on a foreign key

    The adapter is mounted on ``"https://"`` and ``"http://"`` (the latter so
    that the TLS session with an HTTPS proxy for ``http://`` URLs is checked
    too). Mounting any other adapter on a prefix that http(s) URLs can match
    raises ``ValueError``, because it would take those URLs out of pinning; to
    change retries or pool sizes for some host, mount a :class:`PinningAdapter`
    with the same pins and those options instead. If an adapter that is not a
    pinning one is found for an http(s) URL anyway (say ``session.adapters``
    was edited directly), the request is refused with ``ValueError``.
    Adapters for schemes of their own (``"http+unix://"``) mount and serve
    their URLs as in any session.

    ``pins`` and the keyword arguments are those of :class:`PinningAdapter`
    (``pins`` may be a :class:`PinningPolicy`).
    """

    __attrs__: list[str] = [*requests.Session.__attrs__, "pinning_adapter", "_approved"]  # noqa: RUF012
    pinning_adapter: PinningAdapter

    def __init__(
        self,
        pins: PinSource | PinningPolicy,
        *,
        report_only: bool = False,
        on_failure: OnFailure | None = None,
        allow_unpinned: bool = True,
        report_uri: str | None = None,
        **adapter_kwargs: Any,
    ) -> None:
        # requests.Session.__init__ mounts plain HTTPAdapters through
        # self.mount, before there is a pinning adapter: they are replaced
        # just below, so let them in.
        self.pinning_adapter = None  # type: ignore[assignment]
        # The PinningAdapters other than the session's own that mount() let
        # onto a web prefix, by prefix: remounting a prefix forgets its
        # adapter, so a replaced adapter (its pools, its sockets) is let go.
        self._approved: dict[str, PinningAdapter] = {}
        super().__init__()
        self.pinning_adapter = PinningAdapter(
            pins,
            report_only=report_only,
            on_failure=on_failure,
            allow_unpinned=allow_unpinned,
            report_uri=report_uri,
            **adapter_kwargs,
        )
        for scheme in _SCHEMES:
            super().mount(scheme, self.pinning_adapter)

    @property
    def pinset(self) -> PinSet:
        """The pins every http(s) request of this session is checked against."""
        return self.pinning_adapter.pinset

    def mount(self, prefix: str | bytes, adapter: BaseAdapter) -> None:
        """Mount ``adapter`` on ``prefix``, unless that would let URLs bypass the pins."""
        text = prefix.decode("latin-1") if isinstance(prefix, bytes) else prefix
        approved: PinningAdapter | None = None
        if self.pinning_adapter is not None and _may_be_web(text):
            if not isinstance(adapter, PinningAdapter):
                raise ValueError(
                    f"mounting a {type(adapter).__name__} on {prefix!r} would take those URLs "
                    "out of pinning; mount a PinningAdapter with the same pins (and your "
                    "options) instead"
                )
            differs = _policy_difference(adapter, self.pinning_adapter)
            if differs:
                raise ValueError(
                    f"the PinningAdapter mounted on {prefix!r} has another {differs} than the "
                    "session: URLs under that prefix would escape the session's policy; give "
                    "it the same pins and switches (other options, such as max_retries, may differ)"
                )
            if adapter is not self.pinning_adapter:
                approved = adapter
        # As text: requests compares prefixes with str URLs, and a bytes prefix
        # would break every later request with a TypeError.
        super().mount(text, adapter)
        self._forget_unmounted()
        if approved is not None:
            self._approved[text] = approved

    def _forget_unmounted(self) -> None:
        # Approval goes with the mount: only what is still mounted where it was
        # approved stays approved (session.adapters may have been edited).
        self._approved = {
            prefix: approved
            for prefix, approved in self._approved.items()
            if self.adapters.get(prefix) is approved
        }

    def get_adapter(self, url: str) -> BaseAdapter:
        adapter = super().get_adapter(url)
        # Fail closed: the mount check above can be sidestepped by editing
        # session.adapters directly; this cannot. Only the session's adapter
        # and those that passed mount() may carry http(s) URLs.
        if adapter is self.pinning_adapter or not _may_be_web(url):
            return adapter
        if not any(adapter is approved for approved in self._approved.values()):
            raise ValueError(
                f"refusing {_shown(url)!r}: its adapter, {type(adapter).__name__}, was not mounted "
                "through PinningSession.mount, so it may not check the session's pins"
            )
        return adapter

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send ``request``; refuse one that its adapter would send through an HTTPS
        proxy without checking the session's pins on it (ValueError)."""
        url = request.url or ""
        if not url.startswith(("https://", "http://")):  # (requests lower-cases the scheme)
            if "proxies" not in kwargs:  # as requests resolves them (None: no proxy)
                kwargs["proxies"] = requests.utils.resolve_proxies(
                    request, dict(self.proxies), self.trust_env
                )
            self._check_proxy(request, url, kwargs)
        return super().send(request, **kwargs)

    def _check_proxy(self, request: requests.PreparedRequest, url: str, kwargs: Any) -> None:
        # An adapter for a scheme of its own (get_adapter lets it carry its
        # URLs) may send them through a proxy as urllib3 does any scheme but
        # https: to the proxy's own pool, over TLS for an https:// proxy
        # (helper 61: an impostor proxy got the request). That TLS session
        # must be checked against the session's pins, as for any URL, and
        # only a PinningAdapter with the session's policy does that. Whether
        # another adapter would use the proxy cannot be known beforehand
        # (helper 63: asking it for its pool was answered with one pool and
        # sent through another), so it is refused: fail closed. One that
        # never uses a proxy (a unix socket) is sent with the proxy turned
        # off for its URLs (NO_PROXY, or proxies={"all": None}).
        proxy = requests.utils.select_proxy(url, kwargs["proxies"])
        if not proxy or not _tls_proxy(proxy):
            return
        adapter = self.get_adapter(url)
        if isinstance(adapter, PinningAdapter):
            different = _policy_difference(adapter, self.pinning_adapter)
            if not different:
                return
            why = f"its adapter's {different} is not the session's"  # helper 62
        else:
            why = f"its adapter, {type(adapter).__name__}, is no PinningAdapter to check its pins"
        raise ValueError(
            f"refusing {_shown(url)!r}: it would go through the proxy {_shown(proxy)!r}, over "
            f"TLS, and {why}; "
            "turn the proxy off for it (NO_PROXY, or proxies={'all': None}), or mount a "
            "PinningAdapter with the session's pins for its scheme"
        )

    def close(self) -> None:
        """Close the mounted adapters and the session's own, mounted or not."""
        super().close()
        # requests closes what is mounted; the session's adapter, made here,
        # may have been remounted away (its pools and report worker with it).
        # Closing is idempotent, so one still mounted may be closed twice.
        self.pinning_adapter.close()
        # And approvals of adapters no longer mounted (edits of the mapping)
        # let them go: the session closes what it mounts, not what it held.
        self._forget_unmounted()


def _shown(url: str) -> str:
    """``url`` for an error message: a user name and password replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if not separator or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def _tls_proxy(proxy: str) -> bool:
    """Whether requests would speak TLS to ``proxy`` (any scheme but http and SOCKS's)."""
    # Without "://" requests takes it for http (prepend_scheme_if_needed).
    scheme = proxy.partition("://")[0] if "://" in proxy else "http"
    return scheme.strip().lower() not in ("http", "socks4", "socks4a", "socks5", "socks5h")


def _policy_difference(adapter: PinningAdapter, reference: PinningAdapter) -> str:
    """The name of the first policy setting in which the two adapters differ, or ''."""
    return adapter.policy.difference(reference.policy)


def audit_mounts(adapter: PinningAdapter, session: object) -> None:
    """Warn (:class:`PinningMountWarning`, and a log line) about every bypass of ``adapter``.

    Called on the adapter's first request, and again whenever the audited
    session's mounts change (compared with a copy), with that session.
    """
    adapters = getattr(session, "adapters", None)
    if isinstance(session, PinningSession) or not isinstance(adapters, dict):
        return
    mine = [prefix for prefix, mounted in adapters.items() if mounted is adapter]
    problems = []
    # Exactly "https://": requests keeps "HTTPS://" as a prefix of its own,
    # and the default adapter's "https://", mounted first, is tried before it.
    on_https = "https://" in mine
    if not on_https:
        problems.append(
            f"the PinningAdapter is mounted on {', '.join(map(repr, mine))} and not on "
            "'https://': requests picks adapters by URL prefix, so other spellings of a "
            "pinned host (user@host, its IP address, a trailing dot) go to another "
            "adapter, unpinned"
        )
    for prefix, other in adapters.items():
        # Any other adapter whose prefix some https:// URL can match, however
        # spelled: "HTTPS://" matches the same URLs as "https://" (which one
        # requests tries first depends on the order of the mounts), and
        # "ht\t" takes "ht\ttps://" URLs.
        if prefix == "https://" and not on_https:
            continue  # said above: that adapter has the URLs the pinning one has not
        if _covers_web_urls(prefix, ("https://",)) and not isinstance(other, PinningAdapter):
            problems.append(
                f"{type(other).__name__} mounted on {prefix!r} takes the URLs under that "
                "prefix out of pinning"
            )
    for problem in problems:
        message = f"{problem}; use PinningSession, or mount a PinningAdapter on 'https://' only"
        log.warning("%s", message)
        warnings.warn(message, PinningMountWarning, stacklevel=4)


def calling_session() -> object:
    """The requests.Session whose ``send`` called the adapter, or None.

    requests gives an adapter no reference to its session; its ``Session.send``
    frame has one, a few frames up. This runs only when the adapter audits its
    mounts: on its first request, when the audited session's mounts changed or
    the session is gone, and on every request sent without a session (the
    next one may come from one).
    """
    frame = sys._getframe(1)
    for _ in range(8):
        if frame.f_back is None:
            return None
        frame = frame.f_back
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, requests.Session):
            return candidate
    return None
