"""One shared ``SSLContext`` per TLS configuration, instead of one per connection.

requests and urllib3 build a new ``SSLContext`` for every new connection and
load the CA certificates into it: with OpenSSL 3 that costs far more than the
handshake itself (about 200 M instructions for certifi's bundle, or for the
system store that urllib3 loads even under ``verify=False``). A pinning pool
instead hands each new connection a context from this cache, built once with
urllib3's own factory, and clears the connection's CA and client-certificate
arguments, so urllib3 has nothing left to load.

The security of this rests on the key. It holds everything that shapes a
context, so that two connections share one only when urllib3 would have built
them identically:

- ``cert_reqs`` (a ``verify=False`` context can never serve a verified
  connection: CVE-2024-35195 was that bug in requests), the CA file, directory
  or data, and the client certificate, key and password;
- the identity and modification stamp of every file named, so that a bundle
  or a certificate replaced on disk is loaded again (a file that cannot be
  looked at is never a key, a context whose files changed while it was built
  is not kept, and none is built while a file's last change is less than
  ``SETTLE_SECONDS`` old: file systems stamp times in ticks, a few
  milliseconds on Linux before 6.13 and up to 2 s on FAT, and a same-size
  rewrite within the tick of the read would leave the stamp as it was). The
  age is read on this machine's clock: a network file system whose server's
  clock runs behind it can make a fresh change look old. A rewrite through a
  memory map, whose stamp the kernel may update only later, is not seen
  either; replacing a file by renaming a new one over it is always seen;
- the TLS versions, ``assert_hostname`` and ``assert_fingerprint`` (they decide
  ``check_hostname``), ``SSLKEYLOGFILE`` (as urllib3 reads it, and the file it
  names now: ``_key_log``), and the context class urllib3 uses.

Not shared: a context the user passed, verified connections that name no CA
(the system's default store can change under a running process), contexts
under pyOpenSSL (which refuses the per-connection writes below once a context
is in use) or truststore (which holds a lock through every handshake), both
checked at every connect, as they may be injected later, a CA directory (OpenSSL reads it lazily
and caches what it read, so a certificate replaced in place would go unseen),
and connections through an HTTPS proxy (urllib3 verifies the proxy with the
connection's own CA arguments, which sharing clears).

Per connection, urllib3 still writes ``verify_mode``, ``check_hostname`` and
the ALPN protocols into the context it is given; with the key above those
writes repeat the values the context already has, so no thread can observe
another's. (ALPN is urllib3's global list, the same for every connection,
unless urllib3.http2 is injected or extracted while connections are opening.)
Anything that fails while building a context (an unreadable
bundle, an encrypted key without a password) is left to urllib3: that
connection gets no shared context, and urllib3 raises its usual error.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

from urllib3.util import ssl_

from ._tls import STDLIB_CONTEXT, HTTP11Context

__all__ = ["TLSContexts", "own_context"]

_MAX_CONTEXTS = 32  # distinct TLS configurations kept per owner; the oldest goes first
# What urllib3 would load into a context per connection; the shared one has it.
_LOADED = ("ca_certs", "ca_cert_dir", "ca_cert_data", "cert_file", "key_file", "key_password")


#: A context is built (and shared) only from files whose last change is at
#: least this old (see the module's docstring): FAT's 2 s tick, and a second
#: for the kernel's coarse clock to lag the one this is measured on.
SETTLE_SECONDS = 3.0


class _Unstamped(Exception):
    """A file named by a connection could not be looked at: nothing is shared for it."""


class _Stamp(NamedTuple):
    """A file's identity and modification stamp, as a key part."""

    path: str | bytes | os.PathLike[str] | os.PathLike[bytes]
    device: int
    inode: int
    modified_ns: int
    size: int
    changed_ns: int  # ctime: moved by any write or utime(), and settable by no one


