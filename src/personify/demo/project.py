"""The demo project: a scaffolded project whose sources read the synthetic world — from its files,
or (``live_apis``, what ``personify demo`` does by default) partly from it served as live mock APIs.

:func:`make_demo_project` scaffolds the folder (``personify init``), writes the world into
``data/`` and rewrites ``personify.yml``: the ``web`` tracking source and the admin token stay
as the scaffold has them (keys in ``.env``); one ``kind: file`` source per file of the world
follows, with its mapping; a ``demo:`` section records the world's seed and size.

The web shop's sessions (``data/events/part-*.parquet``) are not a file source of the demo
project: ``personify demo`` sends them through the tracking API (``POST /v1/batch`` with the write
key, source ``web``), as a shop's pages would (:func:`web_event_files`). ``configure_project``
without ``web_via_api`` keeps them a file source (``benchmarks/world_load.py`` loads the world so).

Making it again in the same folder regenerates the same world, byte for byte (the world's
``now`` is kept in ``data/manifest.json``), so importing it again loads nothing twice. A folder
holding another world (other seed, size or instant) is refused unless ``reset``: then its data
and warehouse are removed first.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from personify import clock
from personify.config import PROJECT_FILE, parse_config
from personify.demo.files import FILES, read_manifest, write_world
from personify.demo.mock_apis import LIVE_REPLACED, TOKEN_VAR, live_sources_yaml
from personify.demo.world import build_world, world_instant
from personify.errors import PersonifyError
from personify.progress import Progress
from personify.scaffold import init_project

DATA: Final = "data"
PROJECT_NAME: Final = "demo-shop"


@dataclass(frozen=True)
class DemoProject:
    """What :func:`make_demo_project` made."""

    root: Path
    data: Path
    manifest: dict[str, Any]
    keys: dict[str, str]
    """``PERSONIFY_WRITE_KEY`` and ``PERSONIFY_ADMIN_TOKEN`` (from the project's ``.env``)."""
    created: bool
    """A new project (not one made before in this folder)."""
    seconds: dict[str, float]
    """Time spent building and writing the world."""

    @property
    def now(self) -> datetime:
        return clock.parse_instant(self.manifest["now"])


def make_demo_project(
    directory: Path,
    *,
    customers: int = 10_000,
    seed: int = 7,
    now: datetime | None = None,
    reset: bool = False,
    progress: Progress | None = None,
    live_apis: bool = False,
    showcase: bool = False,
) -> DemoProject:
    """Make (or remake) the demo project in ``directory`` with a world of ``customers``;
    ``live_apis``: the CRM, orders, tickets and payments come from the world served as live mock
    APIs (REST sources, :func:`personify.demo.mock_apis.live_sources_yaml`) instead of files —
    what ``personify demo`` does unless given ``--files`` (this function's default stays the
    files: tests and benchmarks load the world so). ``showcase`` (what ``personify demo``
    does): the project also uses the newer features — :func:`add_demo_files` and the
    ``traits:``, ``relations:`` and ``alerts:`` sections; its ``loyalty_gold`` segment then
    needs the loyalty table that ``personify demo`` loads
    (:func:`personify.demo.features.load_team_table`), and its alert emails ops on every
    dirty world, so tests and benchmarks leave it off."""
    import time

    root = directory.expanduser().resolve()
    data = root / DATA
    existing = _existing_world(root, data)
    if existing is not None and now is None:
        now = clock.parse_instant(existing["now"])
    instant = world_instant(now)
    if existing is not None and not _same_world(existing, customers, seed, instant):
        if not reset:
            raise PersonifyError(
                f"{root} holds another demo world (seed {existing['seed']}, "
                f"{existing['customers']:,} customers, now {existing['now']})",
                hint="pass --reset to replace it (its data and warehouse are deleted), "
                "or choose another folder",
            )
        _remove_world(root, data)
    created = not (root / PROJECT_FILE).exists()
    if created:
        init_project(root)
    else:
        _add_journeys(root)
    with_holdout(root)
    if showcase:
        add_demo_files(root)
    t0 = time.perf_counter()
    world = build_world(customers, seed=seed, now=instant, progress=progress)
    t1 = time.perf_counter()
    manifest = write_world(world, data, progress=progress)
    t2 = time.perf_counter()
    configure_project(
        root,
        seed=seed,
        customers=customers,
        now=instant,
        web_via_api=True,
        live_apis=live_apis,
        showcase=showcase,
    )
    return DemoProject(
        root=root,
        data=data,
        manifest=manifest,
        keys=_keys(root),
        created=created,
        seconds={"build": t1 - t0, "write": t2 - t1},
    )


def _add_journeys(root: Path) -> None:
    """A demo project made before journeys existed gets the scaffold's ``journeys/``."""
    target = root / "journeys"
    if target.exists():
        return
    from importlib import resources

    source = resources.files("personify") / "scaffold" / "journeys"
    with resources.as_file(source) as folder:
        shutil.copytree(folder, target)


HOLDOUT_LINE: Final = (
    "    holdout: 20%                # the demo's experiment: a fifth of the carts get no email, "
    "so\n"
    "                                # `personify report journeys` measures the email's uplift\n"
)


def with_holdout(root: Path) -> None:
    """The demo's abandoned-cart journey holds out 20 % of the carts (README, "Experiments"): the
    recipients' simulated reactions (:mod:`personify.demo.reactions`) then show the email's
    uplift over customers who got nothing. Idempotent; a journey file edited by hand is left as
    it is."""
    path = root / "journeys" / "abandoned_cart.yml"
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    anchor = "    send: abandoned_cart        # templates/abandoned_cart.liquid\n"
    if "\n    holdout:" in text or anchor not in text:
        return
    path.write_text(text.replace(anchor, anchor + HOLDOUT_LINE, 1), encoding="utf-8")


FOOTER: Final = "{% render 'footer' %}"
"""How the demo's templates place the shared footer (``templates/partials/footer.liquid``)."""
FOOTED: Final = ("abandoned_cart", "re_engagement")
"""The scaffold's templates that get the footer."""


def add_demo_files(root: Path) -> None:
    """The demo's own project files (``personify/demo/skeleton``), beside the scaffold's: the
    shared footer partial (English and French), the French variant of the abandoned-cart
    email, and the segments reading the VIP list and the predictive traits; the scaffold's
    templates get the footer. Idempotent: a file already there (edited by hand, say) is left
    as it is."""
    from importlib import resources

    source = resources.files("personify") / "demo" / "skeleton"
    with resources.as_file(source) as folder:
        for path in sorted(folder.rglob("*")):
            target = root / path.relative_to(folder)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    for name in FOOTED:
        template = root / "templates" / f"{name}.liquid"
        if not template.is_file():
            continue
        text = template.read_text(encoding="utf-8")
        if "render 'footer'" not in text:
            template.write_text(text.rstrip("\n") + f"\n{FOOTER}\n", encoding="utf-8")


def _existing_world(root: Path, data: Path) -> dict[str, Any] | None:
    """The manifest of the demo world already in ``root``; refuse a project that is no demo."""
    manifest = read_manifest(data)
    if (root / PROJECT_FILE).exists() and manifest is None:
        text = (root / PROJECT_FILE).read_text(encoding="utf-8")
        if not re.search(r"^demo:", text, re.M):
            raise PersonifyError(
                f"{root} holds a Personify project that is not a demo",
                hint="choose another folder for the demo (default: ./personify-demo)",
            )
    return manifest


def _same_world(manifest: dict[str, Any], customers: int, seed: int, now: datetime) -> bool:
    return (
        manifest.get("customers") == customers
        and manifest.get("seed") == seed
        and clock.parse_instant(manifest["now"]) == now
    )


def _remove_world(root: Path, data: Path) -> None:
    """Delete a demo's data and embedded warehouse (the project's other files stay)."""
    shutil.rmtree(data, ignore_errors=True)
    for path in root.glob("warehouse.duckdb*"):
        path.unlink()


def _keys(root: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    env = dotenv_values(root / ".env")
    return {k: v for k in ("PERSONIFY_WRITE_KEY", "PERSONIFY_ADMIN_TOKEN") if (v := env.get(k))}


# ------------------------------------------------------------------------------- personify.yml
def configure_project(
    root: Path,
    *,
    seed: int,
    customers: int,
    now: datetime,
    web_via_api: bool = False,
    live_apis: bool = False,
    showcase: bool = False,
) -> None:
    """Rewrite ``root/personify.yml`` (as scaffolded) to read the world in ``data/``;
    ``web_via_api``: without the web sessions' file source (they are sent to the tracking API);
    ``showcase``: with the ``traits:``, ``relations:`` and ``alerts:`` sections."""
    file = root / PROJECT_FILE
    text = file.read_text(encoding="utf-8")
    text = _without_demo_wiring(text)
    text = re.sub(r"^name: .*$", f"name: {PROJECT_NAME}", text, count=1, flags=re.M)
    text = _insert_sources(text, file_sources_yaml(web_via_api=web_via_api, live_apis=live_apis))
    wiring = demo_yaml(seed=seed, customers=customers, now=now, showcase=showcase)
    if not live_apis:  # (the scores go to the live mock CRM: none without it)
        wiring = wiring.replace(DESTINATIONS_YAML + "\n", "")
    text = text.rstrip("\n") + "\n\n" + wiring
    parse_config(text, file=str(file), root=root)  # fail here, not at the user's first command
    file.write_text(text, encoding="utf-8")


_BEGIN: Final = "  # --- synthetic world (personify demo) ---"
_END: Final = "  # --- end of the synthetic world ---"


WEB_SESSIONS: Final = "web_history"
"""The world's file of web sessions (its ``FILES`` source name), sent to the tracking API."""


def web_event_files(data: Path) -> list[Path]:
    """The Parquet parts holding the world's web sessions (Segment-shaped events)."""
    spec = next(s for s in FILES if s.source == WEB_SESSIONS)
    return sorted(data.glob(spec.glob or spec.path))


def file_sources_yaml(*, web_via_api: bool = False, live_apis: bool = False) -> str:
    """The ``kind: file`` sources reading the world, as YAML list items (indented for
    ``sources:``), between markers so a rerun can replace them. ``web_via_api``: the web
    sessions are left out (``personify demo`` sends them to the ``web`` tracking source)."""
    lines = [
        _BEGIN,
        "  # The synthetic shop's data, written by `personify demo` into data/: CSV, JSON Lines",
        "  # and Parquet. Each file source names its file (or a glob), the table it loads and",
        "  # how the file's fields map onto the table's columns (dots reach into nested JSON).",
    ]
    if web_via_api:
        lines += [
            "  # The web shop's sessions (data/events/) are no file source here: `personify demo`",
            "  # sends them to the tracking API (POST /v1/batch, source `web` above), as pages do.",
        ]
    seen: set[str] = set()
    for spec in FILES:
        if spec.source in seen or (web_via_api and spec.source == WEB_SESSIONS):
            continue
        if live_apis and spec.source in LIVE_REPLACED:  # pulled from their APIs instead
            continue
        seen.add(spec.source)
        lines += [
            "",
            f"  # {spec.about}",
            f"  - name: {spec.source}",
            "    kind: file",
            f"    path: {DATA}/{spec.glob or spec.path}",
            f"    table: {spec.table}",
        ]
        if spec.mapping:
            lines.append("    mapping:")
            lines += [f"      {target}: {field}" for target, field in spec.mapping.items()]
    if live_apis:
        lines.append(live_sources_yaml().rstrip("\n"))
    lines.append(_END)
    return "\n".join(lines) + "\n"


IDENTITY_YAML: Final = (
    "# Which ids each source holds: the shop's customer ids are the web userId (its orders and\n"
    "# consents carry them); the help desk knows people by their CRM id.\n"
    "identity:\n"
    "  source_kinds:\n"
    "    shop_customers: user_id\n"
    "    shop_orders: user_id\n"
    "    consents: user_id\n"
    "    crm: crm_id\n"
    "    helpdesk: crm_id\n"
)
"""The ``identity:`` section of a demo project (written with the ``demo:`` one)."""

DESTINATIONS_YAML: Final = (
    "# Reverse ETL: each customer's engagement score and lifecycle stage pushed back to the CRM\n"
    "# (the world's HubSpot-style mock API), only what changed, after each run (personify push).\n"
    "destinations:\n"
    "  - name: crm_scores\n"
    "    kind: rest\n"
    "    preset: hubspot_contacts\n"
    "    key: email\n"
    "    model: |\n"
    "      SELECT customer_id, email, engagement_score AS engagement, lifecycle_stage\n"
    "      FROM customer_data WHERE email LIKE '%@%'\n"
    "    client:\n"
    "      base_url: local:demo\n"
    '      auth: {type: bearer, token: "' + TOKEN_VAR + '"}\n'
    "      requests_per_second: 500\n"
    "      backoff_base: 0.05\n"
    "    schedule: {every: 15m}\n"
)
"""The ``destinations:`` section of a demo project (written with the ``demo:`` one)."""


PREDICTIVE_YAML: Final = (
    "# Predictive traits: p_alive, expected_orders and predicted_clv for every customer with an\n"
    "# order, from purchase and spend models fit on the shop's orders at each profile build\n"
    "# (segments/likely_buyers.sql reads them). Check the fit against the orders that followed:\n"
    "# personify traits predictive --holdout --out holdout.html\n"
    "traits:\n"
    "  predictive:\n"
    "    enabled: true\n"
    "    horizon_days: 90\n"
    "    min_customers: 100          # a small world has few buyers (default 500)\n"
    "    min_repeat_customers: 20    # (default 50)\n"
)
"""The ``traits:`` section of a demo project (when scipy is installed)."""

NO_PREDICTIVE_YAML: Final = (
    "# Predictive traits (p_alive, expected_orders, predicted_clv) need scipy:\n"
    "# pip install 'personify[predictive]', then run `personify demo` again.\n"
)

RELATIONS_YAML: Final = (
    "# Relations: the team's own tables in the warehouse, read by segments (and personify sql)\n"
    "# under a local name. personify demo plays the data team's loader: it puts\n"
    "# data/analytics/loyalty.parquet into analytics.loyalty (read by segments/loyalty_gold.sql).\n"
    "relations:\n"
    "  loyalty: analytics.loyalty\n"
)
"""The ``relations:`` section of a demo project."""

ALERTS_YAML: Final = (
    "# Alerts: evaluated after every run (and by personify serve); each tells its notifiers once\n"
    "# when it fires and once when it resolves. The world's invalid records (on purpose) make\n"
    "# dirty_data fire: ops gets an email in outbox/. See: personify alerts list\n"
    "alerts:\n"
    "  - {name: sync_failing, when: source_failed, notify: [ops]}\n"
    "  - name: dirty_data\n"
    "    when: quarantine_growth\n"
    "    over: 5                     # more than 5 rows of one source quarantined in an hour\n"
    "    notify: [ops]\n"
    "notifiers:\n"
    "  ops: {kind: email, to: [ops@shop.example]}   # through delivery: an .eml in outbox/\n"
)
"""The ``alerts:`` and ``notifiers:`` sections of a demo project."""


def has_scipy() -> bool:
    """Whether the predictive traits can be fit here (``personify[predictive]``)."""
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


def demo_yaml(*, seed: int, customers: int, now: datetime, showcase: bool = False) -> str:
    """The ``identity:``, ``destinations:``, (``showcase``) ``traits:``, ``relations:`` and
    ``alerts:``, and ``demo:`` sections, appended to the project file."""
    # the customer ids' key from the seed (not the random signing_key): the same seed gives the
    # same ids, hence the same experiment groups and reactions
    id_key = f'  id_key: "${{PERSONIFY_DEMO_ID_KEY:-demo-world-{seed}}}"\n'
    features = ""
    if showcase:
        predictive = PREDICTIVE_YAML if has_scipy() else NO_PREDICTIVE_YAML
        features = f"{predictive}\n{RELATIONS_YAML}\n{ALERTS_YAML}\n"
    return (
        f"{IDENTITY_YAML}{id_key}\n{DESTINATIONS_YAML}\n{features}"
        f"{_DEMO_MARK}: the synthetic world this project reads, as it was\n"
        f"# at {now:%Y-%m-%dT%H:%M:%SZ}. `personify demo DIR` again regenerates the same files;\n"
        "# nothing is imported twice.\n"
        "demo:\n"
        f"  seed: {seed}\n"
        f"  customers: {customers}\n"
        f"  data: {DATA}\n"
    )


_DEMO_MARK: Final = "# Made by `personify demo`"


def _without_demo_wiring(text: str) -> str:
    """The file without a previous run's file sources and identity and demo sections."""
    text = re.sub(rf"{re.escape(_BEGIN)}.*?{re.escape(_END)}\n", "", text, flags=re.S)
    first = IDENTITY_YAML.splitlines()[0]
    tail = rf"\n*(?:{re.escape(first)}|{re.escape(_DEMO_MARK)}).*\Z"
    return re.sub(tail, "\n", text, flags=re.S)


def _insert_sources(text: str, block: str) -> str:
    """Put ``block`` at the end of the ``sources:`` list, replacing the scaffold's commented-out
    example of a file source."""
    match = re.search(r"^sources:[^\n]*\n(?P<body>(?:(?:[ \t]+[^\n]*|)\n)*)", text, re.M)
    if match is None:
        return text.rstrip("\n") + "\n\nsources:\n" + block
    body = match.group("body")
    body = re.sub(r"\n?  # Files: CSV[^\n]*(?:\n  #[^\n]*)*", "", body)
    body = body.rstrip("\n") + "\n\n" + block + "\n"
    return text[: match.start("body")] + body + text[match.end("body") :]
