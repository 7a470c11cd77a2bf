"""Public suffixes for ``requests-pinning lint``: the real list if installed, else a built-in one.

``lint`` warns about a wildcard entry (``*.`` or ``**.``) over a public suffix:
``*.com`` or ``**.co.uk`` pins every site registered under it, which is almost
always a mistake. The Public Suffix List (https://publicsuffix.org/) has
thousands of entries and changes weekly. With the ``psl`` extra
(``pip install 'requests-pinning[psl]'``) the ``publicsuffixlist`` package
supplies it, bundled, with no network access. Without it, a compact built-in
stand-in is used, and the library itself never needs either: every
single-label name (``com``, ``uk``, ``localhost``, ``internal``) counts as a
public suffix, plus the multi-label suffixes below, the registries and
hosting platforms people most often pin by accident. A name missing there is
just not warned about. ``lint`` says which of the two it used.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MULTI_LABEL_SUFFIXES", "SuffixList", "is_public_suffix", "public_suffix_list"]

#: Public suffixes of two or more labels: country registries' second levels,
#: then hosting platforms (the list's "private" section) that hand out
#: subdomains to their customers.
MULTI_LABEL_SUFFIXES: frozenset[str] = frozenset(
    {
        # United Kingdom
        "co.uk", "org.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "ac.uk", "gov.uk",
        "sch.uk", "nhs.uk", "police.uk",
        # Australia, New Zealand
        "com.au", "net.au", "org.au", "edu.au", "gov.au", "asn.au", "id.au",
        "co.nz", "net.nz", "org.nz", "govt.nz", "ac.nz",
        # Japan, Korea, China, Taiwan, Hong Kong, Singapore
        "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "ad.jp", "ed.jp", "gr.jp", "lg.jp",
        "co.kr", "or.kr", "ne.kr", "go.kr", "ac.kr",
        "com.cn", "net.cn", "org.cn", "gov.cn", "edu.cn",
        "com.tw", "org.tw", "edu.tw", "gov.tw",
        "com.hk", "org.hk", "edu.hk", "gov.hk",
        "com.sg", "org.sg", "edu.sg", "gov.sg",
        # South and South-East Asia
        "co.in", "net.in", "org.in", "firm.in", "gen.in", "ind.in", "ac.in", "gov.in",
        "co.id", "or.id", "ac.id", "go.id", "web.id",
        "com.my", "com.ph", "com.vn", "co.th", "in.th", "ac.th", "go.th",
        # Americas
        "com.br", "net.br", "org.br", "gov.br", "edu.br",
        "com.mx", "org.mx", "gob.mx", "com.ar", "gob.ar", "com.co", "com.pe", "gob.pe",
        "com.uy", "com.ve", "co.ve",
        # Africa, Middle East, Europe
        "co.za", "org.za", "gov.za", "ac.za", "web.za",
        "co.il", "org.il", "ac.il", "gov.il", "com.tr", "org.tr", "gov.tr",
        "com.eg", "com.sa", "com.ua", "com.pl", "net.pl", "org.pl", "co.at", "or.at",
        "com.es", "org.es", "gouv.fr", "com.gr", "com.cy", "com.mt",
        # Hosting platforms
        "github.io", "githubusercontent.com", "gitlab.io", "bitbucket.io",
        "herokuapp.com", "appspot.com", "blogspot.com", "firebaseapp.com", "web.app",
        "cloudfront.net", "s3.amazonaws.com", "elasticbeanstalk.com",
        "azurewebsites.net", "cloudapp.net", "azureedge.net", "trafficmanager.net",
        "blob.core.windows.net",
        "netlify.app", "vercel.app", "pages.dev", "workers.dev", "fly.dev", "onrender.com",
        "readthedocs.io", "pythonanywhere.com", "duckdns.org",
    }
)  # fmt: skip


def is_public_suffix(name: str) -> bool:
    """Is ``name`` (normalised: lower case, A-labels, no trailing dot) a public suffix?

    Every single-label name is one; so is every name in :data:`MULTI_LABEL_SUFFIXES`.
    """
    return "." not in name or name in MULTI_LABEL_SUFFIXES


@dataclass(frozen=True)
class SuffixList:
    """Which list answers "is this a public suffix?", and its answer."""

    #: What to tell the user about the list, e.g. "the built-in list".
    description: str
    is_public_suffix: Callable[[str], bool]


def public_suffix_list() -> SuffixList:
    """The Public Suffix List if ``publicsuffixlist`` is installed, else the built-in list."""
    try:
        from publicsuffixlist import PublicSuffixList
    except ImportError:
        return SuffixList(
            "the built-in list (install requests-pinning[psl] for the full Public Suffix List)",
            is_public_suffix,
        )
    # Both ICANN and private sections (hosting platforms are where wildcards
    # bite), and unknown top-level names count as public, like the built-in list.
    psl = PublicSuffixList(accept_unknown=True, only_icann=False)
    version = importlib.metadata.version("publicsuffixlist")
    return SuffixList(
        f"the Public Suffix List (publicsuffixlist {version})",
        lambda name: bool(psl.is_public(name)),
    )
