"""Discount codes without a warehouse: derivation, normalization, tiers, labels, configuration."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.config import DiscountCampaign, DiscountTier, parse_config
from personify.errors import ConfigError
from personify.offers.discounts import (
    ALPHABET,
    CODE_LENGTH,
    derive_code,
    expires_in,
    label,
    normalize_code,
    tier_for,
)

KEY = b"project-secret"


def test_a_code_is_twelve_unambiguous_characters() -> None:
    code = derive_code(KEY, "abandoned_cart:send:cus_1:cart_9")
    assert len(code) == CODE_LENGTH == 12
    assert set(code) <= set(ALPHABET)
    assert not set(code) & set("ILOU")


@given(st.text(max_size=60))
def test_the_same_key_always_gives_the_same_code(key: str) -> None:
    assert derive_code(KEY, key) == derive_code(KEY, key)


@settings(max_examples=50)
@given(st.sets(st.text(min_size=1, max_size=40), min_size=2, max_size=300))
def test_codes_are_unique_across_keys(keys: set[str]) -> None:
    codes = {derive_code(KEY, k) for k in keys}
    assert len(codes) == len(keys)


@given(st.text(min_size=1, max_size=40))
def test_codes_depend_on_the_secret_and_the_attempt(key: str) -> None:
    code = derive_code(KEY, key)
    assert derive_code(b"another-secret", key) != code
    assert derive_code(KEY, key, attempt=1) != code


@given(st.text(min_size=1, max_size=40))
def test_a_code_survives_how_people_type_it(key: str) -> None:
    code = derive_code(KEY, key)
    typed = f"  {code[:4].lower()}-{code[4:8]} {code[8:].replace('0', 'O').replace('1', 'l')} "
    assert normalize_code(typed) == code
    assert normalize_code(code) == code


def test_the_first_tier_the_engagement_reaches_wins() -> None:
    campaign = DiscountCampaign()  # 5 % from 70, 10 % from 30, else 15 %
    assert tier_for(campaign, 95) == DiscountTier(min_engagement=70, percent=5)
    assert tier_for(campaign, 70) == DiscountTier(min_engagement=70, percent=5)
    assert tier_for(campaign, 69.99) == DiscountTier(min_engagement=30, percent=10)
    assert tier_for(campaign, 0) == DiscountTier(percent=15)
    assert tier_for(campaign, None) == DiscountTier(percent=15)
    picky = DiscountCampaign(tiers=(DiscountTier(min_engagement=50, amount=5),))
    assert tier_for(picky, 10) is None


def test_labels() -> None:
    assert label(10, "percent") == "10% off"
    assert label(12.5, "percent") == "12.5% off"
    assert label(5, "amount", "USD") == "5.00 USD off"


def test_the_default_campaign_and_a_configured_one() -> None:
    assert set(parse_config("name: shop\n").discounts) == {"cart_rescue"}
    config = parse_config(
        "discounts:\n"
        "  winback:\n"
        "    expires_in: 48h\n"
        "    currency: USD\n"
        "    tiers:\n"
        "      - {min_engagement: 50, amount: 5}\n"
        "      - {percent: 20}\n"
    )
    winback = config.discounts["winback"]
    assert expires_in(winback).total_seconds() == 48 * 3600
    assert winback.tiers == (DiscountTier(min_engagement=50, amount=5), DiscountTier(percent=20))
    assert "cart_rescue" not in config.discounts


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        # a campaign's check that names its key points at that key's line
        ("discounts:\n  c:\n    expires_in: soon\n", 3, "discounts.c.expires_in", "not a duration"),
        (
            "discounts:\n  c:\n    tiers:\n      - {percent: 5, amount: 3}\n",
            4,
            "discounts.c.tiers[0]",
            "exactly one of percent or amount",
        ),
        ("discounts:\n  c:\n    tiers:\n      - {percent: 150}\n", 4, "", "<= 100"),
        ("discounts:\n  c:\n    tiers: []\n", 2, "discounts.c", "at least one tier"),
        ("discounts:\n  c:\n    currency: EURO\n", 3, "discounts.c.currency", "ISO 4217"),
        ("discounts:\n  c:\n    tierz: []\n", 3, "discounts.c.tierz", "unknown key"),
        (
            "discounts:\n  a:\n    expires_in: 2d\n  b:\n    expires_in: 2 fortnights\n",
            5,
            "discounts.b.expires_in",
            "not a duration",
        ),
    ],
)
def test_mistakes_name_file_line_and_key(text: str, line: int, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="personify.yml")
    error = info.value
    assert error.file == "personify.yml"
    assert message in str(error)
    assert error.line == line
    if key:
        assert error.key == key
