"""Journey files: the scaffold's parse, and mistakes name the file, line and key."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from personify.errors import ConfigError, DefinitionError
from personify.journeys import load_journeys, parse_journey

SCAFFOLD = Path(__file__).parents[3] / "src" / "personify" / "scaffold" / "journeys"
DAY = timedelta(days=1)


def parse(text: str) -> object:
    return parse_journey(
        text, file="journeys/j.yml", default_name="j", lookback=DAY, purpose="email_marketing"
    )


def test_the_scaffold_journeys_parse() -> None:
    journeys = {j.name: j for j in load_journeys(SCAFFOLD, lookback=DAY, purpose="m")}
    cart = journeys["abandoned_cart"]
    assert cart.trigger.kind == "event" and cart.trigger.name == "Product Added"
    assert cart.trigger.key == "properties.cart_id" and cart.trigger.within == DAY
    assert cart.goal is not None and cart.goal.key == "properties.cart_id"
    assert [s.kind for s in cart.steps] == ["wait", "send"]
    assert cart.steps[0].duration == timedelta(hours=1)
    send = cart.steps[1]
    assert send.id == "remind" and send.template == "abandoned_cart"
    providers = {v.name: v.provider for v in send.variables}
    assert providers == {
        "cart": "cart",
        "recommendations": "recommendations",
        "discount": "discount",
        "currency": None,
    }
    again = journeys["re_engagement"]
    assert again.trigger.kind == "tag" and again.reentry == "after"
    assert again.reentry_after == timedelta(days=30)


def test_every_step_kind_and_trigger() -> None:
    journey = parse(
        """
trigger: {schedule: 2026-12-01T09:00:00Z, every: 7d, segment: newsletter}
reentry: never
capped: false
steps:
  - wait: {until: "09:30"}
  - branch: {if: "engagement_score > 50", then: thanks, else: exit}
  - id: thanks
    send: hello
    with: {note: hi, n: 3}
  - tag: greeted
  - exit
