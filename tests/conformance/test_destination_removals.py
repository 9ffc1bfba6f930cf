"""Destinations v2 on every backend, against the real local mock APIs: records that leave the
model are removed at the API when the destination says so (``on_remove: delete``) — acknowledged
like upserts, their keys kept encrypted, never by plain text — and records an API refuses inside
a 2xx answer (HubSpot's 207 Multi-Status, a generic ``errors_path``) are rejected one by one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
from tests.conformance.destination_support import (
    FAST,
    KEYS,
    apis,
    customers,
    push,
    session_for,
    states,
    url,
)

from personify.config import (
    BearerAuth,
    RestClient,
    RestDestination,
    Secret,
)
from personify.demo.mock_apis import TOKEN, MockApis
from personify.destinations import RECORD_KEY
from personify.privacy.crypto import KeyRing, new_key, rotate
from personify.session import Session

N = 120
ACTIVE = (
    "SELECT customer_id, email, engagement_score AS engagement FROM customers "
    "WHERE lifecycle_stage = 'active'"
)
__all__ = ["apis", "url"]  # (the fixtures, imported)


def crm(url: str, *, on_remove: str = "delete", **client: Any) -> RestDestination:
    settings = {**FAST, **client}
    return RestDestination(
        name="crm",
        model=ACTIVE,
        key="email",
        preset="hubspot_contacts",
        on_remove=on_remove,  # type: ignore[arg-type]
        client=RestClient(base_url=url, auth=BearerAuth(token=Secret(TOKEN)), **settings),
    )


def leave(session: Session, *numbers: int) -> None:
    """Customers ``c<number>`` leave the model: churned (no longer selected) or, every other
    one, deleted."""
    for k, i in enumerate(numbers):
        if k % 2:
            session.warehouse.execute("DELETE FROM customers WHERE customer_id = ?", [f"cus_{i}"])
        else:
            session.warehouse.execute(
                "UPDATE customers SET lifecycle_stage = 'churned' WHERE customer_id = ?",
                [f"cus_{i}"],
            )


def test_records_leaving_the_model_are_removed_at_the_api(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, N)
        first = push(session)
        assert first["error"] is None and first["counts"]["rows_sent"] == N
        assert first["counts"]["rows_to_remove"] == 0 and first["counts"]["rows_removed"] == 0
        # the keys are kept encrypted: nothing personal in the state
        wh = session.warehouse
        kept = [str(k) for (k,) in wh.fetch("SELECT record_key FROM destination_state")]
        assert len(kept) == N and all(k.startswith("enc1:k1:") for k in kept)
        assert "@" not in str(wh.fetch("SELECT * FROM destination_state"))

        leave(session, *range(10, 20))
        dry = push(session, dry_run=True)
        assert dry["counts"]["rows_to_remove"] == 10 and dry["counts"]["rows_changed"] == 0
        assert len(dry["removals"]) == 3
        assert all("@x.org" in k and not re.match(r"c1\d@", k) for k in dry["removals"])
        assert apis.archives == 0 and apis.data_requests("archive") == 0

        ids = {apis.record_ids[f"c{i}@x.org"] for i in range(10, 20)}  # (HubSpot's own)
        second = push(session)
        assert second["error"] is None, second["error"]
        assert (second["counts"]["rows_removed"], second["counts"]["rows_sent"]) == (10, 0)
        assert second["counts"]["requests"] == 2  # one batch read (their ids), one archive
        assert apis.archives == 10 and "c10@x.org" not in apis.pushed
        # HubSpot's batch archive names record ids, as it documents: {"inputs": [{"id": …}]}
        (body,) = apis.archive_bodies
        assert list(body) == ["inputs"] and all(list(one) == ["id"] for one in body["inputs"])
        assert {one["id"] for one in body["inputs"]} == ids
        assert len(apis.pushed) == N - 10
        assert states(session) == {"sent": N - 10}

        # nothing left to do; a removed customer coming back is pushed as new
        third = push(session)
        assert third["counts"]["rows_to_remove"] == 0 and third["counts"]["rows_changed"] == 0
        wh.execute("UPDATE customers SET lifecycle_stage = 'active' WHERE customer_id = 'cus_10'")
        back = push(session)
        assert back["counts"]["rows_sent"] == 1 and "c10@x.org" in apis.pushed
        assert apis.archives == 10 and states(session) == {"sent": N - 9}


def test_rotated_keys_still_name_the_records(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 10)
        push(session)
        fresh = f"k2:{new_key()}"
        counts = rotate(session.warehouse, KeyRing.parse(f"{fresh},{KEYS}"))
        assert counts[RECORD_KEY] == 10
    with session_for(warehouse_url, tmp_path, crm(url), keys=fresh) as session:  # k1 gone
        tokens = session.warehouse.fetch("SELECT record_key FROM destination_state")
        assert all(str(t).startswith("enc1:k2:") for (t,) in tokens)
        leave(session, 4, 5)
        assert push(session)["counts"]["rows_removed"] == 2 and apis.archives == 2


def test_a_key_that_changes_is_upserted_then_the_old_one_removed(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 5)
        push(session)
        session.warehouse.execute(
            "UPDATE customers SET email = 'new3@x.org' WHERE customer_id = 'cus_3'"
        )
        moved = push(session)
        assert (moved["counts"]["rows_sent"], moved["counts"]["rows_removed"]) == (1, 1)
        assert "new3@x.org" in apis.pushed and "c3@x.org" not in apis.pushed
        assert states(session) == {"sent": 5}


def test_ignore_keeps_records_and_no_key(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url, on_remove="ignore")) as session:
        customers(session, 20)
        push(session)
        leave(session, 1, 2)
        second = push(session)
        assert "rows_to_remove" not in second["counts"] and second["counts"]["rows_changed"] == 0
        assert apis.archives == 0 and len(apis.pushed) == 20
        wh = session.warehouse
        assert wh.scalar("SELECT count(record_key) FROM destination_state") == 0

    # switching to delete: records pushed without their key are sent once more, to learn it;
    # the two that left before cannot be named and stay
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        switched = push(session)
        assert switched["counts"]["rows_changed"] == 18 and switched["counts"]["rows_removed"] == 0
        assert session.warehouse.scalar("SELECT count(record_key) FROM destination_state") == 18
        assert push(session)["counts"]["rows_changed"] == 0
        leave(session, 5)
        assert push(session)["counts"]["rows_removed"] == 1 and apis.archives == 1


def test_removals_the_api_stops_resume_without_losing_or_doubling(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    destination = crm(url, max_retries=0)
    with session_for(warehouse_url, tmp_path, destination) as session:
        customers(session, 250)
        push(session)
        leave(session, *range(250))  # everyone leaves: 3 archive requests of ≤ 100
        # the second archive answers 500, no retry (each archive follows a read of its ids)
        apis.faults.fail_every = apis._count + 4
        stopped = push(session, allow_removals=True)  # (past max_removals: checked)
        assert stopped["error"] is not None and "answered 500" in stopped["error"]
        assert stopped["counts"]["rows_removed"] == 100 and apis.archives == 100
        assert states(session) == {"sent": 150}
        apis.faults.fail_every = 0
        resumed = push(session, allow_removals=True)
        assert resumed["error"] is None and resumed["counts"]["rows_removed"] == 150
        assert apis.archives == 250 and apis.pushed == {} and states(session) == {}


def test_retries_ride_out_server_errors_on_removals(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 30)
        push(session)
        leave(session, *range(30))
        apis.faults.fail_next = 1
        apis.faults.unavailable_next = 1
        apis.faults.retry_after = 0
        done = push(session)
        assert done["error"] is None and done["counts"]["rows_removed"] == 30
        assert done["counts"]["retries"] == 2 and apis.archives == 30


def test_a_refused_removal_is_kept_and_tried_again(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 10)
        push(session)
        wh = session.warehouse
        # a kept key moved to another row names another record: it is not sent
        ring = KeyRing.parse(KEYS)
        kept = wh.fetch("SELECT key_hash, record_key FROM destination_state ORDER BY key_hash")
        (a, ka), (b, kb) = [
            (h, k) for h, k in kept if ring.decrypt(k, field=RECORD_KEY) != "c3@x.org"
        ][:2]
        for h, k in ((a, kb), (b, ka)):
            wh.execute("UPDATE destination_state SET record_key = ? WHERE key_hash = ?", [k, h])
        wh.execute("UPDATE customers SET lifecycle_stage = 'churned'")
        apis.refuse_archive = frozenset({"c3@x.org"})
        refused = push(session)
        assert refused["error"] is None
        assert refused["counts"]["rows_remove_rejected"] == 3
        assert refused["counts"]["rows_removed"] == 7
        errors = dict(
            wh.fetch(
                "SELECT key_hash, error FROM destination_state WHERE status = 'remove_rejected'"
            )
        )
        assert len(errors) == 3 and "@" not in str(errors)
        assert "cannot be read" in errors[a] and "cannot be read" in errors[b]
        assert sum("cannot archive" in e for e in errors.values()) == 1
        assert apis.archives == 7 and "c3@x.org" in apis.pushed
        # tried again at the next push (the altered keys still cannot be used)
        apis.refuse_archive = frozenset()
        again = push(session)
        assert again["counts"]["rows_removed"] == 1 and "c3@x.org" not in apis.pushed
        assert states(session) == {"remove_rejected": 2}
        # back in the model: every record is pushed again, the two unremovable ones included
        # (their keys kept anew), though their rows did not change
        wh.execute("UPDATE customers SET lifecycle_stage = 'active'")
        back = push(session)
        assert back["counts"]["rows_sent"] == 10 and states(session) == {"sent": 10}
        assert len(apis.pushed) == 10


def test_a_hubspot_read_without_results_removes_nobody(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    # the batch read answered 200 without a body: every key "held by nobody" counted as
    # archived, and its state was dropped, while HubSpot kept the contacts
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 10)
        push(session)
        leave(session, *range(10))
        apis.read_answers_nothing = True
        refused = push(session, allow_removals=True)
        assert refused["error"] is None
        assert refused["counts"]["rows_removed"] == 0
        assert refused["counts"]["rows_remove_rejected"] == 10
        assert apis.archives == 0 and len(apis.pushed) == 10
        apis.read_answers_nothing = False
        again = push(session, allow_removals=True)
        assert again["counts"]["rows_removed"] == 10 and apis.pushed == {}


def test_hubspot_207_rejects_only_the_records_it_names(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    apis.multi_status = True
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 250, bad=137)
        first = push(session)
        c = first["counts"]
        assert first["error"] is None
        assert (c["rows_sent"], c["rows_rejected"], c["requests"]) == (249, 1, 3)  # no halving
        assert apis.upserts == 249
        (error,) = [
            str(e) for (e,) in session.warehouse.fetch(
                "SELECT error FROM destination_state WHERE status = 'rejected'"
            )
        ]  # fmt: skip
        assert "Property values were not valid" in error
        assert push(session)["counts"]["rows_changed"] == 0


def generic(url: str) -> RestDestination:
    return RestDestination(
        name="crm",
        model="SELECT customer_id AS id, customer_id, email FROM customers "
        "WHERE lifecycle_stage = 'active'",
        key="id",
        path="/generic/records",
        errors_path="failures",
        on_remove="delete",
        delete_path="/generic/records/{key}",
        delete_method="DELETE",
        batch_size=50,
        client=RestClient(
            base_url=url, auth=BearerAuth(token=Secret(TOKEN)), requests_per_second=1000.0
        ),
    )


def test_a_generic_api_names_refused_records_and_removes_one_by_one(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, generic(url)) as session:
        customers(session, N, bad=7)
        first = push(session)
        c = first["counts"]
        assert first["error"] is None
        assert (c["rows_sent"], c["rows_rejected"], c["requests"]) == (N - 1, 1, 3)
        assert len(apis.records) == N - 1 and "cus_7" not in apis.records
        leave(session, 1, 2, 3)
        del apis.records["cus_3"]  # gone at the API already: a 404 is what a removal wants
        second = push(session)
        assert second["counts"]["rows_removed"] == 3 and second["counts"]["requests"] == 3
        assert apis.archives == 2 and not {"cus_1", "cus_2"} & set(apis.records)
        assert states(session) == {"sent": N - 4, "rejected": 1}


def test_a_key_in_the_removal_path_is_masked_in_what_is_kept(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    by_email = msgspec.structs.replace(
        generic(url),
        model="SELECT customer_id, email AS id FROM customers WHERE lifecycle_stage = 'active'",
        client=msgspec.structs.replace(generic(url).client, max_retries=0),
    )
    with session_for(warehouse_url, tmp_path, by_email) as session:
        customers(session, 5)
        push(session)
        assert "c1@x.org" in apis.records
        leave(session, 1)
        apis.faults.refuse_next = 1  # DELETE /generic/records/c1%40x.org answers 400
        refused = push(session)
        assert refused["counts"]["rows_remove_rejected"] == 1
        (error,) = [
            str(e)
            for (e,) in session.warehouse.fetch(
                "SELECT error FROM destination_state WHERE status = 'remove_rejected'"
            )
        ]
        assert "answered 400" in error and "%40x.org" in error and "c1" not in error
        apis.faults.fail_next = 1  # a 500, no retry: the push stops, its error kept
        stopped = push(session, allow_removals=True)  # (past max_removals: checked)
        assert stopped["error"] is not None and "answered 500" in stopped["error"]
        assert "c1" not in stopped["error"] and "c1@x.org" in apis.records
        assert push(session)["counts"]["rows_removed"] == 1 and "c1@x.org" not in apis.records


def test_a_model_that_lost_its_rows_removes_nothing_until_allowed(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """``max_removals`` (default 10 %, never fewer than 100): a push that would remove more —
    a broken filter emptied the model — sends its upserts, removes nothing and says why; once
    checked, ``allow_removals`` removes them."""
    with session_for(warehouse_url, tmp_path, crm(url)) as session:
        customers(session, 250)
        assert push(session)["counts"]["rows_sent"] == 250
        leave(session, *range(40))  # 40 of 250: within 100
        assert push(session)["counts"]["rows_removed"] == 40
        session.warehouse.execute("UPDATE customers SET lifecycle_stage = 'oops'")
        held = push(session)
        assert "would remove 210 of the 210 records" in str(held["error"])
        assert "--allow-removals" in str(held["error"])
        assert "rows_removed" not in held["counts"] and apis.archives == 40
        assert states(session) == {"sent": 210}
        allowed = push(session, allow_removals=True)
        assert allowed["error"] is None and allowed["counts"]["rows_removed"] == 210
        assert states(session) == {}
