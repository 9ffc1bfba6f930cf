"""Admin tokens with scopes and the failed-attempt limit."""

from __future__ import annotations

import pytest

from personify.config import MIN_TOKEN_LENGTH, parse_config
from personify.errors import ConfigError
from personify.privacy.access import AdminTokens, FailureLimiter


def test_tokens_and_scopes() -> None:
    tokens = AdminTokens(
        [
            ("admin", "root-token", ("admin",)),
            ("support", "sup-token", ("profiles:read",)),
            ("unset", "", ("admin",)),
        ]
    )
    admin, support = tokens.check("root-token"), tokens.check("sup-token")
    assert admin and admin.name == "admin" and admin.allows("privacy")
    assert support and support.allows("profiles:read") and not support.allows("privacy")
    assert tokens.check("") is None and tokens.check("root-token ") is None
    assert not AdminTokens([("a", "", ("admin",))])


def test_failure_limiter_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("1.2.3.4") == 0
        limiter.failed("1.2.3.4")
        now[0] += 1
    assert 55 < limiter.retry_after("1.2.3.4") <= 58
    assert limiter.retry_after("5.6.7.8") == 0  # per client
    now[0] += 60
    assert limiter.retry_after("1.2.3.4") == 0


def test_masked_privacy_scope_is_implied_by_privacy_and_sees_no_pii() -> None:
    tokens = AdminTokens(
        [
            ("root", "r", ("admin",)),
            ("dpo", "d", ("privacy",)),
            ("help", "h", ("privacy:masked",)),
            ("sup", "s", ("profiles:read",)),
        ]
    )
    root, dpo, helpdesk, sup = (tokens.check(t) for t in "rdhs")
    assert root and dpo and helpdesk and sup
    assert all(g.allows("privacy:masked") for g in (root, dpo, helpdesk))
    assert not sup.allows("privacy:masked")
    assert root.sees_pii and dpo.sees_pii and not helpdesk.sees_pii
    assert not helpdesk.allows("privacy") and not helpdesk.allows("profiles:read")


def test_two_admin_tokens_cannot_share_a_name() -> None:
    """A second token under a used name would act as the first in the audit log and in console
    sessions: the project file is refused, naming the line, the name and what to do."""
    twice = (
        "admin_tokens:\n"
        "  - {name: support, token: one-0123456789abcdefghij, scopes: [profiles:read]}\n"
        "  - {name: support, token: two-0123456789abcdefghij, scopes: [console]}\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_config(twice)
    said = str(e.value)
    assert said.startswith("personify.yml:3: admin_tokens[1].name:"), said
    assert "already named 'support'" in said and "give this token another name" in said
    # admin_token is named "admin": a named token cannot take it while admin_token is set
    root = "admin_token: root-0123456789abcdefghij\n"
    shadow = root + "admin_tokens:\n  - {name: admin, token: other-0123456789abcdefghij}\n"
    with pytest.raises(ConfigError, match="admin_token's name"):
        parse_config(shadow)
    assert parse_config(shadow.replace(root, "")).admin_tokens[0].name == "admin"
    distinct = twice.replace("name: support, token: two", "name: marketing, token: two")
    assert [t.name for t in parse_config(distinct).admin_tokens] == ["support", "marketing"]


@pytest.mark.parametrize(
    ("text", "line", "key", "name"),
    [
        ("admin_token: ${SHORT}\n", 1, "admin_token", "admin"),
        (
            "admin_token: ${LONG}\nadmin_tokens:\n  - name: alice\n    token: ${SHORT}\n",
            4,
            "admin_tokens[0].token",
            "alice",
        ),
    ],
)
def test_a_short_admin_token_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, text: str, line: int, key: str, name: str
) -> None:
    """A token shorter than MIN_TOKEN_LENGTH can be guessed: the project file is refused at load
    — the token read from the environment too — naming its line, key and name and how to make
    a long one, never the token itself."""
    monkeypatch.setenv("SHORT", "s3cr3t-0123456")  # 14 characters
    monkeypatch.setenv("LONG", "L" * MIN_TOKEN_LENGTH)
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    said = str(e.value)
    assert said.startswith(f"personify.yml:{line}: {key}: the admin token {name!r}"), said
    assert f"shorter than {MIN_TOKEN_LENGTH} characters" in said
    assert "secrets.token_urlsafe(32)" in said and "s3cr3t" not in said
    # long enough, from the environment: loads; an empty one (${VAR:-}) is no token
    monkeypatch.setenv("SHORT", "x" * MIN_TOKEN_LENGTH)
    assert parse_config(text).admin_token
    monkeypatch.setenv("SHORT", "")
    assert not parse_config("admin_token: ${SHORT:-}\n").admin_token
