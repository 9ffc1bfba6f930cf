"""Audiences: SQL segments with memberships, and a rules engine that tags customers.

- :mod:`.segments` — segment files (a header, one SELECT in any dialect), checked and transpiled;
- :mod:`.memberships` — refreshes by set difference; entries and exits in ``audience_changes``;
- :mod:`.rules`, :mod:`.expressions` — rule files and their allow-listed SQL expressions;
- :mod:`.batch` — every rule compiled into SQL over all customers, writing ``customer_tags``;
- :mod:`.realtime`, :mod:`.interpreter` — the same rules for one profile, in Python;
- :mod:`.stage` — the pipeline stage and the operations the CLI calls.
"""

from personify.audiences.batch import TagCounts as TagCounts
from personify.audiences.batch import write_tags as write_tags
from personify.audiences.memberships import RefreshResult as RefreshResult
from personify.audiences.memberships import refresh_segment as refresh_segment
from personify.audiences.memberships import refresh_segments as refresh_segments
from personify.audiences.realtime import Assignment as Assignment
from personify.audiences.realtime import Outcome as Outcome
from personify.audiences.realtime import evaluate_profile as evaluate_profile
from personify.audiences.realtime import explain_profile as explain_profile
from personify.audiences.rules import Rule as Rule
from personify.audiences.rules import load_rules as load_rules
from personify.audiences.rules import parse_rules as parse_rules
from personify.audiences.segments import Segment as Segment
from personify.audiences.segments import load_segments as load_segments
from personify.audiences.segments import parse_segment as parse_segment
from personify.audiences.stage import audiences_stage as audiences_stage
from personify.audiences.stage import project_rules as project_rules
from personify.audiences.stage import project_segments as project_segments

__all__ = [
    "Assignment",
    "Outcome",
    "RefreshResult",
    "Rule",
    "Segment",
    "TagCounts",
    "audiences_stage",
    "evaluate_profile",
    "explain_profile",
    "load_rules",
    "load_segments",
    "parse_rules",
    "parse_segment",
    "project_rules",
    "project_segments",
    "refresh_segment",
    "refresh_segments",
    "write_tags",
]
