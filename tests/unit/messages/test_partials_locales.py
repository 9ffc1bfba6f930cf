"""Partials (``templates/partials/NAME.liquid``) and locale variants (``NAME.fr.liquid``) with
locale-aware filters: every render path gives the same email, errors name file and line."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personify import clock
from personify.messages import RenderError, TemplateStore, build_context, render
from personify.messages.liquid_env import money
from personify.messages.locale import candidates, customer_locale, normalize
from personify.messages.render import render_reference
from personify.messages.templates import placed_partials

CUSTOMER = {"customer_id": "c1", "first_name": "Ann", "email": "ann@x.org", "traits": {}}
LAYOUT = (
    "<mjml><mj-head><mj-style inline='inline'>p { color: #123456; }</mj-style></mj-head>"
    "<mj-body><mj-section><mj-column><mj-text>{{ content }}</mj-text></mj-column>"
    "</mj-section></mj-body></mjml>\n"
)


def store(tmp_path: Path, files: dict[str, str]) -> TemplateStore:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return TemplateStore(tmp_path)


def page(body: str, subject: str = "Hi {{ customer.first_name }}") -> str:
    return f"---\nsubject: {subject}\n---\n{body}"


# ------------------------------------------------------------------------------------ partials


def test_render_and_include_read_the_partials_folder(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": page("<p>Hi</p>\n{% render 'footer' %}{% include 'legal/notice' %}"),
            "partials/footer.liquid": "<p>Bye {{ customer.first_name }}</p>\n",
            "partials/legal/notice.liquid": "<p>Notice for {{ customer.email }}</p>",
        },
    )
    email = render(s.get("hi"), build_context(CUSTOMER))
    assert "<p>Bye Ann</p>" in email.html and "<p>Notice for ann@x.org</p>" in email.html
    assert "hi" in s.names() and s.names() == ["hi"]  # partials are no templates


def test_a_partial_in_a_layout_template_takes_the_fast_path_and_its_css(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": page(
                "<p>Hi {{ customer.first_name }}</p>\n{% render 'footer' %}"
                "{% if vip %}{% include 'vip' %}{% endif %}"
            ),
            "hi.mjml": LAYOUT,
            "partials/footer.liquid": "<p>Bye {{ customer.first_name }}</p>\n",
            "partials/vip.liquid": "<p>VIP {{ total | currency: 'EUR' }}</p>",
        },
    )
    template = s.get("hi")
    assert template.plan is not None and template.plan.compiled is not None
    for vip in (True, False):
        context = build_context(CUSTOMER, {"vip": vip, "total": 5})
        fast, reference = render(template, context), render_reference(template, context)
        assert (fast.html, fast.text) == (reference.html, reference.text)
        assert template.plan.trusted and not template.plan.dropped
    assert 'color: #123456;">Bye ' in fast.html  # the layout's CSS, inlined in the partial


def test_render_keeps_its_scope_isolated_and_the_plan_then_renders_the_reference_way(
    tmp_path: Path,
) -> None:
    s = store(
        tmp_path,
        {
            "iso.liquid": page("{% assign x = 'own' %}<p>{{ x }}</p>{% render 'show' %}"),
            "shared.liquid": page("{% assign x = 'own' %}<p>{{ x }}</p>{% include 'show' %}"),
            "iso.mjml": LAYOUT,
            "shared.mjml": LAYOUT,
            "partials/show.liquid": "<p>[{{ x }}]</p>",
        },
    )
    assert "[own]" in render(s.get("shared"), build_context(CUSTOMER)).text
    iso = s.get("iso")
    assert iso.plan is None  # a rendered partial beside an assign is not placed in the plan
    with pytest.raises(RenderError) as err:
        render(iso, build_context(CUSTOMER))
    assert err.value.template == "partials/show.liquid" and err.value.line == 1


def test_placed_partials_only_where_the_output_is_the_same() -> None:
    parts = {"f": "<p>{{ a }}</p>", "g": "{% render 'f' %}!", "h": "{% include 'f' %}"}
    assert placed_partials("x{% render 'f' %}y", parts) == "x<p>{{ a }}</p>y"
    assert placed_partials("{% render 'g' %}", parts) == "<p>{{ a }}</p>!"
    assert placed_partials("{% for a in b %}{% render 'f' %}{% endfor %}", parts) is None
    assert placed_partials("{% for a in b %}{% endfor %}{% render 'f' %}", parts) is not None
    assert placed_partials("{% for a in b %}{% include 'f' %}{% endfor %}", parts) is not None
    assert placed_partials("{%- render 'f' %}", parts) is None  # whitespace control
    assert placed_partials("{% render 'f', a: 1 %}", parts) is None  # arguments
    assert placed_partials("{% include name %}", parts) is None  # a variable
    assert placed_partials("{% render 'h' %}", parts) is None  # include inside render
    assert placed_partials("{% raw %}{% render 'f' %}{% endraw %}", parts) is None
    assert placed_partials("{% render 'nope' %}", parts) is None


def test_placed_partials_skip_comment_blocks() -> None:
    """A tag inside {% comment %} renders nothing: it neither places a partial nor costs the
    plan (a footer documenting its own {% render %} used to send every email the slow way)."""
    parts = {"f": "<p>{{ a }}</p>", "c": "{% comment %}use {% render 'x', y: 1 %}{% endcomment %}!"}
    note = "{% comment %}{% render name %} {% for %} {% assign x = 1 %} {% raw %}{% endcomment %}"
    assert placed_partials(note + "{% render 'f' %}", parts) == note + "<p>{{ a }}</p>"
    assert placed_partials("{% for a in b %}{% comment %}{% endfor %}{% endcomment %}", parts)
    assert placed_partials("{% render 'c' %}", parts) == parts["c"]
    nested = "{%- comment -%}{% comment %}{% endcomment %}{% render v %}{%- endcomment -%}"
    assert placed_partials(nested + "{% render 'f' %}", parts) == nested + "<p>{{ a }}</p>"
    assert placed_partials("{% comment %}{% render 'f' %}", parts) is None  # not closed
    assert placed_partials("{% endcomment %}{% render 'f' %}", parts) is None
    # what is outside comments is still refused
    assert placed_partials("{% comment %}{% endcomment %}{% raw %}{% endraw %}", parts) is None
    assert placed_partials("{% comment %}x{% endcomment %}{% render v %}", parts) is None
    assert (
        placed_partials(
            "{% for a in b %}{% comment %}{% endcomment %}{% render 'f' %}{% endfor %}", parts
        )
        is None
    )


def test_a_missing_partial_names_the_template_line_and_partial(tmp_path: Path) -> None:
    s = store(tmp_path, {"hi.liquid": page("<p>a</p>\n\n{% render 'footr' %}")})
    with pytest.raises(RenderError) as err:
        render(s.get("hi"), build_context(CUSTOMER))
    assert err.value.template == "hi.liquid" and err.value.line == 6
    assert "partial 'footr' not found" in str(err.value)
    assert "templates/partials/footr.liquid" in str(err.value)


@pytest.mark.parametrize(
    "name", ["../hi", "/etc/passwd", "partials/../../x", "a\\\\b", "", "..", "./x"]
)
def test_a_partial_outside_the_partials_folder_is_refused(tmp_path: Path, name: str) -> None:
    s = store(tmp_path, {"hi.liquid": page(f"<p>a</p>\n{{% include '{name}' %}}")})
    (tmp_path / "x.liquid").write_text("secret", encoding="utf-8")
    with pytest.raises(RenderError) as err:
        render(s.get("hi"), build_context(CUSTOMER))
    assert err.value.template == "hi.liquid" and err.value.line == 5
    assert "partial" in str(err.value) and "secret" not in str(err.value)


def test_a_symlink_out_of_the_partials_folder_is_refused(tmp_path: Path) -> None:
    s = store(tmp_path, {"hi.liquid": page("<p>a</p>{% render 'out' %}")})
    (tmp_path / "outside.liquid").write_text("secret", encoding="utf-8")
    (tmp_path / "partials").mkdir()
    os.symlink(tmp_path / "outside.liquid", tmp_path / "partials" / "out.liquid")
    with pytest.raises(RenderError, match="leads outside templates/partials"):
        render(s.get("hi"), build_context(CUSTOMER))


def test_an_error_inside_a_partial_names_the_partial_and_its_line(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": page("<p>a</p>{% render 'f' %}"),
            "partials/f.liquid": "<p>ok</p>\n<p>{{ customer.nickname }}</p>",
        },
    )
    with pytest.raises(RenderError) as err:
        render(s.get("hi"), build_context(CUSTOMER))
    assert (err.value.template, err.value.line) == ("partials/f.liquid", 2)
    assert err.value.variable == "customer.nickname"


def test_a_partial_rendering_itself_hits_the_limit_not_the_stack(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": page("<p>a</p>{% render 'loop' %}"),
            "partials/loop.liquid": "x{% render 'loop' %}",
        },
    )
    with pytest.raises(RenderError):
        render(s.get("hi"), build_context(CUSTOMER))


def test_changing_a_partial_makes_a_new_version_and_new_emails(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": page("<p>a</p>{% render 'f' %}"),
            "hi.mjml": LAYOUT,
            "partials/f.liquid": "<p>first-footer</p>",
            "partials/g.liquid": "<p>unrelated</p>",
        },
    )
    first = s.get("hi")
    assert "first-footer" in render(first, build_context(CUSTOMER)).html
    (tmp_path / "partials" / "g.liquid").write_text("<p>changed</p>", encoding="utf-8")
    assert s.get("hi") is first  # a partial it does not render: the same version
    (tmp_path / "partials" / "f.liquid").write_text("<p>second-footer</p>", encoding="utf-8")
    second = s.get("hi")
    assert second.version != first.version
    html = render(second, build_context(CUSTOMER)).html
    assert "second-footer" in html and "first-footer" not in html


# ------------------------------------------------------------------------------------- locales


def test_locales_read_as_crms_write_them() -> None:
    assert normalize("fr_ca") == normalize("FR-CA") == normalize(" fr-CA ") == "fr-CA"
    assert normalize("zh_hant_tw") == "zh-Hant-TW" and normalize("es-419") == "es-419"
    assert normalize("French") is None and normalize("") is None and normalize(None) is None
    assert candidates("fr_CA") == ["fr-CA", "fr"] and candidates(None) == []
    assert customer_locale({"locale": "de_AT", "traits": {"locale": "fr"}}) == "de-AT"
    assert customer_locale({"locale": None, "traits": {"language": "it"}}) == "it"
    assert customer_locale({"traits": {}}) is None


@settings(max_examples=60)
@given(st.from_regex(r"[A-Za-z]{2,3}([-_][A-Za-z]{2})?", fullmatch=True))
def test_normalizing_is_idempotent_and_candidates_narrow(tag: str) -> None:
    once = normalize(tag)
    assert once is not None and normalize(once) == once
    found = candidates(tag)
    assert found[0] == once and found[-1] == once.split("-")[0]


def test_a_recipient_gets_the_exact_locale_then_the_language_then_the_default(
    tmp_path: Path,
) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": page("<p>Hello</p>"),
            "hi.fr.liquid": page("<p>Bonjour</p>", "Salut {{ customer.first_name }}"),
            "hi.fr-CA.liquid": page("<p>Allô</p>", "Allô {{ customer.first_name }}"),
        },
    )
    assert s.names() == ["hi"] and s.variants("hi") == ["fr", "fr-CA"]
    seen = {}
    for locale in ("fr_CA", "fr-BE", "fr", "de", None):
        template = s.get("hi", locale)
        email = render(template, build_context({**CUSTOMER, "locale": locale}))
        seen[locale] = (template.file, email.subject, email.text.strip())
    assert seen == {
        "fr_CA": ("hi.fr-CA.liquid", "Allô Ann", "Allô"),
        "fr-BE": ("hi.fr.liquid", "Salut Ann", "Bonjour"),
        "fr": ("hi.fr.liquid", "Salut Ann", "Bonjour"),
        "de": ("hi.liquid", "Hi Ann", "Hello"),
        None: ("hi.liquid", "Hi Ann", "Hello"),
    }


def test_a_variant_takes_its_sidecar_then_the_templates_and_its_own_layout(
    tmp_path: Path,
) -> None:
    s = store(
        tmp_path,
        {
            "hi.liquid": "<p>Hello</p>",
            "hi.yml": "subject: Hello\ntracking: false\n",
            "hi.fr.liquid": "<p>Bonjour</p>",
            "hi.fr.yml": "subject: Bonjour\n",
            "hi.de.liquid": "<p>Hallo</p>",
            "hi.de.mjml": LAYOUT.replace("{{ content }}", "DE {{ content }}"),
        },
    )
    fr, de = s.get("hi", "fr"), s.get("hi", "de")
    assert render(fr, build_context(CUSTOMER)).subject == "Bonjour"
    assert not fr.tracking  # the template's sidecar, under the variant's
    assert render(de, build_context(CUSTOMER)).subject == "Hello"
    assert "DE" in render(de, build_context(CUSTOMER)).text and de.layout_name == "hi.de.mjml"


def test_an_error_in_a_variant_names_the_variants_file(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {"hi.liquid": page("<p>x</p>"), "hi.fr.liquid": page("<p>{{ customer.nom }}</p>")},
    )
    with pytest.raises(RenderError) as err:
        render(s.get("hi", "fr"), build_context(CUSTOMER))
    assert (err.value.template, err.value.line) == ("hi.fr.liquid", 4)


# ------------------------------------------------------------------------------------- filters


def _one(tmp_path: Path, body: str, customer: dict[str, object], **variables: object) -> str:
    """``body`` rendered for ``customer`` from ``t.liquid``, or from its French or German
    version (the same body) when the customer's language is one of those."""
    files = {f"t{v}.liquid": page(f"<p>{body}</p>", "x") for v in ("", ".fr", ".de")}
    s = store(tmp_path, files)
    locale = customer_locale(customer)
    return render(s.get("t", locale), build_context(customer, variables)).text.strip()


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (None, "€52.00"),
        ("en", "€52.00"),
        ("fr", "52,00\xa0€"),
        ("de-DE", "52,00\xa0€"),
        ("de-AT", "€\xa052,00"),  # the German version, in the customer's Austrian way
        ("it", "€52.00"),  # no Italian version: the English one's, written in English
    ],
)
def test_currency_is_written_in_the_emails_language(
    tmp_path: Path, locale: str | None, expected: str
) -> None:
    customer = {**CUSTOMER, "locale": locale}
    assert _one(tmp_path, "{{ t | currency: 'EUR' }}", customer, t=52) == expected


