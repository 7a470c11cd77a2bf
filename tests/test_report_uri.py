"""A report URI is checked as urllib3 2 reads URLs, by a core that imports no urllib3.

The core's own rule is compared with the one it replaced
(``urllib3.util.parse_url``) on generated text. The tests may import urllib3;
the modules may not (``test_layers.py`` checks that).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import urllib3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from requests_pinning import PinConfigError
from requests_pinning._pinset import check_report_uri, normalize_host
from requests_pinning._report import report_host


def urllib3_accepts(value: str) -> bool:
    """The rule check_report_uri had, with urllib3's parser."""
    if not value.isascii() or any(c.isspace() for c in value):
        return False
    try:
        url = parse_url(value)
    except LocationParseError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def deliverable(value: str) -> bool:
    """What the delivery also needs (of a URI urllib3 accepts): no user name or
    password, which would never be sent; no escapes in a name's host; and the
    host the reporter judges with the standard library's parser is the one
    urllib3 delivers to (the Poster's own check)."""
    url = parse_url(value)
    try:
        split = urlsplit(value)
    except ValueError:
        return False
    if url.auth is not None or "@" in split.netloc:
        return False
    if not split.netloc.startswith("[") and "%" in (split.hostname or ""):
        return False
    return normalize_host((url.host or "").strip("[]")) == report_host(value)


def accepts(value: str) -> bool:
    try:
        check_report_uri(value, "'a.example'")
    except PinConfigError as error:
        assert str(error).startswith("'report_uri' for 'a.example': ")
        return False
    return True


# Pieces that URLs and their near misses are made of: schemes, separators,
# user info, names, IPv4 and IPv6 literals, zone ids, ports, escapes (of
# control characters too), and the characters that end an authority.
PIECES = st.sampled_from(
    [
        "http", "https", "HTTP", "hTtPs", "ftp", "ht.tp", "http+x", "//", "://", ":", "/",
        "\\", "?", "#", "@", "user", "u:p", "a", "B", "-", "_", ".", "~", "example.com",
        "xn--bcher-kva", "127.0.0.1", "999.1.2.3", "0x7f.1", "[", "]", "::", "::1",
        "fe80::1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "2001:db8::", "::ffff:1.2.3.4",
        "v1.x", "%", "%25", "%2", "%41", "%4g", "%00", "%1f", "%1F", "%20", "%7f", "%7F",
        "%80", "%ff", "%2500", "0", "00", "80", "443", "65535", "65536", "99999",
        "123456", "0000065535", "\x00", "\x01", "\x1b", "\x7f", " ", "\t", "\u00e9", "!",
        "$", "'", "(", ")", "*", "+", ",", ";", "=", "\"", "<", ">", "^", "`", "{", "|",
        "}",
    ]
)  # fmt: skip
URLISH = st.one_of(
    st.lists(PIECES, max_size=14).map("".join),
    st.tuples(
        st.sampled_from(["http://", "https://", "HTTPS://"]),
        st.lists(PIECES, max_size=10).map("".join),
    ).map("".join),
    st.text(max_size=30),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=URLISH)
@example(value="http://[fe80::1%00]/")  # "%" and "00": a zone id, not an escape
@example(value="http://[fe80::1%2500]/")
@example(value="http://[fe80::1%25%00]/")
@example(value="http://[fe80::1%25]/")
@example(value="http://a%00b/")
@example(value="http://a%20b/")
@example(value="http://[::999.1.1.1]")
@example(value="http://x:0000065535")
@example(value="http://x:" + "0" * 5000 + "1")
@example(value="http://a\\b")
@example(value="http://u@/")
@example(value="http://:80")
@pytest.mark.skipif(
    urllib3.__version__.startswith("1."),  # type: ignore[attr-defined]
    reason="the rule is urllib3 2's; 1.26 also let control characters through in hosts",
)
def test_report_uri_rule_is_urllib3s(value: str) -> None:
    assert accepts(value) == (urllib3_accepts(value) and deliverable(value))


@pytest.mark.parametrize(
    "value",
    [
        "https://collector.example/pkp",
        "http://127.0.0.1:9/r",
        "HTTPS://Collector.Example:443/p?q#f",
        "http://[2001:db8::1]:8080/",
        "http://[fe80::1%25eth0]/",
    ],
)
def test_report_uris_accepted(value: str) -> None:
    assert check_report_uri(value, "the adapter") == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ftp://collector.example/",
        "https://",
        "https:///path",
        "https:collector.example",
        "https://collector.example:65536/",
        "https://[2001:db8::1/",
        "https://collector.example:8o/",
        "https://a%00b/",
        "https://a\x01b/",
        "https://collector.example/a b",
        "https://collecteur.\u00e9xample/",
    ],
)
def test_report_uris_refused(value: str) -> None:
    with pytest.raises(PinConfigError) as error:
        check_report_uri(value, "the adapter")
    assert str(error.value) == (
        f"'report_uri' for the adapter: {value!r} is not an http:// or https:// URL"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # Helper 57: credentials were never sent, and shown in every log line.
        ("https://user:S3cret@collector.example/", "remove the user name and password"),
        ("https://user@collector.example/", "remove the user name and password"),
        # Helper 57: each loaded, and every report to it was refused.
        ("https://evil\\@collector.example/", "remove the user name and password"),
        ("https://collector.example%2e/", "percent-escapes in its host"),
        ("https://%63ollector.example/", "percent-escapes in its host"),
        ("https://a\\b/", "names its host ambiguously"),
    ],
)
def test_report_uris_that_could_never_be_sent_a_report_are_refused(
    value: str, message: str
) -> None:
    with pytest.raises(PinConfigError, match=message) as error:
        check_report_uri(value, "the adapter")
    assert "S3cret" not in str(error.value)


@pytest.mark.parametrize(
    "value",
    [
        "https://user:S3cret@example.com:99999/r",
        "https://user:S3cret pw@example.com/r",
        "https://user:S3cret\u00e9@example.com/r",
        "https://user:S3cret@[::1/r",
        "https://user:S3cret@example.com:80:80/r",
    ],
)
def test_a_password_is_never_shown_in_any_refusal(value: str) -> None:
    # Helper 60: a URI with a password and another fault was refused with
    # the generic message, which showed it.
    with pytest.raises(PinConfigError) as error:
        check_report_uri(value, "the adapter")
    assert "S3cret" not in str(error.value)
    assert "not shown: it holds an '@'" in str(error.value)
