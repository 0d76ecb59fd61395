"""One run per journal: an exclusive OS lock on a sidecar file, held for the whole run.

Two runs writing the same journal both believe they own every file they mark
`sending`, so both upload it. `JournalLock.acquire` takes `flock(LOCK_EX | LOCK_NB)` on
`<journal>.lock` (never on the SQLite file itself: SQLite uses POSIX fcntl locks there,
and closing any descriptor of that file would drop them). The kernel drops the lock
when the holder exits in any way, `kill -9` included, so a lock file left behind never
blocks the next run: only the lock matters, the file may stay. The file is never
deleted (unlinking lock files lets two runs lock two different inodes).

The holder writes one JSON line (pid, host, start time) into the sidecar so that the
run that is refused can say who holds it.

On Windows (no fcntl) the same is done with `msvcrt.locking` on one byte far past the
JSON line, so the line stays readable; that path is not exercised by the test suite.

`geti-bulk status` never takes the lock: reading a journal while a run writes it is fine.
`check_journal_file` tells a journal from any other file before `status` reads it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from types import TracebackType

from geti_bulk.errors import ConfigError

_WIN_LOCK_OFFSET = 1 << 20   # Windows: the locked byte, past the JSON line


class JournalBusyError(ConfigError):
    """Another geti-bulk run holds this journal (exit 2)."""


def lock_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".lock")


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock without waiting; False when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(fd: int) -> str:
    """Who holds the lock, from its JSON line; '' when it cannot be read (the holder has
    not written it yet, or wrote something else)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        info = json.loads(raw.decode("utf-8").splitlines()[0])
        pid, host = int(info["pid"]), str(info["host"])
        started = datetime.fromisoformat(str(info["started"])).strftime("%Y-%m-%d %H:%M:%S")
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return ""
    return f" (pid {pid} on {host}, started {started})"


class JournalLock:
    """Held from before the journal is opened until after it is closed."""

    def __init__(self, journal_path: Path, fd: int) -> None:
        self.journal_path = journal_path
        self.path = lock_path(journal_path)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, journal_path: Path) -> JournalLock:
        """Lock `journal_path` for this process, or raise `JournalBusyError` at once."""
        sidecar = lock_path(journal_path)
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        # no O_TRUNC: the holder's line must survive until we know we are the holder
        fd = os.open(sidecar, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not _try_lock(fd):
                who = _holder(fd)
                raise JournalBusyError(
                    f"journal {journal_path} is in use by another geti-bulk run{who}; "
                    "wait for it to finish, or pass another --journal")
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.now().astimezone().isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        except BaseException:
            os.close(fd)   # closing drops the lock too, if it was taken
            raise
        return cls(journal_path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The sidecar stays, emptied."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)   # still held here: nobody reads a half-cleared line
            _unlock(fd)
        except OSError:
            pass   # closing the descriptor below releases it in any case
        finally:
            os.close(fd)

    def __enter__(self) -> JournalLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        # a run that died between acquire and its `finally` must not keep the journal
        # locked for the rest of a long-lived process (the kernel would at exit)
        if getattr(self, "_fd", None) is not None:
            self.release()


def is_held(journal_path: Path) -> bool:
    """Whether some process holds `journal_path`'s lock now (a run is going on it). Never
    takes the lock for longer than the test itself; a missing sidecar means nobody does."""
    try:
        fd = os.open(lock_path(journal_path), os.O_RDWR)
    except OSError:
        return False
    try:
        if not _try_lock(fd):
            return True
        _unlock(fd)
        return False
    finally:
        os.close(fd)


class SplitLock:
    """A short exclusive lock (`flock` on a sidecar, polled: never blocks the event loop)
    shared by the shards of one split, around the moments they switch auto-training off
    or decide to put it back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def __aenter__(self) -> SplitLock:
        import anyio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(2400):   # a shard holds it for a request or two; after 2 min, go on
            if _try_lock(fd):
                self._fd = fd
                return self
            await anyio.sleep(0.05)
        os.close(fd)
        return self

    async def __aexit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                _unlock(fd)
            except OSError:
                pass
            finally:
                os.close(fd)


def check_journal_file(path: Path) -> None:
    """Raise `ConfigError` ("<path>: not a geti-bulk journal") unless `path` is an SQLite
    database with a journal's tables. Opens it read-only: nothing is created or changed."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            names = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.OperationalError as e:   # unreadable (permissions), not its content
        raise ConfigError(f"{path}: cannot read the journal: {e}") from None
    except sqlite3.DatabaseError:   # not a database at all (also: encrypted, truncated)
        names = set()
    if not {"files", "meta"} <= names:
        raise ConfigError(f"{path}: not a geti-bulk journal")
