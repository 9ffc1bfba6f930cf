"""Words a template prints for the project — a discount's ``label``, month and day names — are
in the template's language; ``date`` takes a time zone, and one that is none fails the render
naming the template and line."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import pytest

from personify.messages import RenderError, TemplateStore, build_context, render
from personify.messages.labels import DiscountLabel, Expiry, label_in, words_locale
from personify.messages.render import render_reference
from personify.offers.discounts import label

CUSTOMER = {"customer_id": "c1", "first_name": "Ann", "email": "ann@x.org", "traits": {}}
LAYOUT = (
    "<mjml><mj-head><mj-style inline='inline'>p { color: #123456; }</mj-style></mj-head>"
    "<mj-body><mj-section><mj-column><mj-text>{{ content }}</mj-text></mj-column>"
    "</mj-section></mj-body></mjml>\n"
)
AT = dt.datetime(2026, 3, 1, 23, 5, tzinfo=dt.UTC)  # Monday 2 March, 00:05 in Paris


def store(tmp_path: Path, files: dict[str, str]) -> TemplateStore:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return TemplateStore(tmp_path)


def page(body: str, subject: str = "x") -> str:
    return f"---\nsubject: {subject}\n---\n{body}"


def both(s: TemplateStore, name: str, locale: str | None, **variables: object) -> str:
    """The email's text, the same by the fast path (a plan) and the reference render."""
    customer = {**CUSTOMER, "locale": locale}
    template = s.get(name, locale)
    context = build_context(customer, variables)
    fast, reference = render(template, context), render_reference(template, context)
    assert (fast.subject, fast.text) == (reference.subject, reference.text)
    return fast.text.strip()


# ----------------------------------------------------------------------------- discount.label


def test_a_discount_label_is_the_english_text_it_was_and_knows_what_it_takes_off() -> None:
    ten, five = label(10, "percent"), label(5, "amount", "USD")
    assert (ten, five) == ("10% off", "5.00 USD off")  # existing templates print the same
    assert isinstance(ten, DiscountLabel) and (ten.kind, str(ten.value)) == ("percent", "10")
    copied = pickle.loads(pickle.dumps(five))
    assert (copied, copied.kind, copied.currency) == ("5.00 USD off", "amount", "USD")


def test_a_discount_label_is_written_in_the_templates_language(tmp_path: Path) -> None:
    body = "<p>{{ d.label }}|{{ e.label }}</p>"
    s = store(
        tmp_path,
        {
            "t.liquid": page(body, '"{{ d.label }}"'),
            "t.fr.liquid": page(body, '"{{ d.label }}"'),
            "t.de.liquid": page(body),
            "t.pt.liquid": page(body),  # no wording for Portuguese: English
            "t.mjml": LAYOUT,
        },
    )
    d = {"code": "SAVE-1", "label": label(12.5, "percent")}
    e = {"code": "SAVE-2", "label": label(5, "amount", "EUR")}
    assert both(s, "t", None, d=d, e=e) == "12.5% off|5.00 EUR off"  # the default: English
    assert both(s, "t", "fr", d=d, e=e) == "12,5\xa0% de réduction|5,00\xa0€ de réduction"
    # German, in the customer's Austrian way (the euro first)
    assert both(s, "t", "de-AT", d=d, e=e) == "12,5\xa0% Rabatt|€\xa05,00 Rabatt"
    assert both(s, "t", "pt-BR", d=d, e=e) == "12.5% off|5.00 EUR off"
    # a customer whose language has no variant reads the default: its language, not theirs
    assert both(s, "t", "it", d=d, e=e) == "12.5% off|5.00 EUR off"
    french = render(s.get("t", "fr"), build_context({**CUSTOMER, "locale": "fr"}, {"d": d, "e": e}))
    assert french.subject == "12,5 % de réduction"  # the subject too (its spaces: plain)
    assert d["label"] == "12.5% off"  # the caller's value is not changed


def test_the_default_template_writes_in_the_projects_default_locale(tmp_path: Path) -> None:
    s = store(tmp_path, {"t.liquid": page("<p>{{ d.label }}</p>")})
    s.default_locale = "nl"
    d = {"label": label(10, "percent")}
    assert both(s, "t", None, d=d) == "10% korting"
    assert both(s, "t", "de", d=d) == "10% korting"  # no German variant: the default's words


