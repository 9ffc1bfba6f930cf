"""The curated public API: ``personify.__all__`` matches what the package exports."""

from __future__ import annotations

import personify


def test_all_matches_public_names() -> None:
    exported = {
        name
        for name, value in vars(personify).items()
        if not name.startswith("_")
        and not isinstance(value, type(personify))
        and name != "annotations"
    }
    assert set(personify.__all__) == exported - {"__version__"}


def test_every_public_name_has_a_docstring() -> None:
    for name in personify.__all__:
        assert getattr(personify, name).__doc__, name
