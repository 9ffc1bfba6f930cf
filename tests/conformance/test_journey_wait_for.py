"""``wait_for`` steps on every backend: wait for an event (same key, a filter) at most a while,
then branch — moving on at the event's time, else at the deadline, whatever the runs' cadence;
and journeys naming a segment the project does not define are refused."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.journey_support import NOW, Shop, events, people, shop  # noqa: F401

from personify import clock
from personify.errors import DefinitionError
from personify.journeys import project_journeys, run_journeys
from personify.journeys.stage import journeys_stage
from personify.realtime.reactions import tick

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
ENTERED = NOW - HOUR / 2
"""When every cart of these tests was abandoned (its first Product Added)."""
OPENS = ENTERED + HOUR
"""When the wait_for step becomes due: its window opens (after the journey's ``wait: 1h``)."""
DEADLINE = OPENS + 3 * DAY

CART = """trigger: {event: Product Added, key: properties.cart_id, within: 30d}
goal: {event: Account Closed}
steps:
  - wait: 1h
  - id: ordered
    wait_for:
      event: Order Completed
      key: properties.cart_id
      where: "properties.total > 50"
      within: 3d
      then: thank_you
      else: last_call
  - id: thank_you
    tag: thanked
  - wait: 1d
  - exit
  - id: last_call
    tag: last_called
  - wait: 2d
"""


def cart(customer: str, cart_id: str = "") -> tuple[str, str, datetime, dict[str, Any]]:
    return (customer, "Product Added", ENTERED, {"cart_id": cart_id or f"c-{customer}"})


def order(
    customer: str, at: datetime, total: float = 80.0, cart_id: str = ""
) -> tuple[str, str, datetime, dict[str, Any]]:
    props = {"cart_id": cart_id or f"c-{customer}", "total": total}
    return (customer, "Order Completed", at, props)


def closed(customer: str, at: datetime) -> tuple[str, str, datetime, dict[str, Any]]:
    return (customer, "Account Closed", at, {})


WORLD = {
    "buys": [order("buys", OPENS + 10 * HOUR)],
    "small": [order("small", OPENS + HOUR, total=20.0)],  # the filter leaves it out
    "other_cart": [order("other_cart", OPENS + HOUR, cart_id="another")],
    "too_early": [order("too_early", OPENS - HOUR / 4)],  # before the window opened
    "too_late": [order("too_late", DEADLINE + HOUR)],
    "at_deadline": [order("at_deadline", DEADLINE)],
    "nothing": [],
    "buys_then_closes": [
        order("buys_then_closes", OPENS + 2 * HOUR),
        closed("buys_then_closes", OPENS + 5 * HOUR),  # during the day after: a goal exit
    ],
    "closes_then_buys": [
        closed("closes_then_buys", OPENS + 2 * HOUR),  # the goal first: no thank-you
        order("closes_then_buys", OPENS + 5 * HOUR),
    ],
    "buys_twice": [order("buys_twice", OPENS + 7 * HOUR), order("buys_twice", OPENS + 3 * HOUR)],
}


def _world(shop: Shop) -> None:  # noqa: F811
    shop.write("journeys/cart.yml", CART)
    people(shop.wh, *({"customer_id": c} for c in WORLD), consent=list(WORLD))
    events(shop.wh, *(cart(c) for c in WORLD), *(e for rows in WORLD.values() for e in rows))


def _paths(shop: Shop) -> dict[str, tuple[Any, ...]]:  # noqa: F811
    """Each instance's place, times and tags: what must not depend on when runs happened."""
    tags: dict[str, list[str]] = {}
    for customer, tag in shop.wh.fetch("SELECT customer_id, tag FROM journey_tags"):
        tags.setdefault(str(customer), []).append(str(tag))
    rows = shop.wh.fetch(
        "SELECT customer_id, step, status, exit_reason, wake_at, waiting_since "
        "FROM journey_instances"
    )
    return {
        str(c): (step, status, reason, wake, since, sorted(tags.get(str(c), [])))
        for c, step, status, reason, wake, since in rows
    }


def _advance(shop: Shop, at: datetime, how: str) -> None:  # noqa: F811
    with clock.frozen(at):
        if how == "batch":
            run_journeys(shop.wh, shop.session.project, project_journeys(shop.session.project))
        else:
            tick(shop.session, now=at)


@pytest.mark.parametrize("path", ["batch", "real time"])
def test_the_event_within_the_window_takes_then_at_its_time_else_the_deadline(
    shop: Shop,  # noqa: F811
    path: str,
) -> None:
    _world(shop)
    with clock.frozen(NOW):
        first = journeys_stage(shop.session)
    assert first["entered"] == len(WORLD)
    waiting = shop.wh.fetch(
        "SELECT DISTINCT step, waiting_since, wake_at FROM journey_instances"
    )  # due at OPENS (the run is at NOW, earlier): still in the wait: 1h
    assert [(s, w) for s, w, _ in waiting] == [(1, None)]

    mid = OPENS + DAY  # the window is open: the early buyers moved on, the others wait
    _advance(shop, mid, path)
    got = _paths(shop)
    assert got["buys"][:2] == (4, "active") and got["buys"][4] is None
    assert got["buys"][3] == OPENS + 10 * HOUR + DAY  # the tag at the order, then wait: 1d
    assert got["buys_twice"][3] == OPENS + 3 * HOUR + DAY  # the first order counts
    assert got["nothing"][:2] == (1, "active")
    assert got["nothing"][3:5] == (DEADLINE, OPENS)  # waiting: the deadline and the window
    assert got["closes_then_buys"][1:3] == ("exited", "goal")
    assert got["closes_then_buys"][5] == []

    with clock.frozen(DEADLINE + DAY):
        counts = journeys_stage(shop.session) if path == "batch" else None
        if counts is None:
            tick(shop.session, now=DEADLINE + DAY)
    got = _paths(shop)
    thanked = {c for c, p in got.items() if p[5] == ["thanked"]}
    called = {c for c, p in got.items() if p[5] == ["last_called"]}
    assert thanked == {"buys", "at_deadline", "buys_then_closes", "buys_twice"}
    assert called == {"small", "other_cart", "too_early", "too_late", "nothing"}
    assert got["buys_then_closes"][1:3] == ("exited", "goal")
    assert got["at_deadline"][3] == DEADLINE + DAY  # moved on at the order (= the deadline)
    assert got["nothing"][:5] == (7, "completed", "completed", DEADLINE + 2 * DAY, None)
    assert all(p[4] is None for c, p in got.items() if c != "closes_then_buys")
    if counts is not None:
        assert counts["wait_for_event"] == 1 and counts["wait_for_timeout"] == 5


CADENCES = {
    "every hour, batch and tick in turn": [NOW + n * HOUR for n in range(0, 24 * 6)],
    "every 7 hours": [NOW + n * 7 * HOUR for n in range(0, 21)],
    "on time, then once late": [NOW, NOW + 6 * DAY],
    "once, late": [NOW + 6 * DAY],
}


@pytest.mark.parametrize("cadence", list(CADENCES))
def test_every_cadence_ends_in_the_same_paths(
    shop: Shop,  # noqa: F811
    cadence: str,
) -> None:
    _world(shop)
    for n, at in enumerate([*CADENCES[cadence], NOW + 6 * DAY]):
        _advance(shop, at, "real time" if n % 2 and "hour" in cadence else "batch")
    got = _paths(shop)
    assert got == EXPECTED, cadence


EXPECTED: dict[str, tuple[Any, ...]] = {
    "buys": (4, "exited", "exit", OPENS + 10 * HOUR + DAY, None, ["thanked"]),
    "buys_twice": (4, "exited", "exit", OPENS + 3 * HOUR + DAY, None, ["thanked"]),
    "at_deadline": (4, "exited", "exit", DEADLINE + DAY, None, ["thanked"]),
    "buys_then_closes": (4, "exited", "goal", OPENS + 2 * HOUR + DAY, None, ["thanked"]),
    "closes_then_buys": (1, "exited", "goal", DEADLINE, OPENS, []),  # left while waiting
    "small": (7, "completed", "completed", DEADLINE + 2 * DAY, None, ["last_called"]),
    "other_cart": (7, "completed", "completed", DEADLINE + 2 * DAY, None, ["last_called"]),
    "too_early": (7, "completed", "completed", DEADLINE + 2 * DAY, None, ["last_called"]),
    "too_late": (7, "completed", "completed", DEADLINE + 2 * DAY, None, ["last_called"]),
    "nothing": (7, "completed", "completed", DEADLINE + 2 * DAY, None, ["last_called"]),
}


def _reset(shop: Shop) -> None:  # noqa: F811
    for name in ("journey_instances", "journey_state", "journey_tags", "audience_changes"):
        shop.wh.execute(f"DELETE FROM {name}")
    shop.wh.execute("DELETE FROM events")


hours = st.integers(min_value=-3, max_value=24 * 4)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    orders=st.lists(st.one_of(st.none(), hours), min_size=3, max_size=3),
    goals=st.lists(st.one_of(st.none(), hours), min_size=3, max_size=3),
    runs=st.lists(st.integers(min_value=0, max_value=24 * 6), max_size=5).map(sorted),
)
def test_any_run_schedule_decides_as_one_late_run(
    shop: Shop,  # noqa: F811
    orders: list[int | None],
    goals: list[int | None],
    runs: list[int],
) -> None:
    """Random order and goal times, runs at random hours (batch and tick in turn): the same
    paths, times and tags as a single run after everything happened."""
    shop.write("journeys/cart.yml", CART)
    ids = ["p", "q", "r"]
    if not shop.wh.scalar("SELECT count(*) FROM customers"):  # once per warehouse
        people(shop.wh, *({"customer_id": c} for c in ids), consent=ids)

    def world() -> None:
        rows = [cart(c) for c in ids]
        rows += [
            order(c, OPENS + h * HOUR) for c, h in zip(ids, orders, strict=True) if h is not None
        ]
        rows += [
            closed(c, OPENS + h * HOUR) for c, h in zip(ids, goals, strict=True) if h is not None
        ]
        events(shop.wh, *rows)

    late = NOW + 6 * DAY
    _reset(shop)
    world()
    for n, at in enumerate(runs):
        _advance(shop, NOW + at * HOUR, "real time" if n % 2 else "batch")
    _advance(shop, late, "batch")
    scheduled = _paths(shop)
    _reset(shop)
    world()
    _advance(shop, late, "batch")
    assert scheduled == _paths(shop)
    for c, h, g in zip(ids, orders, goals, strict=True):
        bought = h is not None and 0 < h <= 72 and (g is None or not -1 <= g <= h)
        assert (scheduled[c][5] == ["thanked"]) == bought, (c, h, g)


