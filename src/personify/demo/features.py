"""What ``personify demo`` shows of the newer features, beside the main job: the VIP list it
uploads before the run, and after it a short account of each — the French emails (locale
variants), the shared footer (a partial), the predictive traits and the segment reading them,
the list's segment, the alerts.

The demo project's files behind them come from ``personify/demo/skeleton`` (copied by
:func:`personify.demo.project.add_demo_files`) and its ``personify.yml`` sections
(:data:`~personify.demo.project.PREDICTIVE_YAML`, :data:`~personify.demo.project.ALERTS_YAML`).
No identifier is returned but the customer id of one French recipient (for the
``personify render`` command the summary suggests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from personify.demo.project import DemoProject
    from personify.pipeline import RunReport
    from personify.session import Session

VIP_LIST: Final = "vip"
"""The list the demo uploads the world's VIP sheet into (``segments/vip.sql`` reads it)."""
SEGMENTS: Final = ("vip", "likely_buyers", "loyalty_gold")
"""The demo's own segments."""
FRENCH_SUBJECT: Final = "votre panier vous attend"
"""Ends the subject of ``templates/abandoned_cart.fr.liquid``."""
FOOTER_TEXT: Final = "Free returns within 30 days"
"""Text of ``templates/partials/footer.liquid``."""


def upload_vip_list(session: Session, demo: DemoProject) -> dict[str, Any]:
    """Upload the world's VIP sheet (``data/lists/vip.csv``) into the list ``vip``, as
    ``personify lists upload vip data/lists/vip.csv`` does: the same file again adds nothing.
    Its counts (``rows_read``, ``rows_added``, ``rows_quarantined`` …)."""
    from personify.audiences.lists import upload_list
    from personify.demo.files import VIP_LIST as VIP_FILE

    result = upload_list(session, VIP_LIST, demo.data / VIP_FILE, kind="email", column="email")
    return {"list": VIP_LIST, "file": result.file, **result.counts}


RELATION: Final = "loyalty"
"""The relation's local name (``relations: {loyalty: analytics.loyalty}``)."""
TEAM_TABLE: Final = "analytics.loyalty"
"""Where the demo, as the data team's loader, puts the world's loyalty table."""


def load_team_table(session: Session, demo: DemoProject) -> int:
    """Put the world's loyalty table (``data/analytics/loyalty.parquet``) into the warehouse as
    ``analytics.loyalty``, replacing it — what the data team's own loader (dbt, a script) would
    do; the project reads it through ``relations:``. The demo's warehouse is DuckDB (its
    scaffold's); on another the table is left to the team. Its rows."""
    import pyarrow.parquet as pq

    from personify.demo.files import LOYALTY
    from personify.warehouse.duckdb.backend import DuckDBWarehouse

    wh = session.warehouse
    if not isinstance(wh, DuckDBWarehouse):
        return 0
    table = pq.read_table(demo.data / LOYALTY)
    schema, name = TEAM_TABLE.split(".")
    with wh.transaction():
        wh.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        columns = "email VARCHAR, points BIGINT, tier VARCHAR"
        wh.execute(f"CREATE OR REPLACE TABLE {TEAM_TABLE} ({columns})")
        with wh.register(f"_demo_{name}", table):
            wh.execute(f"INSERT INTO {TEAM_TABLE} SELECT email, points, tier FROM _demo_{name}")
    return int(table.num_rows)


def features_summary(
    session: Session, report: RunReport, vip: dict[str, Any] | None
) -> dict[str, Any]:
    """The newer features as the run left them (see the module doc)."""
    wh = session.warehouse
    members = dict(
        wh.fetch(
            "SELECT segment, count(*) FROM segment_memberships "
            "WHERE exited_at IS NULL GROUP BY segment"
        )
    )
    segments = {name: int(members.get(name, 0)) for name in SEGMENTS}
    french = wh.fetch(
        "SELECT count(*) FILTER (WHERE m.subject LIKE ?), count(*), "
        "min(CASE WHEN m.subject LIKE ? THEN m.customer_id END) "
        "FROM messages m JOIN customers c ON c.customer_id = m.customer_id "
        "WHERE m.status = 'sent' AND m.template = 'abandoned_cart' "
        "AND lower(c.locale) LIKE 'fr%'",
        [f"%{FRENCH_SUBJECT}", f"%{FRENCH_SUBJECT}"],
    )[0]
    customers_fr = wh.scalar("SELECT count(*) FROM customers WHERE lower(locale) LIKE 'fr%'")
    locales = wh.scalar("SELECT count(*) FROM customers WHERE locale IS NOT NULL")
    languages = {
        "customers_with_locale": int(locales or 0),
        "customers_fr": int(customers_fr or 0),
        "cart_emails_fr": int(french[1] or 0),
        "cart_emails_in_french": int(french[0] or 0),
        "french_customer": french[2],
        "template": "templates/abandoned_cart.fr.liquid",
    }
    tiers = dict(wh.fetch(f"SELECT tier, count(*) FROM {TEAM_TABLE} GROUP BY tier"))
    return {
        "languages": languages,
        "partials": {
            "files": ["templates/partials/footer.liquid", "templates/partials/fr/footer.liquid"]
        },
        "predictive": _predictive(session, segments["likely_buyers"]),
        "lists": None if vip is None else {**vip, "segment_members": segments["vip"]},
        "relations": {
            RELATION: {
                "table": TEAM_TABLE,
                "tiers": {str(k): int(v) for k, v in sorted(tiers.items())},
                "segment_members": segments["loyalty_gold"],
            }
        },
        "segments": segments,
        "alerts": report.alerts,
    }


def _predictive(session: Session, likely_buyers: int) -> dict[str, Any] | None:
    """The last fit and how many customers got predictions (None: not enabled)."""
    if not session.project.config.traits.predictive.enabled:
        return None
    from personify.profiles.predictive import latest_fit

    fit = latest_fit(session.warehouse)
    filled = session.warehouse.scalar("SELECT count(*) FROM customers WHERE p_alive IS NOT NULL")
    return {
        "status": None if fit is None else fit.status,
        "note": None if fit is None else fit.note,
        "customers_fitted": None if fit is None else fit.customers,
        "customers_predicted": int(filled or 0),
        "likely_buyers": likely_buyers,
    }
