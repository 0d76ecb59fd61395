"""`geti-bulk migrate --verify`: compare the two projects, send nothing.

Every source item must be on the target exactly once (by the journal's pairing when
there is one, else by name, extension and size), its latest annotation equal to what the
migration posts, within 1 px (`shapes.scene_matches`), and with `--sha256` the bytes of
both downloads equal. One JSON line per source item in the report; exit 0 only when
everything matches.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import aiohttp
import anyio

from geti_bulk.annotate import Annotator
from geti_bulk.concurrency import AdaptiveLimiter
from geti_bulk.errors import FileError, GetiBulkError, TransientError
from geti_bulk.events import RecordingReporter
from geti_bulk.geti.client import GetiClient, Target
from geti_bulk.geti.models import MediaItem
from geti_bulk.journal import JournalReader, default_journal_path
from geti_bulk.labels import AnnotationLabels, parse_label_map, plan_annotation_labels
from geti_bulk.migrate.config import MigrateConfig
from geti_bulk.migrate.plan import Plan, plan_migration, project_id_for
from geti_bulk.migrate.scenes import label_names, source_annotation
from geti_bulk.migrate.sides import (
    dialect_of,
    job_for,
    open_client,
    resolve_side,
    side_session,
    source_error,
)
from geti_bulk.retry import RetryBudget, RetryPolicy
from geti_bulk.shapes import scene_matches
from geti_bulk.tries import Tries

T = TypeVar("T")


@dataclass(slots=True)
class MigrateVerifyResult:
    checked: int = 0
    ok: int = 0
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0             # second copies of a source item (each a problem)
    extra: int = 0                  # target items no source item accounts for
    elsewhere: int = 0              # target items another migration into it paired
    shared: bool = False            # another migration's journal names this target
    sha256: bool = False            # the bytes of both downloads were compared
    fatal: str | None = None

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 3
        return 1 if self.problems else 0

    def summary(self) -> str:
        if self.fatal:
            return f"verify: error: {self.fatal}"
        dups = (f"; {self.duplicates} duplicate(s) on the target (a source item twice)"
                if self.duplicates else "")
        extra = ""
        if self.extra:
            extra = (f"; {self.extra} target item(s) from elsewhere (not from this source, "
                     "the target is shared)" if self.shared else
                     f"; {self.extra} target item(s) not from the source")
        other = (f"; {self.elsewhere} target item(s) from the other migration(s) into it"
                 if self.elsewhere else "")
        line = (f"verify: {self.checked} source item(s), {self.ok} on the target once and "
                f"right, {len(self.problems)} problem(s){dups}{extra}{other}")
        if self.sha256:
            line += "\nverify: bytes compared (sha256 of both downloads of each item)"
        else:
            line += "\nverify: bytes not compared (pass --sha256 to download both sides)"
        return line


async def verify_migration(cfg: MigrateConfig, report: Path, *, sha256: bool = False,
                           sleep: Callable[[float], Awaitable[None]] | None = None,
                           rng: random.Random | None = None) -> MigrateVerifyResult:
    result = MigrateVerifyResult()
    try:
        await _verify(cfg, report, sha256, result, sleep or anyio.sleep,
                      rng or random.Random())
    except GetiBulkError as e:
        result.fatal = str(e)
    except BaseExceptionGroup as eg:
        fatal = next((e for e in _leaves(eg) if isinstance(e, GetiBulkError)), None)
        if fatal is None:
            raise
        result.fatal = str(fatal)
    return result


def _leaves(eg: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


async def _verify(cfg: MigrateConfig, report: Path, sha256: bool,
                  result: MigrateVerifyResult, sleep: Callable[[float], Awaitable[None]],
                  rng: random.Random) -> None:
    async with side_session(cfg.source, cfg.concurrency) as s1, \
            side_session(cfg.target, cfg.concurrency) as s2:
        source = await open_client(s1, cfg.source, "from")
        target = await open_client(s2, cfg.target, "to")
        src = await resolve_side(source, cfg.source, "from")
        plan = plan_migration(src.project, dialect_of(target), cfg.conversions)
        if cfg.create_project:
            dst = await target.resolve(project_id_for(src.host, src.project.id,
                                                      cfg.create_project))
        else:
            dst = await resolve_side(target, cfg.target, "to")
        labels = plan_annotation_labels(dst.project, label_names(src.project, plan),
                                        parse_label_map(cfg.label_map),
                                        cfg.skip_unknown_labels)
        index: dict[tuple[str, str, str], list[MediaItem]] = {}
        by_id: dict[str, MediaItem] = {}
        async for page in target.query_media(dst):
            for m in page:
                index.setdefault((m.type, m.name, m.extension), []).append(m)
                by_id[m.id] = m
        own = cfg.journal or default_journal_path(
            dst.host, dst.project.id, f"from-{src.project.id}-{src.dataset.id}")
        paired = await anyio.to_thread.run_sync(_journal_pairs, own)
        others = await anyio.to_thread.run_sync(_other_journals, own, dst)
        result.shared = bool(others)
        elsewhere: set[str] = set()
        for path in others:
            elsewhere.update((await anyio.to_thread.run_sync(_journal_pairs, path)).values())
        elsewhere -= set(paired.values())
        checker = _Checker(source, target, src, dst, plan, labels, index, by_id, paired,
                           sha256, cfg.concurrency,
                           RetryPolicy(max_attempts=cfg.max_attempts), sleep, rng)
        checker.elsewhere = elsewhere
        result.sha256 = sha256
        report.parent.mkdir(parents=True, exist_ok=True)
        with report.open("w", encoding="utf-8") as out:
            checker.out = out
            async with anyio.create_task_group() as tg:
                limit = anyio.Semaphore(cfg.concurrency)
                async for page in source.query_media(src):
                    for item in page:
                        await limit.acquire()
                        tg.start_soon(checker.check_one, item, limit, result)
            checker.extras(result)


def _journal_pairs(path: Path | None) -> dict[str, str]:
    """source key → target media id, from a migration journal (when there is one)."""
    if path is None or not path.is_file():
        return {}
    reader = JournalReader(path)
    try:
        rows = reader._c().execute(
            "SELECT key, media_id FROM files WHERE media_id IS NOT NULL").fetchall()
    finally:
        reader.close()
    return {str(k): str(v) for k, v in rows}


OTHER_JOURNALS = 500        # journals looked at beside this one, at most


def _other_journals(own: Path, dst: Target) -> list[Path]:
    """The journals of other migrations into the same target project (another source
    dataset moved into it, README "Several Geti 2 datasets, one Geti 3 project"): the
    default journals of that target, and the journals beside this one whose target is it."""
    default = default_journal_path(dst.host, dst.project.id, "from-x")
    prefix = default.name[:default.name.index(f"-{dst.project.id}-") + len(dst.project.id) + 2]
    out: list[Path] = []
    seen = {own.resolve()}
    for folder in dict.fromkeys((default.parent, own.parent)):
        if not folder.is_dir():
            continue
        for n, path in enumerate(sorted(folder.glob("*.sqlite"))):
            if n >= OTHER_JOURNALS:
                break
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            if path.name.startswith(prefix + "from-") or _journal_targets(path, dst):
                out.append(path)
    return out


def _journal_targets(path: Path, dst: Target) -> bool:
    reader = JournalReader(path)
    try:
        target = reader.meta().get("target", "")
    except sqlite3.Error:
        return False
    finally:
        reader.close()
    return target.endswith(f"→ {dst.describe()}")


class _Checker:
    def __init__(self, source: GetiClient, target: GetiClient, src: Target, dst: Target,
                 plan: Plan, labels: AnnotationLabels,
                 index: dict[tuple[str, str, str], list[MediaItem]],
                 by_id: dict[str, MediaItem], paired: dict[str, str], sha256: bool,
                 concurrency: int, policy: RetryPolicy,
                 sleep: Callable[[float], Awaitable[None]], rng: random.Random) -> None:
        self.source, self.target, self.src, self.dst = source, target, src, dst
        self.plan = plan
        self.index = index
        self.by_id = by_id
        self.paired = paired
        self.sha256 = sha256
        self.paired_ids = set(paired.values())
        self.elsewhere: set[str] = set()        # target ids another migration paired
        self.matched: dict[str, str] = {}       # target id → the source key it holds
        self.failed: set[str] = set()           # source keys with a problem
        self.out: IO[str] | None = None
        # the mover's retry rules: the same policy (--max-attempts), backoff with jitter
        # and Retry-After, a run-wide budget; retries are counted, not shown
        self.policy = policy
        self.budget = RetryBudget(policy)
        self.limiter = AdaptiveLimiter(concurrency)
        self.quiet = RecordingReporter()
        self.rng, self.sleep = rng, sleep
        self.annotator = Annotator(target, labels, self.limiter, policy, self.budget,
                                   self.quiet, rng=rng, sleep=sleep)

    async def _retrying(self, key: str, call: Callable[[], Awaitable[T]], *,
                        source: bool) -> T:
        """One read with the mover's retry rules; a failure still left after them is this
        item's (FileError), never the run's."""
        tries = Tries(key, policy=self.policy, budget=self.budget, limiter=self.limiter,
                      gate=None, reporter=self.quiet, rng=self.rng, sleep=self.sleep)
        while True:
            try:
                got = await call()
            except TransientError as e:
                err = source_error(e) if source else e
                why = await tries.failed(err)
                if why is not None:
                    raise FileError(f"{err} ({why})") from None
                continue
            tries.succeeded()
            return got

    async def check_one(self, item: MediaItem, limit: anyio.Semaphore,
                        result: MigrateVerifyResult) -> None:
        key = job_for(item).key
        try:
            problem = await self._check(item, key)
        except (FileError, TransientError) as e:
            problem = f"could not be checked: {e}"
        finally:
            limit.release()
        result.checked += 1
        if problem is None:
            result.ok += 1
        else:
            self.failed.add(key)
            result.problems.append(f"{key} ({item.name}{item.extension}): {problem}")
        if self.out is not None:
            row = {"key": key, "name": f"{item.name}{item.extension}",
                   "status": "ok" if problem is None else "problem"}
            if problem:
                row["problem"] = problem
            self.out.write(json.dumps(row) + "\n")

    def extras(self, result: MigrateVerifyResult) -> None:
        """The target items no source item holds: a second copy of a source item (same
        type, name, extension and size as the one it holds) is a duplicate, a problem;
        one another migration into this project paired is that migration's; the rest are
        not from the source (or, on a shared target, from elsewhere). Each one a row."""
        held: dict[tuple[str, str, str, int | None], str] = {}
        for tid, key in self.matched.items():
            m = self.by_id[tid]
            held[(m.type, m.name, m.extension, m.size)] = key
        dups: dict[str, list[str]] = {}
        for tid, m in self.by_id.items():
            if tid in self.matched:
                continue
            if tid in self.elsewhere:
                result.elsewhere += 1
                continue
            of = held.get((m.type, m.name, m.extension, m.size))
            row: dict[str, object] = {"target_id": tid, "name": f"{m.name}{m.extension}"}
            if of is not None:
                dups.setdefault(of, []).append(tid)
                result.duplicates += 1
                row.update(status="duplicate", of=of)
            else:
                result.extra += 1
                row["status"] = "from elsewhere" if result.shared else "not from the source"
            if self.out is not None:
                self.out.write(json.dumps(row) + "\n")
        for key, ids in sorted(dups.items()):
            result.ok -= 1 if key not in self.failed else 0
            result.problems.append(f"{key}: on the target {len(ids) + 1} times (duplicate(s): "
                                   f"{', '.join(ids)})")

    async def _check(self, item: MediaItem, key: str) -> str | None:
        # paired before any await: the journal's pairing first, else the first target
        # item of the same name, extension and size that nothing else pairs with
        pid = self.paired.get(key)
        if pid is not None:
            if pid not in self.by_id:
                return f"the journal pairs it with target {pid}, which is not there"
            found = self.by_id[pid]
        else:
            same = [m for m in self.index.get((item.type, item.name, item.extension.lower()),
                                              [])
                    if (m.size is None or item.size is None or m.size == item.size)
                    and m.id not in self.paired_ids and m.id not in self.elsewhere
                    and m.id not in self.matched]
            if not same:
                return "not on the target"
            found = same[0]
        self.matched[found.id] = key
        if self.sha256:
            a = await self._digest(self.source, self.src, item, source=True)
            b = await self._digest(self.target, self.dst, found, source=False)
            if a != b:
                return f"bytes differ (sha256 source {a[:12]}…, target {b[:12]}…)"
        if item.type == "image":
            return await self._annotation(item, found)
        return await self._frames(item, found)

    async def _frames(self, item: MediaItem, found: MediaItem) -> str | None:
        """Each annotated frame of the source's video, on the target's video."""
        frames = await self._retrying(job_for(item).key, lambda: self.source.frame_annotations(
            self.src, item.id), source=True)
        for frame, anns in frames:
            ann, _ = source_annotation(anns, self.src.project, self.plan, item.width,
                                       item.height)
            if ann is None:
                continue
            scene, _ = self.annotator.scene(job_for(item), ann, found, self.dst)
            if not scene.annotations:
                continue
            got = await self._retrying(job_for(item).key,
                                       functools.partial(self.target.latest_frame_annotation,
                                                         self.dst, found.id, frame,
                                                         (found.width, found.height)),
                                       source=False)
            if got is None:
                return f"frame {frame}: no annotation on the target"
            why = scene_matches(scene, got, project=self.dst.project)
            if why is not None:
                return f"frame {frame}: {why}"
        return None

    async def _digest(self, client: GetiClient, target: Target, item: MediaItem, *,
                      source: bool) -> str:
        """sha256 of one download, streamed; a download cut mid-body is downloaded again."""
        return await self._retrying(job_for(item).key,
                                    lambda: self._digest_once(client, target, item),
                                    source=source)

    async def _digest_once(self, client: GetiClient, target: Target, item: MediaItem) -> str:
        h = hashlib.sha256()
        got = 0
        async with client.open_download(target, item) as resp:
            try:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    h.update(chunk)
                    got += len(chunk)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise TransientError(f"the download broke after {got} bytes: "
                                     f"{type(e).__name__}", cause="download") from None
            if resp.content_length is not None and got != resp.content_length:
                raise TransientError(f"the download ended after {got} of "
                                     f"{resp.content_length} bytes", cause="download")
        return h.hexdigest()

    async def _annotation(self, item: MediaItem, found: MediaItem) -> str | None:
        key = job_for(item).key
        anns = await self._retrying(key, lambda: self.source.latest_annotation(
            self.src, item.id, (item.width, item.height)), source=True)
        ann, _ = source_annotation(anns, self.src.project, self.plan, item.width, item.height)
        got = await self._retrying(key, lambda: self.target.latest_annotation(
            self.dst, found.id, (found.width, found.height)), source=False)
        if ann is None:
            return None if got is None else "annotated on the target, not in the source"
        scene, _ = self.annotator.scene(job_for(item), ann, found, self.dst)
        if not scene.annotations:
            return None
        if got is None:
            return "no annotation on the target"
        return scene_matches(scene, got, project=self.dst.project)
