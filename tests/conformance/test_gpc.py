"""Global Privacy Control on every backend: an event whose context says ``gpc: true`` (the
tracking API's record of ``Sec-GPC: 1``) opts the person out of data sharing — once, with proof —
and touches no other purpose; anonymous events wait until the person is known."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from personify import clock
from personify.privacy.consent import consented, do_not_sell, record
from personify.privacy.tracking import GPC_FORM, apply_tracking_consent
from personify.warehouse import Warehouse, table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def _events(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    names = list(dict.fromkeys(c for r in rows for c in r))
    wh.load(
        table("events"),
        pa.table(
            {
                c: pa.array(
                    [r.get(c) for r in rows],
                    TS if c in ("timestamp", "received_at") else None,
                )
                for c in names
            }
        ),
    )


def _ev(mid: str, at: datetime, customer: str | None, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": mid,
        "type": "page",
        "customer_id": customer,
        "anonymous_id": "anon-1",
        "timestamp": at,
        "received_at": at,
        "source": "web",
        "context": json.dumps(context),
    }


def test_gpc_signal_opts_out_of_data_sharing_once(warehouse: Warehouse) -> None:
    wh = warehouse
    record(wh, subject="c1", purpose="email_marketing", status="granted", source="crm", at=T0)
    gpc = {"gpc": True, "ip": "192.0.2.4", "userAgent": "Firefox/130"}
    _events(
        wh,
        [
            _ev("p1", T0 + timedelta(hours=1), "c1", gpc),
            _ev("p2", T0 + timedelta(hours=2), "c1", gpc),  # every page view repeats it
            _ev("p3", T0 + timedelta(hours=1), None, gpc),  # anonymous: nobody to record yet
            _ev("p4", T0 + timedelta(hours=1), "c2", {"gpc": False}),
        ],
    )
    with clock.frozen(T0 + timedelta(days=1)):
        assert apply_tracking_consent(wh) == 1
        assert apply_tracking_consent(wh) == 0
    assert do_not_sell(wh, ["c1", "c2"]) == {"c1"}
    assert consented(wh, ["c1"], purpose="email_marketing") == {"c1"}  # nothing else changes
    rows = wh.fetch(
        "SELECT purpose, status, form, ip, user_agent FROM consent_history "
        "WHERE customer_id = 'c1' AND purpose = 'data_sharing'"
    )
    assert rows == [("data_sharing", "revoked", GPC_FORM, "192.0.2.4", "Firefox/130")]


def test_gpc_alongside_consent_and_a_later_grant(warehouse: Warehouse) -> None:
    wh = warehouse
    both = {"gpc": True, "consent": {"categoryPreferences": {"email_marketing": True}}}
    _events(wh, [_ev("q1", T0, "c1", both)])
    with clock.frozen(T0 + timedelta(days=1)):
        assert apply_tracking_consent(wh) == 2
    assert do_not_sell(wh, ["c1"]) == {"c1"}
    assert consented(wh, ["c1"], purpose="email_marketing") == {"c1"}
    # the person later allows sharing explicitly: a GPC signal after that revokes again
    later = T0 + timedelta(days=2)
    record(wh, subject="c1", purpose="data_sharing", status="granted", source="cli", at=later)
    assert do_not_sell(wh, ["c1"]) == set()
    _events(wh, [_ev("q2", later + timedelta(hours=1), "c1", {"gpc": True})])
    with clock.frozen(later + timedelta(days=1)):
        assert apply_tracking_consent(wh) == 1
    assert do_not_sell(wh, ["c1"]) == {"c1"}


def test_an_anonymous_gpc_signal_counts_once_the_visitor_is_linked_later(
    warehouse: Warehouse,
) -> None:
    wh = warehouse
    _events(wh, [_ev("a1", T0, None, {"gpc": True, "ip": "192.0.2.9"})])
    with clock.frozen(T0 + timedelta(hours=1)):
        assert apply_tracking_consent(wh) == 0  # nobody to record it for yet
    # another pass with new, unrelated events: the signal keeps waiting
    _events(wh, [_ev("b1", T0 + timedelta(hours=2), "c2", {"userAgent": "x"})])
    with clock.frozen(T0 + timedelta(hours=3)):
        assert apply_tracking_consent(wh) == 0
    assert do_not_sell(wh, ["c9"]) == set()
    # the visitor signs up: identity links the anonymous events to c9 (stitching fills
    # customer_id) after the consent watermark passed them
    wh.execute("UPDATE events SET customer_id = 'c9' WHERE message_id = 'a1'")
    with clock.frozen(T0 + timedelta(days=1)):
        assert apply_tracking_consent(wh) == 1
        assert apply_tracking_consent(wh) == 0  # and only once
    assert do_not_sell(wh, ["c9"]) == {"c9"}
    rows = wh.fetch(
        "SELECT form, changed_at FROM consent_history WHERE customer_id = 'c9' "
        "AND purpose = 'data_sharing'"
    )
    assert len(rows) == 1 and rows[0][0] == GPC_FORM
