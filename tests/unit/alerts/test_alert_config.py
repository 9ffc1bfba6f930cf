"""``alerts:`` and ``notifiers:`` in personify.yml: mistakes name the file, line, key and what to
write instead."""

from __future__ import annotations

import pytest

from personify.config import EmailNotifier, WebhookNotifier, parse_config
from personify.errors import ConfigError

GOOD = """\
alerts:
  - name: sync_failing
    when: source_failed
    for: 15m
    repeat: 4h
    notify: [ops_slack]
  - name: stale
    when: source_stale
    over: 2h
  - name: complaints
    when: complaint_rate
    over: 0.001
    notify: [ops_mail, ops_slack]
notifiers:
  ops_slack: {kind: webhook, url: "${HOOK_URL}", format: slack}
  ops_mail: {kind: email, to: [ops@example.org]}
"""


def parse(text: str, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("HOOK_URL", "https://hooks.slack.example/T/B/x")
    return parse_config(text)


def test_a_good_file(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(GOOD.replace("${HOOK_URL}", "https://hooks.slack.example/T/B/x"))
    first, stale, complaints = config.alerts
    assert (first.hold, first.repeat, first.notify) == ("15m", "4h", ("ops_slack",))
    assert stale.over == "2h" and complaints.over == 0.001
    slack = config.notifiers["ops_slack"]
    assert isinstance(slack, WebhookNotifier) and slack.format == "slack"
    assert "hooks.slack" not in repr(slack)  # the URL is a secret
    assert isinstance(config.notifiers["ops_mail"], EmailNotifier)
    assert config.alerts_every == "1m"


@pytest.mark.parametrize(
    ("old", "new", "where", "said"),
    [
        ("when: source_failed", "when: sync_failed", ":3: alerts[0].when", "unknown signal"),
        ("notify: [ops_slack]", "notify: [ops_slak]", ":6: alerts[0].notify[0]", "ops_slak"),
        ("over: 2h", "over: soon", ":9: alerts[1].over", "expected a duration"),
        ("over: 0.001", "over: 3", ":12: alerts[2].over", "fraction from 0 to 1"),
        ("for: 15m", "for: a while", ":4: alerts[0].for", "expected a duration"),
        (
            "    when: source_failed\n",
            "    when: run_failed\n    over: 3\n",
            ":4: alerts[0].over",
            "takes no threshold",
        ),
        ("  - name: stale", "  - name: sync_failing", ":7: alerts[1].name", "two alerts"),
        (
            "kind: email, to: [ops@example.org]",
            "kind: email, to: []",
            ":16: notifiers.ops_mail.to",
            "length >= 1",
        ),
        ("to: [ops@example.org]", "to: [ops]", ":16: notifiers", "not an email address"),
        ('url: "${HOOK_URL}"', 'url: "ftp://x"', ":15: notifiers", "http:// or https://"),
        ("format: slack", "format: teams", ":15: notifiers.ops_slack.format", "invalid value"),
        (
            "    repeat: 4h\n",
            "    repeat: 4h\n    every: 1h\n",
            ":6: alerts[0].every",
            "unknown key",
        ),
    ],
)
def test_mistakes_name_line_and_key(
    old: str, new: str, where: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        parse(GOOD.replace(old, new, 1), monkeypatch)
    assert f"personify.yml{where}" in str(caught.value)
    assert said in str(caught.value)


def test_a_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(GOOD)
    assert "personify.yml:15: notifiers.ops_slack.url" in str(caught.value)
    assert "HOOK_URL is not set" in str(caught.value)
    assert caught.value.hint and "export HOOK_URL" in caught.value.hint


def test_no_notifiers_at_all_says_where_to_add_them() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("alerts:\n  - {name: a, when: run_failed, notify: [ops]}\n")
    assert "unknown notifier 'ops' (notifiers: none: add a notifiers: section)" in str(caught.value)
