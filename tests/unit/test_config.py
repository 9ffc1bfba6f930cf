"""The project file: every kind of mistake names file, line, key and what is expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personify.config import FileSource, Secret, TrackingSource, load_project, parse_config
from personify.errors import ConfigError

GOOD = """\
name: shop
warehouse: duckdb:///wh.duckdb
timezone: Europe/Paris
admin_token: ${ADMIN}
sources:
  - name: web
    kind: tracking
    write_key: ${WRITE_KEY}
  - name: crm
    kind: file
    path: data/customers.csv
    table: customers
    mapping:
      customer_id: id
      email: contact.email
"""


def error_for(text: str, monkeypatch: pytest.MonkeyPatch | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="personify.yml")
    return info.value


def test_good_file_loads_into_typed_frozen_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN", "adm-secret-0123456789abcdef")
    monkeypatch.setenv("WRITE_KEY", "wk-secret")
    config = parse_config(GOOD)
    assert config.name == "shop"
    assert config.timezone == "Europe/Paris"
    web, crm = config.sources
    assert isinstance(web, TrackingSource) and web.kind == "tracking"
    assert web.write_key.reveal() == "wk-secret"
    assert isinstance(crm, FileSource) and crm.mapping == {
        "customer_id": "id",
        "email": "contact.email",
    }
    with pytest.raises(AttributeError):
        config.name = "other"  # type: ignore[misc]


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN", "adm-secret-0123456789abcdef")
    monkeypatch.setenv("WRITE_KEY", "wk-secret")
    config = parse_config(GOOD)
    for text in (repr(config), str(config), repr(config.sources[0]), f"{config.admin_token}"):
        assert "secret" not in text.replace("Secret(", "")
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")


def test_defaults_for_an_empty_file() -> None:
    config = parse_config("")
    assert config.warehouse == "duckdb:///warehouse.duckdb"
    assert config.sources == ()
    assert config.delivery.kind if hasattr(config.delivery, "kind") else True


def test_missing_environment_variable_names_line_key_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ADMIN", raising=False)
    monkeypatch.setenv("WRITE_KEY", "x")
    err = error_for(GOOD)
    assert err.line == 4
    assert err.key == "admin_token"
    assert "ADMIN" in str(err) and "export ADMIN" in str(err)


def test_default_in_interpolation_and_dollar_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    config = parse_config("name: ${NOPE:-fallback}\ntimezone: UTC\n")
    assert config.name == "fallback"
    config = parse_config("sources:\n  - {name: f, kind: file, path: a$$b.csv, table: orders}\n")
    assert config.sources[0].path == "a$b.csv"  # type: ignore[union-attr]


def test_env_file_in_project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONIFY_ADMIN_TOKEN", raising=False)
    (tmp_path / "personify.yml").write_text("admin_token: ${PERSONIFY_ADMIN_TOKEN}\n")
    (tmp_path / ".env").write_text("PERSONIFY_ADMIN_TOKEN=from-dotenv-0123456789ab\n")
    assert load_project(tmp_path).config.admin_token == Secret("from-dotenv-0123456789ab")
    monkeypatch.setenv("PERSONIFY_ADMIN_TOKEN", "from-env-0123456789abcdef")
    assert load_project(tmp_path).config.admin_token == Secret("from-env-0123456789abcdef")


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("name: shop\nwarehous: duckdb:///x.duckdb\n", 2, "warehous", "unknown key 'warehous'"),
        ("name: [a, b]\n", 1, "name", "expected `str`, got `array`"),
        (
            "sources:\n  - name: f\n    kind: file\n    table: orders\n",
            2,
            "sources[0]",
            "missing required key 'path'",
        ),
        (
            "sources:\n  - name: f\n    kind: ftp\n    path: x\n",
            3,
            "sources[0].kind",
            "ftp",
        ),
        (
            "sources:\n  - name: f\n    kind: file\n    path: x.csv\n    table: nope\n",
            5,
            "sources[0].table",
            "nope",
        ),
        ("timezone: Mars/Olympus\n", 1, "timezone", "unknown time zone"),
        ("warehouse: mysql://x\n", 1, "warehouse", "unsupported warehouse URL scheme"),
        (
            "sources:\n  - {name: a, kind: file, path: x, table: orders}\n"
            "  - {name: a, kind: file, path: y, table: orders}\n",
            3,
            "sources[1].name",
            "unique",
        ),
        ("name: 'has space'\n", 1, "name", "letters, digits"),
        (
            "sources:\n  - {name: h, kind: webhook, scheme: shopify, secrets: [x], table: orders,"
            " mapping: {order_id: id}, tolerance: banana}\n",
            2,
            "sources[0].tolerance",
            "expected a duration like 300s, 5m or 1h",
        ),
        (
            "journeys:\n  quiet_hours:\n    start: '9pm'\n",
            3,
            "journeys.quiet_hours.start",
            "expected a time of day like 21:00",
        ),
        ("demo:\n  customers: 3\n", 2, "demo.customers", ">= 10"),
    ],
)
def test_each_kind_of_mistake(text: str, line: int, key: str, words: str) -> None:
    err = error_for(text)
    assert err.file == "personify.yml"
    assert err.line == line, str(err)
    assert err.key == key, str(err)
    assert words in str(err), str(err)


def test_yaml_syntax_error_names_line() -> None:
    err = error_for("name: shop\nsources:\n  - name: web\n   kind: tracking\n")
    assert err.line == 4
    assert "invalid YAML" in str(err)


def test_duplicate_key_is_an_error() -> None:
    err = error_for("name: a\ntimezone: UTC\nname: b\n")
    assert err.line == 3 and "duplicate key 'name'" in str(err)


def test_top_level_must_be_a_mapping() -> None:
    assert "mapping" in str(error_for("- a\n- b\n"))


def test_missing_project_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    assert "personify init" in str(info.value)


def test_init_scaffold_loads(project_dir: Path) -> None:
    project = load_project(project_dir)
    (web,) = project.config.sources
    assert isinstance(web, TrackingSource) and web.name == "web"
    assert web.write_key.reveal().startswith("wk_")
    assert project.config.admin_token is not None
    for folder in ("segments", "rules", "templates", "tracking-plan"):
        assert (project_dir / folder).is_dir()
    assert ".env" in (project_dir / ".gitignore").read_text()


def test_config_errors_name_the_project_file_for_a_key() -> None:
    from personify.errors import ConfigError

    assert str(ConfigError("needs a bus", key="bus")) == "personify.yml: bus: needs a bus"
    assert str(ConfigError("bad", file="x.yml", line=3, key="k")) == "x.yml:3: k: bad"
    assert str(ConfigError("the plan changed")) == "the plan changed"


def test_the_line_of_a_key_is_read_from_the_file_again_once_it_changes(tmp_path: Path) -> None:
    import os

    from personify.config import key_line, locate

    file = tmp_path / "personify.yml"
    file.write_text("warehouse: duckdb:///wh.duckdb\nrelations:\n  crm: a.crm\n")
    assert key_line(file, "relations.crm") == 3
    assert key_line(file, "relations") == 2
    assert key_line(file, "relations.other") is None  # not an ancestor's line: not found
    stat = file.stat()
    file.write_text("warehouse: duckdb:///wh.duckdb\n\nalerts:\n  - {name: a}\nrelations: {}\n")
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: the size differs
    assert key_line(file, "relations.crm") is None
    assert key_line(file, "alerts[0].name") == 4
    assert key_line(tmp_path / "nowhere.yml", "alerts") is None
    (tmp_path / "bad.yml").write_text("a: [\n")
    assert key_line(tmp_path / "bad.yml", "a") is None

    found = locate(ConfigError("down", key="alerts[0].name", hint="h"), file)
    assert (found.file, found.line, found.key, found.hint) == (str(file), 4, "alerts[0].name", "h")
    for kept in (
        ConfigError("has a line", key="alerts", line=9),
        ConfigError("another file", file=str(tmp_path / "rules.yml"), key="alerts"),
        ConfigError("no such key", key="nothing.here"),
        ConfigError("no key"),
    ):
        assert locate(kept, file) is kept


REMOVING = """\
warehouse: duckdb:///wh.duckdb
destinations:
  - name: crm
    model: SELECT email FROM customers
    key: email
    preset: hubspot_contacts
    on_remove: delete
    client: {base_url: "http://127.0.0.1:9"}