def _refused(shop: Shop, text: str) -> str:  # noqa: F811
    shop.write("journeys/bad.yml", text)
    with pytest.raises(DefinitionError) as caught:
        project_journeys(shop.session.project)
    error = caught.value
    return str(error) + " hint: " + str(error.hint or "")


STEP = "trigger: {event: Product Added, key: properties.cart_id}\nsteps:\n  - wait_for: "


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("{event: X, within: 3d, then: thanks}", "bad.yml:3: steps[0].wait_for.then: no step"),
        ("{event: X, within: 3d, else: nope}", "steps[0].wait_for.else: no step with the id"),
        ("{event: X, within: soon}", "steps[0].wait_for.within: 'soon' is not a duration"),
        ("{event: X}", "wait_for needs within:"),
        ("{within: 3d}", "wait_for names the event"),
        ("{event: X, within: 3d, wher: a}", "steps[0].wait_for.wher: unknown key"),
        ("{event: X, within: 3d, key: cart_id}", "write properties.NAME"),
        ("{event: X, within: 3d, where: 'properties.total >'}", "steps[0].wait_for.where"),
        ("{event: X, within: 3d, where: 'totl > 5'}", "steps[0].wait_for.where"),
        ("{event: X, within: 3d, where: 'properties.total'}", "must be a condition"),
        ("{event: X, within: 3d, where: 'timestamp < NOW()'}", "the step's within: bounds"),
    ],
)
def test_a_bad_wait_for_is_refused_with_where_it_is(
    shop: Shop,  # noqa: F811
    spec: str,
    said: str,
) -> None:
    text = _refused(shop, STEP + spec + "\n  - exit\n")
    assert said in text and "bad.yml:3" in text, text


