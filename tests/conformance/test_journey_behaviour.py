"""Journeys that react to behaviour, on every backend: branches on an earlier email's opens and
clicks (people's only, up to the branch's due time), batch and real time alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from tests.conformance.audience_data import arrow_rows
from tests.conformance.journey_support import HELLO, NOW, Shop, events, people, shop  # noqa: F401

from personify import clock
from personify.errors import DefinitionError
from personify.journeys import project_journeys
from personify.realtime.reactions import tick
from personify.warehouse import Warehouse, table

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

FOLLOW_UP = """trigger: {event: Signed Up}
steps:
  - id: remind
    send: hello
    with: {note: welcome}
  - wait: 2d
  - branch: {if: message.remind.clicked, then: clicker, else: next}
  - branch: {if: "message.remind.opened AND NOT message.remind.clicked", then: opener}
  - tag: silent
  - exit
  - id: clicker
    tag: clicked_it
  - exit
  - id: opener
    tag: opened_it
"""


def touch(
    wh: Warehouse, key: str, customer: str, name: str, at: datetime, *, machine: bool = False
) -> None:
    """A tracked open or click of the message ``key``, as :mod:`personify.engagement.record`
    stores it."""
    props = {"message_key": key, "journey": "follow_up", "step": "remind", "machine": machine}
    row = {
        "message_id": f"t-{customer}-{name}-{at.isoformat()}",
        "type": "track",
        "event": name,
        "customer_id": customer,
        "user_id": customer,
        "timestamp": at,
        "received_at": at,
        "source": "email_tracking",
        "properties": json.dumps(props),
    }
    wh.load(table("events"), arrow_rows("events", [row]))


@pytest.mark.parametrize("path", ["batch", "real time"])
def test_a_branch_follows_what_the_person_did_with_the_earlier_email(
    shop: Shop,  # noqa: F811
    path: str,
) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write("journeys/follow_up.yml", FOLLOW_UP)
    wh = shop.wh
    ids = ["opens", "robot", "clicks", "nothing", "late", "other"]
    people(wh, *({"customer_id": c} for c in ids), consent=ids)
    events(wh, *((c, "Signed Up", NOW - HOUR, {}) for c in ids))
    assert shop.run(NOW)["sent"] == len(ids)
    keys = dict(wh.fetch("SELECT customer_id, idempotency_key FROM messages"))
    soon = NOW + HOUR
    touch(wh, keys["opens"], "opens", "Email Opened", soon)
    touch(wh, keys["robot"], "robot", "Email Opened", soon, machine=True)
    touch(wh, keys["robot"], "robot", "Email Link Clicked", soon + HOUR, machine=True)
    touch(wh, keys["clicks"], "clicks", "Email Link Clicked", soon)  # the pixel was blocked
    touch(wh, keys["late"], "late", "Email Opened", NOW + 3 * DAY)  # after the branch was due
    touch(wh, "another:message:other:x", "other", "Email Opened", soon)  # not this email

    at = NOW + 4 * DAY  # a late run decides as one on time (the branch was due at +2d)
    if path == "batch":
        shop.run(at)
    else:
        with clock.frozen(at):
            tick(shop.session, now=at)
    tags = dict(wh.fetch("SELECT customer_id, tag FROM journey_tags"))
    assert tags == {
        "opens": "opened_it",
        "robot": "silent",
        "clicks": "clicked_it",
        "nothing": "silent",
        "late": "silent",
        "other": "silent",
    }
    states = {s for (s,) in wh.fetch("SELECT DISTINCT status FROM journey_instances")}
    assert states == {"exited", "completed"}


@pytest.mark.parametrize(
    ("condition", "said"),
    [
        ("message.remind.opened", "no send step comes before this branch"),
        ("message.remind.opend", "message.remind.opened"),
        ("message.later.opened", "known here"),
        ("other.remind.opened", "qualified column"),
    ],
)
def test_a_branch_on_an_unknown_email_is_refused_with_where_it_is(
    shop: Shop,  # noqa: F811
    condition: str,
    said: str,
) -> None:
    first = "  - id: remind\n    send: hello\n" if "no send" not in said else ""
    shop.write(
        "journeys/bad.yml",
        f"trigger: {{event: X}}\nsteps:\n{first}  - branch: {{if: {condition}}}\n"
        "  - id: later\n    send: hello\n",
    )
    with pytest.raises(DefinitionError) as caught:
        project_journeys(shop.session.project)
    error = caught.value
    text = str(error) + str(error.hint or "")
    assert said in text and "bad.yml" in text and "branch.if" in text, text


WIN_BACK = """trigger: {segment: lapsed}
exit_when: {segment: lapsed}
steps:
  - wait: 2d
  - send: hello
    with: {note: we miss you}
