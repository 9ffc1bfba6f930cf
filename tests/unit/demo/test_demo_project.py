"""The demo project: scaffolded, wired to the world, remade deterministically."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.unit.demo.conftest import NOW

from personify.config import DemoSettings, FileSource, TrackingSource, load_project
from personify.demo import make_demo_project
from personify.demo.project import configure_project
from personify.errors import PersonifyError
from personify.journeys.content import _code
from personify.messages import build_context, render
from personify.messages.render import render_reference
from personify.messages.templates import TemplateStore
from personify.scaffold import init_project


def test_the_project_reads_every_file_of_the_world(tmp_path: Path) -> None:
    demo = make_demo_project(tmp_path / "demo", customers=200, seed=3, now=NOW)
    assert demo.created and demo.now == NOW
    project = load_project(demo.root)
    config = project.config
    assert config.demo == DemoSettings(seed=3, customers=200, data="data")
    assert isinstance(config.sources[0], TrackingSource) and config.sources[0].name == "web"
    files = [s for s in config.sources if isinstance(s, FileSource)]
    tables = {s.table for s in files}
    assert tables == {
        "customers",
        "products",
        "orders",
        "order_items",
        "events",
        "consents",
        "tickets",
    }
    for source in files:
        assert list(project.root.glob(source.path)), source.path
    assert config.admin_token is not None
    assert set(demo.keys) == {"PERSONIFY_WRITE_KEY", "PERSONIFY_ADMIN_TOKEN"}
    assert demo.keys["PERSONIFY_WRITE_KEY"] in (demo.root / ".env").read_text()


def test_making_it_again_gives_the_same_world(tmp_path: Path) -> None:
    first = make_demo_project(tmp_path, customers=200, seed=3, now=NOW)
    text = (tmp_path / "personify.yml").read_text()
    again = make_demo_project(tmp_path, customers=200, seed=3)  # the instant is remembered
    assert not again.created
    assert again.manifest == first.manifest
    assert (tmp_path / "personify.yml").read_text() == text


def test_another_world_needs_reset(tmp_path: Path) -> None:
    make_demo_project(tmp_path, customers=200, seed=3, now=NOW)
    with pytest.raises(PersonifyError, match="another demo world"):
        make_demo_project(tmp_path, customers=300, seed=3, now=NOW)
    (tmp_path / "warehouse.duckdb").write_bytes(b"")
    remade = make_demo_project(tmp_path, customers=300, seed=3, now=NOW, reset=True)
    assert remade.manifest["customers"] == 300
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_an_ordinary_project_is_not_taken_over(tmp_path: Path) -> None:
    init_project(tmp_path)
    with pytest.raises(PersonifyError, match="not a demo"):
        make_demo_project(tmp_path, customers=200, seed=3, now=NOW)


def test_the_yaml_keeps_the_scaffold_and_replaces_its_example(tmp_path: Path) -> None:
    init_project(tmp_path)
    configure_project(tmp_path, seed=1, customers=100, now=NOW)
    text = (tmp_path / "personify.yml").read_text()
    assert "# - name: crm_export" not in text
    assert "write_key: ${PERSONIFY_WRITE_KEY}" in text
    assert "admin_token: ${PERSONIFY_ADMIN_TOKEN}" in text
    assert text.count("- name: crm\n") == 1
    assert "email: properties.email" in text
    configure_project(tmp_path, seed=1, customers=100, now=NOW)
    assert (tmp_path / "personify.yml").read_text() == text


def test_the_project_uses_the_newer_features(tmp_path: Path) -> None:
    """Locale variants, partials, predictive traits, an uploaded list's and a relation's
    segments, alerts: the demo project's files and personify.yml."""
    from personify.config import EmailNotifier
    from personify.demo.project import has_scipy

    plain = make_demo_project(tmp_path / "plain", customers=200, seed=3, now=NOW)
    config = load_project(plain.root).config  # (tests and benchmarks: none of it)
    assert not config.traits.predictive.enabled and not config.relations and not config.alerts
    assert not (plain.root / "templates" / "partials").exists()

    demo = make_demo_project(tmp_path / "shop", customers=200, seed=3, now=NOW, showcase=True)
    config = load_project(demo.root).config
    assert config.traits.predictive.enabled is has_scipy()
    assert config.relations == {"loyalty": "analytics.loyalty"}
    assert [(a.name, a.when) for a in config.alerts] == [
        ("sync_failing", "source_failed"),
        ("dirty_data", "quarantine_growth"),
    ]
    assert isinstance(config.notifiers["ops"], EmailNotifier)
    templates = demo.root / "templates"
    for name in (
        "partials/footer.liquid",
        "partials/fr/footer.liquid",
        "abandoned_cart.fr.liquid",
        "layouts/base_fr.mjml",
    ):
        assert (templates / name).is_file(), name
    for name in ("vip", "likely_buyers", "loyalty_gold"):
        assert (demo.root / "segments" / f"{name}.sql").is_file(), name
    for name in ("abandoned_cart", "re_engagement"):
        assert (templates / f"{name}.liquid").read_text().count("{% render 'footer' %}") == 1
    # every template the journeys send keeps the fast path (its partials placed, README
    # "Partials"): the demo's emails render as fast as without the footer
    store = TemplateStore(templates)
    for name in ("abandoned_cart", "abandoned_cart.fr", "re_engagement"):
        assert store.get(name).plan is not None, name
    # the French variant writes the journey's typed discount in French, on the fast path
    french = _french_cart(store)
    assert "15\xa0% de réduction, valable une fois jusqu'au 9 décembre 2026." in french, french
    assert (demo.data / "lists" / "vip.csv").is_file()
    assert (demo.data / "analytics" / "loyalty.parquet").is_file()
    assert demo.manifest["lists"]["vip"]["rows"] > 2

    # made again: nothing added twice, and a file edited by hand is kept as it is
    (templates / "partials" / "footer.liquid").write_text("<p>Our own footer</p>\n")
    again = make_demo_project(demo.root, customers=200, seed=3, showcase=True)
    assert (templates / "partials" / "footer.liquid").read_text() == "<p>Our own footer</p>\n"
    assert (templates / "abandoned_cart.liquid").read_text().count("render 'footer'") == 1
    text = (demo.root / "personify.yml").read_text()
    assert text.count("\nalerts:") == text.count("\nrelations:") == 1
    assert again.manifest == demo.manifest


