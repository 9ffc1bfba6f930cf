"""``personify init``: lay out a new project from the scaffold shipped in the package."""

from __future__ import annotations

import secrets
import shutil
from importlib import resources
from pathlib import Path

from personify.config import PROJECT_FILE
from personify.errors import PersonifyError


def new_key(prefix: str) -> str:
    """A fresh random key, e.g. for a write key or an admin token."""
    return f"{prefix}_{secrets.token_urlsafe(24)}"


def init_project(directory: Path, *, force: bool = False) -> dict[str, str]:
    """Copy the scaffold into ``directory`` and write a ``.env`` holding fresh keys.

    Returns the environment variables written to ``.env``. Refuses to overwrite an existing
    ``personify.yml`` unless ``force``.
    """
    directory = directory.expanduser().resolve()
    if (directory / PROJECT_FILE).exists() and not force:
        raise PersonifyError(
            f"{directory / PROJECT_FILE} already exists",
            hint="choose another folder, or pass --force to overwrite the scaffold's files",
        )
    if directory.exists() and not directory.is_dir():
        raise PersonifyError(f"{directory} is a file, not a folder", hint="choose a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PersonifyError(
            f"cannot create the folder {directory}: {e.strerror or e}",
            hint="choose a folder you can write to",
        ) from None
    root = resources.files("personify") / "scaffold"
    with resources.as_file(root) as src:
        for path in sorted(Path(src).rglob("*")):
            rel = path.relative_to(src)
            target = directory / (".gitignore" if rel.name == "gitignore" else rel)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists() or force:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    env = {
        "PERSONIFY_WRITE_KEY": new_key("wk"),
        "PERSONIFY_ADMIN_TOKEN": new_key("adm"),
        "PERSONIFY_SECRET_KEY": new_key("sk"),
    }
    env_file = directory / ".env"
    if not env_file.exists() or force:
        env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
        env_file.chmod(0o600)
    return env
