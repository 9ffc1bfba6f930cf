"""Ad audiences' identifiers: normalized by each platform's documented rules before hashing, so
the same person written differently hashes the same (property tests), with known vectors;
values that cannot be read are named, never shown; the OAuth refresh-token grant Google's API
needs, against a real token endpoint on loopback."""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.loopback import QuietHandler, serve

from personify.config import BearerAuth, OAuth2RefreshToken, RestClient, RestDestination, Secret
from personify.destinations.audiences import google_identifiers, identifiers, masked_hashes
from personify.http.auth import make_auth

META = RestDestination(
    name="m",
    model="SELECT 1",
    preset="meta_audience",
    audience_id="1",
    access_token=Secret("t"),
    phone_region="US",
)
GOOGLE = RestDestination(
    name="g",
    model="SELECT 1",
    preset="google_ads_audience",
    ads_customer_id="1",
    user_list_id="2",
    developer_token=Secret("d"),
    client=RestClient(auth=BearerAuth(token=Secret("x"))),
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"email": " Ann@Example.COM\t"}, {"EMAIL": sha("ann@example.com")}),
        ({"phone": "+1 (650) 253-0000"}, {"PHONE": sha("16502530000")}),
        ({"phone": "(650) 253-0000"}, {"PHONE": sha("16502530000")}),  # phone_region US
        (
            {"phone": "0612345678", "country": "FR"},
            {"PHONE": sha("33612345678"), "COUNTRY": sha("fr")},
        ),
        ({"first_name": "Mary-Ann ", "LN": "O'Brien"}, {"FN": sha("maryann"), "LN": sha("obrien")}),
        ({"fn": "Zoë"}, {"FN": sha("zoë")}),
        (
            {"zip": "94025-1234", "city": "Menlo Park", "st": "CA"},
            {"ZIP": sha("94025"), "CT": sha("menlopark"), "ST": sha("ca")},
        ),
        ({"zip": "SW1A 1AA"}, {"ZIP": sha("sw1a1aa")}),
        (
            {"gender": "Female", "birth_year": 1985, "birth_month": "3", "DOBD": 7},
            {"GEN": sha("f"), "DOBY": sha("1985"), "DOBM": sha("03"), "DOBD": sha("07")},
        ),
        ({"extern_id": " crm-42 ", "MADID": "AB-CD"}, {"EXTERN_ID": "crm-42", "MADID": "ab-cd"}),
    ],
)
def test_meta_normalization_known_vectors(row: dict[str, Any], expected: dict[str, str]) -> None:
    assert identifiers(META, row) == (expected, [])


def test_google_normalization_known_vectors() -> None:
    row = {"email": " A.nn.Smith@GoogleMail.com", "phone": "+44 7700 900123", "country": "gb"}
    ids, unreadable, incomplete = google_identifiers(GOOGLE, row)
    # (country alone is the phone's region: not sent)
    assert ids == {"EMAIL": sha("annsmith@googlemail.com"), "PHONE": sha("+447700900123")}
    assert unreadable == [] and not incomplete
    # dots stay in other domains' addresses
    assert google_identifiers(GOOGLE, {"email": "a.b@x.org"})[0] == {"EMAIL": sha("a.b@x.org")}


@pytest.mark.parametrize(
    ("first", "last", "country", "postal", "expected"),
    [
        (
            " Mary-Ann ",
            "O'Brien",
            "gb",
            " WC2H  8LG ",
            {"FN": sha("maryann"), "LN": sha("obrien"), "COUNTRY": "GB", "ZIP": "WC2H 8LG"},
        ),
        (
            "Anne   Marie",
            "Pérez Díaz.",
            "SG",
            "018956",
            {"FN": sha("anne marie"), "LN": sha("pérez díaz"), "COUNTRY": "SG", "ZIP": "018956"},
        ),
        ("JOHN", "Smith, Jr", "uk", "94043-1351", None),  # uk is GB
    ],
)
def test_google_address_known_vectors(
    first: str, last: str, country: str, postal: str, expected: dict[str, str] | None
) -> None:
    row = {"first_name": first, "last_name": last, "country": country, "postal_code": postal}
    ids, unreadable, incomplete = google_identifiers(GOOGLE, row)
    want = expected or {
        "FN": sha("john"),
        "LN": sha("smith jr"),
        "COUNTRY": "GB",
        "ZIP": "94043-1351",
    }
    assert (ids, unreadable, incomplete) == (want, [], False)


