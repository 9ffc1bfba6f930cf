"""Telling a person's open or click from a machine's.

* **Machine opens** — Apple Mail Privacy Protection fetches every image of every email through
  Apple's proxies (addresses in ``17.0.0.0/8``, a bare ``Mozilla/5.0`` user agent) whether or not
  the person reads it; anything fetching the pixel within ``machine_open_seconds`` of sending is
  a prefetch too.
* **Scanner clicks** — security gateways (Microsoft Safe Links, Mimecast, Proofpoint, Barracuda …)
  follow every link of an incoming email within seconds of delivery, often with ``HEAD``
  requests or a bot's user agent.

A machine hit is still recorded (with ``properties.machine = true`` and the reason in
``properties.machine_reason``) but counts for nothing: not in ``engagement_score``, not in the
unique opens and clicks of the report, not as an attribution touch.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

APPLE_PROXY_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
"""Apple's own address block, where Mail Privacy Protection's proxies fetch from."""
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "microsoft office",
    "ms-office",
    "forcepoint",
    "trendmicro",
    "symantec",
    "messagelabs",
    "fireeye",
    "cloudmark",
    "bot",
    "crawler",
    "spider",
    "scanner",
    "python-requests",
    "go-http-client",
    "headlesschrome",
)
"""Lower-case fragments of user agents that are link scanners, not people."""
_SCANNER = re.compile("|".join(re.escape(fragment) for fragment in SCANNER_AGENTS))
"""Any of :data:`SCANNER_AGENTS` (one search of the agent, not twenty)."""


def _apple_proxy(ip: str | None, agent: str) -> bool:
    if agent.strip() == "Mozilla/5.0":
        return True
    if not ip:
        return False
    if ":" not in ip:  # IPv4, the common case: no parsing needed for a /8
        return ip.split(".", 1)[0] == "17" and ip.count(".") == 3
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in APPLE_PROXY_NETWORKS)


def _seconds(sent_at: datetime | None, at: datetime) -> float | None:
    return None if sent_at is None else (at - sent_at).total_seconds()


def machine_open(
    agent: str, ip: str | None, sent_at: datetime | None, at: datetime, *, within: float
) -> str | None:
    """Why an open is a machine's (``apple_privacy_proxy``, ``too_soon``), or ``None``."""
    if _apple_proxy(ip, agent):
        return "apple_privacy_proxy"
    age = _seconds(sent_at, at)
    if age is not None and age < within:
        return "too_soon"
    return None


def scanner_click(
    agent: str, method: str, sent_at: datetime | None, at: datetime, *, within: float
) -> str | None:
    """Why a click is a scanner's (``head_request``, ``scanner_agent``, ``too_soon``), or
    ``None``."""
    if method.upper() == "HEAD":
        return "head_request"
    lowered = agent.lower()
    if not lowered or _SCANNER.search(lowered) is not None:
        return "scanner_agent"
    age = _seconds(sent_at, at)
    if age is not None and age < within:
        return "too_soon"
    return None
