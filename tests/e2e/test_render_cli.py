"""``personify render`` on a project made by ``personify init``, as a user runs it."""

from __future__ import annotations

import json
import re
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
    assert "c-42 has no open cart in journey abandoned_cart" in missing.stderr
    assert "abandoned_cart.liquid" in missing.stderr and "'cart'" in missing.stderr
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


# ------------------------------------------------------- as the journey sends it (no --var)
SENT_AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
NOW = "2026-03-02T12:00:00Z"


def load_shop(root: Path) -> None:
    """Products, three consenting customers and their carts: ``a``'s cart (three hours old) is
    emailed at NOW, ``c``'s (half an hour old) is still waiting, ``z`` has none."""
    from datetime import timedelta

    from tests.conformance.audience_data import arrow_rows, load_consents, load_customers
    from tests.conformance.journey_support import products

    hour = timedelta(hours=1)
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        products(wh, created=SENT_AT)
        ids = ["a", "c", "z"]
        load_customers(
            wh, [{"customer_id": c, "email": f"{c}@example.com", "first_name": "Ann"} for c in ids]
        )
        load_consents(wh, [(c, "email_marketing", "granted") for c in ids])
        added = [
            ("a", "ca", SENT_AT - 3 * hour, "p1"),
            ("a", "ca", SENT_AT - 2 * hour, "p2"),
            ("c", "cc", SENT_AT - 0.5 * hour, "p3"),
        ]
        events = [
            {
                "message_id": f"m{i}",
                "type": "track",
                "event": "Product Added",
                "customer_id": who,
                "user_id": who,
                "timestamp": at,
                "received_at": at,
                "source": "web",
                "properties": json.dumps({"cart_id": cart, "product_id": product}),
            }
            for i, (who, cart, at, product) in enumerate(added)
        ]
        wh.load(table("events"), arrow_rows("events", events))


def send_journeys(root: Path) -> None:
    """The journeys and delivery stages of ``personify run`` at NOW (the loaded customers
    stay as loaded: a full run would rebuild them from sources this test has none of)."""
    from personify import clock
    from personify.journeys import deliver, project_journeys, run_journeys
    from personify.session import open_session

    with open_session(root) as session, clock.frozen(SENT_AT):
        journeys = project_journeys(session.project)
        run_journeys(session.warehouse, session.project, journeys)
        deliver(session.warehouse, session.project, journeys, now=SENT_AT)


def _parts(eml: Path) -> tuple[str, str, str]:
    message = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    html, text = message.get_body(("html",)), message.get_body(("plain",))
    assert html is not None and text is not None
    # the outbox holds the message as sent on the wire (CRLF line ends)
    crlf = [str(p.get_content()).replace("\r\n", "\n") for p in (html, text)]
    return str(message["Subject"]), crlf[0], crlf[1]


def _state(root: Path) -> list[object]:
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        return [
            wh.fetch(f"SELECT * FROM {name} ORDER BY ALL")
            for name in ("messages", "discount_codes", "journey_instances")
        ]


def test_render_shows_the_email_the_journey_sent(project_dir: Path) -> None:
    """No --var: the journey's variables (cart, recommendations, the code issued for that
    message) are computed for the customer, and the preview is the email the send wrote."""
    load_shop(project_dir)
    p = str(project_dir)
    send_journeys(project_dir)
    [eml] = sorted((project_dir / "outbox").glob("abandoned_cart_*.eml"))
    subject, html, text = _parts(eml)
    before = _state(project_dir)

    doc = personify_json(
        "render", "abandoned_cart", "--customer", "a@example.com", "--project", p, "--now", NOW
    )
    # the sent email but for the tracking and unsubscribe tokens: a preview's are signed for a
    # key no message has, so a click on a preview records nothing as the customer's click, open
    # or unsubscribe event (engagement's unknown-message rule)
    tokens = re.compile(r"/(c|o|unsubscribe)/[A-Za-z0-9_.\-=]+")
    assert doc["subject"] == subject
    assert tokens.sub("/token", doc["html"]) == tokens.sub("/token", html)
    assert tokens.sub("/token", doc["text"]) == tokens.sub("/token", text)
    assert tokens.findall(doc["html"]) and doc["html"] != html
    assert doc["journey"]["name"] == "abandoned_cart" and doc["journey"]["trigger_key"] == "ca"
    assert doc["journey"]["message_status"] == "sent"
    assert doc["journey"]["discount_placeholder"] is False
    assert "Product 1" in text and "Product 2" in text and "PREVIEW-CODE" not in text

    plain = personify("render", "abandoned_cart", "-c", "a", "--project", p, "--now", NOW)
    assert plain.returncode == 0, plain.stderr
    assert tokens.sub("/token", plain.stdout) == tokens.sub("/token", html)
    assert "journey abandoned_cart, step remind" in plain.stderr

    # --var still wins over the journey's variable
    currency = personify_json(
        "render", "abandoned_cart", "-c", "a", "--var", "currency=USD ", "--project", p,
        "--now", NOW,
    )  # fmt: skip
    assert "USD 11.00" in currency["text"] and "€" not in currency["text"]

    re_engagement = personify_json("render", "re_engagement", "-c", "a", "--project", p)
    assert re_engagement["subject"] and re_engagement["journey"]["trigger_key"] is None
    assert _state(project_dir) == before  # a preview writes nothing