def test_currency_edge_values_and_an_explicit_locale(tmp_path: Path) -> None:
    text = "{{ a | currency: 'usd', 'fr' }}|{{ b | currency: 'EUR' }}|{{ c | currency }}"
    assert _one(tmp_path, text, CUSTOMER, a="3.5", b="n/a", c=None) == "3,50\xa0$US|n/a|"
    assert money(52) == "52.00"  # the existing filter is unchanged
    unknown = {**CUSTOMER, "locale": "xx"}  # a tag Babel does not know: English
    got = _one(tmp_path / "u", "{{ 5 | currency: 'EUR' }} {{ d | date: 'long' }}", unknown, d="now")
    assert got.startswith("€5.00 ") and got.endswith(" UTC")  # English, long style


def test_date_styles_are_localized_and_strftime_is_unchanged(tmp_path: Path) -> None:
    at = dt.datetime(2026, 3, 1, 14, 5, tzinfo=dt.UTC)
    paris = {**CUSTOMER, "locale": "fr", "timezone": "Europe/Paris"}
    text = "{{ at | date: '%d/%m/%Y' }}|{{ at | date: 'medium' }}|{{ day | date: 'long' }}"
    got = _one(tmp_path, text, paris, at=at, day=dt.date(2026, 3, 1))
    assert got == "01/03/2026|1 mars 2026, 15:05:00|1 mars 2026"  # Paris is UTC+1 in March
    italian = {**paris, "locale": "it"}  # no Italian version: English words, Paris time
    got = _one(tmp_path / "it", text, italian, at=at, day=dt.date(2026, 3, 1))
    assert got == "01/03/2026|Mar 1, 2026, 3:05:00\u202fPM|March 1, 2026"
    english = _one(tmp_path / "en", "{{ at | date: 'medium' }}", CUSTOMER, at=at)
    assert english == "Mar 1, 2026, 2:05:00\u202fPM"
    assert _one(tmp_path / "s", "{{ '2026-03-01' | date: 'short', 'de' }}", CUSTOMER) == "01.03.26"


