"""``personify render`` on a project made by ``personify init``, as a user runs it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pyarrow as pa

from personify.config import load_project
from personify.delivery import verify
from personify.warehouse import connect, table
from tests.e2e.cli import CART, RECS, personify, personify_json


def load_customer(root: Path) -> None:
    now = datetime(2026, 2, 1, tzinfo=UTC)
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.load(
            table("customers"),
            pa.Table.from_pylist(
                [
                    {
                        "customer_id": "c-42",
                        "email": "zoe@x.org",
                        "first_name": "Zoë <3",
                        "last_name": "Ünal\r\nBcc: evil@x.org",
                        "preferred_categories": '["Shoes"]',
                        "updated_at": now,
                    }
                ]
            ),
        )


def test_render_prints_what_would_be_sent(project_dir: Path, tmp_path: Path) -> None:
    load_customer(project_dir)
    p = str(project_dir)
    var_args = [
        "--var",
        f"cart={json.dumps(CART)}",
        "--var",
        f"recommendations={json.dumps(RECS)}",
        "--var",
        'discount={"code": "SAVE-K7Q2", "label": "10% off", "expires_at": "1 March"}',
        "--var",
        "currency=€",
    ]
    doc = personify_json(
        "render", "abandoned_cart", "--customer", "ZOE@x.org", "--project", p, *var_args
    )
    assert doc["customer_id"] == "c-42"
    assert doc["subject"] == "Zoë <3, your cart is waiting"
    assert "Zoë &lt;3" in doc["html"] and "SAVE-K7Q2" in doc["text"] and "Rec 3" in doc["text"]
    assert doc["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Bcc" not in doc["headers"]
    token = doc["headers"]["List-Unsubscribe"].split("/unsubscribe/")[1].split(">")[0]
    claim = verify(load_project(project_dir).config.signing_key.reveal().encode(), token)  # type: ignore[union-attr]
    assert claim is not None and claim.customer_id == "c-42"

    out = tmp_path / "cart.html"
    done = personify(
        "render", "abandoned_cart", "-c", "c-42", "--out", str(out), "--project", p, *var_args
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == doc["html"]
    plain = personify("render", "abandoned_cart", "-c", "c-42", "--project", p, *var_args)
    assert plain.stdout == doc["html"]


def test_render_fails_clearly(project_dir: Path) -> None:
    load_customer(project_dir)
    p = str(project_dir)
    missing = personify("render", "abandoned_cart", "--customer", "c-42", "--project", p)
    assert missing.returncode == 1
    assert "abandoned_cart.liquid:" in missing.stderr and "'cart'" in missing.stderr
    assert missing.stdout == ""
    nobody = personify("render", "re_engagement", "--customer", "no@x.org", "--project", p)
    assert nobody.returncode == 1 and "no@x.org" in nobody.stderr
    nothing = personify("render", "nope", "--customer", "c-42", "--project", p)
    assert nothing.returncode == 1 and "templates: abandoned_cart, " in nothing.stderr
    assert "re_engagement" in nothing.stderr


def test_mime_parses_back(project_dir: Path) -> None:
    """The raw message is a valid email (the CLI shows its parts; journeys send it)."""
    from personify.delivery import OutboxTransport, prepare
    from personify.session import open_session

    load_customer(project_dir)
    variables = {
        "categories": ["Shoes"],
        "new_arrivals": [{**r, "category": "Shoes"} for r in RECS],
        "shop_url": "https://s",
        "currency": "€",
    }
    with open_session(project_dir) as session:
        env = prepare(
            session.warehouse,
            session.project,
            "re_engagement",
            "c-42",
            variables,
            key="re_engagement:send:c-42:2026-02",
        )
    sent = OutboxTransport(project_dir / "outbox").send(env)
    back = BytesParser(policy=policy.default).parsebytes(Path(sent.location).read_bytes())
    assert back["To"].addresses[0].addr_spec == "zoe@x.org" and back["Bcc"] is None
    assert back["From"].addresses[0].display_name == "My Shop"
    assert back.get_body(("plain",)) is not None and back.get_body(("html",)) is not None