"""


def memberships(wh: Warehouse, *rows: tuple[str, datetime, datetime | None]) -> None:
    data = [
        {"segment": "lapsed", "customer_id": c, "entered_at": entered, "exited_at": exited}
        for c, entered, exited in rows
    ]
    wh.load(table("segment_memberships"), arrow_rows("segment_memberships", data))


@pytest.mark.parametrize("path", ["batch", "real time"])
def test_leaving_the_exit_segment_ends_the_journey_with_its_reason(
    shop: Shop,  # noqa: F811
    path: str,
) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.segment("lapsed")
    shop.write("journeys/win_back.yml", WIN_BACK)
    wh = shop.wh
    ids = ["stays", "leaves", "returns", "too_late"]
    people(wh, *({"customer_id": c} for c in ids), consent=ids)
    entered = NOW - HOUR
    changes = [
        {
            "kind": "segment",
            "name": "lapsed",
            "customer_id": c,
            "change": "entered",
            "changed_at": entered,
            "recorded_at": entered,
        }
        for c in ids
    ]
    wh.load(table("audience_changes"), arrow_rows("audience_changes", changes))
    memberships(
        wh,
        ("stays", entered, None),
        ("leaves", entered, NOW + DAY),  # bought something: no longer lapsed
        ("returns", entered, NOW + DAY),  # left, then lapsed again before the email
        ("returns", NOW + DAY + HOUR, None),
        ("too_late", entered, NOW + 3 * DAY),  # left after the email was due
    )
    shop.run(NOW)
    assert wh.scalar("SELECT count(*) FROM journey_instances WHERE status = 'active'") == 4

    at = NOW + 4 * DAY  # a late run decides as one on time (the email was due at +2d)
    if path == "batch":
        shop.run(at)
    else:
        with clock.frozen(at):
            tick(shop.session, now=at)
    states = {
        c: (s, r)
        for c, s, r in wh.fetch("SELECT customer_id, status, exit_reason FROM journey_instances")
    }
    assert states == {
        "stays": ("completed", "completed"),
        "leaves": ("exited", "left_segment"),
        "returns": ("completed", "completed"),
        "too_late": ("completed", "completed"),
    }
    assert sorted(c for (c,) in wh.fetch("SELECT customer_id FROM messages")) == [
        "returns",
        "stays",
        "too_late",
    ]


@pytest.mark.parametrize(
    ("exit_when", "said"),
    [
        ("{segmnt: lapsed}", "exit_when.segmnt"),
        ("{}", "exit_when names a segment"),
        ("{segment: 'no such'}", "is not a name"),
    ],
)
def test_a_bad_exit_when_is_refused_with_where_it_is(
    shop: Shop,  # noqa: F811
    exit_when: str,
    said: str,
) -> None:
    shop.write(
        "journeys/bad.yml",
        f"trigger: {{event: X}}\nexit_when: {exit_when}\nsteps:\n  - send: hello\n",
    )
    with pytest.raises(DefinitionError) as caught:
        project_journeys(shop.session.project)
    error = caught.value
    text = str(error) + str(error.hint or "")
    assert said in text and "bad.yml:2" in text, text


def test_an_email_held_while_the_customer_left_the_exit_segment_is_not_sent(
    shop: Shop,  # noqa: F811
) -> None:
    """Decided at 21:15, held by quiet hours until 08:00; one customer leaves the segment at
    22:00: the send-time gate skips their email with the reason."""
    shop.write("templates/hello.liquid", HELLO)
    shop.segment("lapsed")
    shop.write("journeys/win_back.yml", WIN_BACK.replace("  - wait: 2d\n", ""))
    shop.configure('journeys:\n  quiet_hours: {start: "21:00", end: "08:00"}\n')
    wh = shop.wh
    evening = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    ids = ["stays", "leaves"]
    people(wh, *({"customer_id": c, "timezone": "Europe/London"} for c in ids), consent=ids)
    changes = [
        {
            "kind": "segment",
            "name": "lapsed",
            "customer_id": c,
            "change": "entered",
            "changed_at": evening,
            "recorded_at": evening,
        }
        for c in ids
    ]
    wh.load(table("audience_changes"), arrow_rows("audience_changes", changes))
    memberships(wh, ("stays", evening, None), ("leaves", evening, evening + HOUR))
    assert shop.run(evening + timedelta(minutes=15))["held"] == 2

    morning = shop.run(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
    assert morning["sent"] == 1 and morning["skipped_left_segment"] == 1
    got = shop.messages()
    assert got["stays:win_back"][0] == "sent"
    assert got["leaves:win_back"] == (
        "skipped_left_segment",
        "step1",
        "left the segment lapsed before sending",
    )