def test_a_label_is_written_with_the_customers_own_locale_of_that_language() -> None:
    assert words_locale("fr", {**CUSTOMER, "locale": "fr-CA"}) == "fr-CA"
    assert words_locale("fr", {**CUSTOMER, "locale": "de-CH"}) == "fr"
    assert words_locale(None, {**CUSTOMER, "locale": "fr"}) == "en"
    five = label(5, "amount", "CHF")
    assert label_in(five, "de-CH") == "CHF\xa05.00 Rabatt"  # Swiss German writes CHF first
    assert label_in(label(5, "amount", "ZZZ"), "fr") == "5,00\xa0ZZZ de réduction"


def test_a_label_given_as_text_is_printed_as_given(tmp_path: Path) -> None:
    """A discount passed by hand (``--var discount={...}``) keeps its words: only a code the
    journey issued knows what it takes off."""
    s = store(tmp_path, {"t.fr.liquid": page("<p>{{ d.label }}</p>"), "t.liquid": page("<p/>")})
    assert both(s, "t", "fr", d={"label": "10% off", "value": 10, "kind": "percent"}) == "10% off"


def test_a_written_label_remembers_its_english_and_is_written_again_in_another_language() -> None:
    ten = label(10, "percent")
    french = label_in(ten, "fr")
    assert isinstance(french, DiscountLabel) and (french, french.english) == (
        "10\xa0% de réduction",
        "10% off",
    )
    assert label_in(french, "de") == "10\xa0% Rabatt"  # from what it was made of, not French
    assert label_in(french, "en") == "10% off" and label_in(ten, "en") is ten
    copied = pickle.loads(pickle.dumps(french))
    assert (copied, copied.english, copied.kind) == (french, "10% off", "percent")


# -------------------------------------------------------------------- discount.expires_at


def test_an_expiry_prints_its_day_in_the_emails_language(tmp_path: Path) -> None:
    """``{{ d.expires_at }}`` as it is: the English day it always printed in an English email
    (byte for byte), Babel's long date in another language; ``date:`` still writes any form."""
    import copy

    at = Expiry.of(dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC))
    body = "<p>{{ d.expires_at }}|{{ d.expires_at | date: '%d %B %Y', 'en' }}|{{ d.label }}</p>"
    files = {"t.liquid": page(body, '"{{ d.expires_at }}"'), "t.mjml": LAYOUT}
    files |= {"t.fr.liquid": page(body), "t.es.liquid": page(body), "t.pt.liquid": page(body)}
    s = store(tmp_path, files)
    d = {"code": "C", "label": label(10, "percent"), "expires_at": at}
    assert both(s, "t", None, d=d) == "08 December 2026|08 December 2026|10% off"
    assert both(s, "t", "fr-CA", d=d) == "8 décembre 2026|08 December 2026|10\xa0% de réduction"
    assert both(s, "t", "es", d=d).startswith("8 de diciembre de 2026|08 December 2026|")
    assert both(s, "t", "pt-BR", d=d).startswith("8 de dezembro de 2026|")  # words: Babel's
    # an English email is the one it was when the values were text
    before = {"code": "C", "label": "10% off", "expires_at": "08 December 2026"}
    for locale in (None, "de"):
        template = s.get("t", locale)
        now = render(template, build_context({**CUSTOMER, "locale": locale}, {"d": d}))
        then = render(template, build_context({**CUSTOMER, "locale": locale}, {"d": before}))
        assert (now.subject, now.html, now.text) == (then.subject, then.html, then.text)
    s.default_locale = "it"  # the default template in the project's language
    assert both(s, "t", None, d=d) == "8 dicembre 2026|08 December 2026|10% di sconto"
    assert str(at) == "08 December 2026" and at.written_in("en-GB") is at  # (the caller's)
    french = at.written_in("fr")
    for made in (pickle.loads(pickle.dumps(french)), copy.deepcopy(french), copy.copy(french)):
        assert isinstance(made, Expiry) and (made, str(made)) == (at, "8 décembre 2026")
    assert str(french.written_in("en")) == "08 December 2026"


