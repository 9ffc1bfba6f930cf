"""Ad audiences on every backend (``preset: meta_audience``), against a fake of Meta's Graph API
served on loopback that checks each request as Meta does: people are added with their
identifiers normalized and SHA-256 hashed (known vectors), 10,000 a request at most, removed by
the identifiers they were sent with, rate limits ridden out, Meta's errors surfaced — and only
people who granted advertising and did not opt out of data sharing go."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.conformance.destination_support import (
    META_MODEL,
    NOW,
    consent,
    graph,
    many,
    meta,
    people,
    push,
    session_for,
    sha,
    states,
)
from tests.conformance.destination_support import meta_url as url
from tests.conformance.meta_graph import TOKEN, Graph

from personify import clock
from personify.config import RestDestination, Secret
from personify.destinations import push_destinations
from personify.destinations.erasures import erase_records, forget
from personify.session import Session
from personify.status import status_report

__all__ = ["graph", "url"]  # (the fixtures, imported)
MODEL = META_MODEL

# known vectors: SHA-256 of the normalized values, computed independently of the code
ANN = "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"  # ann@example.com
UK_PHONE = "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"  # 447700900123
MARY_ANN = "16b3f07f0ec2f9dd127b71dc2e6c791b7d93116a1c3bc99d057eaa7a8a077e73"  # maryann
FR_PHONE = "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661"  # 33612345678


def test_people_are_added_with_identifiers_normalized_and_hashed_as_meta_documents(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(
            session,
            [
                {
                    "customer_id": "cus_a",
                    "email": "  Ann@Example.COM ",
                    "phone": "+44 7700 900123",
                    "first_name": "Mary-Ann",
                },
                # a national number, read in the row's country; no email
                {"customer_id": "cus_b", "phone": "06 12 34 56 78", "country": "fr"},
                # nothing that singles a person out: kept as rejected, never sent
                {"customer_id": "cus_c", "email": "not an address", "first_name": "Bo"},
            ],
        )
        graph.invalid_rows = 1  # Meta could not read one row (and does not say which)
        result = push(session)
        assert result["error"] is None, result["error"]
        c = result["counts"]
        # (the halves sent again to find it: Meta read both — kept as sent, the warning stays)
        assert (c["rows_sent"], c["rows_rejected"], c["requests"]) == (2, 1, 3)
        assert c["api_invalid_entries"] == 1
        request, *_ = graph.requests
        assert request == ("POST", ["EMAIL", "PHONE", "FN", "COUNTRY"], 2)
        assert graph.members["EMAIL"] == {ANN}
        assert graph.members["PHONE"] == {UK_PHONE, FR_PHONE}
        assert graph.members["FN"] == {MARY_ANN}
        assert graph.members["COUNTRY"] == {sha("fr")}
        rejected = session.warehouse.fetch(
            "SELECT error FROM destination_state WHERE status = 'rejected'"
        )
        assert len(rejected) == 1 and "email address could not be read" in rejected[0][0]
        assert "not an address" not in rejected[0][0]
        # nothing changed: nothing sent again
        again = push(session)
        assert again["counts"]["rows_changed"] == 0 and len(graph.requests) == 3


def test_batches_hold_at_most_ten_thousand_people(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url, on_remove="ignore")) as session:
        people(session, many(10_001))
        result = push(session)
        assert result["error"] is None, result["error"]
        assert sorted(n for _, _, n in graph.requests) == [1, 10_000]
        assert len(graph.emails()) == 10_001 == result["counts"]["rows_sent"]


def test_people_who_leave_the_model_are_removed_by_what_they_were_sent_with(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
        people(session, many(5))
        assert push(session)["error"] is None
        assert graph.emails() == {sha(f"c{i}@x.org") for i in range(5)}
        # c1 changes address: the new one is added, the old one stays kept for the removal
        session.warehouse.execute(
            "UPDATE customers SET email = 'new1@x.org' WHERE customer_id = 'cus_1'"
        )
        changed = push(session)
        assert changed["counts"]["rows_sent"] == 1 and sha("new1@x.org") in graph.emails()
        # c1 and c2 leave the model, c3 is deleted
        session.warehouse.execute(
            "UPDATE customers SET country = 'gone' WHERE customer_id IN ('cus_1', 'cus_2')"
        )
        session.warehouse.execute("DELETE FROM customers WHERE customer_id = 'cus_3'")
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        assert gone["counts"]["rows_removed"] == 3
        assert graph.emails() == {sha("c0@x.org"), sha("c4@x.org")}  # old c1 address too
        deletes = [r for r in graph.requests if r[0] == "DELETE"]
        assert len(deletes) == 1 and deletes[0][2] == 4
        assert states(session) == {"sent": 2}
        assert push(session)["counts"].get("rows_to_remove") == 0


def test_a_person_whose_identifiers_become_unreadable_is_still_removed_by_the_old_ones(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
        people(session, many(2))
        assert push(session)["error"] is None
        session.warehouse.execute(
            "UPDATE customers SET email = 'broken' WHERE customer_id = 'cus_1'"
        )
        broken = push(session)
        assert broken["counts"]["rows_rejected"] == 1 and sha("c1@x.org") in graph.emails()
        session.warehouse.execute(
            "UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_1'"
        )
        gone = push(session)
        assert gone["error"] is None and gone["counts"]["rows_removed"] == 1
        assert graph.emails() == {sha("c0@x.org")}


HOME = "+44 7700 900123"  # a household's phone (UK_PHONE hashed)


def test_a_removal_leaves_out_what_a_remaining_member_shares(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    # Meta's users: the household's phone is on Bob's account
    graph.users = {
        "ann": {("EMAIL", ANN)},
        "bob": {("EMAIL", sha("bob@x.org")), ("PHONE", UK_PHONE)},
        "dee": {("EMAIL", sha("dee@x.org"))},
    }
    with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@example.com", "phone": HOME},
                {"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME},
                {"customer_id": "cus_c", "phone": HOME},  # the household's phone only
                {"customer_id": "cus_d", "email": "dee@x.org"},
            ],
        )
        assert push(session)["error"] is None
        assert graph.audience == {"ann", "bob", "dee"}
        # Ann and the phone-only record leave; Bob stays
        session.warehouse.execute(
            "UPDATE customers SET country = 'gone' WHERE customer_id IN ('cus_a', 'cus_c')"
        )
        # the dry run says one of the two removals will not be sent
        dry = push(session, dry_run=True)["counts"]
        assert (dry["rows_to_remove"], dry["removals_shared"]) == (2, 1)
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        assert graph.audience == {"bob", "dee"}  # (naming the phone would remove Bob too)
        c = gone["counts"]
        assert (c["rows_to_remove"], c["rows_removed"], c["removals_shared"]) == (2, 1, 1)
        assert [r for r in graph.requests if r[0] == "DELETE"] == [
            ("DELETE", ["EMAIL", "PHONE", "FN", "COUNTRY"], 1)
        ]
        assert graph.members["PHONE"] == {UK_PHONE} and ANN not in graph.emails()
        assert states(session) == {"sent": 2}
        # once Bob leaves too, nobody shares the phone: it is named
        session.warehouse.execute(
            "UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_b'"
        )
        last = push(session)
        assert last["counts"]["rows_removed"] == 1 and last["counts"]["removals_shared"] == 0
        assert graph.audience == {"dee"} and graph.members["PHONE"] == set()


def test_an_erased_persons_removal_leaves_out_what_a_remaining_member_shares(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    graph.users = {
        "ann": {("EMAIL", ANN)},
        "bob": {("EMAIL", sha("bob@x.org")), ("PHONE", UK_PHONE)},
    }
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        wh = session.warehouse
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@example.com", "phone": HOME},
                {"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME},
                {"customer_id": "cus_c", "phone": HOME},
            ],
        )
        assert push(session)["error"] is None and graph.audience == {"ann", "bob"}
        assert erase_records(wh, "ads", ["cus_a", "cus_c"]) == 2
        wh.execute("DELETE FROM customers WHERE customer_id IN ('cus_a', 'cus_c')")
        dry = push(session, dry_run=True)["counts"]
        assert (dry["rows_erased_to_remove"], dry["removals_shared"]) == (2, 1)
        erased = push(session)
        assert erased["error"] is None, erased["error"]
        assert graph.audience == {"bob"} and graph.members["PHONE"] == {UK_PHONE}
        c = erased["counts"]
        assert (c["rows_erased_removed"], c["removals_shared"]) == (1, 1)
        assert states(session) == {"sent": 1}  # (both forgotten)


def test_a_row_meta_could_not_read_is_found_and_holds_no_identifiers(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    """Meta counts the rows it could not read, not which: the halves of the batch are sent again
    until the row stands alone — kept as rejected (not in the audience), its identifiers not
    held (a removal sharing them leaves nothing out for it); the others sent."""
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, many(5))
        graph.unreadable = {sha("c2@x.org")}
        c = push(session)["counts"]
        assert (c["rows_sent"], c["rows_rejected"], c["api_invalid_entries"]) == (4, 1, 1)
        assert states(session) == {"sent": 4, "rejected": 1}
        (error,) = session.warehouse.fetch(
            "SELECT error FROM destination_state WHERE status = 'rejected'"
        )
        assert "could not read" in str(error[0]) and "c2@" not in str(error[0])
        held = session.warehouse.fetch(
            "SELECT s.status, count(*) FROM destination_identifiers i JOIN destination_state s "
            "ON s.destination = i.destination AND s.key_hash = i.key_hash GROUP BY 1"
        )
        assert [tuple(r) for r in held] == [("sent", 4)]
        assert len(graph.requests) <= 1 + 2 * 3  # (halves: ⌈log2 5⌉ levels, two each)


def test_a_refused_person_whose_identifiers_were_not_known_is_not_taken_for_never_added(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    """A record kept before the destination was an audience (a bare key: what it was sent with
    is not known) that Meta then cannot read is kept so still — not as never added: when it
    leaves, its removal is refused as one that cannot name the person (they may be in the
    audience), not dropped as nothing to remove."""
    from personify.destinations.push import key_ring
    from personify.destinations.state import NO_IDENTIFIERS, RECORD_KEY

    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        wh = session.warehouse
        people(session, many(3))
        assert push(session)["error"] is None and states(session) == {"sent": 3}
        ring = key_ring(session.project, session.project.config.destinations[0])
        assert ring is not None
        for h, token in wh.fetch("SELECT key_hash, record_key FROM destination_state"):
            if ring.decrypt(str(token), field=RECORD_KEY).startswith("cus_2\n"):
                bare = ring.encrypt("cus_2", field=RECORD_KEY)  # (as before it was an audience)
                wh.execute(
                    "UPDATE destination_state SET record_key = ? WHERE key_hash = ?", [bare, h]
                )
        graph.unreadable = {sha("new2@x.org")}
        wh.execute("UPDATE customers SET email = 'new2@x.org' WHERE customer_id = 'cus_2'")
        assert push(session)["counts"]["rows_rejected"] == 1
        wh.execute("DELETE FROM customers WHERE customer_id = 'cus_2'")
        after = push(session)
        assert after["error"] is None, after["error"]
        assert states(session) == {"sent": 2, "remove_rejected": 1}
        (error,) = wh.fetch("SELECT error FROM destination_state WHERE status = 'remove_rejected'")
        assert NO_IDENTIFIERS in str(error[0])


def test_the_warning_counts_the_unread_rows_found_among_those_sent(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    """A row found unread is kept rejected, not counted in ``rows_sent``: the warning's "of the N
    rows sent" still counts it (5 went, not 4) and says it was found."""
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, many(5))
        graph.unreadable = {sha("c2@x.org")}
        with clock.frozen(NOW):
            (result,) = push_destinations(session)
        assert result.error is None and result.counts["rows_unread"] == 1
        (warning,) = result.warnings
        assert "Meta could not read 1 of the 5 rows sent" in warning
        assert "1 found, kept rejected" in warning and "c2@" not in warning