def test_render_of_a_cart_not_sent_yet_shows_a_placeholder_code(project_dir: Path) -> None:
    load_shop(project_dir)
    p = str(project_dir)
    send_journeys(project_dir)
    before = _state(project_dir)
    doc = personify_json("render", "abandoned_cart", "-c", "c", "--project", p, "--now", NOW)
    assert doc["journey"]["trigger_key"] == "cc"
    assert doc["journey"]["message_status"] == "pending"
    assert doc["journey"]["discount_placeholder"] is True
    assert "PREVIEW-CODE" in doc["text"] and "Product 3" in doc["text"]
    assert "https://shop.example/cart/cc" in doc["text"]
    assert _state(project_dir) == before  # no code issued or reserved

    plain = personify("render", "abandoned_cart", "-c", "c", "--project", p, "--now", NOW)
    assert plain.returncode == 0 and "placeholder" in plain.stderr


def test_render_for_a_customer_without_a_cart_says_so(project_dir: Path) -> None:
    load_shop(project_dir)
    p = str(project_dir)
    send_journeys(project_dir)
    done = personify("render", "abandoned_cart", "-c", "z@example.com", "--project", p)
    assert done.returncode == 1 and done.stdout == ""
    assert "undefined variable" not in done.stderr
    assert "customer z has no open cart in journey abandoned_cart" in done.stderr
    assert "'cart'" in done.stderr and "--var" in done.stderr
    assert "a, c" in done.stderr or "c, a" in done.stderr  # who does have one


def test_render_says_whether_a_send_now_would_go_out(project_dir: Path) -> None:
    """Beside the email, the preview says what the send's own checks would do with it now: a
    marketer is not shown an email its customer would never get without being told."""
    load_shop(project_dir)
    p = str(project_dir)
    send_journeys(project_dir)
    doc = personify_json("render", "abandoned_cart", "-c", "c", "--project", p, "--now", NOW)
    assert doc["send_now"] == {"outcome": "send", "reason": None, "until": None}

    with connect(f"duckdb:///{project_dir / 'warehouse.duckdb'}") as wh:  # c opts out
        wh.execute("UPDATE consents SET status = 'revoked' WHERE customer_id = 'c'")
    doc = personify_json("render", "abandoned_cart", "-c", "c", "--project", p, "--now", NOW)
    assert doc["send_now"]["outcome"] == "skipped_consent"
    assert "no consent for email_marketing" in doc["send_now"]["reason"]
    plain = personify("render", "abandoned_cart", "-c", "c", "--project", p, "--now", NOW)
    assert plain.returncode == 0 and "<html" in plain.stdout.lower()
    assert "a send now would not go out (skipped_consent)" in plain.stderr


def test_render_journey_option_names_a_journey_that_sends_the_template(project_dir: Path) -> None:
    load_shop(project_dir)
    send_journeys(project_dir)
    p = str(project_dir)
    nope = personify("render", "abandoned_cart", "-c", "c", "--journey", "nope", "--project", p)
    assert nope.returncode == 2 and "no journey 'nope'" in nope.stderr
    assert "abandoned_cart" in nope.stderr  # the journeys there are
    other = personify("render", "abandoned_cart", "-c", "c", "-j", "re_engagement", "--project", p)
    assert other.returncode == 2 and "does not send abandoned_cart" in other.stderr
    doc = personify_json(
        "render", "abandoned_cart", "-c", "c", "-j", "abandoned_cart", "--project", p,
        "--now", NOW,
    )  # fmt: skip
    assert doc["journey"]["name"] == "abandoned_cart" and doc["journey"]["trigger_key"] == "cc"


