"""Every error Personify raises on purpose.

The tree::

    PersonifyError                 root: catch this to catch everything of ours
    ├── ConfigError                a bad project file (names file, line, key, what is expected)
    │   └── DefinitionError        a bad segment or rule file (also names the column)
    ├── WarehouseError             the warehouse refused or failed
    │   ├── WarehouseBusy          another process holds the embedded warehouse (Transient)
    │   ├── UnsafeQueryError       a user query that is not one read-only SELECT
    │   └── MigrationError         the schema could not be brought up to date
    ├── SourceError                a source could not be read
    │   └── FileImportError        a file that cannot be imported at all (unreadable, wrong format)
    ├── ServiceUnavailable         a needed service (server, database) cannot be reached (Transient)
    ├── UsageError                 a command-line value that cannot work here (names the option)
    ├── NotFound                   a customer, segment, template … that does not exist
    └── StageIncomplete            a pipeline stage did its work but parts of it failed

``Transient`` and ``Terminal`` are markers: retry loops retry ``Transient`` errors and give up at
once on ``Terminal`` ones. Each error carries a ``hint`` telling the user what to do next.
"""

from __future__ import annotations


class Transient:
    """Marker: trying again later may succeed."""


class Terminal:
    """Marker: trying again will fail the same way."""


class PersonifyError(Exception):
    """Root of every Personify error."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(PersonifyError, Terminal):
    """The project file is wrong. ``file``, ``line`` and ``key`` locate the mistake; a ``key``
    given without ``file`` is one of ``personify.yml``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        # a key without a file is a key of the project file (personify.config.PROJECT_FILE,
        # spelt out: config imports this module); no file, no key: nothing to name
        where = file or ("personify.yml" if key else "")
        if line is not None and where:
            where += f":{line}"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file = file
        self.line = line
        self.key = key
        self.reason = message


class DefinitionError(ConfigError):
    """A segment (``segments/*.sql``) or rule (``rules/*.yml``) file is wrong.

    ``file``, ``line`` and ``key`` locate the mistake as for :class:`ConfigError`; ``col`` is the
    column inside the line when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = f"column {col}: " if col is not None else ""
        super().__init__(f"{where}{message}", file=file, line=line, key=key, hint=hint)
        self.col = col
        self.reason = message


class WarehouseError(PersonifyError):
    """The warehouse failed or refused a statement."""


class WarehouseBusy(WarehouseError, Transient):
    """The embedded warehouse file is locked by another process."""


class UnsafeQueryError(WarehouseError, Terminal):
    """A user-supplied query is not a single read-only SELECT over allowed tables."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        col: int | None = None,
        hint: str | None = None,
    ) -> None:
        loc = f" (line {line}, column {col})" if line is not None else ""
        super().__init__(f"{message}{loc}", hint=hint)
        self.line = line
        self.col = col


class QueryTimeout(UnsafeQueryError):
    """A statement ran longer than its timeout and was stopped (the backends'
    ``execute_limited`` and ``run_readonly``): a failure of the query's cost on this data, not
    of its text."""


class MigrationError(WarehouseError, Terminal):
    """The warehouse schema could not be created or upgraded."""


class SourceError(PersonifyError):
    """A source could not be read."""


class FileImportError(SourceError, Terminal):
    """A file cannot be imported at all (missing, unreadable, not the declared format)."""


class ServiceUnavailable(PersonifyError, Transient):
    """A service Personify needs (warehouse server, running `personify serve`) is unreachable."""


class UsageError(PersonifyError, Terminal):
    """A command-line value that is well-formed but cannot work on this machine or project (e.g.
    ``serve --host`` an address the machine does not have). ``option`` names it."""

    def __init__(self, message: str, *, option: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"{option}: {message}" if option else message, hint=hint)
        self.option = option


class NotFound(PersonifyError, Terminal):
    """A customer, segment, template or other named thing does not exist."""


class StageIncomplete(PersonifyError, Terminal):
    """A pipeline stage did its work but some parts of it failed (a segment whose SQL the
    warehouse refused: the other segments were refreshed). ``counts``: what the stage did;
    ``problems``: each failure, in words (naming the file; no personal data). The pipeline
    records both, runs the next stages and ends the run failed."""

    def __init__(
        self, message: str, *, counts: dict[str, int], problems: list[str], hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.counts = counts
        self.problems = problems
