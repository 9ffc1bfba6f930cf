"""Which key new customer ids are minted with: ``identity.id_key``, else ``signing_key``."""

from __future__ import annotations

from pathlib import Path

from personify.config import IdentityConfig, Project, ProjectConfig, Secret
from personify.identity.ids import id_key, id_key_of
from personify.privacy.fields import attach
from personify.warehouse import connect


def _key(tmp_path: Path, **config: object) -> str:
    project = Project(ProjectConfig(**config), tmp_path, tmp_path / "personify.yml")  # type: ignore[arg-type]
    with connect("duckdb:///:memory:") as wh:
        attach(wh, project)
        return id_key_of(wh)


def test_the_id_key_wins_over_the_signing_key_and_none_leaves_ids_unkeyed(tmp_path: Path) -> None:
    both = _key(
        tmp_path,
        signing_key=Secret("signing"),
        identity=IdentityConfig(id_key=Secret("ids")),
    )
    assert both == id_key("ids") != id_key("signing")
    assert _key(tmp_path, signing_key=Secret("signing")) == id_key("signing")
    assert _key(tmp_path) == ""