@pytest.mark.parametrize(
    ("at", "customer_zone", "project_zone", "day"),
    [
        # 23:30 UTC: already the next day in Paris and Tokyo, still that day in New York
        (dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), "Europe/Paris", None, "9"),
        (dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), "America/New_York", None, "8"),
        (dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), None, "Asia/Tokyo", "9"),
        (dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), "Nowhere/Land", "Asia/Tokyo", "9"),
        (dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), None, None, "8"),  # UTC: as it was
        # 00:30 UTC: the day before in New York, that day in UTC
        (dt.datetime(2026, 12, 9, 0, 30, tzinfo=dt.UTC), "America/New_York", "UTC", "8"),
        (dt.datetime(2026, 12, 9, 0, 30, tzinfo=dt.UTC), "UTC", "America/New_York", "9"),
        (dt.datetime(2026, 12, 9, 0, 30), "America/New_York", None, "8"),  # naive: UTC
    ],
)
def test_an_expiry_prints_the_day_of_the_customers_zone(
    tmp_path: Path,
    at: dt.datetime,
    customer_zone: str | None,
    project_zone: str | None,
    day: str,
) -> None:
    """A code expiring near midnight UTC prints the customer's day (their ``timezone``, else
    the project's), in English and in French, by the fast path as the reference render — and
    ``date: '%d'`` still writes the instant as it is (UTC); ``date: 'long'`` the customer's."""
    body = "<p>{{ d.expires_at }}|{{ d.expires_at | date: '%d' }}</p>"
    s = store(tmp_path, {"t.liquid": page(body, '"{{ d.expires_at }}"'), "t.fr.liquid": page(body)})
    s.default_timezone = project_zone
    expiry = Expiry.of(at)
    d = {"code": "C", "label": label(10, "percent"), "expires_at": expiry}
    utc_day = f"{(at.replace(tzinfo=at.tzinfo or dt.UTC)).day:02d}"
    english, french = f"{int(day):02d} December 2026", f"{day} décembre 2026"
    for locale, printed in ((None, english), ("fr", french)):
        customer = {**CUSTOMER, "locale": locale, "timezone": customer_zone}
        template = s.get("t", locale)
        context = build_context(customer, {"d": d})
        fast, reference = render(template, context), render_reference(template, context)
        assert (fast.subject, fast.text) == (reference.subject, reference.text)
        assert fast.text.strip() == f"{printed}|{utc_day}"
    assert str(expiry) == f"{utc_day} December 2026"  # the caller's value is not changed


def test_an_expirys_copies_keep_its_language_and_zone() -> None:
    """``astimezone`` (and pickles, copies) give an Expiry printing as the one it came from."""
    import copy
    from zoneinfo import ZoneInfo

    paris, new_york = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
    at = Expiry.of(dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), paris)
    assert (str(at), at.local_date(), at.day) == ("09 December 2026", dt.date(2026, 12, 9), 8)
    french = at.written_in("fr")
    assert (french.locale, french.zone, str(french)) == ("fr", paris, "9 décembre 2026")
    moved = french.astimezone(new_york)
    assert isinstance(moved, Expiry) and moved == french  # the same instant
    assert (moved.locale, moved.zone, moved.tzinfo) == ("fr", paris, new_york)
    assert str(moved) == "9 décembre 2026"  # still the customer's day, in French
    assert str(Expiry.of(moved).written_in("fr")) == "8 décembre 2026"  # New York's own day
    for made in (pickle.loads(pickle.dumps(moved)), copy.deepcopy(moved), copy.copy(moved)):
        assert isinstance(made, Expiry) and (made.locale, made.zone) == ("fr", paris)
        assert (made, made.tzinfo, str(made)) == (moved, new_york, "9 décembre 2026")
    assert french.written_in("fr", paris) is french  # nothing to change: itself
    utc = Expiry.of(dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), dt.UTC)
    assert str(french.written_in("en", new_york)) == "08 December 2026"
    assert utc.written_in("en", ZoneInfo("UTC")) is utc  # (the same zone, spelt otherwise)


