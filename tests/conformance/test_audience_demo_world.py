"""Batch rules = real-time rules on every customer of a demo world (built, imported, resolved
and profiled by the real pipeline), with the scaffold's rule and a richer rule file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conformance.audience_data import batch_tags, realtime_tags

from personify import clock, pipeline
from personify.audiences.stage import project_rules
from personify.demo import make_demo_project
from personify.session import open_session

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
RULES = """
rules:
  - id: vip
    when: total_spent >= 500 OR (order_count >= 3 AND engagement_score > 50)
    group: lifecycle
    priority: 10
    variables:
      spent: total_spent
      orders: order_count
  - id: at_risk
    when: lifecycle_stage IN ('at_risk', 'lapsed') AND COALESCE(open_tickets, 0) = 0
    group: lifecycle
  - id: browsers
    when: order_count IS NULL OR order_count = 0
    tag: welcome
    variables:
      engagement: ROUND_ME
  - id: engaged_no_categories
    when: engagement_score > 20 AND JSON_ARRAY_LENGTH(preferred_categories) = 0
    tag: welcome
  - id: france
    when: country = 'FR' AND last_seen_at > NOW() - INTERVAL 1 MONTH
    variables:
      city: city
      categories: preferred_categories
""".replace("ROUND_ME", "FLOOR(engagement_score / 10) * 10")


@pytest.mark.slow
def test_batch_equals_real_time_on_every_demo_customer(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    make_demo_project(root, customers=1000, seed=11, now=NOW)
    (root / "rules" / "more.yml").write_text(RULES)
    with clock.frozen(NOW), open_session(root) as session:
        report = pipeline.run(session)
        counts = {s.name: s.counts for s in report.stages}["audiences"]
        wh = session.warehouse
        rules = project_rules(session.project)
        assert [r.id for r in rules] == [
            "vip",  # priority 10 first; then files by name, rules in file order
            "at_risk",
            "browsers",
            "engaged_no_categories",
            "france",
            "re_engagement",
        ]
        assert wh.scalar("SELECT count(*) FROM customers") >= 1000
        batch = batch_tags(wh)
        assert batch == realtime_tags(wh, rules, NOW)
        assert counts["tags"] == len(batch)
        tags = {tag for _, tag in batch}
        assert {"vip", "re_engagement", "welcome"} <= tags  # the world exercises the rules
