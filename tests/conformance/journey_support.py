"""What the journey suites share: a scaffolded project on the backend under test (``shop``,
a :class:`Shop`), customers, consents, products and events loaded straight through Arrow, and
the emails the outbox holds. A module uses the fixture by importing it (and naming it in its
``__all__``)."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.audience_data import arrow_rows, load_consents, load_customers

from personify import clock
from personify.journeys import deliver, project_journeys, run_journeys
from personify.scaffold import init_project
from personify.session import Session, open_session
from personify.warehouse import Warehouse, table

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@dataclass
class Shop:
    root: Path
    session: Session

    @property
    def wh(self) -> Warehouse:
        return self.session.warehouse

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def segment(self, name: str) -> None:
        """Define the segment ``name`` (journeys refuse segments the project lacks); tests load
        its memberships themselves."""
        self.write(f"segments/{name}.sql", f"-- name: {name}\nSELECT customer_id FROM customers\n")

    def configure(self, yaml: str) -> None:
        """Append ``yaml`` to personify.yml and reopen the session."""
        file = self.root / "personify.yml"
        file.write_text(file.read_text(encoding="utf-8") + "\n" + yaml, encoding="utf-8")
        self.session.close()
        self.session = open_session(self.root)

    def run(self, at: datetime) -> dict[str, int]:
        """Journeys then delivery at ``at``; the send counts by status."""
        with clock.frozen(at):
            project = self.session.project
            journeys = project_journeys(project)
            run_journeys(self.wh, project, journeys)
            counts = deliver(self.wh, project, journeys, now=at)
        return {
            "sent": counts.sent,
            "held": counts.held,
            "deferred": counts.deferred,
            **counts.statuses,
        }

    def messages(self) -> dict[str, tuple[str, str, str | None]]:
        """customer_id:journey → (status, step, error), one per message (asserts uniqueness)."""
        rows = self.wh.fetch("SELECT customer_id, journey, status, step, error FROM messages")
        out: dict[str, tuple[str, str, str | None]] = {}
        for customer, journey, status, step, error in rows:
            key = f"{customer}:{journey}"
            assert key not in out, f"two messages for {key}"
            out[key] = (status, step, error)
        return out

    def outbox(self) -> list[Path]:
        return sorted((self.root / "outbox").glob("*.eml"))


@pytest.fixture
def shop(warehouse_url: str, tmp_path: Path) -> Iterator[Shop]:
    root = tmp_path / "shop"
    init_project(root)
    file = root / "personify.yml"
    text = file.read_text(encoding="utf-8").replace(
        "warehouse: duckdb:///warehouse.duckdb", f"warehouse: {warehouse_url}"
    )
    text = text[: text.index("# Journeys (journeys/*.yml)")]  # tests append their own section
    file.write_text(text, encoding="utf-8")
    for path in (root / "journeys").glob("*.yml"):
        path.unlink()
    shop = Shop(root, open_session(root))
    try:
        yield shop
    finally:
        shop.session.close()


def people(wh: Warehouse, *rows: dict[str, Any], consent: Sequence[str] = ()) -> None:
    load_customers(
        wh,
        [{"email": f"{r['customer_id']}@example.com", "first_name": "Ann", **r} for r in rows],
    )
    load_consents(wh, [(c, "email_marketing", "granted") for c in consent])


def events(wh: Warehouse, *rows: tuple[str, str, datetime, dict[str, Any]]) -> None:
    data = [
        {
            "message_id": f"m{i}-{customer}-{name}",
            "type": "track",
            "event": name,
            "customer_id": customer,
            "user_id": customer,
            "timestamp": at,
            "received_at": at,
            "source": "web",
            "properties": json.dumps(props),
        }
        for i, (customer, name, at, props) in enumerate(rows)
    ]
    wh.load(table("events"), arrow_rows("events", data))


def products(
    wh: Warehouse, count: int = 8, *, category: str | None = None, created: datetime = NOW
) -> None:
    """Products ``p1`` … ``p<count>`` in stock, ``p<i>`` created ``i`` days before ``created``,
    in ``category`` (by default Shoes and Bags in turn)."""
    rows = [
        {
            "product_id": f"p{i}",
            "name": f"Product {i}",
            "category": category or ("Shoes" if i % 2 else "Bags"),
            "price": 10.0 + i,
            "currency": "EUR",
            "stock": 5,
            "url": f"https://shop.example/p{i}",
            "image_url": f"https://shop.example/p{i}.jpg",
            "created_at": created - timedelta(days=i),
            "source": "test",
        }
        for i in range(1, count + 1)
    ]
    wh.load(table("products"), arrow_rows("products", rows))


def added(customer: str, cart: str, at: datetime, product: str = "p1") -> tuple[Any, ...]:
    props = {"cart_id": cart, "product_id": product, "name": "Product 1", "price": 11.0}
    return (customer, "Product Added", at, {**props, "quantity": 1})


def parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


HELLO = """---
subject: "Hello {{ customer.first_name }}"
layout: none
---
<p>Hello {{ customer.first_name }}, {{ note }}</p>
"""


def signed_up(shop: Shop, ids: list[str], *, batch_size: int) -> Warehouse:
    """A news journey sending ``hello`` to each of ``ids`` (consenting, signed up an hour ago),
    ``batch_size`` emails a delivery batch."""
    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/news.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: news}\n",
    )
    shop.configure(f"journeys:\n  batch_size: {batch_size}\n")
    wh = shop.wh
    people(wh, *({"customer_id": c} for c in ids), consent=ids)
    events(wh, *((c, "Signed Up", NOW - HOUR, {}) for c in ids))
    return wh