def test_now_and_today_are_the_pinned_instant_not_the_wall_clock(tmp_path: Path) -> None:
    """`--now` pins "now": a render replayed at an instant writes that instant's date, in
    either form of the filter (Liquid's strftime one read the wall clock)."""
    paris = {**CUSTOMER, "locale": "fr", "timezone": "Europe/Paris"}
    text = "{{ 'now' | date: '%Y-%m-%d %H:%M' }}|{{ 'today' | date: 'long' }}"
    with clock.frozen("2031-07-14T23:30:00Z"):
        got = _one(tmp_path, text, paris)
    assert got == "2031-07-14 23:30|15 juillet 2031"  # the long style in Paris' time


@pytest.mark.parametrize(
    ("locale", "percent", "amount"),
    [
        (None, "15%|12.5%", "€5.00"),
        ("fr", "15\xa0%|12,5\xa0%", "5,00\xa0€"),
        ("de-CH", "15%|12.5%", "EUR\xa05.00"),
        ("sv", "15%|12.5%", "€5.00"),  # no Swedish version: the English one's
    ],
)
def test_discount_amount_is_what_a_code_takes_off_in_the_emails_language(
    tmp_path: Path, locale: str | None, percent: str, amount: str
) -> None:
    customer = {**CUSTOMER, "locale": locale}
    text = "{{ a | discount_amount }}|{{ b | discount_amount }}"
    fifteen, half = {"value": 15.0, "kind": "percent"}, {"value": 12.5, "kind": "percent"}
    assert _one(tmp_path / "p", text, customer, a=fifteen, b=half) == percent
    five = {"value": 5, "kind": "amount", "currency": "eur"}
    assert _one(tmp_path / "a", "{{ d | discount_amount }}", customer, d=five) == amount
    got = _one(
        tmp_path / "x",
        "{{ d | discount_amount: 'fr' }}|{{ n | discount_amount }}",
        customer,
        d=five,
        n=None,
    )
    assert got == "5,00\xa0€|"  # an explicit locale; nil writes nothing


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("15% off", "got a str"),
        ({"value": "lots", "kind": "percent"}, "got value a str and kind 'percent'"),
        ({"value": 5, "kind": "free"}, "kind 'free'"),
    ],
)
def test_discount_amount_of_something_else_names_the_template_and_line(
    tmp_path: Path, value: object, says: str
) -> None:
    s = store(tmp_path, {"t.liquid": page("<p>Hi</p>\n<p>{{ d | discount_amount }}</p>", "x")})
    with pytest.raises(RenderError) as err:
        render(s.get("t"), build_context(CUSTOMER, {"d": value}))
    assert (err.value.template, err.value.line) == ("t.liquid", 5)
    assert says in str(err.value) and "discount_amount" in str(err.value)
    assert "lots" not in str(err.value)  # the value itself is not shown


