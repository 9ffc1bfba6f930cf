"""HubSpot's removals name its record ids (its batch archive takes ``{"id": …}`` only): the ids
are read by the destination's key first, and matched back to the keys as HubSpot stores them."""

from __future__ import annotations

from personify.config import RestClient, RestDestination
from personify.destinations.presets import hubspot_ids, hubspot_read, removal_body

CRM = RestDestination(
    name="crm",
    model="SELECT customer_id, email FROM customers",
    key="email",
    preset="hubspot_contacts",
    on_remove="delete",
    client=RestClient(base_url="http://127.0.0.1:1"),
)


def test_the_archive_body_names_record_ids_only() -> None:
    assert removal_body(CRM, ["501", "502"]) == {"inputs": [{"id": "501"}, {"id": "502"}]}


def test_the_read_asks_for_the_ids_by_the_key() -> None:
    assert hubspot_read(CRM, ["a@x.org"]) == {
        "idProperty": "email",
        "properties": ["email"],
        "inputs": [{"id": "a@x.org"}],
    }


def test_ids_are_matched_back_to_the_keys_hubspot_holds() -> None:
    answer = {
        "status": "COMPLETE",
        "results": [
            {"id": "502", "properties": {"email": "b@x.org"}},
            {"id": "501", "properties": {"email": "ann@x.org"}},  # (HubSpot lower-cases)
            {"id": "509", "properties": {"email": "stranger@x.org"}},
            {"properties": {"email": "c@x.org"}},  # (no id: ignored)
        ],
        "errors": [{"category": "OBJECT_NOT_FOUND", "context": {"ids": ["c@x.org"]}}],
    }
    keys = ["Ann@X.org", "b@x.org", "c@x.org"]
    assert hubspot_ids(CRM, answer, keys) == {0: "501", 1: "502"}
    # two keys differing by case alone: only the exact one is matched
    assert hubspot_ids(CRM, answer, ["ann@x.org", "ANN@x.org"]) == {0: "501"}
    assert hubspot_ids(CRM, None, keys) == {} and hubspot_ids(CRM, {"results": 3}, keys) == {}
