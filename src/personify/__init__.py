"""Personify: a warehouse-native customer data platform and personalization engine for email.

The public API: load a project, open a session on it, run the pipeline, query the warehouse.
"""

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
