"""The consent gate on every backend: fail-closed, resolved over every identifier of a customer,
a revocation wins across merged identities, suppressions stop marketing, and the ``sendable``
view agrees with :func:`consented`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from personify.privacy.consent import consented, record, sync_source_kinds
from personify.warehouse import Warehouse, table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TSA = pa.timestamp("us", tz="UTC")


def _load(wh: Warehouse, name: str, rows: list[dict[str, object]]) -> None:
    t = table(name)
    names = list(dict.fromkeys(c for r in rows for c in r))
    cols = {c: [r.get(c) for r in rows] for c in names}
    data = pa.table(
        {
            c: pa.array(v, TSA if t.column(c).type == "TIMESTAMPTZ" else None)
            for c, v in cols.items()
        }
    )
    wh.load(t, data)


def _world(wh: Warehouse) -> None:
    """c1 granted directly; c2 granted through its shop id (source ``shop`` → ``user_id``);
    c3 no consent; c4 granted on its id but revoked on an id merged into it; c5 granted but
    unsubscribed; c6 granted but its shop id revoked; c7 revoked."""
    ids = [
        {"customer_id": c, "founder": i, "founded_at": T0, "status": "active"}
        for i, c in enumerate(["c1", "c2", "c3", "c4", "c5", "c6", "c7"])
    ]
    ids.append(
        {
            "customer_id": "c4old",
            "founder": 99,
            "founded_at": T0,
            "status": "merged",
            "merged_into": "c4",
            "merged_at": T0,
        }
    )
    _load(wh, "customer_ids", ids)
    _load(
        wh,
        "identities",
        [
            {
                "customer_id": "c2",
                "kind": "user_id",
                "value": "u2",
                "source": "shop",
                "first_seen": T0,
                "last_seen": T0,
            },
            {
                "customer_id": "c6",
                "kind": "user_id",
                "value": "u6",
                "source": "shop",
                "first_seen": T0,
                "last_seen": T0,
            },
            # another customer holding the value "u2" under another kind: no match
            {
                "customer_id": "c3",
                "kind": "crm_id",
                "value": "u2",
                "source": "crm",
                "first_seen": T0,
                "last_seen": T0,
            },
        ],
    )

    def k(cid: str, status: str, source: str = "cli", days: int = 0) -> dict[str, object]:
        return {
            "customer_id": cid,
            "purpose": "email_marketing",
            "channel": "email",
            "status": status,
            "source": source,
            "updated_at": T0 + timedelta(days=days),
        }

    _load(
        wh,
        "consents",
        [
            k("c1", "granted"),
            k("u2", "granted", "shop"),
            k("c4", "granted", days=2),
            k("c4old", "revoked", days=1),
            k("c5", "granted"),
            k("c6", "granted"),
            k("u6", "revoked", "shop"),
            k("c7", "revoked"),
        ],
    )
    _load(
        wh,
        "suppressions",
        [
            {
                "subject_hash": "h5",
                "kind": "customer_id",
                "customer_id": "c5",
                "reason": "unsubscribed",
                "created_at": T0,
            }
        ],
    )
    sync_source_kinds(wh, {"shop": "user_id"})


ALL = ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "nobody"]


def test_fail_closed_resolution(warehouse: Warehouse) -> None:
    _world(warehouse)
    assert consented(warehouse, ALL, purpose="email_marketing") == {"c1", "c2"}
    assert consented(warehouse, ALL, purpose="profiling") == set()
    assert consented(warehouse, ALL, purpose="email_marketing", channel="sms") == set()
    assert consented(warehouse, [], purpose="email_marketing") == set()
    # passing the map explicitly gives the same answer; without it the shop id is not resolved
    explicit = consented(
        warehouse, ALL, purpose="email_marketing", source_kinds={"shop": "user_id"}
    )
    assert explicit == {"c1", "c2"}
    assert consented(warehouse, ALL, purpose="email_marketing", source_kinds={}) == {"c1", "c6"}


def test_suppression_stops_marketing_not_transactional(warehouse: Warehouse) -> None:
    _world(warehouse)
    record(warehouse, subject="c5", purpose="transactional", status="granted", source="cli", at=T0)
    assert consented(warehouse, ["c5"], purpose="transactional") == {"c5"}
    assert consented(warehouse, ["c5"], purpose="email_marketing") == set()


def test_erasure_tombstone_gives_way_to_newer_consent(warehouse: Warehouse) -> None:
    _world(warehouse)
    _load(
        warehouse,
        "suppressions",
        [
            {
                "subject_hash": "e1",
                "kind": "email",
                "customer_id": "c1",
                "reason": "erased",
                "created_at": T0 + timedelta(days=1),
            }
        ],
    )
    assert consented(warehouse, ["c1"], purpose="email_marketing") == set()
    record(
        warehouse,
        subject="c1",
        purpose="email_marketing",
        status="granted",
        source="web",
        at=T0 + timedelta(days=3),
    )
    assert consented(warehouse, ["c1"], purpose="email_marketing") == {"c1"}


def test_record_keeps_history_and_latest_state(warehouse: Warehouse) -> None:
    wh = warehouse
    assert record(
        wh,
        subject="x",
        purpose="email_marketing",
        status="granted",
        source="web",
        at=T0,
        proof={
            "ip": "192.0.2.1",
            "user_agent": "UA",
            "form": "footer",
            "confirmed_at": "2026-01-01T00:05:00Z",
            "campaign": "c",
        },
    )
    # a replay is ignored; an older change is kept in history without overwriting the state
    assert not record(
        wh,
        subject="x",
        purpose="email_marketing",
        status="granted",
        source="web",
        at=T0,
        proof={"ip": "192.0.2.1"},
    )
    assert record(
        wh,
        subject="x",
        purpose="email_marketing",
        status="revoked",
        source="cli",
        at=T0 + timedelta(days=2),
    )
    assert not record(
        wh,
        subject="x",
        purpose="email_marketing",
        status="granted",
        source="crm",
        at=T0 + timedelta(days=1),
    )
    state = wh.fetch("SELECT status, source FROM consents WHERE customer_id = 'x'")
    assert state == [("revoked", "cli")]
    history = wh.fetch(
        "SELECT status, source, ip, user_agent, form, confirmed_at IS NOT NULL, proof "
        "FROM consent_history WHERE customer_id = 'x' ORDER BY changed_at"
    )
    assert [h[:2] for h in history] == [("granted", "web"), ("granted", "crm"), ("revoked", "cli")]
    assert history[0][2:6] == ("192.0.2.1", "UA", "footer", True)
    assert "campaign" in str(history[0][6])


def test_sendable_view_agrees_with_gate(warehouse: Warehouse) -> None:
    _world(warehouse)
    _load(
        warehouse,
        "customers",
        [{"customer_id": c, "email": f"{c}@example.org", "updated_at": T0} for c in ALL[:-1]],
    )
    _load(
        warehouse,
        "segment_memberships",
        [{"segment": "all", "customer_id": c, "entered_at": T0} for c in ALL[:-1]],
    )
    view = {
        r[0]
        for r in warehouse.fetch(
            "SELECT customer_id FROM sendable WHERE segment = 'all' AND purpose = 'email_marketing'"
        )
    }
    assert view == consented(warehouse, ALL, purpose="email_marketing") == {"c1", "c2"}


def test_tracking_context_consent_is_recorded_once(warehouse: Warehouse) -> None:
    from personify import clock
    from personify.privacy.consent import backfill_history
    from personify.privacy.tracking import apply_tracking_consent

    wh = warehouse
    ctx = (
        '{"ip": "192.0.2.9", "userAgent": "UA/1", "page": {"url": "https://shop/signup"}, '
        '"consent": {"categoryPreferences": {"email_marketing": true}}}'
    )
    _load(
        wh,
        "events",
        [
            {
                "message_id": "e1",
                "type": "track",
                "event": "Signed Up",
                "customer_id": "c1",
                "timestamp": T0,
                "received_at": T0,
                "source": "web",
                "context": ctx,
            },
            {
                "message_id": "e2",
                "type": "track",
                "anonymous_id": "a9",
                "timestamp": T0,
                "received_at": T0,
                "source": "web",
                "context": ctx,
            },
        ],
    )
    with clock.frozen(T0 + timedelta(days=1)):
        assert apply_tracking_consent(wh) == 1
        assert apply_tracking_consent(wh) == 0  # the same events again: nothing new
    assert consented(wh, ["c1"], purpose="email_marketing") == {"c1"}
    (row,) = wh.fetch("SELECT source, ip, user_agent, form FROM consent_history")
    assert row == ("web", "192.0.2.9", "UA/1", "https://shop/signup")
    later = T0 + timedelta(days=2)
    _load(
        wh,
        "events",
        [
            {
                "message_id": "e3",
                "type": "track",
                "customer_id": "c1",
                "timestamp": later,
                "received_at": later,
                "source": "web",
                "context": '{"consent": [{"purpose": "email_marketing", "status": "revoked"}]}',
            }
        ],
    )
    with clock.frozen(later):
        assert apply_tracking_consent(wh) == 1
        assert backfill_history(wh) == 0
    assert consented(wh, ["c1"], purpose="email_marketing") == set()
    # a state written straight into consents (a file import) gets its history row
    _load(
        wh,
        "consents",
        [
            {
                "customer_id": "f1",
                "purpose": "p",
                "channel": "email",
                "status": "granted",
                "source": "crm",
                "updated_at": T0,
            }
        ],
    )
    assert backfill_history(wh) == 1


def test_suppress_helper_blocks_marketing_and_revokes(warehouse: Warehouse) -> None:
    from personify.privacy.suppress import suppress

    _world(warehouse)
    assert consented(warehouse, ["c1"], purpose="email_marketing") == {"c1"}
    args = {"key": b"k", "customer_id": "c1", "reason": "unsubscribed", "source": "unsubscribe"}
    n = suppress(warehouse, emails=["C1@x.org"], purpose="email_marketing", at=T0, **args)
    assert n == 2
    assert suppress(warehouse, emails=["c1@x.org"], at=T0, **args) == 0  # idempotent
    assert consented(warehouse, ["c1"], purpose="email_marketing") == set()
    state = warehouse.fetch("SELECT status FROM consents WHERE customer_id = 'c1'")
    assert state == [("revoked",)]


def test_proof_encrypted_at_rest_and_rotated(warehouse: Warehouse) -> None:
    from personify.privacy.crypto import KeyRing, new_key, rotate

    k1, k2 = new_key(), new_key()
    old = KeyRing.parse(f"k1:{k1}")
    proof = {"ip": "198.51.100.4", "user_agent": "UA/9", "form": "https://shop/?e=a@x.org"}
    record(
        warehouse,
        subject="x",
        purpose="p",
        status="granted",
        source="web",
        at=T0,
        proof=proof,
        cipher=old,
    )
    record(
        warehouse,
        subject="y",
        purpose="p",
        status="granted",
        source="web",
        at=T0,
        proof={"ip": "203.0.113.5"},
    )  # written before encryption was configured
    stored = warehouse.fetch("SELECT ip, user_agent, form FROM consent_history ORDER BY 1")
    text = str(stored)
    assert "198.51.100.4" not in text and "a@x.org" not in text and "203.0.113.5" in text
    new = KeyRing.parse(f"k2:{k2},k1:{k1}")
    counts = rotate(warehouse, new)
    assert counts["consent_history.ip"] == 2 and counts["consent_history.form"] == 1
    assert rotate(warehouse, new)["consent_history.ip"] == 0  # done: nothing stale
    only_new = KeyRing.parse(f"k2:{k2}")
    ips = {
        only_new.decrypt(v, field="consent_history.ip")
        for (v,) in warehouse.fetch("SELECT ip FROM consent_history")
    }
    assert ips == {"198.51.100.4", "203.0.113.5"}


def test_do_not_sell_opt_outs(warehouse: Warehouse) -> None:
    from personify.privacy.consent import DATA_SHARING, do_not_sell

    _world(warehouse)
    for subject, status, channel, source in (
        ("c1", "granted", "email", "cli"),
        ("u2", "revoked", "all", "shop"),  # opted out under the shop id
        ("c4old", "revoked", "email", "cli"),  # under an id merged into c4
        ("c6", "granted", "email", "cli"),
    ):
        record(
            warehouse,
            subject=subject,
            purpose=DATA_SHARING,
            status=status,
            channel=channel,
            source=source,
            at=T0,
        )
    assert do_not_sell(warehouse, ALL) == {"c2", "c4"}
    assert do_not_sell(warehouse, []) == set()


def test_tombstones_relink_incrementally(warehouse: Warehouse) -> None:
    from personify.privacy.hashing import subject_hash
    from personify.privacy.tombstones import relink_tombstones

    wh, key = warehouse, b"k"

    def node(node_id: int, email: str, customer_id: str) -> None:
        _load(
            wh,
            "identity_nodes",
            [
                {
                    "node_id": node_id,
                    "kind": "email",
                    "value": email,
                    "source": "crm",
                    "first_seen": T0,
                    "last_seen": T0,
                    "blocked": False,
                    "cluster": node_id,
                    "part": node_id,
                    "customer_id": customer_id,
                }
            ],
        )

    _load(
        wh,
        "suppressions",
        [
            {
                "subject_hash": subject_hash(key, "email", "Zed@X.org"),
                "kind": "email",
                "reason": "erased",
                "created_at": T0,
            }
        ],
    )
    node(1, "other@x.org", "c1")
    assert relink_tombstones(wh, key) == 0
    node(2, "zed@x.org", "c2")  # the erased address comes back under a new customer
    assert relink_tombstones(wh, key) == 1
    assert wh.scalar("SELECT customer_id FROM suppressions") == "c2"
    assert relink_tombstones(wh, key) == 0  # nothing new: nothing hashed again
    assert consented(wh, ["c2"], purpose="email_marketing") == set()


def test_the_send_gate_stops_an_address_whose_tombstone_was_not_relinked(
    warehouse: Warehouse,
) -> None:
    """Fail-closed even before any relinking ran: a customer holding an erased address is
    suppressed at the journeys' gate; the real-time relink then points the tombstone at them,
    hashing only the nodes added since the mark it is given."""
    from personify.journeys.decide import suppressed
    from personify.privacy.hashing import subject_hash
    from personify.privacy.tombstones import relink_new_nodes, tombstoned

    wh, key = warehouse, b"k"
    _load(
        wh,
        "suppressions",
        [
            {
                "subject_hash": subject_hash(key, "email", "Zed@X.org"),
                "kind": "email",
                "reason": "erased",
                "created_at": T0,
            }
        ],
    )
    nodes = [(1, "other@x.org", "c1"), (2, "zed@x.org", "c2"), (3, "+33612345678", "c3")]
    _load(
        wh,
        "identity_nodes",
        [
            {
                "node_id": n,
                "kind": "phone" if value.startswith("+") else "email",
                "value": value,
                "source": "crm",
                "first_seen": T0,
                "last_seen": T0,
                "blocked": False,
                "cluster": n,
                "part": n,
                "customer_id": customer,
            }
            for n, value, customer in nodes
        ],
    )
    assert tombstoned(wh, key, ["c1", "c2", "c3"]) == {"c2"}
    assert suppressed(wh, ["c1", "c2", "c3"]) == set()  # (by customer id only: not linked)
    assert suppressed(wh, ["c1", "c2", "c3"], key) == {"c2"}
    assert suppressed(wh, ["c1", "c2", "c3"], b"another key") == set()
    assert relink_new_nodes(wh, key, 2) == 0  # node 2 is older than the mark
    assert relink_new_nodes(wh, key, 1) == 1
    assert wh.scalar("SELECT customer_id FROM suppressions") == "c2"
    assert relink_new_nodes(wh, key, 1) == 0  # linked already
    assert suppressed(wh, ["c1", "c2", "c3"]) == {"c2"}
    assert consented(wh, ["c2"], purpose="email_marketing") == set()


def test_the_send_gate_lifts_an_erasure_for_consent_granted_after_it(
    warehouse: Warehouse,
) -> None:
    """The journeys' gate follows :func:`consented`: an erasure tombstone older than the
    customer's standing grant for the purpose stops nobody; one newer than the grant, a grant
    for another purpose, a revocation among their rows, or an unsubscribe, bounce or complaint
    (whatever the grant's time) still stop them; without a purpose every suppression stops."""
    from personify.journeys.decide import suppressed

    wh, later = warehouse, T0 + timedelta(days=2)
    tombs = {  # customer → (reason, created_at)
        "back": ("erased", T0),
        "early": ("erased", later + timedelta(days=1)),  # erased again after the grant
        "other": ("erased", T0),  # granted, but for another purpose
        "revoked": ("erased", T0),  # granted after, then revoked under a source id
        "unsub": ("unsubscribed", T0),
        "bounce": ("bounced", T0),
        "complaint": ("complained", T0),
    }
    _load(
        wh,
        "suppressions",
        [
            {
                "subject_hash": f"h-{c}",
                "kind": "email",
                "customer_id": c,
                "reason": r,
                "created_at": at,
            }
            for c, (r, at) in tombs.items()
        ],
    )
    grants = [
        {
            "customer_id": c,
            "purpose": "email_marketing",
            "channel": "email",
            "status": "granted",
            "source": "web",
            "updated_at": later,
        }
        for c in tombs
        if c != "other"
    ]
    grants += [
        {
            "customer_id": "other",
            "purpose": "newsletter",
            "channel": "email",
            "status": "granted",
            "source": "web",
            "updated_at": later,
        },
        {
            "customer_id": "u-revoked",
            "purpose": "email_marketing",
            "channel": "email",
            "status": "revoked",
            "source": "shop",
            "updated_at": later,
        },
    ]
    _load(wh, "consents", grants)
    _load(
        wh,
        "identities",
        [
            {
                "customer_id": "revoked",
                "kind": "user_id",
                "value": "u-revoked",
                "source": "shop",
                "first_seen": T0,
                "last_seen": T0,
            }
        ],
    )
    everyone = sorted(tombs)
    kinds = {"shop": "user_id"}
    assert suppressed(wh, everyone, purpose="email_marketing", source_kinds=kinds) == (
        set(everyone) - {"back"}
    )
    assert consented(wh, everyone, purpose="email_marketing", source_kinds=kinds) == {"back"}
    assert suppressed(wh, everyone) == set(everyone)
