"""Destinations (reverse ETL) on every backend, against the real local mock CRM: a push sends
every row once, then only rows that changed; a record the API refuses is isolated, kept as
rejected and sent again once it changes; a push the API stops resumes with nothing lost or
doubled; the state holds no personal data; a bad model is refused before anything is sent."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from tests.conformance import destination_support
from tests.conformance.destination_support import (
    FAST,
    NOW,
    apis,
    consent,
    customers,
    push,
    states,
    url,
)
from tests.conformance.lock_support import lock_thief

from personify import clock
from personify.config import BearerAuth, RestClient, RestDestination, Secret
from personify.demo.mock_apis import TOKEN, MockApis
from personify.destinations import push_destinations, run_name
from personify.sources.schedule import last_runs
from personify.warehouse import table

N = 250
__all__ = ["apis", "url"]  # (the fixtures, imported)
session_for = partial(destination_support.session_for, keys=None)
"""A project of the destinations given, without a key ring."""
MODEL = (
    'SELECT customer_id, email, engagement_score AS "engagement", lifecycle_stage AS "lifecycle" '
    "FROM customers"
)


def crm(url: str, *, model: str = MODEL, token: str = TOKEN, **client: Any) -> RestDestination:
    settings = {**FAST, **client}
    return RestDestination(
        name="crm",
        model=model,
        key="email",
        preset="hubspot_contacts",
        client=RestClient(base_url=url, auth=BearerAuth(token=Secret(token)), **settings),
    )


def test_a_push_sends_what_changed_and_isolates_refused_records(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, N, bad=137)
        first = push(session)
        assert first["error"] is None
        c = first["counts"]
        assert (c["rows_model"], c["rows_changed"], c["rows_sent"], c["rows_rejected"]) == (
            N,
            N,
            N - 1,
            1,
        )
        # the 100-record batch holding the bad address was halved until it stood alone
        assert 3 < c["requests"] <= 3 + 2 * 7
        assert len(apis.pushed) == N - 1 and apis.upserts == N - 1
        assert apis.pushed["c5@x.org"] == {"engagement": 5.0, "lifecycle": "active"}
        wh = session.warehouse
        states = wh.fetch("SELECT status, error FROM destination_state ORDER BY status")
        assert [s for s, _ in states].count("rejected") == 1
        error = next(e for s, e in states if s == "rejected")
        assert "answered 400" in error and "Property values were not valid" in error
        # nothing personal in the state: keys are keyed hashes (the API's answer is kept with
        # addresses masked; this one echoes a value that is no address)
        keys = [k for (k,) in wh.fetch("SELECT key_hash FROM destination_state")]
        assert len(keys) == N and all(re.fullmatch("[0-9a-f]{32}", k) for k in keys)
        assert "@" not in str(states)

        # the same rows again: nothing sent, not even the refused one
        again = push(session)
        assert again["counts"]["rows_changed"] == 0 and "rows_sent" not in again["counts"]
        assert apis.upserts == N - 1

        # one trait changes, the refused address is corrected: those two go
        wh.execute("UPDATE customers SET engagement_score = 99.5 WHERE customer_id = 'cus_5'")
        wh.execute("UPDATE customers SET email = 'c137@x.org' WHERE customer_id = 'cus_137'")
        third = push(session)
        assert (third["counts"]["rows_changed"], third["counts"]["rows_sent"]) == (2, 2)
        assert apis.pushed["c5@x.org"]["engagement"] == 99.5 and "c137@x.org" in apis.pushed
        assert apis.upserts == N + 1
        run = last_runs(wh)[run_name("crm")]
        assert run.status == "succeeded" and run.counts["rows_sent"] == 2


def test_a_push_the_api_stops_resumes_without_losing_or_doubling(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url, max_retries=0)) as session:
        customers(session, N)
        apis.faults.fail_every = 3  # the third request answers 500, and no retry is allowed
        first = push(session)
        assert first["error"] is not None and "answered 500" in first["error"]
        assert first["counts"]["rows_sent"] == 200 and apis.upserts == 200
        run = last_runs(session.warehouse)[run_name("crm")]
        assert run.status == "failed" and "answered 500" in (run.error or "")
        apis.faults.fail_every = 0
        second = push(session)
        assert second["error"] is None
        assert (second["counts"]["rows_changed"], second["counts"]["rows_sent"]) == (50, 50)
        assert apis.upserts == N and len(apis.pushed) == N


def test_retries_ride_out_server_errors(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, N)
        apis.faults.fail_next = 2
        apis.faults.rate_limit_every = 4
        result = push(session)
        assert result["error"] is None and result["counts"]["rows_sent"] == N
        assert result["counts"]["retries"] >= 2 and apis.upserts == N


def test_refused_credentials_stop_the_push(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url, token="wrong")) as session:  # noqa: S106
        customers(session, 10)
        result = push(session)
        assert result["error"] is not None and "answered 401" in result["error"]
        assert result["counts"]["rows_sent"] == 0 and apis.upserts == 0
        assert session.warehouse.scalar("SELECT count(*) FROM destination_state") == 0


def test_a_dry_run_sends_nothing_and_masks_its_sample(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 10)
        result = push(session, dry_run=True)
        assert result["counts"]["rows_changed"] == 10 and len(result["sample"]) == 3
        assert all("@x.org" in r["id"] and not r["id"].startswith("c") for r in result["sample"])
        assert apis.upserts == 0 and apis.data_requests() == 0
        assert session.warehouse.scalar("SELECT count(*) FROM destination_state") == 0
        assert run_name("crm") not in last_runs(session.warehouse)


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("DELETE FROM customers", "only SELECT"),
        ("SELECT customer_id, engagement_score FROM customers", "has no column 'email'"),
        ("SELECT customer_id, 'same@x.org' AS email FROM customers", "another row has too"),
        ("SELECT email FROM no_such_table", "unknown table"),
        (
            "SELECT customer_id, email, CAST(email AS INTEGER) AS n FROM customers",
            "refused the model",
        ),
    ],
)
def test_a_bad_model_is_refused_before_anything_is_sent(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, model: str, said: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url, model=model)) as session:
        customers(session, 5)
        result = push(session)
        assert result["error"] is not None and said in result["error"], result["error"]
        assert apis.data_requests() == 0


def test_people_who_opted_out_of_data_sharing_are_not_pushed(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """The default (``consent: data_sharing``): everyone but those who opted out of data
    sharing (CCPA, Global Privacy Control); the model's customer_id says whose row it is and is
    not sent; an opt-out after a push stops the next ones."""
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 10)
        consent(
            session, [("cus_3", "data_sharing", "revoked"), ("cus_4", "data_sharing", "granted")]
        )
        first = push(session)
        assert first["error"] is None
        assert (first["counts"]["rows_without_consent"], first["counts"]["rows_sent"]) == (1, 9)
        assert "c3@x.org" not in apis.pushed and "c4@x.org" in apis.pushed
        assert apis.pushed["c5@x.org"] == {"engagement": 5.0, "lifecycle": "active"}
        # an opt-out later: the person's row no longer goes out, whatever changes
        consent(session, [("cus_5", "data_sharing", "revoked")])
        session.warehouse.execute("UPDATE customers SET engagement_score = 99")
        again = push(session)
        assert again["counts"]["rows_without_consent"] == 2
        assert again["counts"]["rows_sent"] == 8 and apis.pushed["c5@x.org"]["engagement"] == 5.0


def test_an_opt_in_destination_sends_only_who_granted_it(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """``consent: {purpose: advertising}`` is an opt-in, by the send-time gate's rules: a grant
    is needed, a suppression (an unsubscribe) wins over it, no record means no."""
    from personify.config import DestinationConsent

    ads = crm(url).__class__(
        **{
            **{f: getattr(crm(url), f) for f in crm(url).__struct_fields__},
            "consent": DestinationConsent(purpose="advertising"),
        }
    )
    with session_for(warehouse_url, tmp_path, ads) as session:
        customers(session, 5)
        consent(session, [("cus_1", "advertising", "granted"), ("cus_2", "advertising", "granted")])
        session.warehouse.load(
            table("suppressions"),
            pa.table(
                {
                    "subject_hash": ["h2"],
                    "kind": ["email"],
                    "customer_id": ["cus_2"],
                    "reason": ["unsubscribed"],
                    "created_at": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                }
            ),
        )
        result = push(session)
        assert result["error"] is None
        assert (result["counts"]["rows_without_consent"], result["counts"]["rows_sent"]) == (4, 1)
        assert list(apis.pushed) == ["c1@x.org"]


def test_a_model_without_whose_rows_needs_consent_none(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """A model without customer_id cannot be checked: refused before anything is sent, unless
    the destination says ``consent: none``."""
    model = "SELECT email, engagement_score AS engagement FROM customers"
    with session_for(warehouse_url, tmp_path, crm(url, model=model)) as session:
        customers(session, 3)
        refused = push(session)
        assert "has no column 'customer_id'" in str(refused["error"])
        assert "consent: none" in str(refused["error"]) and apis.upserts == 0
    unchecked = RestDestination(
        name="crm",
        model=model,
        key="email",
        preset="hubspot_contacts",
        consent="none",
        client=crm(url).client,
    )
    with session_for(warehouse_url, tmp_path, unchecked) as session:  # (the same warehouse)
        consent(session, [("cus_1", "data_sharing", "revoked")])
        assert push(session)["counts"]["rows_sent"] == 3


def test_a_push_whose_lock_went_with_its_connection_sends_nothing_more(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the server session holding the push's advisory lock is terminated while the
    API answers its first batch (a restart, a network cut, an idle timeout) and another push
    takes the lock. The first push must not send its next batch beside it: it stops saying so,
    the API took the first batch alone, and once the lock is free a push sends the rest."""
    with (
        session_for(warehouse_url, tmp_path, crm(url)) as session,
        lock_thief(session.warehouse, run_name("crm")) as other,
    ):
        wh = session.warehouse
        customers(session, N)  # three batches of 100
        fault = apis._fault

        def drop_the_lock() -> Any:  # (the API's thread, while it takes the first batch)
            if apis.upserts == 0 and apis.data_requests("batch/upsert") == 1:
                other.steal()  # (and another push starts)
            return fault()

        monkeypatch.setattr(apis, "_fault", drop_the_lock)
        first = push(session)
        assert first["error"] is not None and "lost its lock" in first["error"]
        assert "personify push crm" in first["error"]  # (what to do)
        assert apis.upserts == 100  # the first batch alone: nothing sent without the lock
        assert states(session) == {}  # nor recorded
        run = last_runs(wh)[run_name("crm")]
        assert run.status == "failed" and "lost its lock" in (run.error or "")
        other.release()
        second = push(session)
        assert second["error"] is None and second["counts"]["rows_sent"] == N
        assert len(apis.pushed) == N and states(session) == {"sent": N}


def test_an_unexpected_error_stops_its_destination_alone(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A preset raising something no push expects (a bug; a dropped connection raising
    something else) is that destination's failure — recorded, masked, its type named — and the
    destinations after it still push."""
    from personify.destinations import send

    broken = msgspec.structs.replace(crm(url), name="broken")
    real = send.shaped

    def shaped(d: RestDestination, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if d.name == "broken":
            raise KeyError(f"no field for {rows[0]['email']}")  # (a bug, naming a person: masked)
        return real(d, rows)

    monkeypatch.setattr(send, "shaped", shaped)
    with session_for(warehouse_url, tmp_path, broken, crm(url)) as session:
        customers(session, 10)
        with clock.frozen(NOW):
            first, second = push_destinations(session)
        assert first.destination == "broken" and first.error is not None
        assert "KeyError" in first.error and not re.search(r"c\d+@x\.org", first.error)
        assert second.destination == "crm" and second.error is None
        assert second.counts["rows_sent"] == 10 and len(apis.pushed) == 10
        runs = last_runs(session.warehouse)
        assert runs[run_name("broken")].status == "failed"
        assert "KeyError" in (runs[run_name("broken")].error or "")
        assert runs[run_name("crm")].status == "succeeded"
