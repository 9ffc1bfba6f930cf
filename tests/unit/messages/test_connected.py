"""Connected content against a real local HTTP server: answers, cache, timeout, fallback."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pyarrow as pa
import pytest
from tests.loopback import QuietHandler, serve

from personify.config import load_project
from personify.delivery import Envelope, PrepareFailure, prepare_batch
from personify.messages import RenderError, TemplateStore
from personify.messages.connected import (
    PUBLIC_ONLY,
    AddressPolicy,
    ConnectedError,
    ConnectedUnavailable,
)
from personify.warehouse import Warehouse, connect, table

HITS: Counter[str] = Counter()


class Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        HITS[self.path] += 1
        if self.path.startswith("/redirect"):
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/w/inside")
            self.end_headers()
            return
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if self.path.startswith("/fail"):
            self.send_response(500)
            self.end_headers()
            return
        body = (
            b"not json"
            if self.path.startswith("/text")
            else json.dumps({"city": self.path.rsplit("/", 1)[-1], "temp": 21}).encode()
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api() -> Iterator[str]:
    with serve(Handler) as url:
        yield url


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    warehouse = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    when = datetime(2026, 2, 1, tzinfo=UTC)
    data = pa.Table.from_pylist(
        [
            {
                "customer_id": f"c{i}",
                "email": f"c{i}@x.org",
                "first_name": "Ann",
                "updated_at": when,
            }
            for i in range(3)
        ]
    )
    warehouse.load(table("customers"), data)
    try:
        yield warehouse
    finally:
        warehouse.close()


def allow(project_dir: Path, *entries: str) -> None:
    """Let connected content reach ``entries`` (the test API listens on loopback)."""
    path = project_dir / "personify.yml"
    text = path.read_text(encoding="utf-8")
    listed = ", ".join(f'"{e}"' for e in entries)
    path.write_text(text.replace("\nemail:\n", f"\nemail:\n  connected_allow: [{listed}]\n", 1))


def template(project_dir: Path, connected: str, body: str = "") -> None:
    if "connected_allow" not in (project_dir / "personify.yml").read_text(encoding="utf-8"):
        allow(project_dir, "127.0.0.1/32")
    text = f"---\nsubject: Hi\nlayout: none\nconnected:\n{connected}\n---\n" + (
        body or "<p>{{ weather.city }} {{ weather.temp }}</p>"
    )
    (project_dir / "templates" / "w.liquid").write_text(text, encoding="utf-8")


def html_of(envelope: Envelope | PrepareFailure) -> str:
    assert isinstance(envelope, Envelope), envelope
    msg = BytesParser(policy=policy.default).parsebytes(envelope.raw)
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_answers_are_fetched_once_per_url_and_rendered(
    api: str, wh: Warehouse, project_dir: Path
) -> None:
    template(
        project_dir,
        f'  - name: weather\n    url: "{api}/w/{{{{ city }}}}"\n    ttl: 10m',
    )
    project = load_project(project_dir)
    items = [("k0", "c0", {"city": "Paris"}), ("k1", "c1", {"city": "Paris"})]
    items.append(("k2", "c2", {"city": "Lyon"}))
    out = prepare_batch(wh, project, "w", items)
    wanted = ["<p>Paris 21</p>", "<p>Paris 21</p>", "<p>Lyon 21</p>"]
    assert all(w in html_of(e) for w, e in zip(wanted, out, strict=True))
    assert HITS["/w/Paris"] == 1 and HITS["/w/Lyon"] == 1
    prepare_batch(wh, project, "w", items)  # within the ttl: from the cache
    assert HITS["/w/Paris"] == 1
    given = prepare_batch(wh, project, "w", [("k", "c0", {"weather": {"city": "X", "temp": 1}})])
    assert "<p>X 1</p>" in html_of(given[0])  # a variable the caller gives wins


@pytest.mark.parametrize("path", ["slow", "fail", "text"])
def test_a_failing_api_gives_the_fallback_or_fails_the_message(
    api: str, wh: Warehouse, project_dir: Path, path: str
) -> None:
    spec = f'  - name: weather\n    url: "{api}/{path}/{{{{ city }}}}"\n    timeout: 0.3s'
    template(project_dir, spec + '\n    fallback: {city: "nowhere", temp: "?"}')
    project = load_project(project_dir)
    started = time.monotonic()
    out = prepare_batch(wh, project, "w", [("a", "c0", {"city": "Paris"})] * 3)
    assert all("<p>nowhere ?</p>" in html_of(e) for e in out)
    assert time.monotonic() - started < 3  # a dead URL is not waited for per email
    template(project_dir, spec.replace(path, path + "2"))  # no fallback, a fresh URL
    failed = prepare_batch(wh, project, "w", [("b", "c0", {"city": "Paris"})])
    assert isinstance(failed[0], PrepareFailure) and failed[0].kind == "render"
    assert "connected content weather" in failed[0].reason and "Paris" not in failed[0].reason
    # a timeout or a 5xx may pass (the email waits for it); an answer that is not JSON will not
    assert isinstance(failed[0].error, ConnectedUnavailable) is (path != "text")


@pytest.mark.parametrize(
    "spec",
    [
        '  - name: "not a name"\n    url: "https://x"',
        "  - name: w\n",
        '  - name: w\n    url: "https://x"\n    timeout: soon',
        '  - name: w\n    url: "https://x"\n    retries: 3',
    ],
)
def test_bad_specs_name_the_key(project_dir: Path, spec: str) -> None:
    template(project_dir, spec)
    with pytest.raises(RenderError, match=r"connected\[0\]"):
        TemplateStore(project_dir / "templates").get("w")


def test_private_addresses_are_refused_unless_allowed(
    api: str, wh: Warehouse, project_dir: Path
) -> None:
    allow(project_dir, "localhost")  # by name only: the IP literal is not allowed
    port = api.rsplit(":", 1)[1]
    template(project_dir, f'  - name: weather\n    url: "{api}/w/direct"')
    project = load_project(project_dir)
    out = prepare_batch(wh, project, "w", [("a", "c0", {})])
    assert isinstance(out[0], PrepareFailure) and "non-public address" in out[0].reason
    assert HITS["/w/direct"] == 0  # refused before connecting
    # an allowed host may not redirect somewhere that is not
    template(project_dir, f'  - name: weather\n    url: "http://localhost:{port}/redirect"')
    out = prepare_batch(wh, project, "w", [("b", "c0", {})])
    assert isinstance(out[0], PrepareFailure) and "non-public address" in out[0].reason
    assert HITS["/redirect"] == 1 and HITS["/w/inside"] == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
    ],
)
def test_policy_refuses_non_public_addresses(url: str) -> None:
    with pytest.raises(ConnectedError, match="non-public"):
        PUBLIC_ONLY.check("w", url)
    AddressPolicy.from_config(["0.0.0.0/0", "::/0"]).check("w", url)  # allowed: no error


def test_policy_allows_listed_networks_and_hosts() -> None:
    policy = AddressPolicy.from_config(["10.1.0.0/16", "Internal.Example."])
    policy.check("w", "http://10.1.2.3/x")
    policy.check("w", "http://internal.example/x")  # by name, not resolved
    with pytest.raises(ConnectedError):
        policy.check("w", "http://10.2.0.1/x")


def test_a_url_is_rendered_in_the_emails_language(
    api: str, wh: Warehouse, project_dir: Path
) -> None:
    """A ``date`` in a French version's URL writes French month names, as its body does — the
    URLs a batch prefetches too (each fetched once, none in the default's language)."""
    from personify.delivery import prepare

    allow(project_dir, "127.0.0.1/32")
    wh.execute("UPDATE customers SET locale = 'fr' WHERE customer_id IN ('c0', 'c1')")
    spec = f"connected:\n  - name: m\n    url: \"{api}/month/{{{{ at | date: '%B' }}}}\"\n"
    for name in ("w.liquid", "w.fr.liquid"):
        text = f"---\nsubject: Hi\nlayout: none\n{spec}---\n<p>{{{{ m.city }}}}</p>"
        (project_dir / "templates" / name).write_text(text, encoding="utf-8")
    project = load_project(project_dir)
    items = [("k0", "c0", {"at": "2026-03-01"}), ("k1", "c1", {"at": "2026-04-01"})]
    items.append(("k2", "c2", {"at": "2026-03-01"}))  # no locale: the default, English
    out = prepare_batch(wh, project, "w", items)
    wanted = ["<p>mars</p>", "<p>avril</p>", "<p>March</p>"]
    assert all(w in html_of(e) for w, e in zip(wanted, out, strict=True))
    fetched = {path: n for path, n in HITS.items() if path.startswith("/month/")}
    assert fetched == {"/month/mars": 1, "/month/avril": 1, "/month/March": 1}
    one = prepare(wh, project, "w", "c0", {"at": "2026-05-01"}, key="k3")  # send-test, render
    assert "<p>mai</p>" in html_of(one)