"""


def test_a_destination_that_removes_needs_a_key_ring_and_a_path() -> None:
    e = error_for(REMOVING)
    assert e.key == "destinations[0].on_remove", e.key
    assert "privacy.encryption_keys" in e.message and e.line == 7
    with_keys = REMOVING + 'privacy: {encryption_keys: "k1:' + "A" * 43 + '="}\n'
    assert parse_config(with_keys).destinations[0].on_remove == "delete"
    generic = with_keys.replace("preset: hubspot_contacts", "path: /records")
    assert "delete_path" in error_for(generic).message
    done = generic.replace("on_remove: delete", "on_remove: delete\n    delete_path: /r/{key}")
    assert parse_config(done).destinations[0].delete_path == "/r/{key}"


def test_rate_ceilings_are_fractions_named_by_file_line_and_key() -> None:
    """``engagement.max_bounce_rate`` (the ``bounce_rate`` alert's default ceiling) is checked
    as ``max_complaint_rate`` is: a fraction from 0 to 1."""
    config = parse_config("engagement:\n  max_bounce_rate: 0.02\n")
    assert config.engagement.max_bounce_rate == 0.02
    assert parse_config("name: a\n").engagement.max_bounce_rate == 0.05
    for key in ("max_complaint_rate", "max_bounce_rate"):
        for bad in ("1.5", "-0.1", "lots"):
            err = error_for(f"name: a\nengagement:\n  {key}: {bad}\n")
            assert err.line == 3 and err.key == f"engagement.{key}", str(err)
            assert err.file == "personify.yml"


FORWARDING = """\
warehouse: duckdb:///wh.duckdb
destinations:
  - name: crm
    model: SELECT customer_id, email FROM customers
    key: email
    path: /records
    client: {base_url: "http://127.0.0.1:9"}
  - name: analytics
    kind: events
    path: /v1/batch
    events: [Order Completed]
    client: {base_url: "http://127.0.0.1:9"}
"""


def test_an_events_destination_loads_beside_a_destination_without_kind() -> None:
    from personify.config import EventsDestination, RestDestination

    crm, analytics = parse_config(FORWARDING).destinations
    assert isinstance(crm, RestDestination)  # (no kind: rest, as before kind: events existed)
    assert isinstance(analytics, EventsDestination)
    assert (analytics.start, analytics.lookback, analytics.batch_size) == ("now", "15m", 100)
    assert analytics.consent_rule is not None and analytics.consent_rule.purpose == "data_sharing"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    events: [Order Completed]\n", "    start: yesterday\n", "not now, all or an ISO"),
        ("    events: [Order Completed]\n", "    events: [A]\n    types: [page]\n", "types leaves"),
        ("    path: /v1/batch\n", "", "missing required key 'path'"),
        ("    events: [Order Completed]\n", "    types: [pageview]\n", "invalid value"),
        ("    events: [Order Completed]\n", "    model: SELECT 1\n", "unknown key 'model'"),
    ],
)
def test_an_events_destination_mistake_names_its_key(old: str, new: str, message: str) -> None:
    head, _, tail = FORWARDING.partition("kind: events\n")
    e = error_for(head + "kind: events\n" + tail.replace(old, new))
    assert message in e.message, e.message
    assert e.key is not None and e.key.startswith("destinations[1]"), e.key


def test_a_campaigns_currency_must_be_an_iso_4217_code() -> None:
    """An unknown ``currency`` is refused when the project loads, naming its file, line and key
    and what to write — before, it was taken as is and only showed in a code's label."""
    config = parse_config("discounts:\n  welcome:\n    currency: USD\n")
    assert config.discounts["welcome"].currency == "USD"
    assert parse_config("name: a\n").discounts["cart_rescue"].currency == "EUR"
    for bad, says in (
        ("XYZ", "such as EUR, USD or GBP"),
        ("euro", "such as EUR, USD or GBP"),
        ("usd", "write it 'USD' (capitals)"),
    ):
        err = error_for(
            f"name: a\ndiscounts:\n  welcome:\n    expires_in: 7d\n    currency: {bad}\n"
        )
        assert err.file == "personify.yml" and err.line == 5, str(err)
        assert err.key == "discounts.welcome.currency", str(err)
        assert f"'{bad}' is not an ISO 4217 currency code" in str(err) and says in str(err)


@pytest.mark.parametrize(
    ("text", "read", "expected"),
    [
        ("alerts:\n", lambda c: c.alerts, ()),
        ("alerts:\n#  - name: stale\n#    when: source_stale\n", lambda c: c.alerts, ()),
        ("notifiers:\n", lambda c: c.notifiers, {}),
        ("sources:\n", lambda c: c.sources, ()),
        ("destinations:\n", lambda c: c.destinations, ()),
        ("admin_tokens:\n", lambda c: c.admin_tokens, ()),
        ("relations:\n", lambda c: c.relations, {}),
        ("quality:\n  rules:\n    orders:\n", lambda c: c.quality.rules, {"orders": ()}),
        ("identity:\n  blocked:\n    email:\n", lambda c: c.identity.blocked["email"], ()),
        ("email:\n  topics:\n", lambda c: c.email.topics, {}),
        ("delivery:\n  kind: smtp\n  host: mx\n  webhooks:\n", lambda c: c.delivery.webhooks, ()),
        (
            "sources:\n  - kind: file\n    name: f\n    path: o.csv\n    table: orders\n"
            "    mapping:\n",
            lambda c: c.sources[0].mapping,
            {},
        ),
    ],
)
def test_an_empty_list_or_mapping_key_means_none(text: str, read: Any, expected: Any) -> None:
    """A key with nothing after it (its entries commented out) is an empty list or mapping,
    as `[]` or `{}` would be — not "expected array, got null"."""
    assert read(parse_config(text)) == expected
    assert read(parse_config(text)) == read(
        parse_config(text.rstrip("\n") + (" {}\n" if expected == {} else " []\n"))
    )


def test_an_empty_settings_section_takes_its_defaults() -> None:
    empty = parse_config("privacy:\nquality:\njourneys:\ndelivery:\nidentity:\n")
    assert empty == parse_config("")


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("name:\n", 1, "name", "expected `str`, got `null`"),  # not a list: still a mistake
        ("alerts:\n  -\n", 2, "alerts[0]", "expected `object`, got `null`"),  # an empty item
        ("bus:\nalerts_every:\n", 2, "alerts_every", "got `null`"),  # bus: null is allowed
    ],
)
def test_an_empty_key_that_is_not_a_list_or_mapping_is_still_an_error(
    text: str, line: int, key: str, words: str
) -> None:
    err = error_for(text)
    assert (err.line, err.key) == (line, key) and words in str(err)


