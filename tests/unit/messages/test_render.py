"""Rendering: strict undefined, autoescape, resource limits, layouts, the text part."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from personify.errors import NotFound
from personify.messages import RenderError, TemplateStore, build_context, render
from personify.messages.liquid_env import money
from personify.scaffold import init_project

CUSTOMER = {"customer_id": "c1", "first_name": "Ann", "email": "ann@x.org", "traits": {}}


def store(tmp_path: Path, files: dict[str, str]) -> TemplateStore:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return TemplateStore(tmp_path)


def test_front_matter_subject_and_body(tmp_path: Path) -> None:
    s = store(tmp_path, {"hi.liquid": "---\nsubject: Hi {{ customer.first_name }}\n---\n<p>x</p>"})
    email = render(s.get("hi"), build_context(CUSTOMER))
    assert email.subject == "Hi Ann"
    assert "<p>x</p>" in email.html and email.text.strip() == "x"


def test_sidecar_subject(tmp_path: Path) -> None:
    s = store(tmp_path, {"hi.liquid": "<p>{{ n }}</p>", "hi.yml": "subject: N is {{ n }}\n"})
    email = render(s.get("hi"), build_context(CUSTOMER, {"n": 3}))
    assert email.subject == "N is 3" and "<p>3</p>" in email.html


def test_undefined_variable_names_template_line_and_variable(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {"cart.liquid": "---\nsubject: s\n---\n<p>a</p>\n<p>{{ discount.code }}</p>\n"},
    )
    with pytest.raises(RenderError) as info:
        render(s.get("cart"), build_context(CUSTOMER))
    err = info.value
    assert err.template == "cart.liquid" and err.line == 5 and err.variable == "discount"
    assert "cart.liquid:5" in err.reason and "'discount'" in err.reason


def test_an_unclosed_block_is_placed_at_its_opening_tag(tmp_path: Path) -> None:
    body = "<p>a</p>\n{% if x %}b{% endif %}\n<p>c</p>\n{%- if customer.first_name %}\n<p>d</p>\n"
    s = store(tmp_path, {"cart.liquid": "---\nsubject: s\n---\n" + body})
    with pytest.raises(RenderError) as info:
        s.get("cart")
    assert info.value.line == 7  # the if never closed, not the first line after front matter
    assert "cart.liquid:7" in info.value.reason


def test_undefined_in_subject(tmp_path: Path) -> None:
    s = store(tmp_path, {"a.liquid": "---\nsubject: '{{ nope }}'\n---\nx"})
    with pytest.raises(RenderError, match="nope"):
        render(s.get("a"), build_context(CUSTOMER))
    t = store(tmp_path, {"b.liquid": "---\nsubject: s\n---\n{{ customer.nope }}"})
    with pytest.raises(RenderError) as info:
        render(t.get("b"), build_context(CUSTOMER))
    assert info.value.variable == "customer.nope" and info.value.line == 4


def test_autoescape_in_html_not_in_subject(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {
            "a.liquid": "---\nsubject: 'Hi {{ customer.first_name }}'\n---\n"
            "<p>{{ customer.first_name }}</p>"
        },
    )
    email = render(s.get("a"), build_context({**CUSTOMER, "first_name": "<script>&"}))
    assert "<script>" not in email.html and "&lt;script&gt;&amp;" in email.html
    assert email.subject == "Hi <script>&"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("{% for i in (1..100000) %}x{% endfor %}", "loop iteration limit"),
        ("{% for i in (1..9000) %}{{ big }}{% endfor %}", "output stream limit"),
    ],
)
def test_resource_limits(tmp_path: Path, body: str, match: str) -> None:
    s = store(tmp_path, {"a.liquid": "---\nsubject: s\n---\n" + body})
    with pytest.raises(RenderError, match=match):
        render(s.get("a"), build_context(CUSTOMER, {"big": "y" * 1000}))


def test_syntax_error_and_missing_template(tmp_path: Path) -> None:
    s = store(tmp_path, {"a.liquid": "---\nsubject: s\n---\n\n{% if %}"})
    with pytest.raises(RenderError, match=r"a\.liquid:5"):
        s.get("a")
    with pytest.raises(NotFound, match="templates: a"):
        s.get("missing")
    with pytest.raises(NotFound):
        s.get("../a")


def test_no_subject_and_blank_body(tmp_path: Path) -> None:
    s = store(tmp_path, {"a.liquid": "x", "b.liquid": "---\nsubject: s\n---\n{{ e }}"})
    with pytest.raises(RenderError, match="no subject"):
        s.get("a")
    with pytest.raises(RenderError, match="empty"):
        render(s.get("b"), build_context(CUSTOMER, {"e": " "}))


def test_mjml_layout_compiled_once_per_version(tmp_path: Path) -> None:
    layout = (
        "<mjml><mj-head><mj-style>.k { color: #ff0000; }</mj-style></mj-head><mj-body>"
        "<mj-section><mj-column><mj-text>{{ content }}</mj-text></mj-column></mj-section>"
        "</mj-body></mjml>"
    )
    s = store(
        tmp_path, {"a.liquid": '---\nsubject: s\n---\n<p class="k">{{ w }}</p>', "a.mjml": layout}
    )
    first = s.get("a")
    assert first.layout is not None and s.get("a") is first
    email = render(first, build_context(CUSTOMER, {"w": "<b>"}))
    assert "<table" in email.html and "&lt;b&gt;" in email.html
    assert "color: #ff0000" in email.html.split('class="k"')[1].split(">")[0]  # inlined
    (tmp_path / "a.mjml").write_text(layout.replace("ff0000", "00ff00"))
    assert s.get("a").version != first.version


def test_bad_mjml(tmp_path: Path) -> None:
    s = store(
        tmp_path,
        {"a.liquid": "---\nsubject: s\nlayout: x\n---\nb", "layouts/x.mjml": "<mjml><mj-bo"},
    )
    with pytest.raises(RenderError, match="invalid MJML"):
        s.get("a")


def test_scaffold_templates_render(tmp_path: Path) -> None:
    init_project(tmp_path)
    s = TemplateStore(tmp_path / "templates")
    assert s.names() == ["abandoned_cart", "confirm_subscription", "re_engagement"]
    product = {"name": "Boot", "url": "https://s/p", "image_url": "https://s/i.png", "price": 9}
    variables = {
        "cart": {"url": "https://s/cart", "items": [{**product, "quantity": 2}]},
        "recommendations": [{**product, "name": f"Rec {i}"} for i in range(5)],
        "discount": {"code": "SAVE-7Q2X", "label": "10% off", "expires_at": "1 Dec"},
        "currency": "€",
        "unsubscribe_url": "https://s/unsubscribe/t",
        "categories": ["Shoes", "Bags"],
        "new_arrivals": [{**product, "category": "Shoes"}],
        "shop_url": "https://s",
    }
    cart = render(s.get("abandoned_cart"), build_context(CUSTOMER, variables))
    assert cart.subject == "Ann, your cart is waiting"
    assert "SAVE-7Q2X" in cart.text and "Rec 3" in cart.text and "Rec 4" not in cart.text
    assert "https://s/unsubscribe/t" in cart.html
    again = render(s.get("re_engagement"), build_context(CUSTOMER, variables))
    assert again.subject == "New in Shoes, picked for you" and "Shoes, Bags" in again.text
    confirm = {"confirmation_url": "https://s/confirm/T", "purpose": "news", "valid_days": 7}
    doi = render(s.get("confirm_subscription"), build_context(CUSTOMER, {**variables, **confirm}))
    assert doi.subject == "Please confirm your subscription" and "https://s/confirm/T" in doi.html


@pytest.mark.parametrize(
    ("value", "args", "shown"),
    [
        (52.0, "", "52.00"),
        (19.995, "", "20.00"),
        (3, "", "3.00"),
        ("7.5", "", "7.50"),
        (12.3456, ": 3", "12.346"),
        (None, "", ""),
        ("n/a", "", "n/a"),
        (1e30, "", "1e+30"),  # more digits than Decimal's precision: shown as it is
        (3.4028234663852886e38, ": 6", "3.4028234663852886e+38"),
    ],
)
def test_money_filter(tmp_path: Path, value: object, args: str, shown: str) -> None:
    body = "---\nsubject: s\n---\n<p>[{{ p | money" + args + " }}]</p>"
    s = store(tmp_path, {"m.liquid": body})
    email = render(s.get("m"), build_context(CUSTOMER, {"p": value}))
    assert f"[{shown}]" in email.html


@given(
    st.one_of(
        st.integers(-(10**20), 10**20),
        st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,4})?", fullmatch=True),
        st.sampled_from(["-0.00", "00.50", "1e3", "+1.00", " 1.00", "1.00\n", "١.٠٠", "True"]),
        st.booleans(),
    )
)
def test_money_shortcuts_agree_with_the_decimal_path(value: object) -> None:
    """The fast cases (text already in cents, integers) give what Decimal gives."""
    from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

    try:
        amount = Decimal(str(value))
        expected = (
            f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):f}"
            if amount.is_finite()
            else str(value)
        )
    except InvalidOperation:
        expected = str(value)
    assert money(value) == expected


def test_scaffold_templates_show_prices_with_two_decimals(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    init_project(root)
    item = {"name": "Mug", "url": "https://s/m", "image_url": "https://s/m.png", "price": 52.0}
    variables = {
        "cart": {"items": [{**item, "quantity": 1}], "url": "https://s/cart"},
        "recommendations": [item] * 4,
        "discount": {"code": "ABCD2345EFGH", "label": "10% off", "expires_at": "soon"},
        "currency": "€",
        "unsubscribe_url": "https://s/u",
    }
    email = render(
        TemplateStore(root / "templates").get("abandoned_cart"), build_context(CUSTOMER, variables)
    )
    assert "€52.00" in email.html and "€52.0<" not in email.html


@pytest.mark.parametrize(
    "expr",
    [
        "customer.__class__",
        "customer.__class__.__mro__",
        "customer.keys",
        "customer.__init__.__globals__",
        "x.__class__.__subclasses__",
    ],
)
def test_templates_cannot_reach_python_attributes(tmp_path: Path, expr: str) -> None:
    s = store(tmp_path, {"a.liquid": "---\nsubject: s\n---\n<p>{{ " + expr + " }}</p>"})
    with pytest.raises(RenderError, match="undefined"):
        render(s.get("a"), build_context(CUSTOMER, {"x": "text"}))


def test_a_copy_with_another_subject_renders_that_subject(tmp_path: Path) -> None:
    """The compiled subject belongs to the subject it was made from (a journey variant swaps
    the subject with dataclasses.replace)."""
    import dataclasses

    source = "---\nsubject: Hello {{ customer.first_name }}\n---\n<p>x</p>"
    s = store(tmp_path, {"m.liquid": source})
    template = s.get("m")
    assert template.subject_compiled is not None
    other = s._text.from_string("Other {{ customer.first_name }}")
    variant = dataclasses.replace(template, subject=other)
    assert render(variant, build_context(CUSTOMER, {})).subject.startswith("Other ")
    assert render(template, build_context(CUSTOMER, {})).subject.startswith("Hello ")