def test_a_wait_for_key_needs_a_keyed_trigger(shop: Shop) -> None:  # noqa: F811
    text = _refused(
        shop,
        "trigger: {event: Product Added}\nsteps:\n  - send: x\n"
        "  - wait_for: {event: X, within: 1d, key: properties.cart_id}\n",
    )
    assert "bad.yml:4: steps[1].wait_for.key" in text and "add key: to the trigger" in text


def test_the_report_and_the_summary_say_what_wait_for_does(shop: Shop) -> None:  # noqa: F811
    from personify.journeys.report import journeys_report

    _world(shop)
    steps = journeys_report(shop.wh, project_journeys(shop.session.project))[0]["steps"]
    assert steps[1] == (
        "ordered: wait for 'Order Completed' by properties.cart_id where properties.total > 50 "
        "within 3d, then thank_you, else last_call"
    )


SEGMENT = "-- name: {name}\nSELECT customer_id FROM customers\n"


@pytest.mark.parametrize(
    ("head", "where", "said"),
    [
        ("trigger: {segment: lapsd}", "bad.yml:1: trigger.segment", "did you mean 'lapsed'?"),
        (
            "trigger: {schedule: 2026-03-02T11:00:00Z, segment: evryone}",
            "bad.yml:1: trigger.segment",
            "did you mean 'everyone'?",
        ),
        (
            "trigger: {event: X}\nexit_when: {segment: gone}",
            "bad.yml:2: exit_when.segment",
            "segments: everyone, high_value_recent, lapsed",
        ),
    ],
)
def test_a_segment_the_project_does_not_define_is_refused(
    shop: Shop,  # noqa: F811
    head: str,
    where: str,
    said: str,
) -> None:
    for name in ("lapsed", "everyone"):
        shop.write(f"segments/{name}.sql", SEGMENT.format(name=name))
    text = _refused(shop, head + "\nsteps:\n  - exit\n")
    assert where in text and "no segment" in text and said in text, text
    fixed = head.replace("lapsd", "lapsed").replace("evryone", "everyone").replace("gone", "lapsed")
    shop.write("journeys/bad.yml", fixed + "\nsteps:\n  - exit\n")
    assert [j.name for j in project_journeys(shop.session.project)] == ["bad"]


