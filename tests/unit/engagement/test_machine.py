"""Machine opens and scanner clicks are told from people's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from personify.engagement.machine import SCANNER_AGENTS, machine_open, scanner_click

SENT = datetime(2026, 3, 1, 12, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"


def test_apple_privacy_proxy_opens_are_machine_opens() -> None:
    later = SENT + timedelta(hours=1)
    assert machine_open("Mozilla/5.0", "203.0.113.9", SENT, later, within=2) == (
        "apple_privacy_proxy"
    )
    assert machine_open(BROWSER, "17.58.1.2", SENT, later, within=2) == "apple_privacy_proxy"
    assert machine_open(BROWSER, "203.0.113.9", SENT, later, within=2) is None
    assert machine_open(BROWSER, None, None, later, within=2) is None


def test_an_open_right_after_sending_is_a_prefetch() -> None:
    assert machine_open(BROWSER, "203.0.113.9", SENT, SENT + timedelta(seconds=1), within=2) == (
        "too_soon"
    )


def test_scanner_clicks_are_flagged() -> None:
    later = SENT + timedelta(minutes=5)
    assert scanner_click(BROWSER, "HEAD", SENT, later, within=5) == "head_request"
    assert scanner_click("Mimecast Link Scanner", "GET", SENT, later, within=5) == ("scanner_agent")
    assert scanner_click("", "GET", SENT, later, within=5) == "scanner_agent"
    assert scanner_click(BROWSER, "GET", SENT, SENT + timedelta(seconds=3), within=5) == (
        "too_soon"
    )
    assert scanner_click(BROWSER, "GET", SENT, later, within=5) is None


@given(
    st.lists(st.sampled_from([*SCANNER_AGENTS, "mozilla/5.0 ", "firefox", "bo", "t", " "]))
    .map("".join)
    .map(str.title)
)
def test_a_scanner_agent_is_any_listed_fragment(agent: str) -> None:
    expected = any(fragment in agent.lower() for fragment in SCANNER_AGENTS) or not agent
    found = scanner_click(agent, "GET", None, SENT, within=5.0)
    assert (found == "scanner_agent") == expected
