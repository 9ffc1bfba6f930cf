"""The plain-text part: blocks on lines, links with their URL, no markup, no hidden parts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from personify.messages.text import html_to_text, marks_to_text


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


@given(st.text(alphabet=" \t\n\r\f\va&;\x00<>", max_size=40))
def test_collapsing_whitespace_equals_collapsing_every_run(marks: str) -> None:
    """marks_to_text leaves lone spaces alone; the text is the same as replacing every run."""
    import html as htmllib
    import re

    from personify.messages.text import _BLANKS, _MARK

    s = htmllib.unescape(re.sub(r"[ \t\n\r\f\v]+", " ", marks))
    lines = [line.strip() for line in s.split(_MARK)]
    assert marks_to_text(marks) == _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


def _marks_to_text_every_pass(s: str) -> str:
    """marks_to_text as first written: every regular expression on every text."""
    import html as htmllib

    from personify.messages.text import _BLANKS, _MARK, _SPACES

    s = htmllib.unescape(_SPACES.sub(" ", s))
    lines = [line.strip() for line in s.split(_MARK)]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"


pieces = st.sampled_from(
    [" ", "  ", "\t", "\n", "\r", "\f", "\v", "\x00", "\x00\x00", "\x00\x00\x00", "a", "b c",
     "&", "&amp;", "&#10;", "&#10;&#10;&#10;", "&nbsp;", "\xa0", "\u2028", "\x1c", "é", ";", "<"]
)  # fmt: skip


@given(st.lists(pieces, max_size=30).map("".join))
def test_marks_to_text_skips_only_passes_that_change_nothing(marks: str) -> None:
    """The substring tests in front of each pass decide nothing: the same text as every pass."""
    assert marks_to_text(marks) == _marks_to_text_every_pass(marks)


@given(st.text(alphabet=" \t\n\x00a&#10;\xa0\u2028", max_size=60))
def test_marks_to_text_on_any_mix(marks: str) -> None:
    assert marks_to_text(marks) == _marks_to_text_every_pass(marks)
