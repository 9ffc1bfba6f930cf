"""Google Ads Customer Match (``preset: google_ads_audience``) on every backend, against a fake
of the Google Ads API and Google's token endpoint served on loopback: the refresh-token grant,
an OfflineUserDataJob created, its operations added (emails and phones normalized as Google
documents and hashed: known vectors), run — people acknowledged only once it ran — partial
failures rejecting only the people they name, a whole postal address sent as ``addressInfo``
(and a partial one left out, counted), removals by the identifiers people were sent with, quota
and concurrency errors retried."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from tests.conformance.destination_support import (
    GOOGLE_MODEL,
    ads,
    consent,
    google,
    many,
    people,
    push,
    session_for,
    sha,
    states,
)
from tests.conformance.destination_support import ads_url as url
from tests.conformance.google_ads import CUSTOMER, Ads, address_member

from personify.config import RestDestination, Secret
from personify.session import Session

__all__ = ["ads", "url"]  # (the fixtures, imported)
MODEL = GOOGLE_MODEL
# known vectors: SHA-256 of the values normalized by Google's rules, computed independently
GMAIL = "c1a222ae1fca88014d03eef4e45c3dd3785f2be3f454078836a3557761df0746"  # annsmith@gmail.com
UK_PHONE = "a8acc3a90a7b4e4dc65e93db9240ed26523050ef754d63b75b5161de76781436"  # +447700900123


def test_people_go_through_a_job_created_filled_and_run(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, google(url)) as session:
        people(
            session,
            [
                {
                    "customer_id": "cus_a",
                    "email": " Ann.Smith@GMail.com ",
                    "phone": "07700 900123",
                    "country": "GB",
                },
                {"customer_id": "cus_b", "email": "b@x.org"},
                {"customer_id": "cus_c", "email": "nope", "phone": "12"},  # nothing readable
            ],
        )
        result = push(session)
        assert result["error"] is None, result["error"]
        c = result["counts"]
        assert (c["rows_sent"], c["rows_rejected"], c["jobs_run"]) == (2, 1, 1)
        assert ads.members == {GMAIL, UK_PHONE, sha("b@x.org")}
        assert [m for m, _ in ads.requests] == ["create", "addOperations", "run"]
        assert ads.tokens == 1 and CUSTOMER in ads.ran[0]
        error = session.warehouse.scalar(
            "SELECT error FROM destination_state WHERE status = 'rejected'"
        )
        assert (
            "email address" in str(error)
            and "phone number" in str(error)
            and "nope" not in str(error)
        )
        # nothing changed: no job at all
        again = push(session)
        assert again["counts"]["rows_changed"] == 0 and len(ads.requests) == 3


def test_a_partial_failure_rejects_only_the_people_it_names(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, google(url)) as session:
        people(session, many(5))
        ads.refuse = {sha("c3@x.org")}
        result = push(session)
        assert result["error"] is None, result["error"]
        assert (result["counts"]["rows_sent"], result["counts"]["rows_rejected"]) == (4, 1)
        assert ads.members == {sha(f"c{i}@x.org") for i in (0, 1, 2, 4)}
        (error,) = [
            e
            for (e,) in session.warehouse.fetch(
                "SELECT error FROM destination_state WHERE status = 'rejected'"
            )
        ]
        assert "SHA256 encoded value is malformed" in error and sha("c3@x.org") not in error
        assert states(session) == {"sent": 4, "rejected": 1}


def test_a_person_google_never_added_is_nothing_to_remove(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    """A person kept rejected with no identifiers (Google refused them: never in the list) who
    leaves the model has nothing to remove: their state goes, not a removal refused at every
    push as one 'pushed before the destination was an audience'."""
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    with session_for(warehouse_url, tmp_path, google(url, model=model)) as session:
        people(session, many(5))
        ads.refuse = {sha("c3@x.org")}
        assert push(session)["error"] is None
        assert states(session) == {"sent": 4, "rejected": 1}
        session.warehouse.execute(
            "UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_3'"
        )
        sent = len(ads.requests)
        after = push(session)
        assert after["error"] is None, after["error"]
        assert states(session) == {"sent": 4}
        assert ads.requests[sent:] == []  # (nothing in the list to remove)
        assert after["counts"].get("rows_remove_rejected", 0) == 0


def test_people_are_acknowledged_only_once_their_job_ran(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, google(url, client={"max_retries": 0})) as session:
        people(session, many(3))
        ads.fail_runs = 1
        failed = push(session)
        assert failed["error"] is not None and "answered 500" in failed["error"]
        assert ads.members == set() and states(session) == {}
        resumed = push(session)
        assert resumed["error"] is None and resumed["counts"]["rows_sent"] == 3
        assert len(ads.members) == 3 and len(ads.ran) == 1


def test_people_who_leave_are_removed_by_every_identifier_they_were_sent_with(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    with session_for(warehouse_url, tmp_path, google(url, model=model)) as session:
        people(session, many(4))
        assert push(session)["error"] is None
        session.warehouse.execute(
            "UPDATE customers SET email = 'new1@x.org' WHERE customer_id = 'cus_1'"
        )
        assert push(session)["counts"]["rows_sent"] == 1
        assert {sha("c1@x.org"), sha("new1@x.org")} <= ads.members
        session.warehouse.execute(
            "UPDATE customers SET country = 'gone' WHERE customer_id IN ('cus_1', 'cus_2')"
        )
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        assert gone["counts"]["rows_removed"] == 2
        assert ads.members == {sha("c0@x.org"), sha("c3@x.org")}
        assert states(session) == {"sent": 2}


def test_quota_and_concurrent_modification_errors_are_retried(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, google(url)) as session:
        people(session, many(2))
        ads.quota_next, ads.concurrent_next = 1, 2
        result = push(session)
        assert result["error"] is None, result["error"]
        assert result["counts"]["retries"] == 3 and len(ads.members) == 2


def test_a_refused_request_stops_the_push_with_googles_error(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    destination = msgspec.structs.replace(google(url), user_list_id="999")
    with session_for(warehouse_url, tmp_path, destination) as session:
        people(session, many(2))
        result = push(session)
        error = result["error"]
        assert error is not None and "Invalid user list" in error and "INVALID_ARGUMENT" in error
        assert ads.members == set() and states(session) == {}


def test_only_people_who_granted_advertising_are_sent(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, google(url)) as session:
        people(session, many(3))
        consent(
            session, [("cus_1", "advertising", "revoked"), ("cus_2", "data_sharing", "revoked")]
        )
        result = push(session)
        assert result["counts"]["rows_without_consent"] == 2
        assert ads.members == {sha("c0@x.org")}


def test_the_preset_needs_its_account_list_token_and_oauth() -> None:
    base = {"name": "g", "model": "SELECT 1", "preset": "google_ads_audience"}
    with pytest.raises(ValueError, match="ads_customer_id"):
        RestDestination(**base)
    with pytest.raises(ValueError, match="developer_token"):
        RestDestination(**base, ads_customer_id="1", user_list_id="2")
    with pytest.raises(ValueError, match="oauth2_refresh_token"):
        RestDestination(**base, ads_customer_id="1", user_list_id="2", developer_token=Secret("d"))


ADDRESS_MODEL = (
    "SELECT c.customer_id, c.email, c.first_name, c.last_name, c.country, p.postal_code "
    "FROM customers c LEFT JOIN postal p ON p.customer_id = c.customer_id "
    "WHERE c.city IS NULL OR c.city <> 'gone'"
)


def postal(session: Session, codes: dict[str, str]) -> None:
    wh = session.warehouse
    wh.execute("CREATE TABLE IF NOT EXISTS postal (customer_id VARCHAR, postal_code VARCHAR)")
    for customer_id, code in codes.items():
        wh.execute("INSERT INTO postal VALUES (?, ?)", [customer_id, code])


def test_a_whole_postal_address_goes_as_address_info_and_a_partial_one_is_left_out(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, google(url, model=ADDRESS_MODEL)) as session:
        people(
            session,
            [
                {
                    "customer_id": "cus_a",
                    "email": "a@x.org",
                    "first_name": " Mary-Ann ",
                    "last_name": "O'Brien",
                    "country": "uk",
                },
                # no email: matched by the address alone
                {
                    "customer_id": "cus_b",
                    "first_name": "Zoë",
                    "last_name": "Pérez  Díaz",
                    "country": "SG",
                },
                # no last name: the address is left out, the email goes
                {"customer_id": "cus_c", "email": "c@x.org", "first_name": "Bo", "country": "FR"},
                # a country that cannot be read and no email: nothing to match on
                {
                    "customer_id": "cus_d",
                    "first_name": "Al",
                    "last_name": "Li",
                    "country": "Narnia",
                },
            ],
        )
        postal(session, {"cus_a": " WC2H  8LG ", "cus_b": "018956", "cus_c": "75001", "cus_d": "1"})
        dry = push(session, dry_run=True)
        shown = str(dry["sample"])
        assert "addressInfo" in shown and "WC2H" not in shown and sha("maryann") not in shown
        result = push(session)
        assert result["error"] is None, result["error"]
        c = result["counts"]
        assert (c["rows_sent"], c["rows_rejected"], c["rows_address_incomplete"]) == (3, 1, 2)
        mary = address_member(sha("maryann"), sha("obrien"), "GB", "WC2H 8LG")
        zoe = address_member(sha("zoë"), sha("pérez díaz"), "SG", "018956")
        assert ads.members == {sha("a@x.org"), mary, zoe, sha("c@x.org")}
        error = session.warehouse.scalar(
            "SELECT error FROM destination_state WHERE status = 'rejected'"
        )
        assert "country could not be read" in str(error) and "postal address" in str(error)
        assert "Narnia" not in str(error)
        # who leaves is removed by the address they were sent with
        session.warehouse.execute("UPDATE customers SET city = 'gone' WHERE customer_id = 'cus_b'")
        gone = push(session)
        assert gone["error"] is None and gone["counts"]["rows_removed"] == 1
        assert ads.members == {sha("a@x.org"), mary, sha("c@x.org")}


def test_part_of_a_postal_address_is_refused_before_anything_is_sent(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    model = "SELECT customer_id, email, first_name, country FROM customers"
    with session_for(warehouse_url, tmp_path, google(url, model=model)) as session:
        people(session, many(2))
        result = push(session)
        error = result["error"]
        assert error is not None and "part of a postal address" in error, error
        assert "missing: last_name, postal_code" in error
    assert ads.requests == []


HOME = "+44 7700 900123"  # a household's phone (UK_PHONE hashed)


def test_a_removal_leaves_out_what_a_remaining_member_shares(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    # Google's users: the household's phone is on Bob's account
    ads.users = {
        "ann": {sha("ann@x.org")},
        "bob": {sha("bob@x.org"), UK_PHONE},
        "dee": {sha("dee@x.org")},
    }
    with session_for(warehouse_url, tmp_path, google(url, model=model)) as session:
        wh = session.warehouse
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@x.org", "phone": HOME},
                {"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME},
                {"customer_id": "cus_c", "phone": HOME},  # the household's phone only
                {"customer_id": "cus_d", "email": "dee@x.org"},
            ],
        )
        assert push(session)["error"] is None
        assert ads.audience == {"ann", "bob", "dee"}
        # Ann and the phone-only record leave; Bob stays
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id IN ('cus_a', 'cus_c')")
        dry = push(session, dry_run=True)["counts"]  # (it says one will not be sent)
        assert (dry["rows_to_remove"], dry["removals_shared"]) == (2, 1)
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        assert ads.audience == {"bob", "dee"}  # (naming the phone would remove Bob too)
        c = gone["counts"]
        assert (c["rows_to_remove"], c["rows_removed"], c["removals_shared"]) == (2, 1, 1)
        assert UK_PHONE in ads.members and sha("ann@x.org") not in ads.members
        assert states(session) == {"sent": 2}
        # once Bob leaves too, nobody shares the phone: it is named
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_b'")
        last = push(session)
        assert last["counts"]["rows_removed"] == 1 and last["counts"]["removals_shared"] == 0
        assert ads.audience == {"dee"} and UK_PHONE not in ads.members


def test_only_what_google_took_is_held_against_a_removal(
    warehouse_url: str, tmp_path: Path, ads: Ads, url: str
) -> None:
    """A record Google refused holds nothing it was refused with: a leaving member's removal
    still names the phone they shared (nobody in the list holds it). One refused after Google
    took it still holds what Google took (the list keeps it): that stays out of a removal."""
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    ads.users = {
        "ann": {sha("ann@x.org")},
        "bob": {sha("bob@x.org"), UK_PHONE},
        "cy": {sha("cy@x.org")},
        "dee": {sha("dee@x.org")},
    }
    with session_for(warehouse_url, tmp_path, google(url, model=model)) as session:
        wh = session.warehouse
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@x.org", "phone": HOME},
                {"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME},
                {"customer_id": "cus_c", "email": "cy@x.org"},
                {"customer_id": "cus_d", "email": "dee@x.org", "phone": HOME},
            ],
        )
        ads.refuse = {sha("bob@x.org")}  # Bob (and the household's phone with him) refused
        first = push(session)
        assert (first["counts"]["rows_sent"], first["counts"]["rows_rejected"]) == (3, 1)
        assert ads.audience == {"ann", "bob", "cy", "dee"}  # (Ann's and Dee's phone is Bob's)
        # Cy, taken, now sends the phone too and is refused: the list still holds Cy's email
        people(session, [{"customer_id": "cus_c", "email": "cy@x.org", "phone": HOME}])
        ads.refuse = {sha("cy@x.org")}
        assert push(session)["counts"]["rows_rejected"] == 1
        # Ann and Dee leave: nobody staying was taken with the phone (Bob refused, Cy's phone
        # refused), so their removals name it
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id IN ('cus_a', 'cus_d')")
        dry = push(session, dry_run=True)["counts"]
        assert (dry["rows_to_remove"], dry["removals_shared"]) == (2, 0)
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        assert (gone["counts"]["rows_removed"], gone["counts"]["removals_shared"]) == (2, 0)
        assert UK_PHONE not in ads.members and sha("cy@x.org") in ads.members
        # Cy leaves: removed by the email Google took (the refused phone was never Cy's there)
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_c'")
        ads.refuse = set()
        assert push(session)["counts"]["rows_removed"] == 1
        assert sha("cy@x.org") not in ads.members and "cy" not in ads.audience
