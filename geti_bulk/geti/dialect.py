"""Which Geti is at the host: decided on the JSON body and its keys, never on a status.

A Geti 3 that serves its web UI answers *every* unknown GET with 200 HTML (GETI3_API.md
§3, §10, §15), and so does an on-prem Geti 2 (GETI_API.md §11): only a JSON
`GET /api/openapi.json` whose `info.title` is "Geti" with a 3.x `info.version` means
Geti 3. Geti 2 is confirmed by `GET /api/v1/product_info` (with the token).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from geti_bulk.errors import ConfigError, FatalError
from geti_bulk.geti.mapping import map_network_error

DIALECTS = ("auto", "geti2", "geti3")


def geti3_version(status: int, content_type: str, body: bytes) -> str | None:
    """The 3.x version an `openapi.json` answer names, or None when it is not Geti 3."""
    if status != 200 or "json" not in content_type.lower():
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    info = doc.get("info") if isinstance(doc, dict) else None
    if not isinstance(info, dict) or info.get("title") != "Geti":
        return None
    version = str(info.get("version", ""))
    return version if version.split(".", 1)[0] == "3" else None


async def detect(session: aiohttp.ClientSession, host: str, wanted: str = "auto", *,
                 proxy: str | None = None, limit_s: float = 30.0) -> tuple[str, str]:
    """("geti2" | "geti3", the Geti 3 version or "")."""
    if wanted not in DIALECTS:
        raise ConfigError(f"dialect: must be one of {', '.join(DIALECTS)}, not {wanted!r}")
    if wanted == "geti2":
        return "geti2", ""
    try:
        async with asyncio.timeout(limit_s):
            async with session.get(host + "/api/openapi.json", proxy=proxy,
                                   allow_redirects=False,
                                   headers={"Accept": "application/json"}) as resp:
                body = await resp.read()
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        err: Any = map_network_error(e, host, body_complete=False)
        if isinstance(err, FatalError) and "TLS" in str(err):
            raise err from None        # its advice is in it, said once
        raise FatalError(f"cannot reach {host}: {err}") from None
    version = geti3_version(status, ctype, body)
    if version is not None:
        return "geti3", version
    if wanted == "geti3":
        raise FatalError(f"{host} is not a Geti 3 server (GET /api/openapi.json answered "
                         f"{status} {ctype or 'without a content type'}); drop --dialect geti3")
    return "geti2", ""