def _stamp(path: object) -> object:
    """A file's identity and modification stamp (the value itself if it names no file)."""
    if not isinstance(path, str | bytes | os.PathLike):
        return path
    try:
        info = os.stat(path)
    except OSError:
        # Never a key: a context built from whatever the file held a moment
        # later would be found again under it by every connection that cannot
        # see the file, where urllib3 would refuse (a bundle being replaced).
        raise _Unstamped from None
    return _Stamp(path, info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size, info.st_ctime_ns)


def _settled(key: tuple[object, ...], now_ns: int) -> bool:
    """Whether every file in ``key`` last changed ``SETTLE_SECONDS`` or more before ``now_ns``.

    A later rewrite of such a file is stamped with a later time, however
    coarse the file system's clock, so it makes another key. A file changed
    more recently may be rewritten within the same tick, to the same size,
    after a build read it: its context would then be found again under the
    stamp it kept, trusting what the file no longer holds. A file stamped in
    the future (a clock that disagrees) is not settled until that time.
    """
    settled_by = now_ns - int(SETTLE_SECONDS * 1e9)
    return all(
        max(part.modified_ns, part.changed_ns) <= settled_by
        for part in key
        if isinstance(part, _Stamp)
    )


def _key_log() -> object:
    """Where a context built now would write TLS secrets (``SSLKEYLOGFILE``), as a key part.

    A context opens its key log once, when it is built, and writes to that
    file ever after, while urllib3 opens it anew for every connection: so
    whatever decides which file urllib3 would open now is in the key. That is
    the variable's text, its text with variables expanded (urllib3 2.x expands
    them, 1.26 does not: both are kept, so either way a change of ``$KEYDIR``
    in ``$KEYDIR/keys.log``, or ``$KEYLOG`` cleared to turn logging off, makes
    another key), the working directory if either is relative, and which file
    each names now (a log moved away is written anew by urllib3, not by the
    open handle). The file's device and inode only: its size and time move
    with every handshake it records.
    """
    text = os.environ.get("SSLKEYLOGFILE")
    if not text:
        return text  # unset or empty: urllib3 sets no key log
    names = (text, os.path.expandvars(text))
    relative = not all(os.path.isabs(name) for name in names if name)
    return (names, os.getcwd() if relative else None, tuple(_file_id(name) for name in names))


def _file_id(name: str) -> tuple[int, int] | None:
    """The device and inode of the file ``name`` reaches now; None for none (or no name)."""
    if not name:
        return None
    try:
        info = os.stat(name)
    except FileNotFoundError:
        return None  # the build creates it, and the key after the build differs: not kept
    except OSError:
        raise _Unstamped from None  # urllib3 may fail to open it: its own path says so
    return (info.st_dev, info.st_ino)