def test_render_shows_the_locale_variant_chosen_for_the_customer(project_dir: Path) -> None:
    with connect(f"duckdb:///{project_dir / 'warehouse.duckdb'}") as wh:
        rows = [
            {"customer_id": "c-fr", "email": "fr@x.org", "first_name": "Zoé", "locale": "fr_CA"},
            {"customer_id": "c-en", "email": "en@x.org", "first_name": "Zoe"},
        ]
        now = datetime(2026, 2, 1, tzinfo=UTC)
        wh.load(table("customers"), pa.Table.from_pylist([r | {"updated_at": now} for r in rows]))
    templates = project_dir / "templates"
    (templates / "partials").mkdir(exist_ok=True)
    (templates / "partials" / "sign.liquid").write_text("<p>— {{ shop }}</p>\n")
    (templates / "note.liquid").write_text(
        "---\nsubject: Hello {{ customer.first_name }}\n---\n"
        "<p>Total {{ 52 | currency: 'EUR' }}</p>\n{% render 'sign' %}\n"
    )
    (templates / "note.fr.liquid").write_text(
        "---\nsubject: Bonjour {{ customer.first_name }}\n---\n"
        "<p>Total {{ 52 | currency: 'EUR' }}</p>\n{% render 'sign' %}\n"
    )
    p = str(project_dir)
    fr = personify_json("render", "note", "-c", "c-fr", "--project", p, "--var", "shop=Maison")
    assert fr["template_file"] == "note.fr.liquid" and fr["locale"] == "fr-CA"
    assert fr["subject"] == "Bonjour Zoé" and "52,00\xa0€" in fr["text"] and "Maison" in fr["text"]
    en = personify("render", "note", "-c", "c-en", "--project", p, "--var", "shop=Maison")
    assert en.returncode == 0, en.stderr
    assert "render: template note.liquid (customer has no locale)" in en.stderr
    assert "€52.00" in en.stdout
    (templates / "partials" / "sign.liquid").unlink()
    broken = personify("render", "note", "-c", "c-fr", "--project", p, "--var", "shop=Maison")
    assert broken.returncode == 1
    assert "note.fr.liquid:5" in broken.stderr and "partial 'sign' not found" in broken.stderr


def test_render_names_the_template_and_line_of_a_date_zone_that_is_none(
    project_dir: Path,
) -> None:
    """A zone written in the template fails when the template is read; one from a variable
    when the email is rendered — both say which file and line, and what a zone is."""
    load_customer(project_dir)
    p = str(project_dir)
    (project_dir / "templates" / "when.liquid").write_text(
        "---\nsubject: When\n---\n<p>Hi</p>\n"
        "<p>{{ 'now' | date: '%d %B %H:%M', zone: where }}</p>\n"
    )
    ok = personify_json(
        "render",
        "when",
        "-c",
        "c-42",
        "--project",
        p,
        "--now",
        "2026-03-01T23:05:00Z",
        "--var",
        "where=Europe/Paris",
    )
    assert "02 March 00:05" in ok["text"]
    for where in ("Mars/Base", "Europe/Pariss"):
        done = personify("render", "when", "-c", "c-42", "--project", p, "--var", f"where={where}")
        assert done.returncode == 1 and done.stdout == ""
        said = " ".join(done.stderr.split())
        assert f"template when.liquid:5: date: '{where}' is not a time zone" in said, said
        assert "IANA" in said
    (project_dir / "templates" / "when.liquid").write_text(
        "---\nsubject: When\n---\n<p>Hi</p>\n\n<p>{{ 'now' | date: 'long', 'Mars/Base' }}</p>\n"
    )
    done = personify("render", "when", "-c", "c-42", "--project", p)
    assert done.returncode == 1
    assert "template when.liquid:6: date: 'Mars/Base' is not a time zone" in done.stderr
