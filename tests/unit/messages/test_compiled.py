"""Compiled bodies write exactly what python-liquid writes, or hand the render back to it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from liquid.exceptions import LiquidError

from personify.messages.compiled import (
    Unsupported,
    compile_body,
    compile_fused,
    compile_fused_tracked,
    compile_text,
    compile_tracked,
)
from personify.messages.liquid_env import LOOP_ITERATION_LIMIT, html_environment
from personify.messages.text import marks_to_text, markup_to_marks

ENV = html_environment()

SOURCES = [
    "<p>{{ a }}</p>{{ b.c }} & {{ b.d.e }}",
    "{% if a %}A{{ a }}{% elsif b.c %}B{% else %}C{% endif %}!",
    "{% for x in xs %}<li>{{ x.n }}{% if x.k %}k{% endif %}</li>{% else %}none{% endfor %}",
    "{% for x in xs limit: 2 %}[{{ x.n }}]{% endfor %}"
    "{% for x in xs limit: 0 %}({{ x.n }}){% endfor %}",
    "{% for x in xs %}{% for y in x.ys %}{{ x.n }}:{{ y }} {% endfor %}{% endfor %}",
    "{% for x in xs %}{% endfor %}{% if a %}   {% endif %}|{% if a %} {{ a }} {% endif %}",
    "{%- if a -%}  trimmed  {%- endif -%} {{ a | upcase }} {{ xs | size }} {{ xs.size }}",
    "{% comment %}<b>{{ nope }}</b>{% endcomment %}{{ b.c | default: 'd' }}{{ xs.first.n }}",
    "{% for a in xs %}{{ a.n }}{% endfor %}{{ a }}",  # a loop name shadowing a global
    # filters with literal arguments are called directly (python-liquid's own functions)
    "{{ a | money }} {{ b.c | money: 0 }} {{ b.c | default: 'd' | upcase }} {{ a | escape }}"
    "{{ a | append: '<b>' }} {{ b.d.e | truncate: 3 }} {{ 'lit' | capitalize }}"
    "{% for x in xs %}{{ x.n | default: 0 | plus: 1 }}{{ x.ys | join: ', ' }}{% endfor %}"
    "{{ xs | map: 'n' | join: '-' }}{{ nil | default: a }}{{ a | downcase | strip }}",
]

values = st.one_of(
    st.text(max_size=8),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
)
item = st.fixed_dictionaries({"n": values, "k": values, "ys": st.lists(values, max_size=3)})
contexts = st.fixed_dictionaries(
    {
        "a": values,
        "b": st.fixed_dictionaries({"c": values, "d": st.fixed_dictionaries({"e": values})}),
        "xs": st.lists(item, max_size=4),
    }
)


def reference(source: str, context: dict[str, Any]) -> str | None:
    try:
        return ENV.from_string(source).render(**context)
    except LiquidError:
        return None


@settings(max_examples=60, deadline=None)
@given(context=contexts)
@pytest.mark.parametrize("source", SOURCES)
def test_same_output_as_python_liquid(source: str, context: dict[str, Any]) -> None:
    compiled = compile_body(ENV.from_string(source))
    got = compiled(context)
    if got is not None:  # None: python-liquid renders it (and raises what it raises)
        assert got == reference(source, context)


def test_plain_contexts_are_not_handed_back() -> None:
    context = {"a": "<x>", "b": {"c": 1, "d": {"e": None}}, "xs": [{"n": "1", "k": 0, "ys": []}]}
    for source in SOURCES:
        got = compile_body(ENV.from_string(source))(context)
        assert got is not None and got == reference(source, context), source


@pytest.mark.parametrize(
    ("source", "context"),
    [
        ("{{ missing }}", {}),
        ("{{ a.b }}", {"a": {}}),
        ("{{ a.b }}", {"a": "text"}),
        ("{% for x in xs %}{{ x }}{% endfor %}", {"xs": list(range(LOOP_ITERATION_LIMIT + 1))}),
        ("{% for x in xs %}{{ x.y }}{% endfor %}", {"xs": [{"z": 1}]}),
        ("{{ a | nofilter }}", {"a": 1}),
    ],
)
def test_what_it_cannot_decide_goes_back_to_python_liquid(
    source: str, context: dict[str, Any]
) -> None:
    try:
        compiled = compile_body(ENV.from_string(source))
    except (Unsupported, LiquidError):
        return
    assert compiled(context) is None


@pytest.mark.parametrize(
    "source",
    [
        "{% assign x = 1 %}{{ x }}",
        "{% for x in xs %}{{ forloop.index }}{% endfor %}",
        "{% case a %}{% when 1 %}one{% endcase %}",
        "{% for x in xs reversed %}{{ x }}{% endfor %}",
        "{% for x in (1..3) %}{{ x }}{% endfor %}",
    ],
)
def test_other_tags_are_not_compiled(source: str) -> None:
    with pytest.raises(Unsupported):
        compile_body(ENV.from_string(source))


HTML_SOURCES = [
    '<h1>Hi {{ a }}</h1><p>x</p><a href="{{ b.c }}">go {{ a }}</a>'
    '<img src="{{ a }}" alt="{{ b.d.e }}"><a href="https://s/?q={{ a }}&amp;r=1">s</a>',
    "<ul>{% for x in xs %}<li><a href='{{ x.n }}'>{{ x.k }}</a> {{ x.n }}</li>"
    "{% else %}<p>none</p>{% endfor %}</ul>",
    "<table>{% for x in xs %}<tr><td>{{ x.n }}</td>{% if x.k %}<td>k</td>{% endif %}</tr>"
    "{% endfor %}</table><br>{% if a %} <b>{{ a }}</b> {% endif %}<p>end</p>",
    "<!-- {{ a }} --><div>{%- if a -%} A {%- else -%}<p>B</p>{%- endif -%}</div>",
]


@settings(max_examples=60, deadline=None)
@given(context=contexts)
@pytest.mark.parametrize("source", HTML_SOURCES)
def test_compiled_text_equals_text_of_the_html(source: str, context: dict[str, Any]) -> None:
    template = ENV.from_string(source)
    text = compile_text(template)(context)
    html = reference(source, context)
    if text is not None and html is not None:
        assert marks_to_text(text) == marks_to_text(markup_to_marks(html))


@pytest.mark.parametrize(
    "source",
    [
        '<a href="{{ a }}/cart">x</a>',  # the scheme would depend on the value
        "<p {% if a %}hidden{% endif %}>x</p>",
        "<a href='x'>{% if a %}y{% endif %}</a><!-- {% if a %} -->{% endif %}",
    ],
)
def test_text_that_depends_on_values_is_not_compiled(source: str) -> None:
    with pytest.raises(Unsupported):
        compile_text(ENV.from_string(source))


def test_a_link_opened_in_a_branch_is_not_compiled() -> None:
    with pytest.raises(Unsupported):
        compile_text(ENV.from_string('{% if a %}<a href="https://u">{% endif %}x</a>'))


def test_filters_with_literal_arguments_are_called_directly() -> None:
    """No render context per filtered output: python-liquid evaluates only what needs it."""
    from liquid.builtin.expressions import FilteredExpression

    direct = compile_body(ENV.from_string("{{ a | money }}{{ b.c | default: 'Hi' | upcase }}"))
    assert not any(isinstance(k, FilteredExpression) for k in direct.__globals__["_k"])
    assert direct({"a": "52.5", "b": {"c": ""}}) == "52.50HI"
    generic = compile_body(ENV.from_string("{{ a | default: b.c }}"))  # a computed argument
    assert any(isinstance(k, FilteredExpression) for k in generic.__globals__["_k"])
    assert generic({"a": None, "b": {"c": "x"}}) == "x"


@settings(max_examples=60, deadline=None)
@given(context=contexts)
@pytest.mark.parametrize("source", SOURCES + HTML_SOURCES)
def test_fused_html_and_text_equal_python_liquid_and_the_text_of_its_html(
    source: str, context: dict[str, Any]
) -> None:
    """One function writes the HTML (also in pieces) and the text marks: python-liquid's HTML,
    and the text that HTML converts to — or hands the render back (None)."""
    template = ENV.from_string(source)
    fused, statics = compile_fused(template)
    done = fused(context)
    html = reference(source, context)
    if done is None:  # python-liquid renders it: as compile_body, or markup made by a filter
        return
    out, pieces, marks = done
    assert out == html and "".join(pieces) == out
    assert html is not None and marks_to_text(marks) == marks_to_text(markup_to_marks(html))
    assert all(piece in source for piece in statics)  # the template's own text


def test_fused_hands_back_only_what_it_cannot_decide() -> None:
    """Plain values are written by the fused function; markup a filter makes (which could change
    the text's conversion) goes to python-liquid."""
    context = {"a": "<x>", "b": {"c": 1, "d": {"e": None}}, "xs": [{"n": "1", "k": 0, "ys": []}]}
    for source in SOURCES[:-1] + HTML_SOURCES:
        done = compile_fused(ENV.from_string(source))[0](context)
        assert done is not None and done[0] == reference(source, context), source
    assert compile_fused(ENV.from_string("{{ a | append: '<b>' }}"))[0]({"a": ""}) is None


TRACKED_SOURCES = [
    *HTML_SOURCES[:1],
    '<p>{% for x in xs %}<a href="{{ x.n }}" class="c">{{ x.k }}</a>'
    '<a href="https://s/p?i={{ x.n }}&amp;z=1">{{ x.n }}</a>{% endfor %}</p>'
    '<a href="https://static/x" data-track="false">no</a><a href="mailto:{{ a }}">m</a>',
]


@settings(max_examples=60, deadline=None)
@given(context=contexts)
@pytest.mark.parametrize("source", TRACKED_SOURCES)
def test_fused_tracked_equals_tracked_body_and_compiled_text(
    source: str, context: dict[str, Any]
) -> None:
    """With links tracked, the fused function writes what the tracked body and the compiled
    text write: each href handed over once, the text showing the link's own URL."""
    template = ENV.from_string(source)
    fused, _ = compile_fused_tracked(template)
    calls: list[tuple[str, str]] = []
    expected_calls: list[tuple[str, str]] = []

    def tracker(into: list[tuple[str, str]]) -> Any:
        def href(escaped: str, tail: str) -> str:
            into.append((escaped, tail))
            return f"https://t/c/{len(into)}"

        return href

    done = fused(context, tracker(calls))
    body = compile_tracked(template)(context, tracker(expected_calls))
    text = compile_text(template)(context)
    if done is None:
        assert body is None or text is None
        return
    out, pieces, marks = done
    assert out == body and "".join(pieces) == out and calls == expected_calls
    assert text is not None and marks_to_text(marks) == marks_to_text(text)


@pytest.mark.parametrize(
    "source",
    [
        "{% if a %} {% if a %} {% endif %} {% endif %}|",
        "{% for x in xs %} {% if a %} {% endif %} {% endfor %}|{% if a %}\n{% else %} {% endif %}",
    ],
)
def test_blank_blocks_inside_blank_blocks_write_nothing(source: str) -> None:
    """python-liquid writes nothing of a blank block, however deep its blank blocks nest."""
    context = {"a": True, "xs": [1, 2], "b": {}}
    template = ENV.from_string(source)
    assert compile_body(template)(context) == reference(source, context) == "|"
    done = compile_fused(template)[0](context)
    assert done is not None and done[0] == "|"
