"""``kind: rest`` and ``kind: webhook`` in personify.yml: parsed into typed structs, mistakes
reported with the line and key, presets resolved, secrets hidden."""

from __future__ import annotations

import pytest

from personify.config import (
    ApiKeyAuth,
    OAuth2ClientCredentials,
    RestSource,
    Schedule,
    WebhookSource,
    duration_seconds,
    parse_config,
)
from personify.errors import ConfigError
from personify.sources.presets import PRESETS, resolve_preset
from personify.sources.schedule import next_run

TEXT = """\
sources:
  - name: shop
    kind: rest
    preset: shopify_orders
    client:
      base_url: https://shop.example
      auth: {type: api_key, name: X-Shopify-Access-Token, api_key: "${TOKEN}"}
    schedule: {every: 15m}
  - name: crm
    kind: rest
    client:
      base_url: https://crm.example
      auth:
        type: oauth2_client_credentials
        access_token_url: https://crm.example/oauth/token
        client_id: "${CID}"
        client_secret: "${CSECRET}"
      paginator: {type: cursor, cursor_path: paging.next.after, cursor_param: after}
    resources:
      - name: contacts
        table: customers
        endpoint:
          path: /contacts
          incremental: {cursor_path: updatedAt, start_param: since, overlap: 5m}
        mapping: {customer_id: id, email: properties.email}
  - name: hooks
    kind: webhook
    scheme: stripe
    secrets: ["${WHSEC}"]
    table: orders
    data_selector: data.object
"""


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "CID", "CSECRET", "WHSEC"):
        monkeypatch.setenv(name, f"secret-{name.lower()}")


def test_rest_and_webhook_sources_parse() -> None:
    config = parse_config(TEXT)
    shop, crm, hooks = config.sources
    assert isinstance(shop, RestSource) and isinstance(crm, RestSource)
    assert isinstance(hooks, WebhookSource) and hooks.kind == "webhook"
    assert isinstance(shop.client.auth, ApiKeyAuth)
    assert shop.client.auth.api_key.reveal() == "secret-token"
    assert "secret" not in repr(shop.client.auth)
    assert isinstance(crm.client.auth, OAuth2ClientCredentials)
    assert shop.schedule == Schedule(every="15m")
    resolved = resolve_preset(shop)
    assert [r.name for r in resolved.resources] == ["orders"]
    assert resolved.resources[0].nested[0].table == "order_items"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("preset: shopify_orders", "preset: salesforce"), "sources[0].preset"),
        (("type: api_key", "type: magic"), "sources[0].client.auth"),
        (("{every: 15m}", "{every: soon}"), "sources[0].schedule.every"),
        (("{every: 15m}", "{every: 1m, cron: '* * * * *'}"), "exactly one of every or cron"),
        (("table: customers", "table: nope"), "sources[1].resources[0].table"),
        (("scheme: stripe", "scheme: github"), "sources[2].scheme"),
        (('secrets: ["${WHSEC}"]', "secrets: []"), "at least one secret"),
    ],
)
def test_mistakes_name_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(TEXT.replace(*change))
    assert message in str(e.value)


def test_a_rest_source_needs_resources_or_a_preset() -> None:
    text = "sources:\n  - name: x\n    kind: rest\n    client: {base_url: https://x.example}\n"
    with pytest.raises(ConfigError, match="give resources"):
        parse_config(text)


def test_every_preset_resolves() -> None:
    for name in PRESETS:
        source = RestSource(name="s", preset=name)  # type: ignore[arg-type]
        assert resolve_preset(source).resources


def test_durations_and_next_runs() -> None:
    from datetime import UTC, datetime, timedelta

    assert duration_seconds("90") == 90 and duration_seconds("5m") == 300
    assert duration_seconds("1.5h") == 5400 and duration_seconds("250ms") == 0.25
    now = datetime(2026, 1, 1, 12, 7, tzinfo=UTC)
    every = Schedule(every="15m")
    assert next_run(every, None, now) == now
    assert next_run(every, now - timedelta(minutes=5), now) == now + timedelta(minutes=10)
    assert next_run(every, now - timedelta(hours=3), now) == now  # long overdue: now
    cron = Schedule(cron="*/15 * * * *")
    assert next_run(cron, now, now) == datetime(2026, 1, 1, 12, 15, tzinfo=UTC)
