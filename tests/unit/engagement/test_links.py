"""Link rewriting: tracked links go through /c/, unsubscribe and mailto stay, a pixel is added."""

from __future__ import annotations

from pathlib import Path

from personify.config import load_project
from personify.delivery.tokens import project_key
from personify.engagement.links import add_pixel, base_url, instrument, rewrite_links
from personify.engagement.tokens import verify
from personify.messages import RenderedEmail

DOC = (
    '<html><body><a href="https://shop.example/p?a=1&amp;b=2">Boot</a> '
    "<a class='x' href='http://shop.example/cart'>Cart</a> "
    '<a href="mailto:help@shop.example">Mail</a> <a href="#top">Top</a> '
    '<a href="https://track.example/unsubscribe/TOKEN">Unsubscribe</a> '
    '<a data-track="false" href="https://shop.example/private">Private</a></body></html>'
)


def test_trackable_links_are_wrapped_in_order() -> None:
    out, targets = rewrite_links(DOC, lambda i, url: f"https://t.example/c/{i}")
    assert targets == ["https://shop.example/p?a=1&b=2", "http://shop.example/cart"]
    assert 'href="https://t.example/c/0">Boot' in out
    assert "class='x' href=\"https://t.example/c/1\">Cart" in out
    for kept in ("mailto:help@shop.example", "#top", "/unsubscribe/TOKEN", "/private"):
        assert kept in out


def test_the_pixel_goes_before_the_end_of_the_body() -> None:
    out = add_pixel(DOC, "https://t.example/o/x.gif")
    assert out.endswith(
        '<img src="https://t.example/o/x.gif" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" /></body></html>'
    )
    assert add_pixel("<p>hi</p>", "https://t/o.gif").startswith("<p>hi</p><img")


def test_instrument_signs_links_for_the_message(project_dir: Path) -> None:
    project = load_project(project_dir)
    key = project_key(project)
    email = RenderedEmail("t", "v1", "Hi", DOC, "text", ("<html>", "x", "</html>"))
    out = instrument(project, email, key="m-1", customer_id="c-1", signing_key=key)
    assert out.html_pieces == () and out.text == "text"
    base = base_url(project)
    assert base == "http://127.0.0.1:8787"
    first = out.html.split(f'href="{base}/c/')[1].split('"')[0]
    claim = verify(key, "click", first)
    assert claim is not None and claim.url == "https://shop.example/p?a=1&b=2"
    assert (claim.key, claim.customer_id, claim.link) == ("m-1", "c-1", 0)
    pixel = out.html.split(f'src="{base}/o/')[1].split('.gif"')[0]
    opened = verify(key, "open", pixel)
    assert opened is not None and opened.key == "m-1"


def test_sent_emails_are_tracked_unless_the_template_says_no(project_dir: Path) -> None:
    from personify.delivery import prepare_one
    from personify.messages import template_store

    project = load_project(project_dir)
    folder = project_dir / "templates"
    body = '<p>Hi</p><a href="https://shop.example/x">Shop</a>'
    (folder / "tracked.liquid").write_text(f"---\nsubject: Hello\nlayout: none\n---\n{body}")
    (folder / "quiet.liquid").write_text(
        f"---\nsubject: Hello\nlayout: none\ntracking: false\n---\n{body}"
    )
    store = template_store(project)
    customer = {"customer_id": "c-1", "email": "ann@example.com", "first_name": "Ann"}
    tracked = prepare_one(project, store.get("tracked"), customer, key="m-1")
    html = tracked.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "/c/" in html and "/o/" in html and 'href="https://shop.example/x"' not in html
    assert "/unsubscribe/" in tracked.message["List-Unsubscribe"]
    quiet = prepare_one(project, store.get("quiet"), customer, key="m-2")
    html = quiet.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert 'href="https://shop.example/x"' in html and "/o/" not in html
