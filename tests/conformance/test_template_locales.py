"""Templates by the recipient's locale, with partials, on every backend: ``customers.locale``
chosen by survivorship like the other profile fields, a journey's send picking each recipient's
variant (``hello.fr.liquid``: exact locale, then language, then ``hello.liquid``) in one batch,
and a changed partial changing the next emails."""

from __future__ import annotations

import email
import logging
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.audience_data import arrow_rows
from tests.conformance.journey_support import NOW, Shop, events, people, shop
from tests.conformance.test_identity import T0, TS
from tests.conformance.test_profiles import session_on

from personify import clock
from personify.config import Project, load_project, parse_config
from personify.delivery import Envelope, prepare, prepare_batch
from personify.identity import resolve_batch
from personify.profiles import profiles_stage
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.migrations import migrate
from personify.warehouse.schema import CUSTOMER_DATA_VIEW

__all__ = ["shop"]  # the fixture, shared with test_journeys

HOUR = timedelta(hours=1)
HELLO = """---
subject: "Hello {{ customer.first_name }}"
---
<p>Hello {{ customer.first_name }}, your total: {{ total | currency: 'EUR' }}</p>
{% render 'footer' %}
"""
HELLO_FR = """---
subject: "Bonjour {{ customer.first_name }}"
---
<p>Bonjour {{ customer.first_name }}, votre total : {{ total | currency: 'EUR' }}</p>
{% render 'footer' %}
"""
LAYOUT = """<mjml><mj-body><mj-section><mj-column><mj-text>{{ content }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


def _records(rows: list[tuple[str, str, str, str | None, int]]) -> pa.Table:
    """(source, record_id, email, locale, day)."""
    return pa.table(
        {
            "source": [r[0] for r in rows],
            "record_id": [r[1] for r in rows],
            "email": [r[2] for r in rows],
            "locale": [r[3] for r in rows],
            "observed_at": pa.array([T0 + timedelta(days=r[4]) for r in rows], TS),
            "received_at": pa.array([T0 + timedelta(days=r[4]) for r in rows], TS),
        }
    )


def test_the_locale_is_a_profile_field_chosen_by_survivorship(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    wh = warehouse
    wh.load(
        table("customer_records"),
        _records(
            [
                ("crm", "c1", "ann@x.org", "fr_CA", 0),
                ("shop", "s1", "ann@x.org", "en", 2),  # later: last_write_wins by default
                ("crm", "c2", "bob@x.org", "de", 0),
                ("shop", "s2", "bob@x.org", None, 3),  # no value is no observation
            ]
        ),
    )
    config = "survivorship:\n  fields:\n    locale: {rule: source_priority, sources: [crm]}\n"
    for yaml, ann in (("", "en"), (config, "fr_CA")):
        proj = Project(parse_config(f"warehouse: {wh.url}\n{yaml}"), tmp_path, tmp_path / "p.yml")
        with clock.frozen(T0 + timedelta(days=10)):
            resolve_batch(wh, proj.config.identity)
            profiles_stage(session_on(wh, proj))
        rows = dict(wh.fetch("SELECT email, locale FROM customers"))
        assert rows == {"ann@x.org": ann, "bob@x.org": "de"}
    kept = wh.fetch(
        "SELECT DISTINCT value FROM profile_observations WHERE field = 'locale' ORDER BY 1"
    )
    assert [r[0] for r in kept] == ["de", "en", "fr_CA"]


def test_migration_29_adds_the_locale_to_an_older_warehouse(warehouse_url: str) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=26)
        wh.execute("DROP VIEW customer_data")  # today's reads locale; 32 recreates it
        for name in ("customers", "customer_records"):
            wh.execute(f"ALTER TABLE {name} DROP COLUMN locale")  # the layout before 29
        assert 29 in migrate(wh)
        assert wh.fetch("SELECT locale FROM customers") == []
        assert wh.fetch("SELECT locale FROM customer_records") == []
        assert 29 not in migrate(wh)  # once


def test_migration_33_shows_the_locale_in_customer_data_of_an_older_warehouse(
    warehouse_url: str,
) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=32)
        # the view as migration 32 left it: no locale (today's definition appends it)
        older = CUSTOMER_DATA_VIEW.replace("predicted_clv,\n  locale\n", "predicted_clv\n")
        assert older != CUSTOMER_DATA_VIEW
        wh.execute("DROP VIEW customer_data")
        wh.execute(older)
        with pytest.raises(Exception, match="(?i)locale"):
            wh.fetch("SELECT locale FROM customer_data")
        wh.execute(
            "INSERT INTO customers (customer_id, email, locale, created_at, updated_at) "
            "VALUES ('c1', 'a@x.org', 'fr_CA', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        assert migrate(wh)[0] == 33  # (and any later migration)
        assert wh.fetch("SELECT customer_id, locale FROM customer_data") == [("c1", "fr_CA")]
        names = wh.fetch_arrow("SELECT * FROM customer_data LIMIT 0").column_names
        assert names[-4:] == ["p_alive", "expected_orders", "predicted_clv", "locale"]
        assert migrate(wh) == []  # once


def _eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    return message


def _html(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def _world(shop: Shop, *people_rows: dict[str, object]) -> None:
    people(shop.wh, *people_rows, consent=[str(r["customer_id"]) for r in people_rows])
    nodes = []
    for i, row in enumerate(people_rows, start=len(shop.wh.fetch("SELECT 1 FROM identity_nodes"))):
        who = str(row["customer_id"])
        node = {"node_id": i + 1, "kind": "user_id", "value": who, "source": "web"}
        node |= {"first_seen": NOW, "last_seen": NOW, "blocked": False, "cluster": i + 1}
        nodes.append(node | {"part": i + 1, "customer_id": who})
    shop.wh.load(table("identity_nodes"), arrow_rows("identity_nodes", nodes))


def test_a_journey_sends_each_recipient_their_locale_variant_with_partials(
    shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write("templates/hello.fr.liquid", HELLO_FR)
    shop.write("templates/hello.mjml", LAYOUT)  # a layout: the planned (fast) path
    shop.write("templates/partials/footer.liquid", "<p>Shop footer for {{ customer.email }}</p>\n")
    shop.write(
        "journeys/welcome.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {total: 52}\n",
    )
    _world(
        shop,
        {"customer_id": "ann", "first_name": "Annabel", "locale": "fr-CA"},  # language: fr
        {"customer_id": "bob", "first_name": "Bob", "locale": "de"},  # no de variant
        {"customer_id": "cat", "first_name": "Cat"},  # no locale
        {"customer_id": "dan", "first_name": "Dan", "locale": "FR"},  # exact fr
    )
    events(shop.wh, *((c, "Signed Up", NOW - HOUR, {}) for c in ("ann", "bob", "cat", "dan")))
    with caplog.at_level(logging.INFO, logger="personify.messages"):
        assert shop.run(NOW)["sent"] == 4
    # the partial is placed in each variant's plan: the fast path, not the reference way
    assert "differs" not in caplog.text and "reference way" not in caplog.text
    sent = {str(m["To"].addresses[0].username): m for m in map(_eml, shop.outbox())}
    assert {k: str(m["Subject"]) for k, m in sent.items()} == {
        "ann": "Bonjour Annabel",
        "bob": "Hello Bob",
        "cat": "Hello Cat",
        "dan": "Bonjour Dan",
    }
    html = {k: _html(m) for k, m in sent.items()}
    assert "votre total : 52,00\xa0€" in html["ann"].replace("&nbsp;", "\xa0")  # fr-CA
    assert "your total: €52.00" in html["bob"]  # de, no de variant: English, amounts too
    assert "your total: €52.00" in html["cat"]
    assert all(f"Shop footer for {k}@example.com" in h for k, h in html.items())
    rows = shop.wh.fetch("SELECT customer_id, status FROM messages ORDER BY 1")
    assert rows == [(c, "sent") for c in ("ann", "bob", "cat", "dan")]

    # the partial changes: the next emails show it (a template's version covers its partials)
    shop.write("templates/partials/footer.liquid", "<p>New footer</p>\n")
    _world(shop, {"customer_id": "eve", "first_name": "Eve", "locale": "fr"})
    events(shop.wh, ("eve", "Signed Up", NOW, {}))
    assert shop.run(NOW + HOUR)["sent"] == 1
    eve = next(m for m in map(_eml, shop.outbox()) if m["To"].addresses[0].username == "eve")
    assert str(eve["Subject"]) == "Bonjour Eve" and "New footer" in _html(eve)
    assert shop.run(NOW + 2 * HOUR)["sent"] == 0  # nothing sent twice


def test_an_experiment_variant_subject_per_language_version(shop: Shop) -> None:
    """A variant's ``subject`` text replaces every language version's; a mapping replaces the
    versions it names (``fr``: recipients of ``hello.fr.liquid``), ``default`` the others, and
    without ``default`` the others keep their own subject."""
    shop.write("templates/hello.liquid", HELLO)
    shop.write("templates/hello.fr.liquid", HELLO_FR)
    shop.write("templates/partials/footer.liquid", "<p>footer</p>\n")
    subjects = {
        "plain": '"Deal {{ customer.first_name }}"',
        "only_fr": '{fr: "Offre {{ customer.first_name }}"}',
        "both": '{default: "Deal {{ customer.first_name }}", '
        'fr: "Offre {{ customer.first_name }}"}',
        # keys are locales, not files: fr-CA readers of hello.fr.liquid, de readers of hello.liquid
        "regional": '{fr-CA: "Allo {{ customer.first_name }}", de: "Angebot"}',
    }
    for n, (journey, subject) in enumerate(subjects.items()):
        shop.write(
            f"journeys/{journey}.yml",
            f"trigger: {{event: E{n}}}\nsteps:\n  - send: hello\n    with: {{total: 52}}\n"
            f"    variants:\n      - {{name: v, subject: {subject}}}\n",
        )
    # one trio per journey (a customer gets one email a day): fr version, default, default
    who = {f"{c}{n}": loc for n in range(4) for c, loc in (("ann", "fr-CA"), ("bob", "de"))}
    who |= {f"cat{n}": None for n in range(4)} | {"fay3": "fr"}
    _world(
        shop,
        *({"customer_id": c, "first_name": c[:3].title(), "locale": tag} for c, tag in who.items()),
    )
    events(shop.wh, *((c, f"E{c[-1]}", NOW - HOUR, {}) for c in who))
    assert shop.run(NOW)["sent"] == len(who)
    sent = {str(m["To"].addresses[0].username): str(m["Subject"]) for m in map(_eml, shop.outbox())}
    assert sent == {
        "ann0": "Deal Ann",  # plain text: every language version
        "bob0": "Deal Bob",
        "cat0": "Deal Cat",
        "ann1": "Offre Ann",  # {fr: ...}: the French version's; the others keep their own
        "bob1": "Hello Bob",
        "cat1": "Hello Cat",
        "ann2": "Offre Ann",  # {default: ..., fr: ...}
        "bob2": "Deal Bob",
        "cat2": "Deal Cat",
        "ann3": "Allo Ann",  # {fr-CA: ..., de: ...}: by locale, one batch of the same file
        "fay3": "Bonjour Fay",
        "bob3": "Angebot",
        "cat3": "Hello Cat",
    }


def test_a_missing_partial_fails_the_messages_with_the_template_line_and_name(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/welcome.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {total: 52}\n",
    )
    _world(shop, {"customer_id": "ann", "first_name": "Annabel"})
    events(shop.wh, ("ann", "Signed Up", NOW - HOUR, {}))
    shop.run(NOW)
    ((status, error),) = shop.wh.fetch("SELECT status, error FROM messages")
    assert status == "failed"
    assert "hello.liquid:5" in error and "partial 'footer' not found" in error
    assert shop.outbox() == []


LOCALES = ["fr-CA", "fr", "de", None, "FR_be", "xx", "en-GB"]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(len(LOCALES))))
def test_a_batch_of_mixed_locales_equals_one_by_one_in_any_order(
    warehouse: Warehouse, project_dir: Path, order: list[int]
) -> None:
    """Grouping by variant changes nothing: each email of a batch, whatever its order, is the
    email :func:`prepare` makes for that customer alone."""
    templates = project_dir / "templates"
    (templates / "partials").mkdir(exist_ok=True)
    (templates / "partials" / "sign.liquid").write_text("<p>Sign {{ customer.first_name }}</p>\n")
    (templates / "hi.liquid").write_text(
        "---\nsubject: Hi {{ customer.first_name }}\nlayout: base\n---\n"
        "<p>{{ 52 | currency: 'EUR' }} {{ day | date: 'long' }}</p>\n{% render 'sign' %}\n"
    )
    (templates / "hi.fr.liquid").write_text(
        "---\nsubject: Salut {{ customer.first_name }}\nlayout: base\n---\n"
        "<p>{{ 52 | currency: 'EUR' }} {{ day | date: 'long' }}</p>\n{% render 'sign' %}\n"
    )
    project = load_project(project_dir)
    if not warehouse.fetch("SELECT 1 FROM customers LIMIT 1"):
        rows = [
            {"customer_id": f"c{i}", "email": f"c{i}@x.org", "first_name": f"N{i}", "locale": loc}
            for i, loc in enumerate(LOCALES)
        ]
        warehouse.load(
            table("customers"), pa.Table.from_pylist([r | {"updated_at": NOW} for r in rows])
        )
    variables = {"day": "2026-03-01"}
    items = [(f"k{i}", f"c{i}", variables) for i in order]
    with clock.frozen(NOW):
        batch = prepare_batch(warehouse, project, "hi", items, date=NOW)
        for (key, who, _), got in zip(items, batch, strict=True):
            alone = prepare(warehouse, project, "hi", who, variables, key=key)
            assert isinstance(got, Envelope)
            a, b = _parse(got.raw), _parse(alone.raw)
            assert str(a["Subject"]) == str(b["Subject"])
            for part in ("html", "plain"):
                pa_, pb = a.get_body((part,)), b.get_body((part,))
                assert pa_ is not None and pb is not None
                assert pa_.get_content() == pb.get_content()
    subjects = {
        k: str(_parse(e.raw)["Subject"])
        for (k, _, _), e in zip(items, batch, strict=True)
        if isinstance(e, Envelope)
    }
    assert subjects["k0"] == "Salut N0" and subjects["k3"] == "Hi N3"
    assert subjects["k4"] == "Salut N4" and subjects["k6"] == "Hi N6"


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message
