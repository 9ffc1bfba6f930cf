"""An experiment variant's subject per locale, as a preview (``personify render`` of a journey's
send) and a send read it: the exact locale's key, else the language's, else ``default``, else the
version's own — as template files are chosen, whether or not the template has a file for it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from personify.config import load_project
from personify.journeys import preview_template
from personify.journeys.preview import Preview
from personify.offers.discounts import label

DAY = timedelta(days=1)


def _preview(subject: str | None, subjects: tuple[tuple[str, str], ...]) -> Preview:
    return Preview(
        journey="j",
        step="s",
        template="hi",
        customer_id="c1",
        key="preview:hi",
        trigger_key=None,
        status=None,
        variables={},
        purpose="marketing",
        variant="v",
        subject=subject,
        subjects=subjects,
    )


@pytest.mark.parametrize(
    ("subject", "subjects", "want"),
    [
        (None, (), {None: "Hi", "fr-CA": "Salut", "de": "Hi"}),
        ("Deal", (), {None: "Deal", "fr-CA": "Deal", "de": "Deal"}),
        (None, (("fr", "Offre"),), {None: "Hi", "fr-CA": "Offre", "de": "Hi"}),
        ("Deal", (("fr", "Offre"),), {None: "Deal", "fr-CA": "Offre", "de": "Deal"}),
        # no hi.fr-CA.liquid: the key is a locale, not a file (fr-CA readers of hi.fr.liquid)
        (None, (("fr-CA", "Allo"),), {None: "Hi", "fr-CA": "Allo", "fr": "Salut", "de": "Hi"}),
        # no hi.de.liquid: German readers of hi.liquid get theirs; de-AT falls back to de
        (None, (("de", "Angebot"),), {None: "Hi", "de-AT": "Angebot", "fr-CA": "Salut"}),
        ("Deal", (("fr", "Offre"), ("fr-CA", "Allo")), {"fr-BE": "Offre", "fr-CA": "Allo"}),
    ],
)
def test_each_language_version_gets_its_subject(
    project_dir: Path,
    subject: str | None,
    subjects: tuple[tuple[str, str], ...],
    want: dict[str | None, str],
) -> None:
    templates = project_dir / "templates"
    (templates / "hi.liquid").write_text("---\nsubject: Hi\n---\n<p>hi</p>\n")
    (templates / "hi.fr.liquid").write_text("---\nsubject: Salut\n---\n<p>salut</p>\n")
    project = load_project(project_dir)
    found = _preview(subject, subjects)
    got = {locale: preview_template(project, found, locale).subject.render() for locale in want}
    assert got == want


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("xx", "'xx' is not a locale Babel knows"),
        ("French", "'French' is not a locale tag"),
        ("false", None),  # (written quoted below: a YAML boolean otherwise)
    ],
)
def test_a_subject_key_that_is_not_a_locale_is_refused_naming_it(
    key: str, said: str | None
) -> None:
    from personify.errors import DefinitionError
    from personify.journeys.definitions import parse_journey

    written = "no" if key == "false" else key
    text = (
        "trigger: {event: X}\nsteps:\n  - send: hi\n    variants:\n"
        f"      - name: v\n        subject:\n          default: Hi\n          {written}: Yo\n"
    )
    with pytest.raises(DefinitionError) as info:
        parse_journey(text, file="journeys/j.yml", default_name="j", lookback=DAY, purpose="m")
    message = str(info.value)
    assert message.startswith("journeys/j.yml:8: steps[0].variants[0].subject.")
    if said is not None:
        assert said in message
    else:  # YAML 1.1 read `no` as false: say so
        assert "False is not a locale tag" in message and "quote it" in message


def test_subject_keys_are_read_as_locales() -> None:
    from personify.journeys.definitions import parse_journey

    text = (
        "trigger: {event: X}\nsteps:\n  - send: hi\n    variants:\n"
        "      - {name: v, subject: {fr_ca: Allo, pt-BR: Oi, zh-Hant-TW: Ni}}\n"
    )
    journey = parse_journey(text, file="j.yml", default_name="j", lookback=DAY, purpose="m")
    assert journey is not None and journey.steps[0].experiment is not None
    variant = journey.steps[0].experiment.variants[0]
    assert dict(variant.subjects) == {"fr-CA": "Allo", "pt-BR": "Oi", "zh-Hant-TW": "Ni"}


def test_a_subject_line_of_a_language_writes_its_words_in_it(project_dir: Path) -> None:
    """A line keyed ``fr`` is French whether or not ``hi.fr.liquid`` exists: its dates and
    amounts are written in French (the body's language is the file's), the others' in theirs."""
    import datetime as dt

    from personify.messages.render import render

    templates = project_dir / "templates"
    (templates / "hi.liquid").write_text("---\nsubject: Hi\n---\n<p>hi</p>\n")
    project = load_project(project_dir)
    line = "{{ at | date: 'long' }} {{ total | currency: 'EUR' }}"
    found = _preview(line, (("fr", "Le " + line), ("de", "Am " + line)))
    at = dt.date(2026, 3, 1)
    got = {
        locale: render(
            preview_template(project, found, locale),
            {"customer": {"locale": locale}, "at": at, "total": 52},
        ).subject
        for locale in ("fr-CA", "de", "en-US")
    }
    assert got == {
        "fr-CA": "Le 1 mars 2026 52,00 €",
        "de": "Am 1. März 2026 52,00 €",
        "en-US": "March 1, 2026 €52.00",
    }


def test_a_subject_lines_discount_label_and_expiry_follow_its_language(project_dir: Path) -> None:
    """The label and the expiry printed as they are follow the line's language, as its dates
    and amounts do: a ``fr:`` line over a German body (``email.default_locale: de``) wrote the
    German label beside its French words; an ``en:`` line writes the English ones."""
    import datetime as dt

    from personify.journeys.content import _code
    from personify.messages import build_context
    from personify.messages.render import render

    config = project_dir / "personify.yml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("\nemail:\n", "\nemail:\n  default_locale: de\n", 1))
    templates = project_dir / "templates"
    (templates / "hi.liquid").write_text(
        "---\nsubject: Hi\n---\n<p>{{ d.label }} {{ d.expires_at }}</p>\n"
    )
    project = load_project(project_dir)
    line = "{{ d.label }} {{ d.expires_at }} {{ d | discount_amount }}"
    found = _preview(line, (("fr", "Le " + line), ("en", "The " + line)))
    row = {"code": "C", "value": 15.0, "kind": "percent", "currency": "EUR"}
    at = dt.datetime(2026, 12, 8, 23, 30, tzinfo=dt.UTC)
    discount = _code({**row, "label": label(15, "percent"), "expires_at": at}, dt.UTC)
    got = {}
    for locale in ("fr-CA", "de-AT", "en-GB", None):
        context = build_context({"customer_id": "c1", "locale": locale}, {"d": discount})
        email = render(preview_template(project, found, locale), context)
        got[locale] = (email.subject, email.text.strip())
    german_body = "15\xa0% Rabatt 8. Dezember 2026"  # the body: its own language, German
    assert got == {
        "fr-CA": ("Le 15 % de réduction 8 décembre 2026 15 %", german_body),
        "de-AT": ("15 % Rabatt 8. Dezember 2026 15 %", german_body),
        "en-GB": ("The 15% off 08 December 2026 15%", german_body),
        None: ("15 % Rabatt 8. Dezember 2026 15 %", german_body),
    }
    assert str(discount["label"]) == "15% off"  # the caller's values are not changed
    assert str(discount["expires_at"]) == "08 December 2026"
