"""What users bring from other tools (issue 9, section 1): every spelling and its outcome.

The table is the contract: each spelling from OkHttp, TrustKit, Android,
curl, HPKP reports, openssl, macOS, Windows and urllib3 either loads as the
digest shown, or fails with the exact message shown.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from requests_pinning import Pin, PinConfigError, PinSet

PROPERTY = settings(max_examples=300, deadline=None)

DIGEST = hashlib.sha256(b"spki").digest()
B64 = base64.b64encode(DIGEST).decode("ascii")
SPKI = f"sha256/{B64}"
# A real pin whose base64 has a "/" inside (the issue's example): bare, it
# used to be read as an unknown algorithm "jQJTbIh0grw0".
SLASHED = "jQJTbIh0grw0/1TkHSumWb+Fs0Ggogr621gT3PvPKG0="
# TrustKit's and OkHttp's placeholder: non-zero padding bits (B = 000001).
PLACEHOLDER = "B" * 43 + "="
PLACEHOLDER_CANONICAL = "sha256/" + "B" * 42 + "A="
CERT = hashlib.sha256(b"certificate").digest()
CERT_HEX = CERT.hex()
CERT_CANONICAL = ":".join(f"{byte:02X}" for byte in CERT)
SHA1 = hashlib.sha1(b"certificate").digest()  # a fingerprint under test
SHA1_CANONICAL = ":".join(f"{byte:02X}" for byte in SHA1)
MD5_COLONS = ":".join(["AB"] * 16)
OTHER = "sha256/" + base64.b64encode(bytes(32)).decode("ascii")


def spaced(hex_digits: str, sep: str) -> str:
    return sep.join(hex_digits[i : i + 2] for i in range(0, len(hex_digits), 2))


ACCEPTED = [
    # (spelling, where it comes from, canonical pin)
    (SPKI, "HPKP, OkHttp", SPKI),
    (f"sha256//{B64}", "curl --pinnedpubkey", SPKI),
    (f'pin-sha256="{B64}"', "HPKP header, our reports' known-pins", SPKI),
    (f"pin-sha256={B64}", "HPKP without quotes", SPKI),
    (f'pin-sha256="{B64}";', "HPKP header directive with its ';'", SPKI),
    (B64, "TrustKit, Android <pin digest=SHA-256>", SPKI),
    (SLASHED, "bare base64 with a '/' inside", f"sha256/{SLASHED}"),
    (f"sha256/{PLACEHOLDER}", "OkHttp/TrustKit placeholder", PLACEHOLDER_CANONICAL),
    (PLACEHOLDER, "TrustKit placeholder, bare", PLACEHOLDER_CANONICAL),
    (f"  {SPKI}\n", "white space around", SPKI),
    (CERT_CANONICAL, "openssl, browsers", CERT_CANONICAL),
    (CERT_HEX, "urllib3 assert_fingerprint", CERT_CANONICAL),
    (
        CERT_HEX[:7] + ":" + CERT_HEX[7:],
        "colons anywhere (urllib3 strips them all)",
        CERT_CANONICAL,
    ),
    (":".join(CERT_HEX[i : i + 4] for i in range(0, 64, 4)), "colons every 4", CERT_CANONICAL),
    (spaced(CERT_HEX.upper(), " "), "macOS Keychain", CERT_CANONICAL),
    (spaced(CERT_HEX, " "), "Windows certutil", CERT_CANONICAL),
    (f"SHA256 Fingerprint={CERT_CANONICAL}", "openssl 1.x -fingerprint", CERT_CANONICAL),
    (f"sha256 Fingerprint={CERT_CANONICAL}", "openssl 3.x -fingerprint", CERT_CANONICAL),
    (f"SHA1 Fingerprint={SHA1_CANONICAL}", "openssl -fingerprint -sha1", SHA1_CANONICAL),
    (f"sha256:{CERT_HEX}", "sha256: prefix", CERT_CANONICAL),
    (f"SHA-256: {spaced(CERT_HEX, ' ')}", "SHA-256: and spaces", CERT_CANONICAL),
]

CURL_LIST = f"sha256//{B64};{OTHER}"
HPKP_HEADER = f'pin-sha256="{B64}"; max-age=600'
BARE_SHA1 = base64.b64encode(SHA1).decode("ascii")
# 48 bytes whose base64 has no "+", "/" or "=" (one SHA-384 pin in eight), and is not hex.
BARE_SHA384 = base64.b64encode(bytes(range(48))).decode("ascii")
assert BARE_SHA384.isalnum() and not set(BARE_SHA384) <= set("0123456789abcdefABCDEF")
MD5_SPKI = "md5/" + base64.b64encode(bytes(16)).decode("ascii")
SSH = "SHA256:" + B64[:-1]  # ssh-keygen -l: an SSH key's hash, unpadded
NAMED_WRONG = f"SHA1 Fingerprint={CERT_CANONICAL}"
NAMED_MD5 = f"MD5 Fingerprint={MD5_COLONS}"
NOT_HEX = f"sha256:{B64}"
LIST = "holds 2 items separated by ';' (curl's list spelling): give one pin per list item"
FINGERPRINT_LENGTHS = "a fingerprint has 40 (SHA-1), 64 (SHA-256), 96 (SHA-384) or 128 (SHA-512)"
NEITHER = (
    "is neither an SPKI pin (sha256/<base64>, or its 44 characters of bare base64) "
    "nor a hex certificate fingerprint"
)

REFUSED = [
    # (spelling, why it is refused, the message after the quoted spelling)
    (CURL_LIST, "curl list: one pin per list item", f'{LIST}: ["{SPKI}", "{OTHER}"]'),
    (HPKP_HEADER, "a whole HPKP header", f'{LIST}: ["{SPKI}", "max-age=600"]'),
    (B64[:-1], "bare base64 without its '='", f"is not a pin; did you mean {SPKI!r}?"),
    (f"/{B64}", "a slash without an algorithm", f"is not a pin; did you mean {SPKI!r}?"),
    (
        BARE_SHA1,
        "bare base64 of 20 bytes",
        "is bare base64 of a 20-byte digest: only a SHA-256 SPKI pin (32 bytes) may be "
        f"written without its algorithm; did you mean {'sha1/' + BARE_SHA1!r}?",
    ),
    (
        BARE_SHA384,
        "bare base64 of 48 bytes, no '+', '/' or '='",
        "is bare base64 of a 48-byte digest: only a SHA-256 SPKI pin (32 bytes) may be "
        f"written without its algorithm; did you mean {'sha384/' + BARE_SHA384!r}?",
    ),
    (
        NOT_HEX,
        "sha256: takes hex",
        f"is not a fingerprint ('sha256:' takes hex digits); for an SPKI pin, did you mean "
        f"{SPKI!r}?",
    ),
    (
        NAMED_WRONG,
        "ambiguous: the name says SHA-1, the length SHA-256",
        "says SHA-1 but has 64 hex digits, the length of SHA-256",
    ),
    (NAMED_MD5, "MD5 by name", "looks like an MD5 fingerprint: MD5 pins are not accepted"),
    (MD5_COLONS, "MD5 by length", "looks like an MD5 fingerprint: MD5 pins are not accepted"),
    (CERT_HEX[:-2], "a digit pair short", f"has 62 hex digits: {FINGERPRINT_LENGTHS}"),
    (CERT_HEX + "a", "an odd digit", f"has 65 hex digits: {FINGERPRINT_LENGTHS}"),
    (
        f"sha256/{B64[:-2]}",
        "truncated",
        "is not base64 of a 32-byte SHA-256 digest (expected sha256/ followed by 44 "
        "base64 characters)",
    ),
    (
        MD5_SPKI,
        "MD5 SPKI",
        "has an unknown hash algorithm 'md5': use sha1/, sha256/, sha384/, sha512/",
    ),
    (
        "x/y",
        "short base64",
        "is not a pin: bare base64 is read as a SHA-256 SPKI digest, 44 characters "
        "ending in '=' (this is 3 characters); other digests need their algorithm, "
        "as in sha384/<base64>",
    ),
    (SSH, "an SSH key fingerprint (ssh-keygen -l)", NEITHER),
    ("AB-CD-EF", "hyphens", NEITHER),
    # The twins of BARE_SHA384: a hex fingerprint with a typo is no SHA-384 pin.
    ("0x" + CERT_HEX.upper()[2:], "'0x' before upper-case hex", NEITHER),
    (CERT_HEX.upper().replace("0", "O"), "upper-case hex, 'O' for '0'", NEITHER),
    (CERT_HEX[:20] + "O" + CERT_HEX[21:], "lower-case hex, one 'O'", NEITHER),
]


@pytest.mark.parametrize(("text", "source", "canonical"), ACCEPTED, ids=[a[1] for a in ACCEPTED])
def test_spelling_loads_as_its_digest(text: str, source: str, canonical: str) -> None:
    pin = Pin.parse(text)
    assert str(pin) == canonical, source
    assert Pin.parse(canonical) == pin
    # The same through the loader, and to_dict() writes the canonical form.
    pins = PinSet({"api.example.com": [text]})
    assert pins.to_dict() == {"api.example.com": {"pins": [canonical]}}


@pytest.mark.parametrize(("text", "source", "message"), REFUSED, ids=[r[1] for r in REFUSED])
def test_spelling_is_refused_with_its_fix(text: str, source: str, message: str) -> None:
    message = f"{text!r} {message}"
    with pytest.raises(ValueError) as info:
        Pin.parse(text)
    assert str(info.value) == message, source
    with pytest.raises(PinConfigError) as loaded:
        PinSet({"api.example.com": [text]})
    assert str(loaded.value) == f"pins for 'api.example.com': {message}"


def test_the_issue_misdiagnoses_are_fixed() -> None:
    # Bare base64 containing "/" was an "unknown hash algorithm 'jQJTbIh0grw0'".
    assert str(Pin.parse(SLASHED)) == f"sha256/{SLASHED}"
    # openssl's line was told to "write hex digits in pairs separated by ':'".
    assert str(Pin.parse(f"SHA256 Fingerprint={CERT_CANONICAL}")) == CERT_CANONICAL
    # The placeholder was "not 32 bytes"; it is, and decodes as other tools decode it.
    assert Pin.parse(PLACEHOLDER).digest == base64.b64decode(PLACEHOLDER)


def test_spellings_of_one_digest_are_one_pin() -> None:
    spellings = [SPKI, f"sha256//{B64}", f'pin-sha256="{B64}"', B64, f"SHA256/{B64}"]
    assert len({Pin.parse(text) for text in spellings}) == 1
    # In one list they merge (as any two spellings of one pin always have).
    assert PinSet({"a.example": spellings}).to_dict() == {"a.example": {"pins": [SPKI]}}


def test_non_canonical_base64_is_the_same_pin_as_its_canonical_form() -> None:
    canonical = Pin.parse(PLACEHOLDER_CANONICAL)
    # B, C and D differ from A only in the 2 padding bits of the last character.
    variants = [PLACEHOLDER_CANONICAL] + [f"sha256/{'B' * 42}{c}=" for c in "BCD"]
    assert {Pin.parse(text) for text in variants} == {canonical}
    pins = PinSet({"a.example": {"pins": variants[:2], "deny": [OTHER]}})
    entry = pins.match("a.example")
    assert entry is not None
    assert [str(pin) for pin in entry.pins] == [PLACEHOLDER_CANONICAL]
    # ...and a spelling of an accepted pin in 'deny' is still caught as the same pin.
    with pytest.raises(PinConfigError, match="is in both 'pins' and 'deny'"):
        PinSet({"a.example": {"pins": [PLACEHOLDER], "deny": [variants[3]]}})


def test_a_bare_64_digit_hex_string_is_a_fingerprint_never_base64() -> None:
    # 64 hex digits are also base64 of 48 bytes: the fingerprint reading wins,
    # and bare base64 is only ever read for 32-byte (44-character) digests.
    pin = Pin.parse(CERT_HEX)
    assert (pin.kind, pin.algorithm, pin.digest) == ("cert", "sha256", CERT)


def test_bare_base64_that_starts_like_an_algorithm_is_still_bare() -> None:
    # Found by the property below: bare base64 of a digest can begin with what
    # looks like an algorithm and a "/" ("mD/...", "sha/...", "md5/..."); no
    # spelling with an algorithm is 44 characters long, so it is read bare.
    for head in (b"\x98\x3f\xc0", b"\xb2\x16\xbf", b"\x99\xde\x7f"):
        digest = head + bytes(32 - len(head))
        text = base64.b64encode(digest).decode("ascii")
        assert "/" in text[:5], text
        pin = Pin.parse(text)
        assert (pin.kind, pin.algorithm, pin.digest) == ("spki", "sha256", digest)
    # The twin: an unknown algorithm with its own spelling is still refused as one.
    with pytest.raises(ValueError, match="unknown hash algorithm 'md5'"):
        Pin.parse("md5/" + base64.b64encode(bytes(16)).decode("ascii"))


# -- properties --------------------------------------------------------------------------------

DIGESTS = st.binary(min_size=32, max_size=32)


def noncanonical(digest: bytes, bits: int) -> str:
    """The base64 of a 32-byte digest with the 2 padding bits set to ``bits``."""
    text = base64.b64encode(digest).decode("ascii")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-2]) | bits
    return text[:-2] + alphabet[last] + "="


@PROPERTY
@given(digest=DIGESTS, bits=st.integers(0, 3), form=st.integers(0, 4))
def test_every_spki_spelling_of_a_digest_is_the_same_pin(
    digest: bytes, bits: int, form: int
) -> None:
    body = noncanonical(digest, bits)
    text = [f"sha256/{body}", f"sha256//{body}", f'pin-sha256="{body}"', body, f" {body}; "][form]
    pin = Pin.parse(text)
    assert (pin.kind, pin.algorithm, pin.digest) == ("spki", "sha256", digest)
    assert str(pin) == "sha256/" + base64.b64encode(digest).decode("ascii")
    assert Pin.parse(str(pin)) == pin


@PROPERTY
@given(
    digest=st.sampled_from([20, 32, 48, 64]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    cuts=st.lists(st.integers(0, 128), max_size=6),
    separator=st.sampled_from([":", " ", "\t", ": "]),
    prefix=st.sampled_from(["", "{name} Fingerprint=", "{name}:", "{upper} fingerprint = "]),
    upper=st.booleans(),
)
def test_every_hex_spelling_of_a_fingerprint_is_the_same_pin(
    digest: bytes, cuts: list[int], separator: str, prefix: str, upper: bool
) -> None:
    name = {20: "sha1", 32: "sha256", 48: "sha384", 64: "sha512"}[len(digest)]
    digits = digest.hex().upper() if upper else digest.hex()
    for cut in sorted(set(cuts), reverse=True):
        digits = digits[:cut] + separator + digits[cut:]
    text = prefix.format(name=name, upper=name.upper()) + digits
    pin = Pin.parse(text)
    assert (pin.kind, pin.algorithm, pin.digest) == ("cert", name, digest)
    assert Pin.parse(str(pin)) == pin


SPELLING_PIECES = st.sampled_from(
    [
        "sha256/",
        "sha256//",
        "pin-sha256=",
        '"',
        ";",
        "sha256:",
        "SHA256 Fingerprint=",
        ":",
        " ",
        "=",
        "/",
        "md5",
        "AB",
        "+",
        "B" * 43,
        "ab" * 16,
        "Fingerprint",
        "-",
        "\n",
    ]
)
PIN_LIKE = st.one_of(
    st.text(),
    st.lists(st.one_of(SPELLING_PIECES, st.text(max_size=4)), max_size=12).map("".join),
    st.text(alphabet="ABCDEFabcdef0123456789+/=:; ", max_size=140),
)


@PROPERTY
@given(text=PIN_LIKE)
def test_any_text_parses_or_raises_a_value_error_that_quotes_it(text: str) -> None:
    try:
        pin = Pin.parse(text)
    except ValueError as exc:
        assert str(exc).startswith(repr(text.strip()))
        return
    assert Pin.parse(str(pin)) == pin
    assert str(Pin.parse(str(pin))) == str(pin)