def test_an_expirys_arithmetic_and_replace_keep_its_language_and_zone() -> None:
    """Adding or taking off a ``timedelta`` and ``replace`` give an Expiry printing in the
    language and the zone of the one it came from; the difference of two is a timedelta."""
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    french = Expiry.of(dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC), paris).written_in("fr")
    later, earlier = french + dt.timedelta(days=2), french - dt.timedelta(days=1)
    for made, day in (
        (later, "11 décembre 2026"),
        (dt.timedelta(days=2) + french, "11 décembre 2026"),
        (earlier, "8 décembre 2026"),
        (french.replace(day=1), "2 décembre 2026"),  # 1 Dec 23:30 UTC: the 2nd in Paris
        (french.replace(hour=12), "8 décembre 2026"),
    ):
        assert isinstance(made, Expiry) and (made.locale, made.zone) == ("fr", paris)
        assert (str(made), made.tzinfo) == (day, dt.UTC)
    assert later - french == dt.timedelta(days=2) and type(later - french) is dt.timedelta
    assert french.replace(tzinfo=paris).tzinfo is paris
    english = Expiry.of(dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC))
    assert str(english + dt.timedelta(hours=1)) == "09 December 2026"
    assert (english + dt.timedelta(hours=1)).locale is None


def test_localize_leaves_an_english_discount_in_its_zone_as_the_callers_own() -> None:
    """An English email's discount already in the customer's zone is the caller's mapping (no
    copy per email); one of another language is written again, the caller's unchanged."""
    from zoneinfo import ZoneInfo

    from personify.messages.labels import TEMPLATE_LOCALE, localize

    at = Expiry.of(dt.datetime(2026, 4, 7, 9, tzinfo=dt.UTC), ZoneInfo("UTC"))
    d = {"code": "C", "label": label(10, "percent"), "expires_at": at}
    context = {"customer": CUSTOMER, "d": d, "n": 3, "s": "x", "rows": [d], "none": None}
    for zone in ("UTC", None):
        out = localize(context, "en", zone)
        assert out["d"] is d and out[TEMPLATE_LOCALE] == "en"
        assert {k: v for k, v in out.items() if k != TEMPLATE_LOCALE} == context
    french = localize(context, "fr", "UTC")
    assert french["d"] is not d and french["rows"] is context["rows"]
    assert (str(french["d"]["label"]), str(french["d"]["expires_at"])) == (
        "10\xa0% de réduction",
        "7 avril 2026",
    )
    assert (str(d["label"]), str(d["expires_at"])) == ("10% off", "07 April 2026")
    again = localize(context, "fr", "UTC")["d"]
    assert again["label"] is french["d"]["label"]  # (one written label per language)


def test_a_localized_context_encodes_with_msgspec(tmp_path: Path) -> None:
    """A rendered context's discount (a DiscountLabel, an Expiry) encodes — JSON and MessagePack
    with :func:`enc_hook` (the label's text, the instant), the server's JSON responses and the
    CLI's ``--json`` documents."""
    import msgspec

    from personify.cli.app import emit_json
    from personify.messages.labels import enc_hook, localize
    from personify.server.responses import JSONResponse

    at = Expiry.of(dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC))
    discount = {"code": "C", "label": label(10, "percent"), "expires_at": at, "value": 10}
    customer = {**CUSTOMER, "locale": "fr", "timezone": "Europe/Paris"}
    context = localize({"customer": customer, "discount": discount}, "fr")
    written = context["discount"]
    assert isinstance(written["label"], DiscountLabel)
    assert isinstance(written["expires_at"], Expiry)
    with pytest.raises(TypeError):  # (without the hook msgspec refuses them)
        msgspec.json.encode(written)
    expected = {
        "code": "C",
        "label": "10\xa0% de réduction",
        "expires_at": "2026-12-08T23:30:00Z",
        "value": 10,
    }
    assert msgspec.json.decode(msgspec.json.encode(written, enc_hook=enc_hook)) == expected
    packed = msgspec.msgpack.decode(msgspec.msgpack.encode(written, enc_hook=enc_hook))
    assert packed == {**expected, "expires_at": dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC)}
    with pytest.raises((TypeError, NotImplementedError), match="object"):  # others: refused
        msgspec.json.encode({"x": object()}, enc_hook=enc_hook)
    served = msgspec.json.decode(JSONResponse(written).body)
    assert served == {**expected, "expires_at": "2026-12-08T23:30:00+00:00"}
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        emit_json(written)
    assert msgspec.json.decode(out.getvalue()) == served


# ------------------------------------------------------------------------------- date: names


