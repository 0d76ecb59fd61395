"""The two sides of a migration: a session per side (its own TLS options), the client of
the dialect each host speaks, the resolved projects, and the journal's key of a source
item."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from geti_bulk.errors import ConfigError, FatalError, TransientError
from geti_bulk.geti.client import GetiClient, Target, env_proxy, make_ssl
from geti_bulk.geti.dialect import detect as detect_dialect
from geti_bulk.geti.models import MediaItem
from geti_bulk.geti.v3 import Geti3Client
from geti_bulk.jobs import FileJob
from geti_bulk.journal import PriorState
from geti_bulk.migrate.config import Side


@dataclass(frozen=True, slots=True)
class Work:
    item: MediaItem            # the source's item (stored name, extension, size, dims)
    prior: PriorState | None


def job_for(item: MediaItem, subset: str | None = None) -> FileJob:
    """The journal's row of a source item: keyed by its type and source id (stable), then
    its stored name, so a report row says which file it is."""
    filename = f"{item.name}{item.extension}"
    return FileJob(path=filename, key=f"{item.type}/{item.id}/{filename}",
                   size=item.size or 0, kind=item.type, subset=subset)


class side_session:  # noqa: N801 (used as a context manager, like aiohttp.ClientSession)
    """One aiohttp session per side: its own TLS options."""

    def __init__(self, side: Side, concurrency: int) -> None:
        self.side = side
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.concurrency + 4,
                                         ssl=make_ssl(self.side.ca_bundle, self.side.insecure))
        self.session = aiohttp.ClientSession(
            connector=connector, trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, connect=60))
        return self.session

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()


async def open_client(session: aiohttp.ClientSession, side: Side, which: str) -> GetiClient:
    proxy = env_proxy(side.host)
    try:
        dialect, version = await detect_dialect(session, side.host, side.dialect, proxy=proxy)
    except FatalError as e:
        raise FatalError(side_message(str(e), which)) from None
    if dialect == "geti3":
        return Geti3Client(session, side.host, version=version, proxy=proxy)
    if not side.token:
        env = "GETI_FROM_TOKEN" if which == "from" else "GETI_TO_TOKEN"
        raise ConfigError(f"{which}: {side.host} is a Geti 2 server and needs a token: set "
                          f"{env} (or {env}_FILE, or --{which}-token-file FILE)")
    return GetiClient(session, side.host, side.token, proxy=proxy)


async def resolve_side(client: GetiClient, side: Side, which: str) -> Target:
    try:
        return await client.resolve(side.project or "", side.dataset, side.workspace)
    except FatalError as e:
        raise type(e)(side_message(str(e), which)) from None


def side_message(text: str, which: str) -> str:
    """An error of one side, naming the side and its own token variables."""
    env = "GETI_FROM_TOKEN" if which == "from" else "GETI_TO_TOKEN"
    text = text.replace("check GETI_TOKEN or --token-file",
                        f"check {env} (or {env}_FILE, --{which}-token-file)")
    # upload's flags, in a message the client wrote, are this side's own
    text = text.replace("--ca-bundle", f"--{which}-ca-bundle").replace(
        "--insecure", f"--{which}-insecure")
    return f"{which}: {text}"


def source_error(e: TransientError) -> TransientError:
    """A source-side failure, told apart from the target's: it neither holds the run for a
    target outage nor slows the target's writers; it is retried with backoff and counted."""
    return TransientError(f"source: {e}", retry_after=e.retry_after, cause=f"source-{e.cause}")


def dialect_of(client: GetiClient) -> str:
    return "geti3" if isinstance(client, Geti3Client) else "geti2"