def test_a_discounts_expiry_prints_in_the_emails_language_and_dates_in_any(tmp_path: Path) -> None:
    """The journey's ``discount`` (journeys.content): ``expires_at`` prints its day in the
    email's language — the English day it always printed in an English email, Babel's long date
    in a French one — and is a datetime ``date:`` writes the recipient's way; ``expires_on`` is
    the day in the customer's zone — through the fast path (a plan) as the reference render."""
    from zoneinfo import ZoneInfo

    from personify.journeys.content import Expiry, _code

    at = dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC)
    row = {"code": "ABCD", "value": 15.0, "kind": "percent", "currency": "EUR", "expires_at": at}
    discount = _code(row, ZoneInfo("Europe/Paris"))
    assert discount is not None and isinstance(discount["expires_at"], Expiry)
    body = (
        "<p>{{ d.expires_at }}|{{ d.expires_at | date: '%d/%m' }}|{{ d.expires_on }}</p>"
        "<p>{{ d | discount_amount }} {{ d.expires_on | date: 'long' }}</p>"
        "<p>{{ d.expires_at | date: 'long' }}</p>"
    )
    subject = '"{{ d | discount_amount }} {{ d.expires_at }}"'
    s = store(
        tmp_path,
        {"t.liquid": page(body, subject), "t.fr.liquid": page(body, subject), "t.mjml": LAYOUT},
    )
    paris = {**CUSTOMER, "locale": "fr", "timezone": "Europe/Paris"}
    for customer, expected in (
        # printed as it is: the day in the customer's zone (the one _code was given);
        # strftime writes the instant as it is (UTC)
        (paris, ["9 décembre 2026|08/12|2026-12-09", "15\xa0% 9 décembre 2026"]),
        (CUSTOMER, ["09 December 2026|08/12|2026-12-09", "15% December 9, 2026"]),
    ):
        context = build_context(customer, {"d": discount})
        template = s.get("t", customer_locale(customer))
        assert template.plan is not None and template.plan.compiled is not None  # fast path
        fast, reference = render(template, context), render_reference(template, context)
        assert (fast.subject, fast.text) == (reference.subject, reference.text)
        for line in expected:
            assert line in fast.text, fast.text
        # (its HTML differs in spelling only — &nbsp; — as the plan's own check says)
        assert template.plan.trusted and not template.plan.dropped
    instant = render(s.get("t", "fr"), build_context(paris, {"d": discount})).text
    assert "9 décembre 2026, 00:30:00" in instant  # the instant, in the customer's zone