def test_strftime_month_and_day_names_are_in_the_templates_language(tmp_path: Path) -> None:
    body = "<p>{{ at | date: '%A %d %B %Y, %a %b %%B' }}|{{ day | date: '%B' }}</p>"
    s = store(tmp_path, {"t.liquid": page(body), "t.fr.liquid": page(body)})
    day = dt.date(2026, 2, 7)
    assert both(s, "t", None, at=AT, day=day) == "Sunday 01 March 2026, Sun Mar %B|February"
    assert both(s, "t", "fr-CA", at=AT, day=day) == "dimanche 01 mars 2026, dim. mars %B|février"
    # a customer of another language reading the default: the default's (English) names
    assert both(s, "t", "de", at=AT, day=day) == "Sunday 01 March 2026, Sun Mar %B|February"
    explicit = store(tmp_path / "x", {"t.liquid": page("<p>{{ at | date: '%B', 'de' }}</p>")})
    assert both(explicit, "t", None, at=AT) == "März"


# -------------------------------------------------------------------------------- date: zones


def test_date_takes_a_time_zone_in_either_form(tmp_path: Path) -> None:
    body = (
        "<p>{{ at | date: '%A %d %H:%M', 'Europe/Paris' }}|"
        "{{ at | date: '%H:%M', zone: 'America/New_York' }}|"
        "{{ at | date: 'medium', 'UTC' }}|{{ at | date: 'medium', 'fr', 'Asia/Tokyo' }}|"
        "{{ day | date: '%d', 'Asia/Tokyo' }}|{{ at | date: '%H:%M', zone: nil }}</p>"
    )
    s = store(tmp_path, {"t.liquid": page(body)})
    paris = {**CUSTOMER, "timezone": "Europe/Paris"}  # the zone given wins over the customer's
    got = render(s.get("t"), build_context(paris, {"at": AT, "day": dt.date(2026, 3, 1)}))
    assert got.text.strip() == (
        "Monday 02 00:05|18:05|Mar 1, 2026, 11:05:00\u202fPM|2 mars 2026, 08:05:00|01|23:05"
    )  # a plain date stays its day; a nil zone is the default (strftime: as written)


def test_a_naive_instant_with_a_zone_is_read_as_utc_and_today_is_that_zones(
    tmp_path: Path,
) -> None:
    from personify import clock

    body = (
        "<p>{{ at | date: '%H:%M', 'Europe/Paris' }}|{{ 'today' | date: 'long', 'Asia/Tokyo' }}</p>"
    )
    s = store(tmp_path, {"t.liquid": page(body)})
    with clock.frozen("2031-07-14T20:30:00Z"):
        got = both(s, "t", None, at=dt.datetime(2026, 7, 1, 10, 0))
    assert got == "12:00|July 15, 2031"  # Tokyo is already on the 15th


@pytest.mark.parametrize(
    ("argument", "says"),
    [("'Mars/Base'", "'Mars/Base' is not a time zone"), ("zone: 5", "a int is not a time zone")],
)
def test_an_unknown_zone_fails_the_render_naming_the_template_and_line(
    tmp_path: Path, argument: str, says: str
) -> None:
    s = store(
        tmp_path,
        {
            "t.liquid": page("<p>Hi</p>\n<p>{{ at | date: '%d', " + argument + " }}</p>"),
            "t.fr.liquid": page("<p>{{ at | date: 'long', " + argument + " }}</p>"),
        },
    )
    for locale, file, line in ((None, "t.liquid", 5), ("fr", "t.fr.liquid", 4)):
        with pytest.raises(RenderError) as err:
            render(s.get("t", locale), build_context(CUSTOMER, {"at": AT}))
        assert (err.value.template, err.value.line) == (file, line)
        assert says in str(err.value) and "IANA" in str(err.value)


def test_date_refuses_a_third_argument_it_cannot_place(tmp_path: Path) -> None:
    s = store(tmp_path, {"t.liquid": page("<p>{{ at | date: 'long', 'fr', 'de' }}</p>")})
    with pytest.raises(RenderError, match="a locale and a time zone") as err:
        render(s.get("t"), build_context(CUSTOMER, {"at": AT}))
    assert (err.value.template, err.value.line) == ("t.liquid", 4)