def _french_cart(store: TemplateStore) -> str:
    """The text of the demo's French cart email, rendered through its plan (and checked
    against the reference render) with the discount a journey gives."""
    at = datetime(2026, 12, 8, 23, 30, tzinfo=UTC)  # 00:30 on the 9th in Paris
    row = {"code": "ABCD2345EFGH", "value": 15.0, "kind": "percent", "currency": "EUR"}
    discount = _code({**row, "label": "15% off", "expires_at": at}, ZoneInfo("Europe/Paris"))
    customer = {"customer_id": "c1", "first_name": "Zoé", "locale": "fr-FR"}
    item = {"name": "Sac", "url": "https://x.test/p", "image_url": "https://x.test/i.png"}
    variables = {
        "cart": {"items": [{**item, "price": 52.0, "quantity": 1}], "url": "https://x.test/c"},
        "recommendations": [{**item, "price": 9.5}],
        "discount": discount,
        "unsubscribe_url": "https://x.test/u",
    }
    template = store.get("abandoned_cart.fr")
    context = build_context({**customer, "timezone": "Europe/Paris"}, variables)
    fast, reference = render(template, context), render_reference(template, context)
    assert template.plan is not None and template.plan.trusted and not template.plan.dropped
    assert fast.text == reference.text
    return re.sub(r"[ \t\n]+", " ", fast.text)  # (keeps Babel's no-break spaces)
