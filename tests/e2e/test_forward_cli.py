"""Event forwarding as a user runs it: tracked events reach a (real, local) analytics API within
seconds through ``personify serve``'s schedule, filtered by name, each once; ``personify
status`` shows the destination's counts and lag; ``personify push`` and ``personify run``
forward what waits, and again forward nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conformance.collector_api import WRITE_KEY, Collector, serve_collector
from tests.e2e.cli import personify, personify_json, start_server
from tests.e2e.tracking_support import write_key

DESTINATION = """
destinations:
  - name: analytics
    kind: events
    path: /v1/batch
    events: [Order Completed]
    start: {start}
    client:
      base_url: {url}
      auth: {{type: http_basic, username: "${{COLLECTOR_KEY}}"}}
      requests_per_second: 1000
    schedule: {{every: 1s}}
"""


@pytest.fixture
def api() -> Collector:
    return Collector()


@pytest.fixture
def url(api: Collector) -> Iterator[str]:
    with serve_collector(api) as base:
        yield base


def with_destination(project: Path, url: str, start: str = "now") -> Path:
    with (project / "personify.yml").open("a") as f:
        f.write(DESTINATION.format(url=url, start=start))
    with (project / ".env").open("a") as f:
        f.write(f"\nCOLLECTOR_KEY={WRITE_KEY}\n")
    return project


def test_serve_forwards_tracked_events_within_seconds(
    project_dir: Path, tmp_path: Path, api: Collector, url: str
) -> None:
    project = with_destination(project_dir, url)
    server = start_server(project, tmp_path / "serve.log")
    try:
        auth = (write_key(project), "")
        with httpx.Client(base_url=server.url, auth=auth, timeout=30, trust_env=False) as http:
            for mid, name, properties in [
                ("m-order", "Order Completed", {"order_id": "o-1", "total": 42}),
                ("m-view", "Product Viewed", {"product_id": "p-1"}),
            ]:
                sent = http.post(
                    "/v1/track",
                    json={
                        "messageId": mid,
                        "userId": "u-1",
                        "event": name,
                        "properties": properties,
                    },
                )
                assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 30
        while not api.taken:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        time.sleep(2.5)  # (two more scheduled forwardings: nothing more goes)
        assert api.ids() == ["m-order"]
        event = api.taken[0]
        assert (event["type"], event["event"], event["userId"]) == (
            "track",
            "Order Completed",
            "u-1",
        )
        assert event["properties"] == {"order_id": "o-1", "total": 42}
        status = personify_json("status", "--project", str(project))
        (shown,) = status["destinations"]
        assert shown["kind"] == "events" and shown["records"] == {"sent": 1}
        assert shown["events_pending"] == 0 and shown["schedule"] == "every 1s"
        human = personify("status", "--project", str(project))
        assert human.returncode == 0 and "lag 0 s, 0 waiting" in " ".join(human.stdout.split())
    finally:
        server.stop()
    again = personify_json("push", "--project", str(project))
    assert again[0]["counts"]["events_sent"] == 0 and api.ids() == ["m-order"]


EVENTS_CSV = "id,kind,name,user,at\n" + "".join(
    f"e{i},track,{'Order Completed' if i % 2 else 'Cart Viewed'},u{i},2026-01-0{1 + i % 5}T10:00Z\n"
    for i in range(10)
)


def test_push_and_run_forward_history_when_asked_and_once(
    project_dir: Path, tmp_path: Path, api: Collector, url: str
) -> None:
    project = with_destination(project_dir, url, start="all")
    (tmp_path / "events.csv").write_text(EVENTS_CSV)
    dry = personify_json("push", "analytics", "--dry-run", "--project", str(project))
    assert dry[0]["counts"] == {"events_pending": 0}
    done = personify(
        "import", str(tmp_path / "events.csv"), "--table", "events", "-m", "message_id=id",
        "-m", "type=kind", "-m", "event=name", "-m", "user_id=user", "-m", "timestamp=at",
        "--source", "files", "--project", str(project),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    dry = personify_json("push", "analytics", "--dry-run", "--project", str(project))
    assert dry[0]["counts"] == {"events_pending": 5} and len(dry[0]["sample"]) == 3
    assert api.requests == 0
    pushed = personify_json("push", "analytics", "--project", str(project))
    assert pushed[0]["error"] is None and pushed[0]["counts"]["events_sent"] == 5
    assert sorted(api.ids()) == ["e1", "e3", "e5", "e7", "e9"]
    run = personify_json("run", "--project", str(project))
    stage = next(s for s in run["stages"] if s["name"] == "destinations")
    assert stage["counts"]["events_sent"] == 0 and len(api.taken) == 5
    shown = personify("push", "--project", str(project))
    assert shown.returncode == 0 and "events_sent=0" in " ".join(shown.stdout.split())
    help_text = " ".join(personify("push", "--help").stdout.split())
    assert "kind: events" in help_text


def test_privacy_erase_says_where_the_persons_events_were_forwarded(
    project_dir: Path, tmp_path: Path, api: Collector, url: str
) -> None:
    """``personify privacy erase`` (its human output) names the events destination a person's
    events went to, with how many: Personify cannot take them back, the operator erases them
    there — and says nothing of another person's."""
    project = with_destination(project_dir, url, start="all")
    (tmp_path / "events.csv").write_text(
        "id,kind,name,user,at\n"
        "a1,track,Order Completed,u-ann,2026-01-01T10:00Z\n"
        "a2,track,Order Completed,u-ann,2026-01-02T10:00Z\n"
        "a3,track,Cart Viewed,u-ann,2026-01-02T11:00Z\n"
        "b1,track,Order Completed,u-bob,2026-01-03T10:00Z\n"
    )
    done = personify(
        "import", str(tmp_path / "events.csv"), "--table", "events", "-m", "message_id=id",
        "-m", "type=kind", "-m", "event=name", "-m", "user_id=user", "-m", "timestamp=at",
        "--source", "files", "--project", str(project),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = personify_json("run", "--project", str(project))  # identity; forwards the orders
    assert run["errors"] == [], run
    assert sorted(api.ids()) == ["a1", "a2", "b1"]
    human = personify("privacy", "erase", "user_id:u-ann", "--project", str(project))
    assert human.returncode == 0, human.stderr
    said = " ".join(human.stdout.split())
    assert (
        "Destination analytics: 2 of the person's events were forwarded to analytics: "
        "erase them there"
    ) in said, human.stdout
    assert "u-ann" not in said and "u-bob" not in said and said.count("forwarded") == 1
    again = personify("privacy", "erase", "user_id:u-ann", "--project", str(project))
    assert again.returncode == 0 and "already erased" in again.stdout
