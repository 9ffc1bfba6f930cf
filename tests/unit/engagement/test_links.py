"""Link rewriting: tracked links go through /c/, unsubscribe and mailto stay, a pixel is added."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_preference_page_links_are_not_tracked() -> None:
    doc = (
        '<a href="https://shop.example/prefs/TOKEN">Preferences</a> '
        '<a href="https://shop.example/prefsX">Other</a>'
    )
    wrap = lambda i, url: f"https://t.example/c/{i}"  # noqa: E731
    out, targets = rewrite_links(doc, wrap, preferences_url="https://shop.example/prefs/")
    assert targets == ["https://shop.example/prefsX"]
    assert 'href="https://shop.example/prefs/TOKEN"' in out
    assert rewrite_links(doc, wrap)[1] == [  # (what was tracked without it)
        "https://shop.example/prefs/TOKEN",
        "https://shop.example/prefsX",
    ]


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


def test_a_sent_emails_preference_and_unsubscribe_links_are_not_tracked(project_dir: Path) -> None:
    """``{{ preferences_url }}`` and ``{{ unsubscribe_url }}`` go straight to the pages (a
    visit to the preference page is no click on the email's content); other links are tracked."""
    from personify.delivery import prepare_one
    from personify.messages import template_store

    project = load_project(project_dir)
    body = (
        '<p>Hi</p><a href="https://shop.example/x">Shop</a> '
        '<a href="{{ preferences_url }}">Preferences</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    )
    (project_dir / "templates" / "footer.liquid").write_text(
        f"---\nsubject: Hello\nlayout: none\n---\n{body}"
    )
    customer = {"customer_id": "c-1", "email": "ann@example.com", "first_name": "Ann"}
    sent = prepare_one(project, template_store(project).get("footer"), customer, key="m-1")
    html = sent.message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    base = base_url(project)
    assert re.search(r'href="http://127\.0\.0\.1:8787/preferences/[^"/]+">Preferences', html)
    assert re.search(r'href="http://127\.0\.0\.1:8787/unsubscribe/[^"/]+">Unsubscribe', html)
    assert len(re.findall(f'href="{re.escape(base)}/c/', html)) == 1


LAYOUT = """<mjml><mj-body><mj-section><mj-column><mj-text>
<a href="https://shop.example/?from=mail&amp;x=1">Shop</a>
<a href="mailto:help@shop.example">Help</a>
</mj-text><mj-text>{{ content }}</mj-text><mj-text>
<a href="https://shop.example/stores">Stores</a> <a href="{{ unsubscribe_url }}">Unsubscribe</a>
<a href="{{ shop_url }}">Home</a> <a href="{{ preferences_url }}">Preferences</a>
</mj-text></mj-column></mj-section></mj-body></mjml>"""
BODY = """---
subject: "{{ name | default: 'Hi' }}, links"
layout: tracked
---
<p>Hello {{ name }}</p>
{% for item in items %}<a href="{{ item.url }}" class="x">{{ item.name }}</a>
{{ item.price | money }}{% endfor %}
<a href="https://shop.example/static?a=1&amp;b=2">Static</a>
<a data-track="false" href="{{ private }}">Private</a>
<a href="mailto:{{ name }}@example.org">Mail</a>
{% if name %}<a href="{{ maybe }}">Maybe</a>{% endif %}
"""
URLS = st.one_of(
    st.sampled_from(
        [
            "https://shop.example/p/1",
            "https://shop.example/p?a=1&b=2",
            'https://shop.example/"quoted"',
            "https://shop.example/ data-track=false",
            " https://shop.example/padded ",
            "javascript:alert(1)",
            "https://shop.example/unsubscribe/x",
            "http://127.0.0.1:8787/preferences/x",
            "mailto:a@b.example",
            "http://shop.example/<b>",
            "https://shop.example/ö",
        ]
    ),
    st.text(max_size=12).map(lambda t: "https://shop.example/" + t),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    urls=st.lists(URLS, max_size=4),
    maybe=URLS,
    private=URLS,
    name=st.sampled_from(["Ann", "", "Zoë & <Co>"]),
)
def test_links_found_once_equal_links_found_in_the_html(
    project_dir: Path, urls: list[str], maybe: str, private: str, name: str
) -> None:
    """A template version's links placed once give the same bytes as finding them in each
    email's HTML (what instrument does), token for token."""
    from personify.engagement.links import message_links
    from personify.messages import build_context, render, template_store

    project = load_project(project_dir)
    folder = project_dir / "templates"
    (folder / "layouts" / "tracked.mjml").write_text(LAYOUT)
    (folder / "links.liquid").write_text(BODY)
    template = template_store(project).get("links")
    assert template.plan is not None and template.plan.tracked is not None
    items = [{"url": u, "name": f"P{i}", "price": "9.50"} for i, u in enumerate(urls)]
    variables = {"items": items, "maybe": maybe, "private": private, "name": name}
    variables |= {"unsubscribe_url": "http://127.0.0.1:8787/unsubscribe/T"}
    variables |= {"preferences_url": "http://127.0.0.1:8787/preferences/T"}
    variables |= {"shop_url": "https://shop.example/home"}
    context = build_context({"customer_id": "c-1", "email": "a@b.example"}, variables)
    key = project_key(project)

    def links() -> Any:
        return message_links(project, key="m-1", customer_id="c-1", signing_key=key)

    for _ in range(2):  # the first email of the version is compared inside render too
        fast = render(template, context, links())
        expected = links().instrument(render(template, context))
        assert fast.html == expected.html and fast.text == expected.text
    assert not template.plan.tracked.dropped and template.plan.tracked.trusted
    assert fast.html_pieces, "rendered through the placed links (pieces kept for MIME)"
    assert "shop.example/static" not in fast.html and "mailto:help@shop.example" in fast.html
    assert 'href="http://127.0.0.1:8787/preferences/T"' in fast.html  # not tracked
    for token in re.findall(r'/c/([^"]+)"', fast.html):
        claim = verify(key, "click", token)
        assert claim is not None and claim.url is not None and claim.url.startswith("http")
