"""The SQLite ledger that makes runs resumable and exactly-once.

One journal per target (host, project, dataset). A file moves through
sending → media(media id, Geti's width × height; its annotation still to post) →
uploaded(media id) | failed(reason, and the media id when the media is stored) |
skipped(reason). Absence means never sent. A file without an annotation to post goes
from sending to uploaded; a file counts as uploaded only when both steps are done. `sending` is committed (group commit, WAL) *before* the first byte goes out, so
after a `kill -9` every file that may be on the server is either `uploaded` or marked
for reconciliation; results after that are batched, since a lost result is recovered
by asking the server. Small files read ahead are marked a batch at a time
(`Run._premark`); a graceful stop takes back the marks it did not use (`forget_sending`).
One writer thread owns the write connection; the event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geti_bulk.errors import JournalError
from geti_bulk.jobs import FileJob

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    state TEXT NOT NULL,
    media_id TEXT,
    reason TEXT,
    uncertain INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    sha256 TEXT,
    width INTEGER,
    height INTEGER,
    dataset_id TEXT,
    run_id TEXT,
    rel TEXT,
    reader INTEGER
);
CREATE INDEX IF NOT EXISTS files_media ON files(media_id);
CREATE INDEX IF NOT EXISTS files_pending ON files(state, run_id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

# A file's name is what follows the key's last "/" (an identity, or an old-style key
# "<folder name>/<relative path>"): written with built-in functions only, so that the
# index below can hold it without a column. `find_moved` must use the same text.
NAME_OF_KEY = "substr(key, length(rtrim(key, replace(key, '/', ''))) + 1)"
MOVED_INDEX = (f"CREATE INDEX IF NOT EXISTS files_moved ON files(size, mtime_ns, {NAME_OF_KEY})")
# `+`: no index but the key's (the planner would pick `files_pending` on the state)
SETTLED_SQL = ("SELECT key, size, mtime_ns FROM files WHERE key IN ({marks}) AND +state IN "
               "('uploaded', 'skipped') AND +media_id IS NOT NULL AND "
               "(+run_id IS NULL OR +run_id != ?)")
# meta `identity`: how keys are made. Absent: "<source folder name>/<relative path>"
# (geti-bulk before 0.x); rows of such a journal are adopted by `find_moved` file by file.
IDENTITY = "resolved-path"

UPSERT = """
INSERT INTO files (key, path, size, mtime_ns, state, media_id, reason, uncertain, attempts, updated,
                   sha256, width, height, dataset_id, run_id, rel, reader)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(key) DO UPDATE SET path=excluded.path, size=excluded.size,
  mtime_ns=excluded.mtime_ns, state=excluded.state, media_id=excluded.media_id,
  reason=excluded.reason, uncertain=excluded.uncertain, attempts=excluded.attempts,
  updated=excluded.updated, sha256=excluded.sha256,
  width=COALESCE(excluded.width, files.width), height=COALESCE(excluded.height, files.height),
  dataset_id=COALESCE(excluded.dataset_id, files.dataset_id), run_id=excluded.run_id,
  rel=excluded.rel, reader=excluded.reader
"""
_ADDED_COLUMNS = {"sha256": "TEXT", "width": "INTEGER", "height": "INTEGER",
                  "dataset_id": "TEXT", "run_id": "TEXT", "rel": "TEXT", "reader": "INTEGER"}


def default_journal_path(host: str, project_id: str, dataset_id: str,
                         shard: str | None = None) -> Path:
    """One journal per target, and per shard (`K/N` → `…-shard-K-of-N.sqlite`), so the
    shards of one migration on one machine never share a journal or its lock."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    digest = hashlib.sha256(f"{host}|{project_id}|{dataset_id}".encode()).hexdigest()[:16]
    safe_host = "".join(c if c.isalnum() or c in "-." else "_" for c in host.split("://")[-1])
    part = "-shard-{}-of-{}".format(*shard.split("/")) if shard else ""
    return (base / "geti-bulk" / "journals"
            / f"{safe_host}-{project_id}-{dataset_id}-{digest}{part}.sqlite")


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process kill loses nothing
    return conn


@dataclass(frozen=True, slots=True)
class PriorState:
    state: str
    media_id: str | None
    size: int
    mtime_ns: int
    uncertain: bool
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    dataset_id: str | None = None
    updated: float = 0.0       # when the row was last written (time.time())
    run_id: str | None = None  # the run that last wrote it


_Op = tuple[str, tuple[Any, ...], "asyncio.Future[Any] | None", Callable[[sqlite3.Cursor], Any] | None]


