"""The demo's reaction simulation: it finds the tracking URLs in a rendered (quoted-printable)
email, and its draws depend only on the seed and the message."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from personify.demo.reactions import _rng, tracking_links

TOKEN = "eyJrIjoiYWJhbmRvbmVkX2NhcnQ6cmVtaW5kOmN1c18wMDg0OGZjYTMyZTZjNzJiY2U0OTpj" * 2 + ".sig-_x"


def test_tracking_links_are_read_from_the_decoded_html(tmp_path: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "Your cart"
    message.set_content("Your cart: https://t.example/c/PLAIN-TEXT-ONLY")
    html = (
        f'<p><a href="https://t.example/c/{TOKEN}1">Cart</a> '
        f'<a href="https://t.example/c/{TOKEN}2">Shoes</a> '
        f'<a href="https://t.example/c/{TOKEN}1">Cart again</a></p>'
        f'<img src="https://t.example/o/{TOKEN}.gif" width="1" height="1" alt="">'
    )
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    eml = tmp_path / "m.eml"
    eml.write_bytes(bytes(message))
    assert "=\n" in eml.read_text()  # long lines were soft-wrapped: decoding matters
    pixel, clicks = tracking_links(eml)
    assert pixel == f"/o/{TOKEN}.gif"
    assert clicks == [f"/c/{TOKEN}1", f"/c/{TOKEN}2"]  # the HTML's, once each, in order


def test_draws_depend_on_the_seed_and_the_message_only() -> None:
    first = _rng(7, "abandoned_cart:remind:c-1").random(4).tolist()
    assert _rng(7, "abandoned_cart:remind:c-1").random(4).tolist() == first
    assert _rng(8, "abandoned_cart:remind:c-1").random(4).tolist() != first
    assert _rng(7, "abandoned_cart:remind:c-2").random(4).tolist() != first