def test_the_projects_default_locale_writes_for_customers_without_one(tmp_path: Path) -> None:
    s = store(tmp_path, {"t.liquid": page("<p>{{ 52 | currency: 'EUR' }}</p>", "x")})
    s.default_locale = "de"
    for customer, expected in (
        (CUSTOMER, "52,00\xa0€"),  # none: the project's
        ({**CUSTOMER, "locale": "de-AT"}, "€\xa052,00"),  # of that language: their own way
        ({**CUSTOMER, "locale": "en-GB"}, "52,00\xa0€"),  # another: the email's (German)
        ({**CUSTOMER, "locale": "de-ZZ"}, "52,00\xa0€"),  # one Babel does not know: German
        ({**CUSTOMER, "locale": "xx"}, "52,00\xa0€"),
    ):
        assert render(s.get("t"), build_context(customer)).text.strip() == expected


def test_a_default_locale_that_is_none_is_a_config_error() -> None:
    from personify.config import parse_config
    from personify.errors import ConfigError

    assert parse_config("email:\n  default_locale: fr_CA\n").email.default_locale == "fr_CA"
    with pytest.raises(ConfigError, match="default_locale"):
        parse_config("email:\n  default_locale: Klingon\n")


# ------------------------------------------------------------------- which names are variants


def test_only_a_suffix_babel_reads_as_a_locale_makes_a_language_version(tmp_path: Path) -> None:
    """``promo.big.liquid`` beside ``promo.liquid`` is a template of its own (``big`` is no
    locale), ``promo.fr.liquid`` and ``promo.pt-BR.liquid`` are versions of ``promo``."""
    s = store(
        tmp_path,
        {
            "promo.liquid": page("<p>promo</p>"),
            "promo.big.liquid": page("<p>big</p>", "Big"),
            "promo.new.liquid": page("<p>new</p>", "New"),
            "promo.fr.liquid": page("<p>fr</p>", "Fr"),
            "promo.pt-BR.liquid": page("<p>br</p>", "Br"),
            "promo.xx.liquid": page("<p>xx</p>", "Xx"),
        },
    )
    assert s.names() == ["promo", "promo.big", "promo.new", "promo.xx"]
    assert s.variants("promo") == ["fr", "pt-BR"]
    assert s.get("promo.big").subject.render() == "Big" and s.get("promo.big").variant == ""
    # a customer whose locale reads as "xx" or "big" gets the default, never another template
    for locale, subject in (("xx", "Hi "), ("fr-CA", "Fr"), ("pt-BR", "Br"), ("pt", "Hi ")):
        got = s.get("promo", locale)
        assert got.subject.render(customer={"first_name": ""}) == subject, locale
    assert s.check("promo") == ["promo.liquid", "promo.fr.liquid", "promo.pt-BR.liquid"]


