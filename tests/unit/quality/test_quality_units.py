"""Units of the quality package: rule names, which re-read records are pending, and the
``quality:`` section's mistakes reported with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from personify.config import QualityRule, load_project
from personify.errors import ConfigError
from personify.quality.read import _split
from personify.quality.rules import rule_name

SYNCED = "2026-03-01T10:00:00Z"


def test_rule_names_default_to_table_column_check() -> None:
    assert rule_name("orders", QualityRule(column="total", check="range", min=0)) == (
        "orders.total.range"
    )
    email = QualityRule(column="email", check="format", format="email")
    assert rule_name("orders", email) == "orders.email.format.email"
    named = QualityRule(column="email", check="not_null", name="emails")
    assert rule_name("orders", named) == "emails"


def test_records_changed_after_the_last_sync_are_pending() -> None:
    from personify.sources.rest.incremental import as_instant

    records = [
        {"id": 1, "updated_at": "2026-03-01T09:00:00Z"},
        {"id": 2, "updated_at": "2026-03-01T10:00:00Z"},  # the cursor itself: synced
        {"id": 3, "updated_at": "2026-03-01T11:00:00Z"},
        {"id": 4},  # no cursor: settled
    ]
    fresh, old = _split(records, "updated_at", "auto", as_instant(SYNCED))
    assert [r["id"] for r in fresh] == [3]
    assert [r["id"] for r in old] == [1, 2, 4]
    never, _ = _split(records[:3], "updated_at", "auto", None)
    assert len(never) == 3  # never synced: everything at the source is still to come
    assert _split(records, None, "auto", None) == ([], records)


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "quality:\n  rules:\n    orders:\n      - {column: total, check: range}\n",
            "needs min, max or both",
        ),
        ("quality:\n  rules:\n    orders:\n      - {column: total, check: nope}\n", "check"),
        ("quality:\n  reconcile: {threshold: -1}\n", "threshold"),
        ("quality:\n  rules:\n    nowhere:\n      - {column: a, check: not_null}\n", "nowhere"),
    ],
)
def test_quality_mistakes_name_the_file_line_and_key(
    tmp_path: Path, yaml: str, message: str
) -> None:
    (tmp_path / "personify.yml").write_text("name: q\n" + yaml)
    with pytest.raises(ConfigError) as info:
        load_project(tmp_path)
    text = str(info.value)
    assert "personify.yml:" in text and "quality" in text and message in text