"""
    )
    assert journey is not None
    trigger = journey.trigger  # type: ignore[attr-defined]
    assert trigger.kind == "schedule" and trigger.name == "newsletter"
    assert trigger.occurrence(datetime(2026, 12, 9, tzinfo=UTC)) == datetime(
        2026, 12, 8, 9, tzinfo=UTC
    )
    assert trigger.occurrence(datetime(2026, 11, 1, tzinfo=UTC)) is None
    steps = journey.steps  # type: ignore[attr-defined]
    assert [s.kind for s in steps] == ["wait_until", "branch", "send", "tag", "exit"]
    assert steps[0].until == time(9, 30)
    assert (steps[1].then, steps[1].otherwise) == (2, None)
    assert [(v.name, v.value) for v in steps[2].variables] == [("note", "hi"), ("n", 3)]
    assert journey.capped is False and journey.reentry == "never"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("trigger: {event: X}\nsteps: []\n", "j.yml:2: steps", "a list of steps"),
        ("steps:\n  - exit\n", "j.yml", "needs a trigger"),
        ("trigger: {event: X, tag: y}\nsteps: [exit]\n", "j.yml:1: trigger", "exactly one"),
        ("trigger: {event: X, within: soon}\nsteps: [exit]\n", "j.yml:1: trigger.within", "30m"),
        ("trigger: {event: X, key: cart}\nsteps: [exit]\n", "j.yml:1: trigger.key", "event field"),
        ("trigger: {event: X}\nreentry: sometimes\nsteps: [exit]\n", "j.yml:2: reentry", "policy"),
        ("trigger: {event: X}\nsteps:\n  - wait: 5 fortnights\n", "j.yml:3: steps[0].wait", "30m"),
        (
            "trigger: {event: X}\nsteps:\n  - wait: {until: '25:00'}\n",
            "j.yml:3: steps[0].wait.until",
            "local time",
        ),
        (
            "trigger: {event: X}\nsteps:\n  - send: t\n    with: {c: {from: basket}}\n",
            "j.yml:4: steps[0].with.c.from",
            "unknown provider",
        ),
        (
            "trigger: {event: X}\nsteps:\n  - branch: {if: engagment > 1}\n",
            "j.yml:3: steps[0].branch.if",
            "engagement_score",
        ),
        (
            "trigger: {event: X}\nsteps:\n  - branch: {if: TRUE, then: nowhere}\n",
            "j.yml:3: steps[0].branch.then",
            "no step",
        ),
        ("trigger: {event: X}\nsteps:\n  - sned: t\n", "j.yml:3: steps[0].sned", "unknown key"),
        (
            "trigger: {event: X}\ngoal: {event: Y, key: properties.c}\nsteps: [exit]\n",
            "j.yml:2: goal.key",
            "trigger has none",
        ),
        (
            "trigger: {tag: t}\nsteps:\n  - id: a\n    exit: true\n  - id: a\n    tag: b\n",
            "j.yml:5: steps[1].id",
            "two steps",
        ),
    ],
)
def test_mistakes_name_file_line_and_key(text: str, where: str, words: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse(text)
    message = str(info.value)
    assert message.startswith("journeys/" + where), message
    assert words in message


def test_bad_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse("trigger: {event: X\nsteps: []\n")
    assert "journeys/j.yml:" in str(info.value)


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("name: same\ntrigger: {event: X}\nsteps: [exit]\n")
    (tmp_path / "b.yml").write_text("name: same\ntrigger: {event: Y}\nsteps: [exit]\n")
    with pytest.raises(DefinitionError, match="also defined in"):
        load_journeys(tmp_path, lookback=DAY, purpose="m", root=tmp_path)


def test_a_send_step_naming_a_missing_template_is_refused(tmp_path: Path) -> None:
    from personify.config import load_project
    from personify.journeys.stage import check_templates, project_journeys
    from personify.scaffold import init_project

    init_project(tmp_path)
    (tmp_path / "journeys" / "typo.yml").write_text(
        "trigger: {event: X}\nsteps:\n  - wait: 1h\n  - send: abandonned_cart\n"
    )
    project = load_project(tmp_path)
    with pytest.raises(DefinitionError) as info:
        check_templates(project, project_journeys(project))
    assert str(info.value).startswith("journeys/typo.yml:4: steps[1].send: no template")
    assert "abandoned_cart" in str(info.value)


JOURNEY_HI = "trigger: {event: X}\nsteps:\n  - wait: 1h\n  - send: hi\n"
HI = (
    "---\nsubject: Hi {{ customer.first_name }}\nlayout: none\n---\n"
    "<p>hi</p>\n{% render 'sign' %}\n"
)


@pytest.mark.parametrize(
    ("files", "said"),
    [
        # a language version that does not parse: its file and line
        ({"hi.fr.liquid": "---\nsubject: Salut\n---\n<p>\n{% iff x %}</p>\n"}, "hi.fr.liquid:5"),
        # a language version without a subject
        ({"hi.de.liquid": "<p>Hallo</p>\n"}, "hi.de.liquid: no subject"),
        # its subject is no Liquid
        ({"hi.fr.liquid": "---\nsubject: Salut {{ \n---\n<p>x</p>\n"}, "hi.fr subject"),
        # a partial a version renders is missing: the line that renders it
        (
            {"hi.fr.liquid": "---\nsubject: S\n---\n<p>x</p>\n{% render 'signe' %}\n"},
            "hi.fr.liquid:5",
        ),
        # a partial that does not parse: the partial's own file and line
        ({"partials/sign.liquid": "<p>\n{% if %}</p>\n"}, "partials/sign.liquid:2"),
        # a partial that a partial renders is missing
        ({"partials/sign.liquid": "<p>a</p>\n{% render 'logo' %}\n"}, "partials/sign.liquid:2"),
    ],
)
def test_every_language_version_and_partial_of_a_sent_template_is_checked_at_load(
    tmp_path: Path, files: dict[str, str], said: str
) -> None:
    from personify.config import load_project
    from personify.journeys.stage import check_templates, project_journeys
    from personify.scaffold import init_project

    init_project(tmp_path)
    templates = tmp_path / "templates"
    (tmp_path / "journeys" / "hi.yml").write_text(JOURNEY_HI)
    (templates / "partials").mkdir(exist_ok=True)
    (templates / "partials" / "sign.liquid").write_text("<p>sign</p>\n")
    (templates / "hi.liquid").write_text(HI)
    project = load_project(tmp_path)
    check_templates(project, project_journeys(project))  # all good
    for name, text in files.items():
        (templates / name).write_text(text)
    with pytest.raises(DefinitionError) as info:
        check_templates(project, project_journeys(project))
    message = str(info.value)
    assert message.startswith("journeys/hi.yml:4: steps[1].send: template "), message
    assert said in message


def test_a_language_version_named_as_a_template_is_refused_saying_which(tmp_path: Path) -> None:
    from personify.config import load_project
    from personify.journeys.stage import check_templates, project_journeys
    from personify.scaffold import init_project

    init_project(tmp_path)
    (tmp_path / "templates" / "hi.liquid").write_text("---\nsubject: Hi\n---\n<p>hi</p>\n")
    (tmp_path / "templates" / "hi.fr.liquid").write_text("---\nsubject: Salut\n---\n<p>x</p>\n")
    (tmp_path / "journeys" / "hi.yml").write_text(JOURNEY_HI.replace("send: hi", "send: hi.fr"))
    project = load_project(tmp_path)
    with pytest.raises(DefinitionError) as info:
        check_templates(project, project_journeys(project))
    assert str(info.value).startswith("journeys/hi.yml:4: steps[1].send: no template 'hi.fr'")
    assert "hi.fr.liquid is the fr language version of hi: send 'hi'" in str(info.value)


EXPERIMENT = """
trigger: {event: Product Added}
steps:
  - id: remind
    send: hello
    with:
      discount: {from: discount, campaign: cart_5}
      note: hi
    holdout: HOLDOUT
    variants:
