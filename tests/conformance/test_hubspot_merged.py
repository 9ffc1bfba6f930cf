"""HubSpot merged two contacts (the survivor holds both addresses): removing either person by
archiving the survivor would archive the other with them — maybe someone else, maybe a record
the destination still sends. Neither removal is sent: an erasure's is stranded (to do at
HubSpot by hand, then forgotten), a record leaving the model is refused and tried again."""

from __future__ import annotations

from pathlib import Path

import msgspec
from tests.conformance.destination_support import apis, session_for, url
from tests.conformance.test_destination_removals import crm
from tests.conformance.test_erasure_destinations import MODEL, _people, _push, _state

from personify.demo.mock_apis import MockApis
from personify.destinations import forget_stranded_removals, stranded_removals
from personify.privacy.erase import erase_subject

__all__ = ["apis", "url"]  # (the fixtures, imported)


def test_an_erased_person_on_a_merged_hubspot_contact_is_not_archived_with_another(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        apis.merged_into = {"bob@x.org": "ann@x.org"}  # (bob's contact merged into ann's)
        erase_subject(wh, session.project, "ann@x.org")  # (the survivor's own address)
        erase_subject(wh, session.project, "bob@x.org")  # (found on the survivor only)
        counts = _push(session, "crm")
        assert counts["rows_erased_removed"] == 0 and counts["rows_erased_remove_rejected"] == 2
        assert apis.archives == 0 and apis.archive_bodies == []
        assert _state(session, "crm") == {"sent": 1, "erased": 2}
        (stranded,) = stranded_removals(wh, session.project)
        assert stranded.records == 2 and "merged" in stranded.why
        assert "--forget-stranded crm" in stranded.message()
        forgotten = forget_stranded_removals(session, "crm", actor="test")
        assert forgotten.records == 2 and _state(session, "crm") == {"sent": 1}


def test_a_record_leaving_the_model_on_a_merged_contact_is_kept_refused(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        apis.merged_into = {"cy@x.org": "bob@x.org"}
        wh.execute("DELETE FROM customers WHERE email = 'bob@x.org'")
        counts = _push(session, "crm")
        assert counts["rows_removed"] == 0 and counts["rows_remove_rejected"] == 1
        assert apis.archives == 0 and "cy@x.org" in apis.pushed
        (error,) = wh.fetch("SELECT error FROM destination_state WHERE status = 'remove_rejected'")
        assert "merged" in str(error[0]) and "bob@" not in str(error[0])
