"""``POST /webhooks/esp/{provider}`` in-process: payloads signed by the official Standard Webhooks
library, SendGrid's ECDSA scheme with a key made here, Postmark's Basic credentials; hard bounces
and complaints become suppressions once, everything else is ignored, forgeries change nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from standardwebhooks.webhooks import Webhook

from personify.config import load_project
from personify.delivery.events import SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP, parse
from personify.journeys.decide import suppressed
from personify.server.app import create_app
from personify.session import Session
from personify.warehouse import table

WHEN = datetime(2026, 2, 1, tzinfo=UTC)
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(
    SG_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()

SENDGRID_EVENTS = [
    {"email": "ann@x.org", "event": "delivered", "sg_event_id": "e1"},
    {"email": "Ann@X.org", "event": "bounce", "type": "bounce", "sg_event_id": "e2"},
    {"email": "bob@x.org", "event": "bounce", "type": "blocked", "sg_event_id": "e3"},
    {"email": "cy@x.org", "event": "spamreport", "sg_event_id": "e4", "customer_id": "c3"},
    {"email": "gone@nowhere.org", "event": "bounce", "type": "bounce", "sg_event_id": "e5"},
    {"email": "dee@x.org", "event": "open", "sg_event_id": "e6"},
]


@pytest.fixture
def session(project_dir: Path) -> Iterator[Session]:
    yml = project_dir / "personify.yml"
    text = yml.read_text()
    webhooks = (
        "delivery:\n  kind: outbox\n  path: outbox\n  webhooks:\n"
        f"    - {{provider: standard, secret: '{WHSEC}'}}\n"
        f"    - {{provider: sendgrid, secret: '{SG_PUBLIC}'}}\n"
        "    - {provider: postmark, secret: 'hooks:pw-123'}\n"
    )
    yml.write_text(text.replace("delivery:\n  kind: outbox\n  path: outbox\n", webhooks))
    s = Session(load_project(project_dir))
    s.warehouse.load(
        table("customers"),
        pa.Table.from_pylist(
            [
                {"customer_id": f"c{i}", "email": e, "updated_at": WHEN}
                for i, e in enumerate(["ann@x.org", "bob@x.org", "ann@x.org", "cy@x.org"])
            ]
        ),
    )
    try:
        yield s
    finally:
        s.close()


def post(session: Session, provider: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    app = create_app(session, instance="inst-1")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(f"/webhooks/esp/{provider}", content=body, headers=headers)

    return asyncio.run(go())


def standard_headers(
    body: bytes, msg_id: str = "msg_1", at: datetime | None = None
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    signature = Webhook(WHSEC).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def sendgrid_headers(body: bytes, key: ec.EllipticCurvePrivateKey = SG_KEY) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SENDGRID_SIGNATURE: base64.b64encode(sig).decode(), SENDGRID_TIMESTAMP: ts}


def stored(session: Session) -> list[tuple[Any, ...]]:
    return session.warehouse.fetch(
        "SELECT kind, customer_id, reason, source FROM suppressions "
        "ORDER BY kind, customer_id NULLS LAST, reason"
    )


def test_standard_webhooks_sendgrid_events(session: Session) -> None:
    body = json.dumps(SENDGRID_EVENTS).encode()
    got = post(session, "standard", body, standard_headers(body))
    assert got.status_code == 200, got.text
    assert got.json() == {
        "received": 6,
        "suppressing": 3,
        "written": 6,
        "engagement": 0,  # no personify_key: not a message Personify sent
        "recorded": 0,
        "attributed": 0,
    }
    assert stored(session) == [
        ("customer_id", "c0", "bounced", "esp:standard"),
        ("customer_id", "c2", "bounced", "esp:standard"),  # both hold the address
        ("customer_id", "c3", "complained", "esp:standard"),
        ("email", "c0", "bounced", "esp:standard"),
        ("email", "c3", "complained", "esp:standard"),
        ("email", None, "bounced", "esp:standard"),  # nobody holds it (yet)
    ]
    assert suppressed(session.warehouse, ["c0", "c1", "c2", "c3"]) == {"c0", "c2", "c3"}
    # redelivered (same id, a new signature): nothing new
    again = post(session, "standard", body, standard_headers(body))
    assert again.json()["written"] == 0 and again.json()["suppressing"] == 3


def test_sendgrid_signature(session: Session) -> None:
    body = json.dumps(SENDGRID_EVENTS[3:4]).encode()
    got = post(session, "sendgrid", body, sendgrid_headers(body))
    assert got.status_code == 200, got.text
    assert got.json()["written"] == 2
    other = ec.generate_private_key(ec.SECP256R1())
    forged = post(session, "sendgrid", body, sendgrid_headers(body, other))
    assert forged.status_code == 401
    tampered = post(session, "sendgrid", body.replace(b"cy@", b"ann@"), sendgrid_headers(body))
    assert tampered.status_code == 401
    assert suppressed(session.warehouse, ["c0", "c3"]) == {"c3"}


def test_postmark_basic_auth(session: Session) -> None:
    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "ID": 42,
        "Email": "bob@x.org",
        "Metadata": {"customer_id": "c1"},
    }
    soft = {**bounce, "Type": "SoftBounce", "ID": 43}
    complaint = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "Email": "ann@x.org"}
    auth = {"authorization": "Basic " + base64.b64encode(b"hooks:pw-123").decode()}
    for payload in (bounce, soft, complaint):
        got = post(session, "postmark", json.dumps(payload).encode(), auth)
        assert got.status_code == 200, got.text
    assert suppressed(session.warehouse, ["c0", "c1", "c2", "c3"]) == {"c0", "c1", "c2"}
    reasons = {r[1]: r[2] for r in stored(session) if r[0] == "customer_id"}
    assert reasons == {"c0": "complained", "c1": "bounced", "c2": "complained"}
    wrong = {"authorization": "Basic " + base64.b64encode(b"hooks:nope").decode()}
    assert post(session, "postmark", json.dumps(bounce).encode(), wrong).status_code == 401
    assert post(session, "postmark", json.dumps(bounce).encode(), {}).status_code == 401


def test_refusals_change_nothing(session: Session) -> None:
    body = json.dumps(SENDGRID_EVENTS).encode()
    headers = standard_headers(body)
    bad = dict(headers, **{"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()})
    assert post(session, "standard", body, bad).status_code == 401
    stale = standard_headers(body, at=datetime(2026, 1, 1, tzinfo=UTC))
    assert post(session, "standard", body, stale).status_code == 401
    assert post(session, "standard", body, {}).status_code == 401
    assert post(session, "mailgun", body, headers).status_code == 404
    junk = b"not json"
    assert post(session, "standard", junk, standard_headers(junk)).status_code == 400
    assert stored(session) == []


def test_parse_ignores_what_does_not_suppress() -> None:
    received, events = parse("sendgrid", json.dumps(SENDGRID_EVENTS).encode())
    assert received == 6
    assert [(e.reason, e.event_id) for e in events] == [
        ("bounced", "e2"),
        ("complained", "e4"),
        ("bounced", "e5"),
    ]
    _, pm = parse("postmark", b'{"RecordType": "Delivery", "Email": "a@x.org"}')
    assert pm == []
    _, unsub = parse(
        "standard",
        b'[{"RecordType": "SubscriptionChange", "SuppressSending": true, "Recipient": "a@x.org"}]',
    )
    assert [e.reason for e in unsub] == ["unsubscribed"]