def test_a_zone_written_in_a_template_or_partial_is_checked_when_it_is_read(
    tmp_path: Path,
) -> None:
    s = store(
        tmp_path,
        {
            "t.liquid": page("<p>Hi</p>\n{% render 'when' %}", "\"{{ at | date: '%d', 'UTC' }}\""),
            "u.liquid": page("<p>x</p>", "\"{{ at | date: '%d', 'Utc/Nowhere' }}\""),
        },
    )
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "when.liquid").write_text(
        "<p>\n{{ at | date: 'long', zone: 'Nowhere/X' }}</p>"
    )
    with pytest.raises(RenderError) as err:
        s.check("t")
    assert (err.value.template, err.value.line) == ("partials/when.liquid", 2)
    assert "'Nowhere/X' is not a time zone" in str(err.value)
    with pytest.raises(RenderError, match="'Utc/Nowhere' is not a time zone") as err:
        s.get("u")
    assert err.value.template == "u subject"
    # a zone from a variable is known at render time only: that render fails, at its line
    (tmp_path / "partials" / "when.liquid").write_text("<p>\n{{ at | date: 'long', zone: z }}</p>")
    fine = render(s.get("t"), build_context(CUSTOMER, {"at": AT, "z": "Asia/Tokyo"}))
    assert "March 2, 2026" in fine.text
    with pytest.raises(RenderError, match="'Nowhere' is not a time zone") as err:
        render(s.get("t"), build_context(CUSTOMER, {"at": AT, "z": "Nowhere"}))
    assert (err.value.template, err.value.line) == ("partials/when.liquid", 2)


def test_a_zone_written_in_a_layout_is_checked_when_it_is_read(tmp_path: Path) -> None:
    """A layout's ``date`` zone that is none fails loading the template (``journeys check``,
    ``render``) at the layout's own line — not the first email's render."""
    layout = LAYOUT.replace(
        "{{ content }}", "{{ content }}\n{{ 'now' | date: 'long', 'Mars/Base' }}"
    )
    s = store(tmp_path, {"t.liquid": page("<p>Hi</p>"), "t.mjml": layout})
    for load in (lambda: s.get("t"), lambda: s.check("t")):
        with pytest.raises(RenderError, match="'Mars/Base' is not a time zone") as err:
            load()
        assert (err.value.template, err.value.line) == ("t.mjml", 2)  # (the MJML's line)
        assert "IANA" in str(err.value)
    (tmp_path / "t.mjml").write_text(layout.replace("Mars/Base", "Asia/Tokyo"))
    assert "Hi" in render(s.get("t"), build_context(CUSTOMER, {})).text
    assert s.check("t") == ["t.liquid"]


def test_a_partial_named_by_a_variable_has_its_zones_checked(tmp_path: Path) -> None:
    """``{% include name %}`` reads every partial when the template is read: a zone that is
    none in any fails then; a partial that appears after (read as the email renders) fails
    that render naming the partial, its line, the zone, the template that rendered it and
    what to do."""
    s = store(tmp_path, {"t.liquid": page("<p>Hi</p>\n{% include which %}")})
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "good.liquid").write_text("<p>{{ 'now' | date: 'long', 'UTC' }}</p>")
    (tmp_path / "partials" / "bad.liquid").write_text(
        "<p>\n{{ 'now' | date: 'long', 'Nowhere/X' }}"
    )
    with pytest.raises(RenderError, match="'Nowhere/X' is not a time zone") as err:
        s.get("t")
    assert (err.value.template, err.value.line) == ("partials/bad.liquid", 2)
    (tmp_path / "partials" / "bad.liquid").unlink()
    template = s.get("t")
    assert render(template, build_context(CUSTOMER, {"which": "good"})).text.strip() != ""
    # a partial written after the template was read: found when it renders
    (tmp_path / "partials" / "late.liquid").write_text("<p>\n{{ 'now' | date: '%d', 'Mars/X' }}")
    with pytest.raises(RenderError) as err:
        render(template, build_context(CUSTOMER, {"which": "late"}))
    assert (err.value.template, err.value.line) == ("partials/late.liquid", 2)
    said = str(err.value)
    assert "'Mars/X' is not a time zone" in said and "rendered by t.liquid" in said
    assert "IANA" in said and "journeys check" in said


# ------------------------------------------------------------------- one language per email