VARIANTS
"""


def experiment(variants: str, holdout: str = "10%") -> object:
    return parse(EXPERIMENT.replace("HOLDOUT", holdout).replace("VARIANTS", variants))


def test_a_send_step_with_variants_and_a_holdout() -> None:
    journey = experiment(
        "      - {name: plain}\n"
        "      - {name: ten, weight: 3, discount: cart_10,\n"
        "         subject: 'Hi {{ customer.first_name }}'}\n"
        "      - {name: other, weight: 0.5, template: hello_b, with: {note: yo}}\n"
    )
    step = journey.steps[0]  # type: ignore[attr-defined]
    assert step.experiment.name == "j.remind" and step.experiment.holdout == pytest.approx(0.1)
    assert step.experiment.weights == {"plain": 1.0, "ten": 3.0, "other": 0.5}
    ten = step.arm("ten")
    assert {v.name: v.options.get("campaign") for v in ten.variables if v.provider} == {
        "discount": "cart_10"
    }
    assert step.experiment.variant("ten").subject == "Hi {{ customer.first_name }}"
    other = step.arm("other")
    assert (
        other.template == "hello_b" and {v.name: v.value for v in other.variables}["note"] == "yo"
    )
    assert step.arm("plain") == step.arm(None) == step.arm("holdout") == step


def test_a_variant_subject_per_language_version() -> None:
    journey = experiment(
        "      - {name: plain, subject: Hi}\n"
        "      - {name: both, subject: {default: Hi, fr_ca: Allo, fr: Salut}}\n"
        "      - {name: only_fr, subject: {fr: Salut}}\n"
    )
    ex = journey.steps[0].experiment  # type: ignore[attr-defined]
    assert ex.variant("plain").subject_lines() == {"": "Hi"}  # every language version
    both = ex.variant("both")
    assert both.subject == "Hi" and both.subjects == (("fr", "Salut"), ("fr-CA", "Allo"))
    assert both.subject_lines() == {"": "Hi", "fr": "Salut", "fr-CA": "Allo"}
    only_fr = ex.variant("only_fr")
    assert only_fr.subject is None and only_fr.subject_lines() == {"fr": "Salut"}


@pytest.mark.parametrize(
    ("variants", "holdout", "where", "words"),
    [
        (
            "      - {name: a, weight: -1}\n",
            "10%",
            "j.yml:11: steps[0].variants[0].weight",
            "cannot be",
        ),
        ("      - {name: a, weight: heavy}\n", "10%", "steps[0].variants[0].weight", "a number"),
        (
            "      - {name: a, weight: 0}\n      - {name: b, weight: 0}\n",
            "0",
            "steps[0].variants",
            "add up to 0",
        ),
        ("      - {name: a}\n", "100%", "j.yml:9: steps[0].holdout", "not a holdout share"),
        ("      - {name: a}\n", "1.5", "steps[0].holdout", "not a holdout share"),
        ("      - {name: a}\n", "lots", "steps[0].holdout", "not a holdout share"),
        (
            "      - {name: a}\n      - {name: a}\n",
            "0",
            "steps[0].variants[1].name",
            "two variants",
        ),
        ("      - {name: holdout}\n", "0", "steps[0].variants[0].name", "receives nothing"),
        ("      - {weight: 1}\n", "0", "steps[0].variants[0]", "needs a name"),
        ("      - {name: a, colour: red}\n", "0", "steps[0].variants[0].colour", "unknown key"),
        ("      - {name: a, subject: '{{ oops'}\n", "0", "steps[0].variants[0].subject", "Liquid"),
        (  # a time zone written in the line that is none: found by the check, not each render
            "      - {name: a, subject: \"{{ 'now' | date: 'long', 'Europe/Pariss' }}\"}\n",
            "0",
            "steps[0].variants[0].subject",
            "'Europe/Pariss' is not a time zone",
        ),
        (
            "      - {name: a, subject: {fr: \"{{ 'now' | date: 'long', zone: 'Mars/Base' }}\"}}\n",
            "0",
            "steps[0].variants[0].subject.fr",
            "'Mars/Base' is not a time zone",
        ),
        ("      []\n", "0", "steps[0].variants", "list of variants"),
        ("      - {name: a, subject: {}}\n", "0", "steps[0].variants[0].subject", "no language"),
        (
            "      - {name: a, subject: {French: Salut}}\n",
            "0",
            "steps[0].variants[0].subject.French",
            "not a locale tag",
        ),
        (
            "      - {name: a, subject: {fr: '{{ oops'}}\n",
            "0",
            "steps[0].variants[0].subject.fr",
            "Liquid",
        ),
        (
            "      - {name: a, subject: {fr: A, FR: B}}\n",
            "0",
            "steps[0].variants[0].subject.FR",
            "given twice",
        ),
    ],
)
def test_bad_experiments_name_the_line_and_key(
    variants: str, holdout: str, where: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        experiment(variants, holdout)
    text = str(caught.value)
    assert where in text and words in text, text


def test_experiment_keys_only_on_send_steps_and_discount_needs_a_discount() -> None:
    with pytest.raises(DefinitionError, match="only send steps take holdout"):
        parse("trigger: {event: X}\nsteps:\n  - wait: 1h\n    holdout: 10%\n")
    with pytest.raises(DefinitionError, match=r"no \{from: discount\} variable"):
        parse(
            "trigger: {event: X}\nsteps:\n  - send: hello\n"
            "    variants: [{name: a, discount: big}]\n"
        )
    with pytest.raises(DefinitionError, match="needs variants: or a holdout"):
        parse("trigger: {event: X}\nsteps:\n  - send: hello\n    experiment: e1\n")
    named = parse(
        "trigger: {event: X}\nsteps:\n  - send: hello\n    experiment: spring\n    holdout: 0.2\n"
    )
    exp = named.steps[0].experiment  # type: ignore[attr-defined]
    assert exp.name == "spring" and exp.weights == {"control": 1.0} and exp.holdout == 0.2


def test_the_scaffold_experiment_example_parses_when_uncommented() -> None:
    text = (SCAFFOLD / "re_engagement.yml").read_text(encoding="utf-8")
    start = text.index("    # holdout: 10%")
    example = "\n".join(  # one "# " off each line: nested comments stay comments
        line.replace("# ", "", 1) if line.lstrip().startswith("# ") else line
        for line in text[start:].splitlines()
    )
    journey = parse(text[:start] + example + "\n")
    step = journey.steps[0]  # type: ignore[attr-defined]
    assert step.experiment.holdout == pytest.approx(0.1)
    assert step.experiment.weights == {"as_written": 1.0, "we_miss_you": 1.0}
    assert step.experiment.name == "re_engagement.step1"


def test_a_branch_reads_the_engagement_of_an_earlier_send_step_by_its_id() -> None:
    from personify.journeys.definitions import Journey
    from personify.journeys.engine import _engagement

    journey = parse(
        "trigger: {event: X}\nsteps:\n  - id: Re-mind\n    send: t\n"
        '  - branch: {if: "message.\\"re-mind\\".opened AND NOT message.\\"Re-mind\\".clicked"}\n'
    )
    assert isinstance(journey, Journey)
    condition = journey.steps[1].condition
    assert condition is not None
    assert condition.columns == ("message.re-mind.opened", "message.re-mind.clicked")
    sql = _engagement(condition.tree.copy(), journey).sql(dialect="duckdb")
    assert sql.count("pm.step = 'Re-mind'") == 2, sql
    assert "'Email Opened', 'Email Link Clicked'" in sql and "<> 'true'" in sql


def test_only_a_journey_branch_reads_engagement_not_a_rule() -> None:
    from personify.audiences.expressions import ExpressionError, check_expression, profile_columns

    with pytest.raises(ExpressionError, match="qualified column"):
        check_expression("message.remind.opened", dialect="duckdb", columns=profile_columns())


def test_event_variables_keep_the_options_the_file_wrote() -> None:
    # The trigger reaches ``{from: event}`` at send time as an argument, not through options.
    journey = parse(
        "trigger: {event: Order Shipped, key: properties.order_id, where: 'properties.total > 5'}\n"
        "steps:\n  - send: shipped\n    with:\n"
        "      order: {from: event}\n"
        "      carrier: {from: event, path: properties.carrier, default: us}\n"
    )
    variables = {v.name: v.options for v in journey.steps[0].variables}  # type: ignore[attr-defined]
    assert variables == {"order": {}, "carrier": {"path": "properties.carrier", "default": "us"}}
