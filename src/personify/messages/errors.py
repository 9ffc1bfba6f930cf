"""Errors of the messages stage."""

from __future__ import annotations

from personify.errors import PersonifyError, Terminal


class RenderError(PersonifyError, Terminal):
    """A template cannot render: names the template, the line and (when known) the variable.

    Callers record the message as ``failed`` with :attr:`reason`; nothing is ever sent blank.
    """

    def __init__(
        self,
        message: str,
        *,
        template: str,
        line: int | None = None,
        variable: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = template if line is None else f"{template}:{line}"
        super().__init__(f"template {where}: {message}", hint=hint)
        self.template = template
        self.line = line
        self.variable = variable
        self.reason = f"template {where}: {message}"