def journal_error(path: Path, e: BaseException, doing: str = "written") -> JournalError:
    """One readable line for a journal that failed: where, and SQLite's own words."""
    detail = str(e) or type(e).__name__
    if not isinstance(e, sqlite3.Error | OSError):
        detail = f"{type(e).__name__}: {detail}"
    return JournalError(f"the journal {path} could not be {doing} ({detail}); stopped. "
                        "Rerun the same command to resume once it can")


class Journal:
    def __init__(self, path: Path, *, target: str = "") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = connect(path)
            _migrate(self._conn)
            self._conn.executescript(SCHEMA)
            self._conn.execute(MOVED_INDEX)    # built once when an older journal is opened
            if target:
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('target', ?)", (target,))
            self._conn.execute("INSERT INTO meta VALUES ('identity', ?) ON CONFLICT(k) DO "
                               "UPDATE SET v=excluded.v", (IDENTITY,))
        except sqlite3.Error as e:
            raise journal_error(path, e, "opened") from None
        self.run_id = f"{os.getpid()}-{time.time_ns()}"
        self._q: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        self._pending: list[_Op] = []
        self._flush_scheduled = False
        self._soon = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.writes = 0
        self.commits = 0
        self.error: JournalError | None = None   # the first failed write; the run stops

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="geti-bulk-journal", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise the first write error (a full disk): no file goes out on a broken journal."""
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self._flush()
        if self._thread is not None:
            self._q.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        try:
            self._conn.close()
        except sqlite3.Error as e:
            self.error = self.error or journal_error(self.path, e, "closed")

    def _writer(self) -> None:
        conn = self._conn
        while True:
            first = self._q.get()
            if first is None:
                return
            batch = list(first)
            stop = False
            while len(batch) < 5000:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.extend(nxt)
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            try:
                # IMMEDIATE: the write lock first, waiting (busy timeout) for the scan
                # thread's re-keying of moved files, never failing a read-then-write
                conn.execute("BEGIN IMMEDIATE")
                for sql, args, fut, reader in batch:
                    cur = conn.execute(sql, args)
                    if fut is not None:
                        results.append((fut, reader(cur) if reader else None, None))
                    self.writes += 1
                conn.execute("COMMIT")
                self.commits += 1
            except Exception as e:  # noqa: BLE001 — whoever waits gets it; the run stops
                # (a full disk, an I/O error, or a bug): the thread never dies with
                # futures left pending, and nothing after a failed write is trusted
                err = journal_error(self.path, e)
                self.error = self.error or err
                with contextlib.suppress(Exception):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                results = [(fut, None, journal_error(self.path, e)) for _, _, fut, _ in batch
                           if fut is not None]
            if results and self._loop is not None:
                self._loop.call_soon_threadsafe(_settle_all, results)   # one wake-up
            if stop:
                return

    def _put(self, sql: str, args: tuple[Any, ...]) -> None:
        """A result: kept on the loop and handed to the writer with the next mark, or
        within 50 ms (a lost result is recovered by reconciliation, not by this write)."""
        self._pending.append((sql, args, None, None))
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_later(0.05, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending:
            ops, self._pending = self._pending, []
            self._q.put(ops)

    async def _put_wait(self, sql: str, args: tuple[Any, ...],
                        reader: Callable[[sqlite3.Cursor], Any] | None = None) -> Any:
        """Waits for the commit."""
        return await self._put_soon(sql, args, reader)

    def _put_soon(self, sql: str, args: tuple[Any, ...],
                  reader: Callable[[sqlite3.Cursor], Any] | None = None) -> asyncio.Future[Any]:
        """A future settled once committed. Requests made in the same loop iteration
        (workers marking files together) travel to the writer as one batch: one thread
        wake-up."""
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((sql, args, fut, reader))
        if not self._soon:
            self._soon = True
            self._loop.call_soon(self._flush_soon)
        return fut

    def _flush_soon(self) -> None:
        self._soon = False
        self._flush()

    # --- writes -----------------------------------------------------------------

    def _row(self, job: FileJob, state: str, media_id: str | None, reason: str | None,
             uncertain: bool, attempts: int, sha256: str | None = None,
             dims: tuple[int, int] | None = None) -> tuple[Any, ...]:
        w, h = dims if dims else (None, None)
        return (job.key, job.path if _utf8(job.path) else job.key, job.size, job.mtime_ns, state,
                media_id, reason, int(uncertain), attempts, time.time(), sha256, w, h,
                job.dataset_id, self.run_id, job.rel or None, job.reader if job.reader >= 0 else None)

    async def mark_sending(self, job: FileJob) -> None:
        """Durable before the first byte is sent (group commit with other workers)."""
        await self.mark_sending_soon(job)

    def mark_sending_soon(self, job: FileJob) -> asyncio.Future[None]:
        """`mark_sending` as a future to await before the first byte (no task of its own)."""
        fut: asyncio.Future[None] = self._put_soon(UPSERT, self._row(job, "sending", None, None,
                                                                     True, 0))
        return fut

    def forget_sending(self, job: FileJob) -> None:
        """Take back this run's `sending` mark of a file it did not send after all (a
        stop): a file that had no row before has none again; any other row stays."""
        if job.prior_state is None:
            self._put("DELETE FROM files WHERE key = ? AND state = 'sending' AND run_id = ?",
                      (job.key, self.run_id))

    def record_uploaded(self, job: FileJob, media_id: str, attempts: int,
                        sha256: str | None = None, dims: tuple[int, int] | None = None) -> None:
        self._put(UPSERT, self._row(job, "uploaded", media_id, None, False, attempts, sha256,
                                    dims))

    async def record_media(self, job: FileJob, media_id: str, dims: tuple[int, int] | None,
                           attempts: int, sha256: str | None = None) -> None:
        """The media is stored, its annotation is not yet: durable before the annotation
        step, so a resume posts the annotation instead of sending the media again."""
        await self._put_wait(UPSERT, self._row(job, "media", media_id, None, False, attempts,
                                               sha256, dims))

    def record_failed(self, job: FileJob, reason: str, attempts: int, uncertain: bool,
                      media_id: str | None = None, dims: tuple[int, int] | None = None) -> None:
        """`media_id` set: the media is stored and only its annotation failed."""
        self._put(UPSERT, self._row(job, "failed", media_id, reason, uncertain, attempts,
                                    None, dims))

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._put("DELETE FROM meta WHERE k = ?", (key,))
        else:
            self._put("INSERT INTO meta VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                      (key, value))

    def record_skipped(self, job: FileJob, reason: str, media_id: str | None = None) -> None:
        self._put(UPSERT, self._row(job, "skipped", media_id, reason, False, 0))

    async def is_claimed(self, media_id: str, by_other_than: str) -> bool:
        """Whether another file of this journal already owns `media_id` (after pending writes)."""
        found = await self._put_wait(
            "SELECT 1 FROM files WHERE media_id = ? AND key != ? AND state IN "
            "('uploaded','skipped','media','failed') LIMIT 1",
            (media_id, by_other_than), reader=lambda cur: cur.fetchone() is not None)
        return bool(found)

    async def flush(self) -> None:
        await self._put_wait("SELECT 1", ())

    # --- reads (other threads open their own connection) ----------------------------

    def reader(self, *, writable: bool = False) -> JournalReader:
        return JournalReader(self.path, writable=writable)


class JournalResumeStore:
    """Where a resumable (TUS) upload's URL is kept: the journal's meta table, so a run
    killed mid-file resumes from the server's offset (`geti.tus.ResumeStore`)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._urls: dict[str, str] = {}
        self._reader = JournalReader(journal.path)

    def get(self, key: str) -> str | None:
        if key in self._urls:
            return self._urls[key]
        return self._reader.meta().get(key)

    def put(self, key: str, url: str) -> None:
        self._urls[key] = url
        self.journal.set_meta(key, url)

    def drop(self, key: str) -> None:
        self._urls.pop(key, None)
        self.journal.set_meta(key, None)

    def close(self) -> None:
        self._reader.close()