def test_every_word_of_an_email_is_in_its_templates_language(tmp_path: Path) -> None:
    """A French customer reading the default (English) template gets English everywhere —
    named date styles, strftime names, the label, amounts; reading the French version, French
    everywhere, with numbers their (Canadian) way. An explicit locale still wins."""
    body = (
        "<p>{{ at | date: 'long' }}|{{ at | date: '%d %B' }}|{{ d.label }}|"
        "{{ 52 | currency: 'EUR' }}|{{ d | discount_amount }}|{{ at | date: 'medium', 'de' }}</p>"
    )
    s = store(tmp_path, {"t.liquid": page(body), "t.fr.liquid": page(body)})
    d = {"value": 5, "kind": "amount", "currency": "EUR", "label": label(5, "amount", "EUR")}
    context = build_context({**CUSTOMER, "locale": "fr-CA", "timezone": "Europe/Paris"}, {})
    context |= {"at": AT, "d": d}
    got = {}
    for version in ("en", "fr"):  # the default template, then the French version
        template = s.get("t", None if version == "en" else "fr-CA")
        fast, reference = render(template, context), render_reference(template, context)
        assert (fast.subject, fast.text) == (reference.subject, reference.text)
        got[version] = fast.text.strip()
    assert got["en"] == (
        "March 2, 2026, 12:05:00\u202fAM +0100|01 March|5.00 EUR off|€52.00|€5.00|"
        "02.03.2026, 00:05:00"
    )
    assert got["fr"] == (
        "2 mars 2026, 00 h 05 min 00 s +0100|01 mars|5,00\xa0€ de réduction|52,00\xa0€|"
        "5,00\xa0€|02.03.2026, 00:05:00"
    )


def test_a_datetime_without_a_zone_is_utc_written_in_the_customers_zone(tmp_path: Path) -> None:
    """With a named style and no zone given, an instant is written in the customer's zone —
    one without a zone read as UTC, as with a zone given — else in the project's ``timezone``;
    a plain date stays its day."""
    body = "<p>{{ at | date: 'medium' }}|{{ aware | date: 'medium' }}|{{ day | date: 'medium' }}"
    s = store(tmp_path, {"t.liquid": page(body)})
    naive = dt.datetime(2026, 7, 1, 23, 30)
    values = {"at": naive, "aware": naive.replace(tzinfo=dt.UTC), "day": dt.date(2026, 7, 1)}
    paris = {**CUSTOMER, "timezone": "Europe/Paris"}
    got = render(s.get("t"), build_context(paris, values)).text.strip()
    assert got == "Jul 2, 2026, 1:30:00\u202fAM|Jul 2, 2026, 1:30:00\u202fAM|Jul 1, 2026"
    s.default_timezone = "America/New_York"  # the project's, for customers without one
    got = render(s.get("t"), build_context(CUSTOMER, values)).text.strip()
    assert got == "Jul 1, 2026, 7:30:00\u202fPM|Jul 1, 2026, 7:30:00\u202fPM|Jul 1, 2026"
    got = render(s.get("t"), build_context(paris, values)).text.strip()
    assert got.startswith("Jul 2, 2026, 1:30:00\u202fAM|")  # the customer's own wins


def test_the_projects_time_zone_reaches_the_templates_it_renders(tmp_path: Path) -> None:
    """``personify.yml``'s ``timezone`` is the zone of customers without one — in bodies and
    in an experiment variant's subject lines too."""
    from personify.config import Project, parse_config
    from personify.journeys.send import _SubjectStore
    from personify.messages import template_store

    store(tmp_path / "templates", {"t.liquid": page("<p>{{ at | date: 'short' }}</p>")})
    config = parse_config("timezone: Asia/Tokyo\n")
    project = Project(config, tmp_path, tmp_path / "personify.yml")
    templates = template_store(project)
    assert templates.default_timezone == "Asia/Tokyo"
    got = render(templates.get("t"), build_context(CUSTOMER, {"at": AT}))
    assert got.text.strip() == "3/2/26, 8:05\u202fAM"
    subjects = _SubjectStore(templates, "{{ at | date: 'short' }}")
    got = render(subjects.get("t"), build_context(CUSTOMER, {"at": AT}))
    assert got.subject == "3/2/26, 8:05 AM"  # (a subject's spaces are plain)


