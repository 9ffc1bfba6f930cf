"""``personify traits predictive``: the predictive traits' last fit — its parameters, how well
it fits — and, with ``--holdout``, predicted against actual purchases in a holdout period."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from personify.cli.app import (
    JsonOpt,
    NowOpt,
    ProjectOpt,
    app,
    console,
    emit_json,
    out_file,
    pin_now,
    write_out,
)

traits_app = typer.Typer(
    help="Computed traits: the predictive models (traits.predictive) and how well they fit.",
    no_args_is_help=True,
)
app.add_typer(traits_app, name="traits", rich_help_panel="People")


@traits_app.command("predictive")
def predictive_command(
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
    now: NowOpt = None,
    holdout: Annotated[
        bool,
        typer.Option(
            "--holdout",
            help="Also fit on the orders up to --now less the horizon and compare its "
            "predictions with the purchases that followed, by repeat-purchase count.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "--html",
            help="With --holdout: also write the comparison as an HTML page with a chart of "
            "predicted vs actual purchases to this file.",
        ),
    ] = None,
) -> None:
    """The predictive traits' last fit and how well it predicts.

    The last fit of the predictive traits (p_alive, expected_orders, predicted_clv — made on
    every full profile build when traits.predictive.enabled): when, on how many customers, the
    BG/NBD parameters (r, alpha per day, a, b) and the Gamma-Gamma spend ones (p, q, gamma),
    log-likelihoods and convergence — or why there was no fit (too little data). --holdout
    checks the model on this project's own orders."""
    from personify.profiles import predictive, predictive_report
    from personify.session import open_session

    pin_now(now)
    out_file(out)
    if out is not None and not holdout:
        raise typer.BadParameter("--out writes the holdout comparison: add --holdout")
    with open_session(project) as session:
        fit = predictive.latest_fit(session.warehouse)
        check = predictive_report.holdout(session.warehouse, session.project) if holdout else None
        enabled = session.project.config.traits.predictive.enabled
        name = session.project.config.name
    doc: dict[str, Any] = {
        "enabled": enabled,
        "fit": None
        if fit is None
        else {
            "status": fit.status,
            "note": fit.note,
            "fitted_at": fit.quality.pop("fitted_at", None),
            "horizon_days": fit.horizon_days,
            "customers": fit.customers,
            "repeat_customers": fit.repeat_customers,
            "params": fit.params(),
            "quality": fit.quality,
        },
    }
    if check is not None:
        doc["holdout"] = asdict(check)
        if out is not None:
            write_out(out, predictive_report.holdout_page(check, name))
    if json:
        emit_json(doc)
        return
    _print(doc, check, out)


def _print(doc: dict[str, Any], check: Any, out: Path | None) -> None:
    shown = console()
    fit = doc["fit"]
    if not doc["enabled"]:
        shown.print("traits.predictive.enabled is off: profile builds make no fit", markup=False)
    if fit is None:
        shown.print("no fit recorded yet: run the pipeline (`personify run`)", markup=False)
    else:
        shown.print(
            f"fit of {fit['fitted_at']}: {fit['status']}, {fit['customers']:,} customers with "
            f"an order, {fit['repeat_customers']:,} with a repeat purchase, horizon "
            f"{fit['horizon_days']} days",
            markup=False,
        )
        if fit["note"]:
            shown.print(f"note: {fit['note']}", markup=False)
        params = fit["params"] or {}
        table = Table("model", "parameters", "log-likelihood", "converged", title="Parameters")
        for model, label in (("bgnbd", "BG/NBD (per day)"), ("gamma_gamma", "Gamma-Gamma")):
            values = params.get(model)
            if not values:
                continue
            quality = fit["quality"].get(model, {})
            table.add_row(
                label,
                ", ".join(f"{k}={v:.4g}" for k, v in values.items()),
                f"{quality.get('log_likelihood', float('nan')):,.1f}",
                str(quality.get("converged")),
            )
        if params:
            shown.print(table)
    if check is None:
        return
    if check.status != "fitted":
        shown.print(f"holdout: no fit as of {check.calibration_end}: {check.note}", markup=False)
        return
    rows = Table(
        "repeat purchases before",
        "customers",
        "predicted (mean)",
        "actual (mean)",
        title=f"Holdout: {check.horizon_days} days after {check.calibration_end}",
    )
    for r in check.rows:
        rows.add_row(r.frequency, f"{r.customers:,}", f"{r.predicted:.3f}", f"{r.actual:.3f}")
    shown.print(rows)
    shown.print(
        f"total: predicted {check.predicted_total:,.1f}, actual {check.actual_total:,} purchase "
        f"days; mean absolute error per customer {check.mean_absolute_error:.3f}",
        markup=False,
    )
    if out is not None:
        shown.print(f"HTML report: {out}", markup=False, soft_wrap=True)
