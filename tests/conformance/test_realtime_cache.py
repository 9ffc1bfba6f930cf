"""The profile cache on every backend: send-time and API reads go through it, and every write
path that touches a customer invalidates it — a stale read after an update is a bug. With Redis,
a real second process reading the same PostgreSQL warehouse sees the update at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conformance.test_identity import TS
from tests.conformance.test_profiles import NOW, T0, load_world, session_on
from tests.conftest import service_missing

from personify import clock
from personify.config import Project, parse_config
from personify.identity import resolve_batch
from personify.messages.context import read_customers
from personify.profiles import apply_order, profiles_stage, read_profile
from personify.realtime import profile_cache
from personify.realtime.cache import close_cache
from personify.warehouse import Warehouse, table

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    try:
        import redis

        client = redis.Redis.from_url(REDIS, socket_timeout=2)
        client.ping()
    except Exception as e:  # no server, no driver
        service_missing("Redis", type(e).__name__)
    prefix = f"personify-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def project_with(tmp: Path, url: str, cache: str = "memory") -> Project:
    return Project(parse_config(f"warehouse: {url}\ncache: {cache}\n"), tmp, tmp / "personify.yml")


def order(wh: Warehouse, order_id: str, email: str, total: float) -> None:
    wh.load(
        table("orders"),
        pa.table(
            {
                "order_id": [order_id],
                "customer_id": [None],
                "email": [email],
                "total": [total],
                "status": ["paid"],
                "created_at": pa.array([T0 + timedelta(days=36)], TS),
                "source": ["shop"],
            }
        ),
    )


def built(wh: Warehouse, proj: Project) -> str:
    load_world(wh)
    resolve_batch(wh, proj.config.identity)
    profiles_stage(session_on(wh, proj))
    return str(read_profile(wh, "ann@x.org", proj)["customer_id"])


def test_reads_go_through_the_cache_and_updates_invalidate(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    proj = project_with(tmp_path, warehouse.url)
    with clock.frozen(NOW):
        ann = built(warehouse, proj)
        cache = profile_cache(warehouse, proj)
        first = read_customers(warehouse, [ann])[ann]
        first["order_count"] = -1  # callers' changes never reach the cache
        assert read_customers(warehouse, [ann])[ann]["order_count"] == 1
        assert cache.hits >= 1
        hits = cache.hits
        assert read_profile(warehouse, ann, proj)["profile"]["order_count"] == 1
        assert read_profile(warehouse, ann, proj)["profile"]["order_count"] == 1
        assert cache.hits > hits
        order(warehouse, "o9", "ann@x.org", 5.0)  # stored; not applied yet: the old row is right
        assert read_customers(warehouse, [ann])[ann]["order_count"] == 1
        apply_order(session_on(warehouse, proj), "o9")  # the real-time path
        assert read_customers(warehouse, [ann])[ann]["order_count"] == 2
        assert read_profile(warehouse, ann, proj)["profile"]["total_spent"] == 25.0
        order(warehouse, "o10", "ann@x.org", 5.0)
        resolve_batch(warehouse, proj.config.identity)  # the batch path rebuilds everyone
        profiles_stage(session_on(warehouse, proj))
        assert read_customers(warehouse, [ann])[ann]["order_count"] == 3
        assert read_profile(warehouse, ann, proj)["profile"]["order_count"] == 3


READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from personify.config import Project, parse_config
    from personify.messages.context import read_customers
    from personify.realtime import profile_cache
    from personify.warehouse import connect

    url, cache, ann = sys.argv[1:4]
    proj = Project(parse_config(f"warehouse: {url}\\ncache: {cache}\\n"), Path("."), Path("x"))
    wh = connect(url)
    profile_cache(wh, proj)
    print("ready", flush=True)
    for line in sys.stdin:
        row = read_customers(wh, [ann])[ann]
        print(row["order_count"], profile_cache(wh, proj).hits, flush=True)
    """
)


@pytest.mark.postgres
def test_an_update_in_one_process_is_seen_by_another(
    postgres_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Process B caches Ann's row; process A (this one) applies her new order; B's next read
    shows it — invalidated through Redis, not by a TTL."""
    from personify.warehouse import connect

    cache = f"{REDIS}?prefix={redis_prefix}&ttl=600"
    proj = project_with(tmp_path, postgres_url, cache)
    wh = connect(postgres_url)
    try:
        with clock.frozen(NOW):
            ann = built(wh, proj)
            reader = subprocess.Popen(  # noqa: S603
                [sys.executable, "-c", READER, postgres_url, cache, ann],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert reader.stdin and reader.stdout
            try:
                assert reader.stdout.readline().strip() == "ready"

                def read() -> tuple[int, int]:
                    assert reader.stdin and reader.stdout
                    reader.stdin.write("read\n")
                    reader.stdin.flush()
                    count, hits = reader.stdout.readline().split()
                    return int(count), int(hits)

                assert read() == (1, 0)
                assert read() == (1, 1)  # cached in B
                for n, oid in enumerate(["o7", "o8", "o9"], start=2):
                    order(wh, oid, "ann@x.org", 1.0)
                    apply_order(session_on(wh, proj), oid)
                    assert read()[0] == n  # the very next read in B
            finally:
                reader.stdin.close()
                reader.wait(10)
                reader.stdout.close()
    finally:
        close_cache(wh)
        wh.close()
