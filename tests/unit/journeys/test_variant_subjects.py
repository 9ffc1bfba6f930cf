"""An experiment variant's subject per language version, as a preview (``personify render`` of
a journey's send) and a send read it: the version's key, else ``default``, else its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from personify.config import load_project
from personify.journeys import preview_template
from personify.journeys.preview import Preview


def _preview(subject: str | None, subjects: tuple[tuple[str, str], ...]) -> Preview:
    return Preview(
        journey="j",
        step="s",
        template="hi",
        customer_id="c1",
        key="preview:hi",
        trigger_key=None,
        status=None,
        variables={},
        purpose="marketing",
        variant="v",
        subject=subject,
        subjects=subjects,
    )


@pytest.mark.parametrize(
    ("subject", "subjects", "want"),
    [
        (None, (), {None: "Hi", "fr-CA": "Salut", "de": "Hi"}),
        ("Deal", (), {None: "Deal", "fr-CA": "Deal", "de": "Deal"}),
        (None, (("fr", "Offre"),), {None: "Hi", "fr-CA": "Offre", "de": "Hi"}),
        ("Deal", (("fr", "Offre"),), {None: "Deal", "fr-CA": "Offre", "de": "Deal"}),
        (None, (("fr-CA", "Allo"),), {None: "Hi", "fr-CA": "Salut", "de": "Hi"}),  # no such file
    ],
)
def test_each_language_version_gets_its_subject(
    project_dir: Path,
    subject: str | None,
    subjects: tuple[tuple[str, str], ...],
    want: dict[str | None, str],
) -> None:
    templates = project_dir / "templates"
    (templates / "hi.liquid").write_text("---\nsubject: Hi\n---\n<p>hi</p>\n")
    (templates / "hi.fr.liquid").write_text("---\nsubject: Salut\n---\n<p>salut</p>\n")
    project = load_project(project_dir)
    found = _preview(subject, subjects)
    got = {locale: preview_template(project, found, locale).subject.render() for locale in want}
    assert got == want