def test_a_row_meta_never_added_is_nothing_to_remove(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    """A row Meta could not read (kept rejected with no identifiers: never in the audience) that
    leaves the model, or that an erasure reaches, has nothing to remove there: its state goes —
    not a removal refused at every push (an erasure's stranded, the operator told to remove the
    person from the audience by hand) as if it had been pushed before the destination was an
    audience."""
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        wh = session.warehouse
        people(session, many(5))
        graph.unreadable = {sha("c1@x.org"), sha("c2@x.org")}
        assert push(session)["error"] is None
        assert states(session) == {"sent": 3, "rejected": 2}
        assert erase_records(wh, "ads", ["cus_2"]) == 1
        wh.execute("DELETE FROM customers WHERE customer_id IN ('cus_1', 'cus_2')")
        sent = len(graph.requests)
        after = push(session)
        assert after["error"] is None, after["error"]
        assert states(session) == {"sent": 3}
        assert graph.requests[sent:] == []  # (nothing at Meta to remove)
        c = after["counts"]
        assert c.get("rows_remove_rejected", 0) == c.get("rows_erased_remove_rejected", 0) == 0


def test_rows_meta_could_not_read_are_a_warning_of_the_push_and_in_status(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, many(3))
        graph.invalid_rows = 2
        with clock.frozen(NOW):
            (result,) = push_destinations(session)
        assert result.error is None and result.counts["api_invalid_entries"] == 2
        (warning,) = result.warnings
        assert "Meta could not read 2 of the 3 rows sent" in warning and "ads" in warning
        (status,) = status_report(session)["destinations"]
        assert status["last_run_warnings"] == [warning]
        # the next push reads them all: the warning goes
        people(session, many(1, start=3))
        with clock.frozen(NOW):
            (clean,) = push_destinations(session)
        assert clean.warnings == [] and clean.counts["api_invalid_entries"] == 0
        assert status_report(session)["destinations"][0]["last_run_warnings"] == []


def test_rate_limits_and_transient_errors_are_retried(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, many(3))
        graph.rate_limit_next, graph.transient_next = 2, 1
        result = push(session)
        assert result["error"] is None, result["error"]
        assert result["counts"]["retries"] == 3 and len(graph.emails()) == 3
        assert [e["error"]["code"] for e in graph.refused] == [80003, 80003, 2]


def test_rate_limits_outlasting_the_retries_stop_the_push_and_it_resumes(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    destination = meta(url, client={"max_retries": 1}, batch_size=2)
    with session_for(warehouse_url, tmp_path, destination) as session:
        people(session, many(5))
        graph.rate_limit_next = 0
        first = push(session, dry_run=False)
        assert first["error"] is None
        people(session, many(4, start=5))
        graph.rate_limit_next = 5
        stopped = push(session)
        assert stopped["error"] is not None and "answered 400" in stopped["error"]
        assert "80003" in stopped["error"] and "fbtrace_id" in stopped["error"]
        graph.rate_limit_next = 0
        resumed = push(session)
        assert resumed["error"] is None and resumed["counts"]["rows_sent"] == 4
        assert len(graph.emails()) == 9 and graph.taken("POST") == 9


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"access_token": Secret("expired")}, "code 190"),
        ({"audience_id": "999"}, "does not exist"),
    ],
)
def test_meta_refusing_the_request_stops_the_push_with_its_error(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str, change: dict[str, Any], said: str
) -> None:
    destination = msgspec.structs.replace(meta(url), **change)
    with session_for(warehouse_url, tmp_path, destination) as session:
        people(session, many(3))
        result = push(session)
        error = result["error"]
        assert error is not None and said in error and "OAuthException" in error, error
        assert "fbtrace_id AbCdEfGh123" in error
        assert graph.requests == [] and states(session) == {}