def test_a_warehouse_from_before_wait_for_gains_waiting_since(warehouse_url: str) -> None:
    """Migration 25 on a warehouse whose journey_instances predates it: the column is added,
    the instances are kept."""
    from personify.warehouse import connect
    from personify.warehouse.migrations import LEDGER, migrate

    with connect(warehouse_url) as wh:
        wh.execute("ALTER TABLE journey_instances DROP COLUMN waiting_since")
        wh.execute(f"DELETE FROM {LEDGER} WHERE version = 25")
        wh.execute(
            "INSERT INTO journey_instances (journey, customer_id, trigger_key, step, status, "
            "wake_at, trigger_at, entered_at, updated_at) VALUES ('cart', 'c', 'k', 1, "
            "'active', ?, ?, ?, ?)",
            [OPENS, ENTERED, NOW, NOW],
        )
    with connect(warehouse_url, migrate_schema=False) as wh:
        assert migrate(wh)[0] == 25  # (and any later ones)
        rows = wh.fetch("SELECT step, wake_at, waiting_since FROM journey_instances")
        assert rows == [(1, OPENS, None)]


def test_an_edited_journey_does_not_leave_an_old_window_behind(shop: Shop) -> None:  # noqa: F811
    """Waiting at a wait_for step that an edit turned into a wait: the instance goes on, and
    the wait_for step it reaches later opens its own window (not the old one's)."""
    shop.write(
        "journeys/cart.yml",
        "trigger: {event: Product Added, key: properties.cart_id, within: 30d}\nsteps:\n"
        "  - wait_for: {event: Order Completed, within: 1d}\n"
        "  - wait_for: {event: Review Written, within: 1d, then: reviewed, else: exit}\n"
        "  - id: reviewed\n    tag: reviewed\n",
    )
    people(shop.wh, {"customer_id": "a"}, consent=["a"])
    events(shop.wh, cart("a"), ("a", "Review Written", ENTERED + DAY + 2 * HOUR, {}))
    _advance(shop, NOW, "batch")
    assert _paths(shop)["a"][:5] == (0, "active", None, ENTERED + DAY, ENTERED)
    shop.write(
        "journeys/cart.yml",
        (shop.root / "journeys/cart.yml")
        .read_text(encoding="utf-8")
        .replace("  - wait_for: {event: Order Completed, within: 1d}\n", "  - wait: 1h\n"),
    )
    _advance(shop, NOW + 3 * DAY, "batch")
    assert _paths(shop)["a"][5] == ["reviewed"]  # in the window opened at ENTERED + 1d + 1h