def _http11_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context``, made to offer HTTP/1.1 by ALPN if it is of ssl's own class (HTTP11Context).

    Another class (pyOpenSSL's, truststore's) is left as it is: a connection
    whose server then chooses HTTP/2 is refused (``_urllib3``), as it would
    fail anyway.
    """
    # ssl's own class, not whatever the name ssl.SSLContext holds (truststore's
    # class after truststore.inject_into_ssl(), which validates otherwise).
    if type(context) is STDLIB_CONTEXT:
        # The same object, of a subclass that adds one method: the context
        # urllib3's factory made, with nothing of it rebuilt or copied.
        context.__class__ = HTTP11Context
        context.set_alpn_protocols(["http/1.1"])
    return context


def _factory_context(conn: Any) -> ssl.SSLContext:
    """urllib3's context for ``conn``'s TLS versions and ``cert_reqs``, nothing loaded yet."""
    options: dict[str, Any] = {}
    for name in ("ssl_minimum_version", "ssl_maximum_version"):  # urllib3 2.x only
        if getattr(conn, name, None) is not None:
            options[name] = getattr(conn, name)
    context = ssl_.create_urllib3_context(
        ssl_version=ssl_.resolve_ssl_version(getattr(conn, "ssl_version", None)),
        cert_reqs=ssl_.resolve_cert_reqs(conn.cert_reqs),
        **options,
    )
    return _http11_context(context)


def own_context(conn: Any) -> ssl.SSLContext:
    """The context urllib3 would make for ``conn`` itself, at its connect, offering HTTP/1.1.

    For a connection that is given no shared context. urllib3 then still
    loads the connection's CA and client-certificate arguments into it, and
    sets its verification; the system's default store it loads only into a
    context it made itself, so that is loaded here, when no CA is named.
    """
    context = _factory_context(conn)
    no_ca = not (conn.ca_certs or conn.ca_cert_dir or conn.ca_cert_data)
    if no_ca and hasattr(context, "load_default_certs"):
        context.load_default_certs()
    return context


def _shareable_class() -> bool:
    """Whether urllib3 makes contexts of ssl's own class, the only kind shared.

    pyOpenSSL's refuse any write once a connection used them, and urllib3
    writes verify_mode per connection. truststore's (after
    ``truststore.inject_into_ssl()``) hold one lock through every handshake
    and every such write: shared, they would put all handshakes of a
    configuration in one queue, behind a host that never answers. (Neither
    loads CA files per connection as ssl's does, so sharing them would save
    little.)
    """
    return not ssl_.IS_PYOPENSSL and ssl_.SSLContext is STDLIB_CONTEXT


class TLSContexts:
    """A small, thread-safe cache of urllib3 client contexts, keyed by TLS configuration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held only to read or change the two dicts
        self._contexts: OrderedDict[tuple[object, ...], ssl.SSLContext] = OrderedDict()
        # One lock per key being built, so that threads opening their first
        # connections of one configuration at once wait for one context
        # instead of each loading the CAs, while other configurations go on:
        # a CA file that blocks (a hung network mount) stalls only its own.
        self._building: dict[tuple[object, ...], threading.Lock] = {}
        self.built = 0  # contexts made so far (for tests and operators)

    def __len__(self) -> int:
        return len(self._contexts)

    def attach(self, conn: Any) -> None:
        """Give ``conn`` (a urllib3 HTTPSConnection, about to connect) its shared context.

        Called before every ``connect()``, not once: urllib3 reconnects the
        same connection object when a pooled one was dropped, and the files
        it names may have changed since. The connection's own CA and
        client-certificate arguments are kept aside the first time, and the
        context is chosen afresh from them each time.
        """
        own = conn.__dict__.get("_pin_tls_args")
        if own is None:
            if not self._may_share(conn):
                conn._pin_tls_args = {}  # never shared: leave it to urllib3
                return
            own = {name: getattr(conn, name, None) for name in _LOADED}
            conn._pin_tls_args = own
        if not own:
            return
        # pyOpenSSL or truststore may have been injected since this
        # connection was made: see _shareable_class.
        context = self._context_for(conn, own) if _shareable_class() else None
        if context is None:
            # Building failed: urllib3 builds its own context from the
            # connection's own arguments, and raises its usual error.
            conn.ssl_context = None
            for name, value in own.items():
                setattr(conn, name, value)
            return
        conn.ssl_context = context
        # Nothing left for urllib3 to load per connection: it is all in the context.
        for name in _LOADED:
            setattr(conn, name, None)

    @staticmethod
    def _may_share(conn: Any) -> bool:
        if getattr(conn, "ssl_context", None) is not None:
            return False  # the user's context always wins
        if getattr(conn, "ca_cert_dir", None):
            # OpenSSL reads a hashed directory lazily and caches what it read:
            # a shared context would not see a certificate replaced in place.
            return False
        no_ca = not (conn.ca_certs or conn.ca_cert_data)
        if no_ca and ssl_.resolve_cert_reqs(conn.cert_reqs) != ssl.CERT_NONE:
            # The system's default store (SSL_CERT_FILE, SSL_CERT_DIR, their
            # contents) can change under a running process, and part of it is
            # a lazily read directory: only urllib3's per-connection load sees
            # that. (requests always names its bundle, so it still shares.)
            return False
        proxy = getattr(conn, "proxy", None)
        # urllib3 verifies an HTTPS proxy with the connection's own CA
        # arguments, which sharing clears.
        return proxy is None or getattr(proxy, "scheme", None) != "https"

    def _context_for(self, conn: Any, own: dict[str, Any]) -> ssl.SSLContext | None:
        try:
            key = self._key(conn, own)
            hash(key)
        except Exception:  # a file not there, ca_cert_data as a bytearray...: not shared
            return None
        with self._lock:
            context = self._found(key)
            if context is not None:
                return context
        if not _settled(key, time.time_ns()):
            # Decided before anything is read: until the files settle, each
            # connection loads them as urllib3 does, once, and no thread waits
            # on another's build.
            return None
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:
            try:
                with self._lock:
                    context = self._found(key)  # built while this thread waited
                if context is None:
                    context = self._built(conn, own, key)
                    if context is not None:
                        with self._lock:
                            self._contexts[key] = context
                            self.built += 1
                            while len(self._contexts) > _MAX_CONTEXTS:
                                self._contexts.popitem(last=False)
            finally:  # whatever ended the build (KeyboardInterrupt too)
                with self._lock:
                    if self._building.get(key) is building:
                        del self._building[key]
        return context

    def _built(
        self, conn: Any, own: dict[str, Any], key: tuple[object, ...]
    ) -> ssl.SSLContext | None:
        """A new context for ``key``, or None if building failed or a file changed meanwhile."""
        try:
            context = self._build(conn, own)
            # A file that changed while it was read may have been read half
            # old and half new, or new under the old stamp: not kept.
            if self._key(conn, own) != key:
                return None
        except Exception:
            return None
        return context

    def _found(self, key: tuple[object, ...]) -> ssl.SSLContext | None:
        """The context kept for ``key``, made the most recently used (under the lock)."""
        context = self._contexts.get(key)
        if context is not None:
            self._contexts.move_to_end(key)
        return context

    @staticmethod
    def _key(conn: Any, own: dict[str, Any]) -> tuple[object, ...]:
        return (
            ssl_.resolve_cert_reqs(conn.cert_reqs),
            _stamp(own["ca_certs"]),
            _stamp(own["ca_cert_dir"]),
            own["ca_cert_data"],
            _stamp(own["cert_file"]),
            _stamp(own["key_file"]),
            own["key_password"],
            getattr(conn, "ssl_version", None),
            getattr(conn, "ssl_minimum_version", None),
            getattr(conn, "ssl_maximum_version", None),
            conn.assert_hostname,
            conn.assert_fingerprint,
            _key_log(),
            ssl_.SSLContext,
        )

    @staticmethod
    def _build(conn: Any, own: dict[str, Any]) -> ssl.SSLContext:
        """A context as urllib3's connect() would make it, with everything loaded once."""
        cert_reqs = ssl_.resolve_cert_reqs(conn.cert_reqs)
        context = _factory_context(conn)
        context.verify_mode = cert_reqs
        # urllib3 2.x turns ssl's hostname check off when it checks names
        # itself; 1.26's factory already did. Decided here, once, per key.
        if (
            conn.assert_fingerprint
            or conn.assert_hostname
            or conn.assert_hostname is False
            or not getattr(ssl_, "HAS_NEVER_CHECK_COMMON_NAME", True)
        ):
            context.check_hostname = False
        if own["ca_certs"] or own["ca_cert_dir"] or own["ca_cert_data"]:
            context.load_verify_locations(own["ca_certs"], own["ca_cert_dir"], own["ca_cert_data"])
        elif cert_reqs != ssl.CERT_NONE and hasattr(context, "load_default_certs"):
            # What urllib3 does for a verified connection without a CA; it
            # also does it under CERT_NONE, where nothing is verified against
            # it, which is the waste this cache saves.
            context.load_default_certs()
        # As urllib3 checks it, with or without a certificate file: its
        # error to raise (the connection then builds its own context).
        if (
            own["key_file"]
            and own["key_password"] is None
            and ssl_._is_key_file_encrypted(own["key_file"])
        ):
            raise ssl.SSLError("encrypted client key without a password")
        if own["cert_file"]:
            context.load_cert_chain(own["cert_file"], own["key_file"], own["key_password"])
        return context