def test_only_people_who_granted_advertising_and_did_not_opt_out_are_sent(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, many(4))
        consent(
            session,
            [
                ("cus_1", "advertising", "revoked"),  # withdrew
                ("cus_2", "data_sharing", "revoked"),  # granted ads, then Global Privacy Control
            ],
        )
        session.warehouse.execute("DELETE FROM consents WHERE customer_id = 'cus_3'")  # none
        result = push(session)
        assert result["error"] is None
        assert result["counts"]["rows_without_consent"] == 3
        assert graph.emails() == {sha("c0@x.org")}
        # withdrawing later removes them from the audience
        consent(session, [("cus_0", "advertising", "revoked")])
        assert push(session)["counts"]["rows_removed"] == 1 and graph.emails() == set()


def test_columns_an_audience_cannot_match_on_are_refused_before_anything_is_sent(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    models = {
        "SELECT customer_id, email, engagement_score FROM customers": "'engagement_score'",
        "SELECT customer_id, first_name FROM customers": "no identifier that singles",
    }
    for model, said in models.items():
        with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
            people(session, many(2))
            result = push(session)
            assert result["error"] is not None and said in result["error"], result["error"]
    assert graph.requests == []


def test_hashes_and_their_inputs_stay_out_of_logs_and_the_dry_run(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, [{"customer_id": "cus_a", "email": "ann@example.com"}])
        dry = push(session, dry_run=True)
        (sample,) = dry["sample"]
        assert list(sample) == ["EMAIL"] and ANN not in str(sample) and graph.requests == []
        graph.rate_limit_next = 1
        with caplog.at_level(logging.DEBUG):
            assert push(session)["error"] is None
        logged = caplog.text
        assert "ann@example.com" not in logged and ANN not in logged and TOKEN not in logged
        kept = session.warehouse.fetch("SELECT record_key, error FROM destination_state")
        assert ANN not in str(kept) and "ann@" not in str(kept)


def test_the_preset_needs_its_audience_and_token() -> None:
    with pytest.raises(ValueError, match="audience_id"):
        RestDestination(name="a", model="SELECT 1", preset="meta_audience")
    with pytest.raises(ValueError, match="access_token"):
        RestDestination(name="a", model="SELECT 1", preset="meta_audience", audience_id="1")
    d = RestDestination(
        name="a",
        model="SELECT 1",
        preset="meta_audience",
        audience_id="1",
        access_token=Secret("t"),
    )
    rule = d.consent_rule
    assert rule is not None and (rule.purpose, rule.channel) == ("advertising", "email")


def _identifiers(session: Session) -> dict[str, int]:
    """``destination_identifiers`` rows per record (by customer: the key's keyed hash)."""
    rows = session.warehouse.fetch(
        "SELECT key_hash, count(*) FROM destination_identifiers GROUP BY 1"
    )
    return {str(h): int(n) for h, n in rows}


def test_shared_identifiers_are_found_by_keyed_hashes_in_the_warehouse(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    graph.users = {
        "ann": {("EMAIL", ANN)},
        "bob": {("EMAIL", sha("bob@x.org")), ("PHONE", UK_PHONE)},
        "eve": {("EMAIL", sha("eve@x.org"))},
    }
    with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
        wh = session.warehouse
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@example.com", "phone": HOME},
                {"customer_id": "cus_e", "email": "eve@x.org"},
            ],
        )
        assert push(session)["error"] is None
        # each record's identifiers, as keyed hashes: never the value sent, nor its input
        assert sorted(_identifiers(session).values()) == [1, 2]
        stored = str(wh.fetch("SELECT * FROM destination_identifiers"))
        assert ANN not in stored and UK_PHONE not in stored and "ann@" not in stored
        # Bob joins with the household's phone as Ann leaves: the same push adds him first,
        # so Ann's removal leaves the phone out
        people(session, [{"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME}])
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_a'")
        both = push(session)
        assert both["error"] is None, both["error"]
        assert (both["counts"]["rows_sent"], both["counts"]["rows_removed"]) == (1, 1)
        assert graph.audience == {"bob", "eve"} and graph.members["PHONE"] == {UK_PHONE}
        assert len(_identifiers(session)) == 2  # (Ann's went with her record)


def test_records_kept_before_their_identifiers_were_hashed_are_hashed_once(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    graph.users = {"bob": {("EMAIL", sha("bob@x.org")), ("PHONE", UK_PHONE)}}
    with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
        wh = session.warehouse
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@example.com", "phone": HOME},
                {"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME},
                {"customer_id": "cus_c", "email": "c@x.org"},
                {"customer_id": "cus_d", "email": "d@x.org"},
            ],
        )
        assert push(session)["error"] is None
        # as a warehouse migrated from before: no hashes kept, no tag (or another key's tag)
        wh.execute("DELETE FROM destination_identifiers")
        wh.execute("UPDATE destination_state SET identifiers_key = NULL")
        wh.execute(
            "UPDATE destination_state SET identifiers_key = 'another key' "
            "WHERE key_hash IN (SELECT key_hash FROM destination_state LIMIT 1)"
        )
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_a'")
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        assert gone["counts"]["rows_removed"] == 1 and graph.audience == {"bob"}
        assert graph.members["PHONE"] == {UK_PHONE}  # (Bob's, found once hashed)
        tags = wh.fetch("SELECT DISTINCT identifiers_key FROM destination_state")
        assert len(tags) == 1 and tags[0][0] not in (None, "another key")
        assert len(_identifiers(session)) == 3
        # hashed once: a record whose state no longer decrypts is not read again
        wh.execute(
            "UPDATE destination_state SET record_key = 'enc1:k1:AAAA' WHERE key_hash IN "
            "(SELECT key_hash FROM destination_state ORDER BY key_hash LIMIT 1)"
        )
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id = 'cus_b'")
        last = push(session)
        assert (
            last["error"] is None
            and last["counts"]["rows_removed"] + last["counts"].get("rows_remove_rejected", 0) == 1
        )


def test_an_erasure_drops_the_persons_identifier_hashes(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(url)) as session:
        people(session, many(3))
        assert push(session)["error"] is None and len(_identifiers(session)) == 3
        erase_records(session.warehouse, "ads", ["cus_0"])
        forget(session.warehouse, "ads", ["cus_1"])
        assert len(_identifiers(session)) == 1


def test_a_dry_run_writes_no_identifier_hashes_yet_counts_shared_removals(
    warehouse_url: str, tmp_path: Path, graph: Graph, url: str
) -> None:
    model = MODEL + " WHERE country IS NULL OR country <> 'gone'"
    graph.users = {"bob": {("EMAIL", sha("bob@x.org")), ("PHONE", UK_PHONE)}}
    with session_for(warehouse_url, tmp_path, meta(url, model=model)) as session:
        wh = session.warehouse
        people(
            session,
            [
                {"customer_id": "cus_a", "email": "ann@example.com", "phone": HOME},
                {"customer_id": "cus_b", "email": "bob@x.org", "phone": HOME},
                {"customer_id": "cus_c", "phone": HOME},  # the household's phone only
            ],
        )
        assert push(session)["error"] is None
        # as a warehouse migrated from before: no hashes kept, no tag — a push hashes them
        # once; a dry run must find what is shared without writing them
        wh.execute("DELETE FROM destination_identifiers")
        wh.execute("UPDATE destination_state SET identifiers_key = NULL")
        wh.execute("UPDATE customers SET country = 'gone' WHERE customer_id IN ('cus_a', 'cus_c')")

        def stored() -> tuple[object, ...]:
            return (
                wh.fetch("SELECT * FROM destination_identifiers ORDER BY 1, 2, 3"),
                wh.fetch("SELECT * FROM destination_state ORDER BY key_hash"),
            )

        before = stored()
        for _ in range(2):  # (twice: the second finds nothing left over by the first)
            dry = push(session, dry_run=True)
            assert dry["error"] is None, dry["error"]
            assert (dry["counts"]["rows_to_remove"], dry["counts"]["removals_shared"]) == (2, 1)
            assert stored() == before
        gone = push(session)
        assert gone["error"] is None, gone["error"]
        c = gone["counts"]
        assert (c["rows_removed"], c["removals_shared"]) == (1, 1)
        assert graph.audience == {"bob"} and graph.members["PHONE"] == {UK_PHONE}