@pytest.mark.parametrize(
    "row",
    [
        {"email": "a@x.org", "first_name": "Al", "last_name": None, "country": "US", "zip": "1"},
        {
            "email": "a@x.org",
            "first_name": "Al",
            "last_name": "Li",
            "country": "Narnia",
            "zip": "1",
        },
        {"email": "a@x.org", "first_name": "!!", "last_name": "Li", "country": "US", "zip": "1"},
    ],
)
def test_a_google_address_missing_a_part_is_left_out_and_said(row: dict[str, Any]) -> None:
    ids, _, incomplete = google_identifiers(GOOGLE, row)
    assert ids == {"EMAIL": sha("a@x.org")} and incomplete


def test_unreadable_values_are_named_not_shown() -> None:
    ids, unreadable = identifiers(META, {"email": "ann at example", "phone": "12", "gender": "x"})
    assert ids == {} and unreadable == ["email address", "phone number", "gender"]


def test_hashes_are_masked_in_messages() -> None:
    h = sha("ann@example.com")
    assert masked_hashes(f"refused {h}.") == f"refused sha256:{h[:4]}…."


_spaces = st.text(" \t\n", max_size=3)


@given(
    local=st.from_regex(r"[a-z0-9]([a-z0-9._+-]{0,15}[a-z0-9])?", fullmatch=True),
    domain=st.from_regex(r"[a-z0-9]{1,10}\.(com|org|fr)", fullmatch=True),
    flips=st.lists(st.booleans(), min_size=40, max_size=40),
    before=_spaces,
    after=_spaces,
)
def test_an_email_hashes_the_same_however_it_is_cased_or_padded(
    local: str, domain: str, flips: list[bool], before: str, after: str
) -> None:
    canonical = f"{local}@{domain}"
    written = "".join(c.upper() if f else c for c, f in zip(canonical, flips * 3, strict=False))
    for d in (META, GOOGLE):
        assert identifiers(d, {"email": before + written + after}) == identifiers(
            d, {"email": canonical}
        )
    assert identifiers(META, {"email": written})[0] == {"EMAIL": sha(canonical)}


@given(
    national=st.from_regex(r"[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True),
    style=st.sampled_from(["+1 {a} {b} {c}", "({a}) {b}-{c}", "1-{a}-{b}-{c}", "+1{a}{b}{c}"]),
)
def test_a_phone_hashes_the_same_however_it_is_written(national: str, style: str) -> None:
    written = style.format(a=national[:3], b=national[3:6], c=national[6:])
    meta, _ = identifiers(META, {"phone": written})
    plain, _ = identifiers(META, {"phone": "+1" + national})
    assert meta == plain
    if meta:  # (a possible number): Meta's digits, Google's E.164 of the same number
        google, _, _ = google_identifiers(GOOGLE, {"phone": written, "country": "US"})
        assert meta == {"PHONE": sha("1" + national)}
        assert google == {"PHONE": sha("+1" + national)}


class _Token(QuietHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.body()).items()}
        self.seen.append(form)
        ok = form.get("grant_type") == "refresh_token" and form.get("refresh_token") == "r1"
        body = (
            {"access_token": f"tok{len(self.seen)}", "expires_in": 3600}
            if ok
            else {"error": "invalid_grant"}
        )
        self.answer(200 if ok else 400, body)


@pytest.fixture
def token_url() -> Iterator[str]:
    _Token.seen = []
    with serve(_Token) as url:
        yield url + "/token"


def _refreshing(token_url: str, refresh_token: str) -> httpx.Auth | None:
    """The refresh-token grant of client ``id`` / ``secret`` at ``token_url``."""
    return make_auth(
        OAuth2RefreshToken(
            client_id=Secret("id"),
            client_secret=Secret("secret"),
            refresh_token=Secret(refresh_token),
            access_token_url=token_url,
        )
    )


def test_the_refresh_token_grant_fetches_once_and_again_on_a_401(token_url: str) -> None:
    auth = _refreshing(token_url, "r1")
    calls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        return httpx.Response(401 if len(calls) == 2 else 200)

    with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as http:
        assert http.get("http://api.test/a").status_code == 200
        assert http.get("http://api.test/b").status_code == 200  # 401, renewed, sent again
    assert calls == ["Bearer tok1", "Bearer tok1", "Bearer tok2"]
    assert _Token.seen[0] == {
        "grant_type": "refresh_token",
        "refresh_token": "r1",
        "client_id": "id",
        "client_secret": "secret",
    }


def test_a_refused_refresh_token_says_so(token_url: str) -> None:
    from personify.http.errors import RestHttpError

    auth = _refreshing(token_url, "revoked")
    with (
        httpx.Client(
            transport=httpx.MockTransport(lambda r: httpx.Response(200)), auth=auth
        ) as http,
        pytest.raises(RestHttpError, match="answered 400"),
    ):
        http.get("http://api.test/a")