@pytest.mark.parametrize(
    ("value", "got"),
    [("", "null"), ("4815162342", "int"), ("1.5", "float"), ("[a]", "array"), ("{a: 1}", "object")],
)
def test_a_secret_that_is_not_text_names_its_line_and_key(value: str, got: str) -> None:
    # (it raised a bare NotImplementedError: a traceback for `write_key:` left empty)
    err = error_for(f"sources:\n  - kind: tracking\n    name: web\n    write_key: {value}\n")
    assert (err.line, err.key) == (4, "sources[0].write_key")
    assert f"expected `str`, got `{got}`" in str(err)
    assert "4815162342" not in str(err)


def test_an_empty_key_of_a_destination_written_without_kind_means_none_too() -> None:
    """A destination without ``kind`` is ``kind: rest`` (projects written before ``events``):
    its empty keys mean what they mean when the kind is written — here no headers."""
    text = (
        "destinations:\n  - name: crm\n{kind}    model: SELECT 1 AS customer_id\n"
        "    path: /contacts\n    client:\n      base_url: https://crm.example\n      headers:\n"
    )
    written = parse_config(text.format(kind="    kind: rest\n")).destinations
    assert parse_config(text.format(kind="")).destinations == written
    assert written[0].client.headers == {}


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("identity:\n  blocked:\n", 2, "identity.blocked"),
        ("identity:\n  limits:\n", 2, "identity.limits"),
        ("traits:\n  excluded_order_statuses:\n", 2, "traits.excluded_order_statuses"),
        ("discounts:\n", 1, "discounts"),
    ],
)
def test_an_empty_key_whose_default_is_not_empty_is_still_an_error(
    text: str, line: int, key: str
) -> None:
    """``identity.blocked:`` left empty could mean none or the defaults; none would drop the
    over-merge protection (``null``, ``unknown``, ``test@example.com`` …) without a word. It is
    refused, naming the line and key and both ways to say it; ``{}`` still says none."""
    err = error_for(text)
    assert (err.line, err.key) == (line, key) and "got `null`" in str(err), str(err)
    assert "write [] or {} for none, or remove the key for its defaults" in str(err)
    assert parse_config("identity:\n  blocked: {}\n").identity.blocked == {}
    assert parse_config("identity:\n  blocked:\n    email:\n").identity.blocked == {"email": ()}
