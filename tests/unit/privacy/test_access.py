"""Admin tokens with scopes and the failed-attempt limit."""

from __future__ import annotations

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
