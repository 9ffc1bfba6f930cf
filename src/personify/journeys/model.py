"""What a checked journey file is: its trigger, steps (with their variables and experiments),
goal and re-entry policy (:func:`personify.journeys.definitions.parse_journey` builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal

from personify.audiences.expressions import Expression


@dataclass(frozen=True)
class Trigger:
    """How customers enter."""

    kind: Literal["event", "segment", "tag", "schedule"]
    name: str
    """The event name, the segment, the tag, or (schedule) the segment broadcast to."""
    key: str | None = None
    """Event triggers: the event field (``properties.cart_id``) that keys an entry."""
    within: timedelta = timedelta(hours=24)
    """Lookback: older triggers never enter."""
    at: datetime | None = None
    """Schedule: the (first) occurrence."""
    every: timedelta | None = None
    """Schedule: repeat at this interval after ``at``."""
    where: str | None = None
    """Event triggers: the filter an entering event must pass, compiled to SQL over the events
    alias ``e`` (:mod:`personify.journeys.filters`)."""

    def occurrence(self, now: datetime) -> datetime | None:
        """Schedule: the latest occurrence at or before ``now`` (``None`` before the first)."""
        if self.at is None or now < self.at:
            return None
        if self.every is None:
            return self.at
        n = (now - self.at) // self.every
        return self.at + n * self.every


@dataclass(frozen=True)
class Goal:
    """An event that ends the journey for the customer (optionally for the same key)."""

    event: str
    key: str | None = None


@dataclass(frozen=True)
class Variable:
    """One template variable of a send step: a literal or a provider (``{from: …}``)."""

    name: str
    value: Any = None
    provider: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One arm of a send step's experiment."""

    name: str
    weight: float
    line: int
    template: str | None = None
    """Another template (``None``: the step's)."""
    subject: str | None = None
    """A Liquid subject line replacing the template's (``None``: the template's) — of every
    language version of the template but those :attr:`subjects` names."""
    variables: tuple[Variable, ...] = ()
    """Variables merged over the step's (same name: this one wins)."""
    subjects: tuple[tuple[str, str], ...] = ()
    """Per locale (``subject: {default: ..., fr: ...}``): the tag (``fr``, ``fr-CA``) and the
    Liquid subject line its recipients get (exact locale, else language, else :attr:`subject`)."""

    def subject_lines(self) -> dict[str, str]:
        """The subject line of each language version this variant changes: the variant suffix
        (``""``: every version not named) → Liquid source. Empty: the templates' own."""
        lines = {"": self.subject} if self.subject else {}
        return lines | dict(self.subjects)


@dataclass(frozen=True)
class Experiment:
    """Variants with weights and a holdout share (receives nothing), on one send step."""

    name: str
    """What :func:`personify.engagement.assign` hashes with the customer id (``JOURNEY.STEP``
    by default)."""
    variants: tuple[Variant, ...]
    holdout: float = 0.0

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}

    def variant(self, name: str | None) -> Variant | None:
        for v in self.variants:
            if v.name == name:
                return v
        return None


@dataclass(frozen=True)
class WaitFor:
    """A ``wait_for`` step's event: the first one of the customer after the step became due and
    within ``within`` of it moves the instance on (to ``then``) at that event's time; none by the
    deadline moves it on (to ``else``) at the deadline."""

    event: str
    within: timedelta
    key: str | None = None
    """The event field that must equal the instance's trigger key (``properties.cart_id``)."""
    where: str | None = None
    """The filter the event must pass, compiled to SQL over the events alias ``e``
    (:mod:`personify.journeys.filters`)."""
    where_source: str | None = None
    """The filter as written (for reports)."""


@dataclass(frozen=True)
class Step:
    """One step. ``kind`` says which of the fields matter."""

    id: str
    kind: Literal["wait", "wait_until", "wait_for", "branch", "send", "tag", "exit"]
    line: int
    duration: timedelta | None = None
    until: time | None = None
    condition: Expression | None = None
    then: int | None = None
    """Branch target when the condition is TRUE (``wait_for``: when the event happened): a step
    index, or ``None`` for exit."""
    otherwise: int | None = None
    """Branch target when the condition is not TRUE (``wait_for``: when ``within`` passed)."""
    wait_for: WaitFor | None = None
    template: str | None = None
    variables: tuple[Variable, ...] = ()
    tag: str | None = None
    experiment: Experiment | None = None
    """Send steps: variants and a holdout (``None``: everyone gets the step as written)."""

    def arm(self, variant: str | None) -> Step:
        """This send step as ``variant`` sends it: its template and variables (the subject
        override is :attr:`Variant.subject`)."""
        chosen = self.experiment.variant(variant) if self.experiment else None
        if chosen is None:
            return self
        names = {v.name for v in chosen.variables}
        merged = tuple(v for v in self.variables if v.name not in names) + chosen.variables
        return replace(self, template=chosen.template or self.template, variables=merged)


@dataclass(frozen=True)
class Journey:
    """One checked journey file."""

    name: str
    description: str
    trigger: Trigger
    steps: tuple[Step, ...]
    goal: Goal | None
    reentry: Literal["always", "never", "after"]
    reentry_after: timedelta | None
    purpose: str
    capped: bool
    enabled: bool
    file: str
    exit_when: str | None = None
    """``exit_when: {segment: NAME}``: instances end (``exit_reason = 'left_segment'``) once
    the customer has left that segment since entering and is not back in it."""

    def step(self, step_id: str) -> Step | None:
        for s in self.steps:
            if s.id == step_id:
                return s
        return None
