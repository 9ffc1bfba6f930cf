"""``personify.offers.__all__`` is what the package exports, each with a docstring."""

from __future__ import annotations

import personify.offers as offers


def test_all_matches_the_exports_and_each_is_documented() -> None:
    exported = {
        name
        for name, value in vars(offers).items()
        if not name.startswith("_")
        and not isinstance(value, type(offers))
        and name != "annotations"
    }
    assert set(offers.__all__) == exported
    for name in offers.__all__:
        assert getattr(offers, name).__doc__, name
