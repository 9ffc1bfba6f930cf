"""The plain-text part: blocks on lines, links with their URL, no markup, no hidden parts."""

from __future__ import annotations

from personify.messages.text import html_to_text


def test_blocks_links_lists_and_entities() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<!--[if mso]><table><tr><td>mso</td></tr></table><![endif]-->"
        '<div aria-label="a > b"><h1>Hi &amp; welcome</h1><p>one<br>two</p>'
        "<ul><li>x</li><li><a href='https://s/q?a=1&amp;b=2'>y</a></li>"
        '<li><a href="/relative">z</a></li></ul><img src="i.png" alt="Logo">'
        "<script>alert(1)</script></div></body></html>"
    )
    assert html_to_text(html) == (
        "Hi & welcome\n\none\ntwo\n\n- x\n- y (https://s/q?a=1&b=2)\n- z\n\n[Logo]\n"
    )
