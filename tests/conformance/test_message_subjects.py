"""A sent email's subject line (``messages.subject``) on every backend: it often carries a name
("Hello Annabel"), so with a key ring it is stored encrypted like the other personal columns —
and every reader still shows it: the customer's journey report, ``personify sql`` (masked with
``--mask``), the subject access export; rotation re-encrypts it and erasure removes it."""

from __future__ import annotations

from datetime import timedelta

from tests.conformance.audience_data import arrow_rows
from tests.conformance.journey_support import HELLO, NOW, Shop, events, people, shop

from personify.journeys.report import customer_report
from personify.privacy.crypto import KeyRing, is_encrypted, new_key, rotate
from personify.privacy.erase import erase_subject
from personify.privacy.export import export_subject
from personify.privacy.fields import decrypt_result
from personify.privacy.masking import mask_rows
from personify.warehouse import table

__all__ = ["shop"]  # the fixture, shared with test_journeys

HOUR = timedelta(hours=1)
K1, K2 = f"k1:{new_key()}", f"k2:{new_key()}"


def _sent_to_annabel(shop: Shop, keys: str | None) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/welcome.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: hi}\n",
    )
    if keys is not None:
        shop.configure(f"privacy:\n  encryption_keys: {keys}\n")
    people(shop.wh, {"customer_id": "ann", "first_name": "Annabel"}, consent=["ann"])
    node = {"node_id": 1, "kind": "user_id", "value": "ann", "source": "web", "first_seen": NOW}
    node |= {"last_seen": NOW, "blocked": False, "cluster": 1, "part": 1, "customer_id": "ann"}
    shop.wh.load(table("identity_nodes"), arrow_rows("identity_nodes", [node]))
    events(shop.wh, ("ann", "Signed Up", NOW - HOUR, {}))
    assert shop.run(NOW)["sent"] == 1


def test_a_sent_subject_is_stored_encrypted_and_read_everywhere(shop: Shop) -> None:
    _sent_to_annabel(shop, K1)
    wh, project = shop.wh, shop.session.project
    stored = wh.scalar("SELECT subject FROM messages WHERE customer_id = 'ann'")
    assert is_encrypted(stored) and "Annabel" not in stored

    (message,) = customer_report(wh, "ann")["messages"]  # personify journeys show EMAIL
    assert message["subject"] == "Hello Annabel"

    rows = wh.fetch("SELECT idempotency_key, subject FROM messages")
    shown = decrypt_result(wh, ["idempotency_key", "subject"], rows)  # personify sql
    assert shown[0][1] == "Hello Annabel"
    masked = mask_rows(["idempotency_key", "subject"], shown, sql="SELECT * FROM messages")
    assert "Annabel" not in str(masked[0][1])  # personify sql --mask

    (exported,) = export_subject(wh, project, "user_id:ann")["tables"]["messages"]
    assert exported["subject"] == "Hello Annabel"

    # rotation: a new key first re-encrypts it; the old key can then go
    ring = KeyRing.parse(f"{K2},{K1}")
    assert rotate(wh, ring)["messages.subject"] == 1
    again = wh.scalar("SELECT subject FROM messages WHERE customer_id = 'ann'")
    assert again.startswith("enc1:k2:")
    assert KeyRing.parse(K2).decrypt(again, field="messages.subject") == "Hello Annabel"

    erase_subject(wh, project, "user_id:ann")
    assert wh.scalar("SELECT count(*) FROM messages") == 0


def test_without_a_key_ring_the_subject_stays_plain(shop: Shop) -> None:
    _sent_to_annabel(shop, None)
    assert shop.wh.scalar("SELECT subject FROM messages") == "Hello Annabel"
