"""prepare_batch: one fresh read for a whole batch, per-item failures returned in place."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from personify.config import load_project
from personify.delivery import (
    Envelope,
    PrepareFailure,
    prepare,
    prepare_batch,
    project_key,
    verify,
)
from personify.errors import NotFound
from personify.warehouse import Warehouse, table

WHEN = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def cart_variables(n: int = 4) -> dict[str, Any]:
    items = [
        {
            "name": f"Item {i}",
            "url": f"https://shop.example/p/{i}",
            "image_url": f"https://shop.example/i/{i}.png",
            "price": "19.90",
            "quantity": 1 + i % 2,
        }
        for i in range(n)
    ]
    recs = [
        {
            "name": f"Rec {i}",
            "url": f"https://shop.example/p/r{i}",
            "image_url": f"https://shop.example/i/r{i}.png",
            "price": "9.90",
        }
        for i in range(4)
    ]
    return {
        "cart": {"items": items, "url": "https://shop.example/cart/9"},
        "recommendations": recs,
        "discount": {"code": "SAVE-K7Q2", "label": "10% off", "expires_at": "1 March"},
        "currency": "€",
    }


def load(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    names = ["customer_id", "email", "first_name", "last_name"]
    full = [{**{n: r.get(n) for n in names}, "updated_at": WHEN} for r in rows]
    wh.load(table("customers"), pa.Table.from_pylist(full))


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def test_batch_envelopes_and_failures_in_order(warehouse: Warehouse, project_dir: Path) -> None:
    project = load_project(project_dir)
    load(
        warehouse,
        [
            {"customer_id": "c1", "email": "ann@x.org", "first_name": "Ann"},
            {"customer_id": "c2", "email": "zoe@x.org", "first_name": "Zoë", "last_name": "Ü"},
            {"customer_id": "c3", "email": "not an address", "first_name": "Bo"},
        ],
    )
    good = cart_variables()
    items = [
        ("k1", "c1", good),
        ("k2", "c2", good),
        ("k3", "c3", good),
        ("k4", "gone", good),
        ("k5", "c1", {k: v for k, v in good.items() if k != "discount"}),
    ]
    out = prepare_batch(warehouse, project, "abandoned_cart", items, date=WHEN)
    assert [type(r) for r in out] == [Envelope, Envelope, PrepareFailure, PrepareFailure] + [
        PrepareFailure
    ]
    one, two, bad_address, gone, undefined = out
    assert isinstance(one, Envelope) and isinstance(two, Envelope)
    assert (one.key, one.customer_id, one.template) == ("k1", "c1", "abandoned_cart")
    assert isinstance(bad_address, PrepareFailure) and bad_address.kind == "address"
    assert "not an address" not in bad_address.reason  # no personal data in the reason
    assert isinstance(gone, PrepareFailure) and gone.kind == "not_found"
    assert isinstance(undefined, PrepareFailure) and undefined.kind == "render"
    assert "abandoned_cart.liquid:" in undefined.reason and "'discount'" in undefined.reason
    assert undefined.key == "k5" and undefined.customer_id == "c1"

    back = parse(two.raw)
    assert back["To"].addresses[0].display_name == "Zoë Ü"
    assert back["Subject"] == "Zoë, your cart is waiting"
    token = back["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    claim = verify(project_key(project), token)
    assert claim is not None and claim.customer_id == "c2"
    html, text = back.get_body(("html",)), back.get_body(("plain",))
    assert html is not None and text is not None
    assert "SAVE-K7Q2" in html.get_content() and "Rec 3" in text.get_content()
    assert token in html.get_content()  # the body links the same signed token


def test_batch_equals_one_by_one(warehouse: Warehouse, project_dir: Path) -> None:
    project = load_project(project_dir)
    load(warehouse, [{"customer_id": "c1", "email": "ann@x.org", "first_name": "Ann"}])
    env = prepare_batch(warehouse, project, "abandoned_cart", [("k", "c1", cart_variables())])[0]
    alone = prepare(warehouse, project, "abandoned_cart", "c1", cart_variables(), key="k")
    assert isinstance(env, Envelope)
    a, b = parse(env.raw), parse(alone.raw)
    for part in ("html", "plain"):
        pa_, pb = a.get_body((part,)), b.get_body((part,))
        assert pa_ is not None and pb is not None
        assert pa_.get_content() == pb.get_content()
    assert a["Message-ID"] == b["Message-ID"]


def test_batch_reads_profiles_fresh(warehouse: Warehouse, project_dir: Path) -> None:
    project = load_project(project_dir)
    load(warehouse, [{"customer_id": "c1", "email": "ann@x.org", "first_name": "Ann"}])
    items = [("k", "c1", cart_variables())]
    first = prepare_batch(warehouse, project, "abandoned_cart", items)[0]
    warehouse.execute("UPDATE customers SET first_name = ? WHERE customer_id = ?", ["Anna", "c1"])
    second = prepare_batch(warehouse, project, "abandoned_cart", items)[0]
    assert isinstance(first, Envelope) and isinstance(second, Envelope)
    assert first.subject.startswith("Ann,") and second.subject.startswith("Anna,")


def test_broken_or_missing_template(warehouse: Warehouse, project_dir: Path) -> None:
    project = load_project(project_dir)
    load(warehouse, [{"customer_id": "c1", "email": "ann@x.org"}])
    (project_dir / "templates" / "broken.liquid").write_text("---\nsubject: s\n---\n{% if %}")
    out = prepare_batch(warehouse, project, "broken", [("a", "c1", {}), ("b", "c1", {})])
    assert [r.kind for r in out if isinstance(r, PrepareFailure)] == ["render", "render"]
    with pytest.raises(NotFound):
        prepare_batch(warehouse, project, "nope", [("a", "c1", {})])
    assert prepare_batch(warehouse, project, "nope", []) == []


def test_unsubscribe_link_revokes_the_purpose_sent_under(
    warehouse: Warehouse, project_dir: Path
) -> None:
    project = load_project(project_dir)
    load(warehouse, [{"customer_id": "c1", "email": "ann@x.org", "first_name": "Ann"}])
    items = [("k1", "c1", cart_variables())]

    def claimed(out: list[Envelope | PrepareFailure]) -> str:
        envelope = out[0]
        assert isinstance(envelope, Envelope)
        header = parse(envelope.raw)["List-Unsubscribe"]
        claim = verify(project_key(project), header.split("/unsubscribe/")[1].split(">")[0])
        assert claim is not None
        return claim.purpose

    default = prepare_batch(warehouse, project, "abandoned_cart", items, date=WHEN)
    assert claimed(default) == project.config.journeys.purpose == "email_marketing"
    news = prepare_batch(
        warehouse, project, "abandoned_cart", items, date=WHEN, purpose="newsletter"
    )
    assert claimed(news) == "newsletter"


def test_templates_get_the_preference_page_of_the_same_token(
    warehouse: Warehouse, project_dir: Path
) -> None:
    """``{{ preferences_url }}``: the preference page, signed with the same token as the
    email's ``List-Unsubscribe`` link (customer, purpose, message)."""
    (project_dir / "templates" / "prefs.liquid").write_text(
        '---\nsubject: s\nlayout: base\n---\n<p><a href="{{ preferences_url }}">Manage</a></p>\n'
    )
    project = load_project(project_dir)
    load(warehouse, [{"customer_id": "c1", "email": "ann@x.org"}])
    out = prepare_batch(
        warehouse, project, "prefs", [("k1", "c1", {})], date=WHEN, purpose="newsletter"
    )
    envelope = out[0]
    assert isinstance(envelope, Envelope)
    message = parse(envelope.raw)
    token = message["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    text = message.get_body(("plain",))
    assert text is not None
    assert f"http://127.0.0.1:8787/preferences/{token}" in text.get_content()
    claim = verify(project_key(project), token)
    assert claim is not None and (claim.customer_id, claim.purpose) == ("c1", "newsletter")