_PRIOR = ("state, media_id, size, mtime_ns, uncertain, sha256, width, height, dataset_id, "
          "updated, run_id")


def _prior(row: tuple[Any, ...]) -> PriorState:
    return PriorState(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7],
                      row[8], float(row[9] or 0), row[10])


class JournalReader:
    """Lookups for the scanning thread: batched, so memory stays flat. `writable`: it may
    re-key the row of a moved file (`rekey`); the run's writer thread waits for it."""

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = path
        self.writable = writable
        self._conn: sqlite3.Connection | None = None
        self._moved_index: bool | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            # read from whichever worker thread runs the lookup (to_thread), closed on the loop
            self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                         check_same_thread=False)
            if self.writable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
        return self._conn

    def lookup(self, keys: Iterable[str]) -> dict[str, PriorState]:
        keys = list(keys)
        out: dict[str, PriorState] = {}
        conn = self._c()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT key, {_PRIOR} FROM files WHERE key IN ({marks})",
                                    chunk):
                out[row[0]] = _prior(row[1:])
        return out

    def settled(self, entries: list[tuple[str, int, int]], run_id: str = "") -> set[int]:
        """Positions of the (key, size, mtime_ns) that the journal holds as uploaded (or
        skipped as already in Geti) with that size and mtime, by a run other than
        `run_id`: what a resume skips without making a job."""
        marks = ",".join("?" * len(entries))
        found = {row[0]: (row[1], row[2]) for row in self._c().execute(
            SETTLED_SQL.format(marks=marks), [k for k, _, _ in entries] + [run_id])}
        return {i for i, (key, size, mtime_ns) in enumerate(entries)
                if found.get(key) == (size, mtime_ns)}

    def find_moved(self, key: str, path: str, size: int, mtime_ns: int,
                   same_content: Callable[[str], bool] | None = None
                   ) -> tuple[str, PriorState, bool] | None:
        """The row of this file under another key: same name, size and mtime, recorded at
        a path that no longer exists (a moved or remounted tree, or a journal of the old
        "<folder name>/<relative path>" keys) or that is this very file (a bind mount, a
        hard link). (old key, its state, whether to re-key the row) or None.
        `same_content(sha256)`: with --hash, a recorded digest must match too."""
        if self._moved_index is None:    # a dry run over a journal of an older geti-bulk
            self._moved_index = self._c().execute(
                "SELECT 1 FROM sqlite_master WHERE type='index' AND name='files_moved'"
            ).fetchone() is not None
        if not self._moved_index:
            return None
        name = key.rsplit("/", 1)[-1]
        if not name:
            return None
        rows = self._c().execute(
            f"SELECT key, path, {_PRIOR} FROM files WHERE size = ? AND mtime_ns = ? AND "
            f"{NAME_OF_KEY} = ? LIMIT 100", (size, mtime_ns, name)).fetchall()
        for old_key, old_path, *rest in rows:
            if old_key == key:
                continue
            prior = _prior(tuple(rest))
            where = old_key if os.path.isabs(old_key) else old_path
            gone = not os.path.exists(where)
            if not gone and not _samefile(where, path):
                continue                  # another file that is still there
            if same_content is not None and prior.sha256 and not same_content(prior.sha256):
                continue
            # re-keyed when the old path is gone, or the old key is of the older kind
            # (never made again); a path still there is a hard link or another mount
            # of this file, and keeps its row (re-keying would swing it back and forth)
            return old_key, prior, gone or not os.path.isabs(old_key)
        return None

    def rekey(self, moves: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """(old key, new key, new path): the rows of moved files under their new
        identity, in one transaction. Returns the moves made (a new key already taken
        leaves that row where it was)."""
        done = []
        conn = self._c()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for old, new, path in moves:
                try:
                    cur = conn.execute("UPDATE files SET key = ?, path = ? WHERE key = ?",
                                       (new, path if _utf8(path) else new, old))
                except sqlite3.IntegrityError:
                    continue
                if cur.rowcount:
                    done.append((old, new, path))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return done

    def rows(self, states: Iterable[str] = (), after: str = "", limit: int = 1000
             ) -> list[tuple[str, str, str | None, str | None]]:
        """(key, state, media id, reason) in key order, one page after `after`."""
        wanted = list(states)
        where = f"AND state IN ({','.join('?' * len(wanted))})" if wanted else ""
        return list(self._c().execute(
            f"SELECT key, state, media_id, reason FROM files WHERE key > ? {where} "
            "ORDER BY key LIMIT ?", (after, *wanted, limit)))

    def pending_annotations(self, run_id: str, after: int = 0, limit: int = 500
                            ) -> list[tuple[int, str, str, int, int, str, int, int, str | None,
                                            str | None, int | None]]:
        """Files this run stored without their annotation yet: (rowid, key, path, size,
        mtime_ns, media_id, width, height, dataset_id, rel, reader), in pages."""
        return list(self._c().execute(
            "SELECT rowid, key, path, size, mtime_ns, media_id, width, height, dataset_id, "
            "rel, reader FROM files WHERE state = 'media' AND run_id = ? AND rowid > ? "
            "ORDER BY rowid LIMIT ?", (run_id, after, limit)))

    def counts(self) -> dict[str, int]:
        return dict(self._c().execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())

    def has_rows(self) -> bool:
        return self._c().execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None

    def failures(self, limit: int = 50) -> list[tuple[str, str]]:
        return list(self._c().execute(
            "SELECT key, reason FROM files WHERE state='failed' ORDER BY key LIMIT ?", (limit,)))

    def meta(self) -> dict[str, str]:
        return dict(self._c().execute("SELECT k, v FROM meta").fetchall())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a journal from an older geti-bulk lacks."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(files)")}
    if not columns:
        return
    for name, kind in _ADDED_COLUMNS.items():
        if name not in columns:
            conn.execute(f"ALTER TABLE files ADD COLUMN {name} {kind}")


def _settle_all(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, err in results:
        if fut.done():
            continue
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(value)


def _samefile(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