def test_a_partial_named_in_the_text_is_not_taken_for_one(tmp_path: Path) -> None:
    """Only ``render``/``include`` tags name partials: the words in an email's text do not."""
    s = store(tmp_path, {"hi.liquid": page("<p>We include 'free shipping' and render 'x'</p>")})
    assert s.check("hi") == ["hi.liquid"]


def test_a_partial_rendered_by_an_unquoted_name_is_said_when_checked(tmp_path: Path) -> None:
    """``{% render footer %}`` never reads ``partials/footer.liquid`` nor a variable ``footer``
    (python-liquid takes it for an inline snippet, which no template can define): checking the
    template says so at its file and line — in a partial too — not the first send."""
    s = store(
        tmp_path,
        {
            "hi.liquid": page("<p>a</p>\n{%- render footer, x: 1 -%}"),
            "bye.liquid": page("{% render 'p' %}"),
            "partials/p.liquid": "x\n{% liquid\n  render nope\n%}",
            "partials/footer.liquid": "F",
        },
    )
    source = (tmp_path / "hi.liquid").read_text()
    with pytest.raises(RenderError) as err:
        s.check("hi")
    line = source[: source.index("render footer")].count("\n") + 1
    assert (err.value.template, err.value.line) == ("hi.liquid", line)
    assert "{% render 'footer' %}" in str(err.value) and "quotes" in str(err.value)
    with pytest.raises(RenderError) as err:
        s.check("bye")
    assert (err.value.template, err.value.line) == ("partials/p.liquid", 3)
    assert "'nope'" in str(err.value) and "not found" in str(err.value)


def test_the_partial_caches_are_bounded(tmp_path: Path) -> None:
    from personify.messages import liquid_env

    s = store(tmp_path, {"hi.liquid": page("{% render 'p' %}"), "partials/p.liquid": "0"})
    loader = s._html.loader
    assert isinstance(loader, liquid_env.PartialsLoader)
    for i in range(liquid_env.PARSED_PARTIALS_LIMIT + 50):  # a partial edited again and again
        (tmp_path / "partials" / "p.liquid").write_text(f"version {i}")
        assert render(s.get("hi"), build_context(CUSTOMER)).text.strip() == f"version {i}"
    assert len(loader._parsed) == liquid_env.PARSED_PARTIALS_LIMIT
    assert len(liquid_env._PARTIAL_SOURCES) <= liquid_env.PARTIAL_SOURCES_LIMIT
    # the partial in use is still named in errors (its source was used last)
    (tmp_path / "partials" / "p.liquid").write_text("a\n{{ nope }}")
    with pytest.raises(RenderError) as err:
        render(s.get("hi"), build_context(CUSTOMER))
    assert (err.value.template, err.value.line) == ("partials/p.liquid", 2)