def test_a_journey_without_wait_for_runs_no_window_statement(
    shop: Shop,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stale-window clean-up is one UPDATE per advance: journeys that have no ``wait_for``
    step skip it; those that have one still run it."""
    people(shop.wh, {"customer_id": "a"}, consent=["a"])
    events(shop.wh, cart("a"))
    seen: list[str] = []
    execute = shop.wh.execute

    def recording(sql: Any, params: Any = ()) -> int:
        seen.append(str(sql))
        return execute(sql, params)

    monkeypatch.setattr(shop.wh, "execute", recording)
    trigger = "trigger: {event: Product Added, key: properties.cart_id, within: 30d}\nsteps:\n"
    shop.write("journeys/cart.yml", trigger + "  - wait: 1h\n  - tag: waited\n")
    _advance(shop, NOW, "batch")
    assert seen and not [s for s in seen if "waiting_since = NULL" in s]
    shop.write(
        "journeys/cart.yml", trigger + "  - wait_for: {event: Order Completed, within: 1d}\n"
    )
    _advance(shop, NOW + HOUR, "batch")
    assert [s for s in seen if "SET waiting_since = NULL" in s]


def test_windows_left_by_an_edit_that_removed_every_wait_for_are_forgotten_later(
    shop: Shop,  # noqa: F811
) -> None:
    """The clean-up is skipped while the journey has no wait_for step; the run after an edit
    that brings one back clears the old window before the instance reaches the new step."""
    trigger = "trigger: {event: Product Added, key: properties.cart_id, within: 30d}\nsteps:\n"
    shop.write(
        "journeys/cart.yml",
        trigger + "  - wait_for: {event: Order Completed, within: 1d}\n  - wait: 2d\n"
        "  - wait: 1h\n  - id: reviewed\n    tag: reviewed\n",
    )
    people(shop.wh, {"customer_id": "a"}, consent=["a"])
    events(shop.wh, cart("a"), ("a", "Review Written", ENTERED + 4 * DAY + 2 * HOUR, {}))
    _advance(shop, NOW, "batch")
    assert _paths(shop)["a"][:5] == (0, "active", None, ENTERED + DAY, ENTERED)
    shop.write(  # no wait_for left: the instance moves on, its window still recorded
        "journeys/cart.yml",
        trigger + "  - wait: 1d\n  - wait: 2d\n  - wait: 1h\n  - id: reviewed\n    tag: reviewed\n",
    )
    _advance(shop, ENTERED + DAY + HOUR, "batch")
    assert _paths(shop)["a"][:5] == (1, "active", None, ENTERED + 2 * DAY, ENTERED)
    shop.write(  # the third step waits for a review now: its window opens when it is due
        "journeys/cart.yml",
        trigger + "  - wait: 1d\n  - wait: 2d\n"
        "  - wait_for: {event: Review Written, within: 1d, then: reviewed, else: exit}\n"
        "  - id: reviewed\n    tag: reviewed\n",
    )
    _advance(shop, NOW + 5 * DAY, "batch")  # the window: ENTERED + 4d to + 5d
    assert _paths(shop)["a"][5] == ["reviewed"]