def test_an_equal_instant_in_another_zone_is_written_in_its_own(tmp_path: Path) -> None:
    """Liquid's own date parser caches by equality: 10:00 UTC and 11:00 in Paris are equal, and
    the second came back as the first. Personify's ``date`` reads values itself."""
    from zoneinfo import ZoneInfo

    paris = AT.astimezone(ZoneInfo("Europe/Paris"))
    body = "<p>{{ a | date: '%H:%M %Z' }}|{{ b | date: '%H:%M %Z' }}|{{ a | date: '%H:%M' }}</p>"
    s = store(tmp_path, {"t.liquid": page(body)})
    assert both(s, "t", None, a=AT, b=paris) == "23:05 UTC|00:05 CET|23:05"
    assert both(s, "t", None, a=paris, b=AT) == "00:05 CET|23:05 UTC|00:05"


def test_date_reads_text_and_unix_times_as_liquid_does_but_in_utc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    body = (
        "<p>{{ t | date: '%Y-%m-%d %H:%M' }}|{{ digits | date: '%H:%M' }}|"
        "{{ iso | date: '%H:%M %Z' }}|"
        "{{ text | date: '%d %B %Y' }}|{{ junk | date: '%d' }}|{{ nil | date: '%d' }}|"
        "{{ none | date: 'long' }}</p>"
    )
    s = store(tmp_path, {"t.liquid": page(body)})
    values = {
        "t": 1_700_000_000,
        "digits": "1700000000",
        "iso": "2026-03-01T10:00:00+02:00",
        "text": "March 5, 2026",
        "junk": "soon",
        "nil": None,
        "none": None,
    }
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # the machine's zone changes nothing
    time.tzset()
    try:
        got = both(s, "t", None, **values)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert got == "2023-11-14 22:13|22:13|10:00 UTC+02:00|05 March 2026|soon||"
    from personify import clock

    with clock.frozen("2031-07-14T20:30:00Z"):  # a year not written: the run's (--now)
        assert both(s, "t", None, **{**values, "text": "March 5"}).split("|")[3] == "05 March 2031"


def test_date_of_something_else_names_the_template_and_line(tmp_path: Path) -> None:
    s = store(tmp_path, {"t.liquid": page("<p>Hi</p>\n<p>{{ d | date: 'long' }}</p>")})
    with pytest.raises(RenderError, match="date expects a date or time, got a dict") as err:
        render(s.get("t"), build_context(CUSTOMER, {"d": {"email": "ann@x.org"}}))
    assert (err.value.template, err.value.line) == ("t.liquid", 5)
    assert "ann@x.org" not in str(err.value)


def test_no_personify_filter_uses_liquids_date_parser() -> None:
    """python-liquid's ``_to_date`` (behind its ``date`` filter) caches by equality; every
    filter Personify's environments have that reads dates is Personify's own."""
    import re

    import liquid.builtin.filters.misc as liquid_misc

    from personify.messages.liquid_env import html_environment, text_environment

    src = Path(__file__).resolve().parents[3] / "src" / "personify"
    uses = re.compile(r"(?<!\w)_to_date(?!\w)|filters\.misc")
    users = [p for p in src.rglob("*.py") if uses.search(p.read_text(encoding="utf-8"))]
    assert users == []
    for env in (html_environment(), text_environment()):
        assert env.filters["date"] is not liquid_misc.date
        for func in env.filters.values():
            assert getattr(func, "__globals__", {}).get("_to_date") is not liquid_misc._to_date


def test_a_language_version_asked_for_by_its_file_name_writes_its_language(
    tmp_path: Path,
) -> None:
    """``personify render welcome.fr`` (a preview of that file) writes in French whoever it is
    rendered for, as the version a French customer gets does."""
    body = "<p>{{ at | date: 'long' }}|{{ 52 | currency: 'EUR' }}|{{ at | date: '%B' }}</p>"
    s = store(tmp_path, {"t.liquid": page(body), "t.fr.liquid": page(body)})
    assert (s.get("t.fr").language, s.get("t", "fr-CA").language, s.get("t").language) == (
        "fr",
        "fr",
        "",
    )
    got = render(s.get("t.fr"), build_context(CUSTOMER, {"at": AT})).text.strip()
    assert got == "1 mars 2026, 23:05:00 TU|52,00\xa0€|mars"  # (TU: French for UTC)
