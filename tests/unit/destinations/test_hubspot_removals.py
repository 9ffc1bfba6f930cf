"""HubSpot's removals name its record ids (its batch archive takes ``{"id": …}`` only): the ids
are read by the destination's key first, and matched back to the keys as HubSpot stores them."""

from __future__ import annotations

from personify.config import RestClient, RestDestination
from personify.destinations.presets import hubspot_ids, hubspot_merged, hubspot_read, removal_body

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
        "properties": ["email", "hs_additional_emails"],
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


def test_a_merged_contact_is_found_by_each_of_its_addresses() -> None:
    """A contact HubSpot merged with another holds the other's address too: each key found on
    one (as its email or among its other addresses) is named with the survivor's id; a contact
    holding no other address is no merge."""
    answer = {
        "results": [
            {"id": "501", "properties": {"email": "ann@x.org", "hs_additional_emails": "b@x.org"}},
            {"id": "503", "properties": {"email": "c@x.org", "hs_additional_emails": ""}},
        ]
    }
    assert hubspot_merged(CRM, answer, ["ann@x.org", "B@x.org", "c@x.org"]) == {0: "501", 1: "501"}
    assert hubspot_merged(CRM, {"results": [{"id": "1", "properties": {}}]}, ["a@x.org"]) == {}
