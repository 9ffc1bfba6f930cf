"""A broken template stops only the journeys that send it, on every backend: ``personify run``'s
journeys stage skips them with the error (the journey's file:line and key, the template's
file:line) and advances the others, whose emails the delivery stage sends; the run ends failed
naming it and ``status`` shows it; the skipped journeys' queued emails wait, untouched, and go
out once the template is fixed. ``serve``'s journey tick leaves them alone the same way."""

from __future__ import annotations

from datetime import timedelta

from tests.conformance.journey_support import HELLO, HOUR, NOW, Shop, events, people, shop

from personify import clock, pipeline
from personify.journeys import delivery_stage, journeys_stage
from personify.realtime.reactions import tick
from personify.status import status_report

__all__ = ["shop"]  # (the fixture, imported)

STAGES = (("journeys", journeys_stage), ("delivery", delivery_stage))
PROMO = "---\nsubject: Promo {{ customer.first_name }}\nlayout: none\n---\n<p>Promo</p>\n"
BROKEN_FR = "---\nsubject: Promo\nlayout: none\n---\n<p>\n{% if %}</p>\n"


def _two_journeys(shop: Shop) -> None:
    """``news`` sends ``hello``, ``promo`` sends ``promo`` (with a French version); both on
    Signed Up, for x and y (consenting)."""
    shop.write("templates/hello.liquid", HELLO)
    shop.write("templates/promo.liquid", PROMO)
    shop.write("templates/promo.fr.liquid", PROMO.replace("Promo", "Promo fr"))
    shop.write(
        "journeys/news.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: news}\n",
    )
    shop.write(
        "journeys/promo.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - wait: 3h\n  - send: promo\n",
    )
    shop.configure("journeys:\n  frequency_cap: null\n")
    people(shop.wh, {"customer_id": "x"}, {"customer_id": "y"}, consent=["x", "y"])
    events(shop.wh, *((c, "Signed Up", NOW - HOUR, {}) for c in ("x", "y")))


def _statuses(shop: Shop) -> dict[str, str]:
    """customer:journey → the statuses of its messages, in decision order."""
    out: dict[str, str] = {}
    for customer, journey, status in shop.wh.fetch(
        "SELECT customer_id, journey, status FROM messages ORDER BY decided_at, journey"
    ):
        key = f"{customer}:{journey}"
        out[key] = f"{out[key]},{status}" if key in out else str(status)
    return out


def test_a_broken_template_skips_only_the_journeys_that_send_it(shop: Shop) -> None:
    _two_journeys(shop)
    with clock.frozen(NOW):  # promo enters and waits; news sends
        first = pipeline.run(shop.session, stages=STAGES)
    assert first.problems == []
    assert _statuses(shop) == {"x:news": "sent", "y:news": "sent"}

    # promo's wait expires: it decides its emails, then its French version breaks
    with clock.frozen(NOW + 2 * HOUR):
        journeys_stage(shop.session)
    assert _statuses(shop)["x:promo"] == "queued"
    shop.write("templates/promo.fr.liquid", BROKEN_FR)
    shop.write(
        "journeys/news.yml",
        shop.root.joinpath("journeys/news.yml").read_text().replace("Signed Up", "Logged In"),
    )
    events(shop.wh, *((c, "Logged In", NOW + 2 * HOUR, {}) for c in ("x", "y")))
    at = NOW + 3 * HOUR
    with clock.frozen(at):
        report = pipeline.run(shop.session, stages=STAGES)
    (problem,) = report.problems
    said = " ".join(problem.split())
    assert said.startswith("journeys: journeys/promo.yml:")
    assert "steps[1].send" in said and "promo.fr.liquid:6" in said, said
    journeys, delivery = report.stages
    assert journeys.counts["journeys_failed"] == 1 and journeys.counts["journeys"] == 2
    assert journeys.counts["news.decided"] == 2 and "promo.decided" not in journeys.counts
    assert delivery.counts["sent"] == 2 and delivery.problems == []
    statuses = _statuses(shop)
    assert statuses["x:promo"] == statuses["y:promo"] == "queued"  # waiting, not failed
    assert statuses["x:news"] == statuses["y:news"] == "sent,sent"  # Signed Up, Logged In
    assert len(shop.outbox()) == 4
    status = status_report(shop.session)
    assert status["last_run"]["status"] == "failed"
    assert status["last_run"]["errors"] == [problem]

    # serve's tick leaves the journey alone too
    assert tick(shop.session, now=at + HOUR).broken == ["promo"]
    assert _statuses(shop)["x:promo"] == "queued"

    shop.write("templates/promo.fr.liquid", PROMO)  # fixed: its emails go out, once
    with clock.frozen(at + 2 * HOUR):
        fixed = pipeline.run(shop.session, stages=STAGES)
    assert fixed.problems == []
    assert _statuses(shop)["x:promo"] == _statuses(shop)["y:promo"] == "sent"
    with clock.frozen(at + 2 * HOUR):
        assert pipeline.run(shop.session, stages=STAGES).problems == []
    assert len(shop.outbox()) == 6


def test_a_missing_template_skips_its_journey(shop: Shop) -> None:
    _two_journeys(shop)
    (shop.root / "templates" / "promo.liquid").unlink()
    (shop.root / "templates" / "promo.fr.liquid").unlink()
    with clock.frozen(NOW + timedelta(hours=2)):
        report = pipeline.run(shop.session, stages=STAGES)
    (problem,) = report.problems
    assert "journeys/promo.yml:" in problem and "no template 'promo'" in problem
    assert _statuses(shop) == {"x:news": "sent", "y:news": "sent"}
