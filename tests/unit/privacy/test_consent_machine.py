"""No email without consent: a Hypothesis state machine over consent changes (under customer ids
and source ids, older and newer), merges of customers, suppressions and explicit grants. After
every step the gate (:func:`consented`) and the ``sendable`` view both equal a plain-Python
oracle, and a merge never widens consent: if either side had a revocation, the merged customer
is not allowed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from personify.privacy.consent import consented, record, set_consent, sync_source_kinds
from personify.warehouse import Warehouse, connect, table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
N = 4
PURPOSE = "email_marketing"
_WH: list[Warehouse] = []


def _warehouse() -> Warehouse:
    if not _WH:
        _WH.append(connect("duckdb:///:memory:"))
    wh = _WH[0]
    for name in (
        "customer_ids",
        "identities",
        "consents",
        "consent_history",
        "suppressions",
        "customers",
        "segment_memberships",
        "consent_kinds",
    ):
        wh.execute(f"DELETE FROM {name}")
    return wh


class ConsentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.wh = _warehouse()
        self.parent: dict[str, str] = {}
        self.owner = {f"u{i}": f"c{i}" for i in range(N)}  # shop id → customer holding it
        self.rows: dict[str, tuple[str, datetime]] = {}  # consents key → (status, at)
        self.suppressed: set[str] = set()
        self.tick = 0

    @initialize()
    def world(self) -> None:
        wh = self.wh
        ids = [f"c{i}" for i in range(N)]
        wh.load(
            table("customer_ids"),
            pa.table(
                {
                    "customer_id": ids,
                    "founder": list(range(N)),
                    "founded_at": pa.array([T0] * N, TS),
                    "status": ["active"] * N,
                }
            ),
        )
        wh.load(
            table("identities"),
            pa.table(
                {
                    "customer_id": ids,
                    "kind": ["user_id"] * N,
                    "value": [f"u{i}" for i in range(N)],
                    "source": ["shop"] * N,
                    "first_seen": pa.array([T0] * N, TS),
                    "last_seen": pa.array([T0] * N, TS),
                }
            ),
        )
        wh.load(
            table("customers"),
            pa.table(
                {
                    "customer_id": ids,
                    "email": [f"{c}@x.org" for c in ids],
                    "updated_at": pa.array([T0] * N, TS),
                }
            ),
        )
        wh.load(
            table("segment_memberships"),
            pa.table(
                {"segment": ["all"] * N, "customer_id": ids, "entered_at": pa.array([T0] * N, TS)}
            ),
        )
        sync_source_kinds(wh, {"shop": "user_id"})

    # -- the model
    def current(self, c: str) -> str:
        while c in self.parent:
            c = self.parent[c]
        return c

    def active(self) -> list[str]:
        return [f"c{i}" for i in range(N) if f"c{i}" not in self.parent]

    def keys(self, c: str) -> set[str]:
        ids = {x for x in (f"c{i}" for i in range(N)) if self.current(x) == c}
        return ids | {u for u, owner in self.owner.items() if self.current(owner) == c}

    def allowed(self, c: str) -> bool:
        keys = self.keys(c)
        statuses = [self.rows[k][0] for k in keys if k in self.rows]
        suppressed = any(self.current(s) == c for s in self.suppressed)
        return "granted" in statuses and "revoked" not in statuses and not suppressed

    def at(self, older: bool) -> datetime:
        self.tick += 1
        return T0 + timedelta(hours=self.tick) - (timedelta(days=30) if older else timedelta())

    # -- rules
    @rule(
        key=st.sampled_from([f"c{i}" for i in range(N)] + [f"u{i}" for i in range(N)]),
        status=st.sampled_from(["granted", "revoked"]),
        older=st.booleans(),
    )
    def change(self, key: str, status: str, older: bool) -> None:
        at = self.at(older)
        source = "shop" if key.startswith("u") else "web"
        record(self.wh, subject=key, purpose=PURPOSE, status=status, source=source, at=at)
        if key not in self.rows or self.rows[key][1] <= at:
            self.rows[key] = (status, at)

    @precondition(lambda self: len(self.active()) >= 2)
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        a, b = data.draw(st.permutations(self.active()))[:2]
        either_revoked = any(
            self.rows.get(k, ("", T0))[0] == "revoked" for k in self.keys(a) | self.keys(b)
        )
        wh = self.wh
        wh.execute("UPDATE customer_ids SET merged_into = ? WHERE merged_into = ?", [a, b])
        wh.execute(
            "UPDATE customer_ids SET status = 'merged', merged_into = ? WHERE customer_id = ?",
            [a, b],
        )
        wh.execute("UPDATE identities SET customer_id = ? WHERE customer_id = ?", [a, b])
        wh.execute("DELETE FROM segment_memberships WHERE customer_id = ?", [b])
        wh.execute("DELETE FROM customers WHERE customer_id = ?", [b])
        self.parent[b] = a
        if either_revoked:
            assert consented(wh, [a], purpose=PURPOSE) == set()

    @rule(data=st.data())
    def suppress(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(self.active()))
        self.wh.execute(
            "INSERT INTO suppressions (subject_hash, kind, customer_id, reason, created_at) "
            "VALUES (?, 'customer_id', ?, 'unsubscribed', ?) ON CONFLICT DO NOTHING",
            [f"h-{c}", c, self.at(False)],
        )
        self.suppressed.add(c)

    @rule(data=st.data(), status=st.sampled_from(["granted", "revoked"]))
    def explicit(self, data: st.DataObject, status: str) -> None:
        c = data.draw(st.sampled_from(self.active()))
        at = self.at(False)
        set_consent(
            self.wh, c, purpose=PURPOSE, status=status, at=at, source_kinds={"shop": "user_id"}
        )
        self.rows[c] = (status, at)
        if status == "granted":  # the person's own word supersedes their older revocations
            for k in self.keys(c):
                if k in self.rows and self.rows[k][0] == "revoked" and self.rows[k][1] <= at:
                    self.rows[k] = ("granted", at)

    # -- what must always hold
    @invariant()
    def gate_equals_oracle(self) -> None:
        active = self.active()
        want = {c for c in active if self.allowed(c)}
        assert consented(self.wh, active, purpose=PURPOSE) == want
        view = {
            r[0]
            for r in self.wh.fetch("SELECT customer_id FROM sendable WHERE purpose = ?", [PURPOSE])
        }
        assert view == want


ConsentMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=12, deadline=None)
TestConsentMachine = pytest.mark.slow(ConsentMachine.TestCase)
