"""Personify: a warehouse-native customer data platform and personalization engine for email.

The public API: load a project, open a session on it, run the pipeline, query the warehouse.

The names are resolved on first use (PEP 562), so ``import personify`` — which every
``personify.*`` import, and so every start of the console script, pays — does not import the
pipeline, the warehouse drivers and everything behind them.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from personify.config import Project as Project
    from personify.config import ProjectConfig as ProjectConfig
    from personify.config import Secret as Secret
    from personify.config import load_project as load_project
    from personify.errors import ConfigError as ConfigError
    from personify.errors import PersonifyError as PersonifyError
    from personify.pipeline import run as run
    from personify.session import Session as Session
    from personify.session import open_session as open_session
    from personify.warehouse import Warehouse as Warehouse
    from personify.warehouse import connect as connect

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "PersonifyError",
    "Project",
    "ProjectConfig",
    "Secret",
    "Session",
    "Warehouse",
    "connect",
    "load_project",
    "open_session",
    "run",
]

_WHERE = {
    "ConfigError": "personify.errors",
    "PersonifyError": "personify.errors",
    "Project": "personify.config",
    "ProjectConfig": "personify.config",
    "Secret": "personify.config",
    "load_project": "personify.config",
    "run": "personify.pipeline",
    "Session": "personify.session",
    "open_session": "personify.session",
    "Warehouse": "personify.warehouse",
    "connect": "personify.warehouse",
}
"""Public name -> the module that defines it."""


def __getattr__(name: str) -> _typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'personify' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # resolved once; later lookups never reach __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
