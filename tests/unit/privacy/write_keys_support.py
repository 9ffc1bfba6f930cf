"""A scaffolded project with two tracking sources (``web`` and ``app``), each with its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from personify.config import load_project
from personify.session import Session


def load_two_sources(
    project: Path, monkeypatch: pytest.MonkeyPatch, web: str, app: str, web_limit: str = ""
) -> Session:
    for key, value in dotenv_values(project / ".env").items():
        if value is not None:
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("PERSONIFY_WRITE_KEY", web)
    monkeypatch.setenv("APP_WRITE_KEY", app)
    text = (project / "personify.yml").read_text()
    anchor = "    tracking_plan: tracking-plan\n"
    extra = (f"    {web_limit}" if web_limit else "") + (
        "  - name: app\n    kind: tracking\n    write_key: ${APP_WRITE_KEY}\n"
        "    tracking_plan: null\n"
    )
    (project / "personify.yml").write_text(text.replace(anchor, anchor + extra, 1))
    return Session(load_project(project))
