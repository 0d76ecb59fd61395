"""No internal errors: a failure injected at each place an exception can come from (a
worker, the journal writer, the report, the scanner, the display, a closed stdout) ends
as a per-file failure or one clear line with a documented exit code, never an
ExceptionGroup or a traceback.

Each run is the real CLI in a child process against the real local server; the failure
is injected by patching one function in that child before `geti_bulk.cli.main` runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sqlite3
import sys
import textwrap
from pathlib import Path

from geti_bulk.sampledata import make_labelled_tree
from tests.conftest import sha256, stored_by_sha

BOOT = """
import sys
{patch}
from geti_bulk.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
    env["GETI_TOKEN"] = token
    return env


async def patched_cli(patch: str, *args: str, token: str) -> tuple[int, str, str]:
    """The CLI in a child process with `patch` (Python source) run first."""
    code = BOOT.format(patch=textwrap.dedent(patch))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, env=_env(token),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def shell(cmd: str, token: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", cmd, env=_env(token),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def no_traceback(err: str) -> None:
    for bad in ("Traceback", "ExceptionGroup", "sub-exception", "internal error"):
        assert bad not in err, err


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def args_for(server, data: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["upload", str(data), "--host", server.base_url, "--project", "Pets classification",
            "--journal", str(tmp_path / "j.sqlite"), "--report", str(tmp_path / "r.jsonl"),
            "--progress", "plain", *extra]


def exactly_once(server, files: list[Path]) -> None:
    by_sha = stored_by_sha(server)
    assert sorted(len(by_sha.get(sha256(f), [])) for f in files) == [1] * len(files)
    assert server.store.count() == len(files)


def report_rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# --- a worker ------------------------------------------------------------------------

async def test_an_unexpected_error_in_one_file_fails_that_file_and_the_run_goes_on(
        server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 5)
    patch = """
        import geti_bulk.attempts as a
        real = a._read_head_sync
        def head(path, n):
            if path.endswith("cat_00002.jpg"):
                raise RuntimeError("injected bug")
            if path.endswith("dog_00001.jpg"):
                raise KeyError("injected key")
            return real(path, n)
        a._read_head_sync = head
    """
    code, out, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 1, err
    assert err == "", err                       # per-file failures: no line on stderr
    failed = sorted(ln for ln in out.splitlines() if ln.startswith("FAILED "))
    where = os.path.realpath(data)              # files are named by their identity
    assert failed == [f"FAILED {where}/cat/cat_00002.jpg: internal error: RuntimeError: "
                      "injected bug",
                      f"FAILED {where}/dog/dog_00001.jpg: internal error: KeyError: "
                      "'injected key'"]
    assert "uploaded:    3" in out and "failed:      2" in out
    rows = {r["path"]: r for r in report_rows(tmp_path / "r.jsonl")}
    assert rows[f"{where}/cat/cat_00002.jpg"]["status"] == "failed"
    # the rerun (no fault) uploads the two, and nothing twice
    code, _, err = await patched_cli("", *args_for(server, data, tmp_path), token=token)
    assert code == 0, err
    exactly_once(server, files)


async def test_an_oserror_where_no_step_expects_one_is_a_per_file_failure(server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat"], 4)
    patch = """
        import geti_bulk.geti.client as c
        real = c.GetiClient.upload
        async def upload(self, target, kind, body):
            if body.path.endswith("cat_00001.jpg"):
                raise OSError(5, "Input/output error")
            return await real(self, target, kind, body)
        c.GetiClient.upload = upload
    """
    code, out, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 1 and err == "", err
    assert (f"FAILED {os.path.realpath(data)}/cat/cat_00001.jpg: internal error: OSError: "
            "[Errno 5] Input/output error") in out
    assert server.store.count() == 3
    code, _, err = await patched_cli("", *args_for(server, data, tmp_path), token=token)
    assert code == 0, err
    exactly_once(server, files)


async def test_the_same_bug_in_every_file_stops_the_run_with_one_line(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 30, size=(40, 36))
    patch = """
        import geti_bulk.attempts as a
        def head(path, n):
            raise RuntimeError("always")
        a._read_head_sync = head
    """
    code, out, err = await patched_cli(patch, *args_for(server, data, tmp_path, "--concurrency",
                                                        "1"), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    assert line.startswith("geti-bulk: error: 20 files in a row failed with an internal error "
                           "(last: internal error: RuntimeError: always); stopped"), line
    assert "Traceback" not in err and "ExceptionGroup" not in err


async def test_a_bug_outside_the_workers_is_one_line_naming_it_not_an_exception_group(
        server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    patch = """
        import geti_bulk.pipeline as p
        async def produce(self, *a, **k):
            raise ZeroDivisionError("injected in the producer")
        p.Run._produce = produce
    """
    code, _, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    assert line == ("geti-bulk: error: internal error: ZeroDivisionError: injected in the "
                    "producer (set GETI_BULK_DEBUG=1 for a traceback)")


# --- the journal ---------------------------------------------------------------------

FULL_DISK = """
    import sqlite3
    import geti_bulk.journal as j
    real = j.connect
    class Full:
        writes = 0
        def __init__(self, conn):
            self._conn = conn
        def __getattr__(self, name):
            return getattr(self._conn, name)
        def execute(self, sql, *args):
            if sql.lstrip().startswith("INSERT INTO files"):
                Full.writes += 1
                if Full.writes > {after}:
                    raise sqlite3.OperationalError("{message}")
            return self._conn.execute(sql, *args)
    def connect(path):
        return Full(real(path))
    j.connect = connect
"""


async def test_a_full_disk_under_the_journal_stops_the_run_with_one_line_exit_3(
        server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 20, size=(40, 36))
    # 8 workers mark 8 files `sending` in the first commit; the disk fills after 12 writes
    patch = FULL_DISK.format(after=12, message="database or disk is full")
    code, out, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    journal = tmp_path / "j.sqlite"
    assert line == (f"geti-bulk: error: the journal {journal} could not be written (database "
                    "or disk is full); stopped. Rerun the same command to resume once it can")
    assert f"stopping: the journal {journal} could not be written" in out
    assert server.store.count() < len(files)      # it stopped: not everything went out
    # once there is room, the rerun finishes: every file exactly once
    code, _, err = await patched_cli("", *args_for(server, data, tmp_path), token=token)
    assert code == 0, err
    exactly_once(server, files)


async def test_a_disk_io_error_opening_the_journal_is_one_line_exit_3(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    patch = """
        import sqlite3
        import geti_bulk.journal as j
        def connect(path):
            raise sqlite3.OperationalError("disk I/O error")
        j.connect = connect
    """
    code, _, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    assert line == (f"geti-bulk: error: the journal {tmp_path / 'j.sqlite'} could not be opened "
                    "(disk I/O error); stopped. Rerun the same command to resume once it can")
    assert server.store.count() == 0


async def test_a_journal_that_fails_to_read_during_the_scan_is_one_line(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 3)
    code, _, _ = await patched_cli("", *args_for(server, data, tmp_path), token=token)
    assert code == 0
    patch = """
        import sqlite3
        import geti_bulk.journal as j
        def lookup(self, keys):
            raise sqlite3.OperationalError("disk I/O error")
        j.JournalReader.lookup = lookup
    """
    code, _, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    assert line.startswith(f"geti-bulk: error: the journal {tmp_path / 'j.sqlite'} could not be "
                           "read (disk I/O error)"), line


async def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat"], 2)
    other = tmp_path / "photos.sqlite"        # somebody's database, not a journal
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE albums (name TEXT)")
    before = other.read_bytes()
    args = args_for(server, data, tmp_path)
    args[args.index("--journal") + 1] = str(other)
    code, _, err = await patched_cli("", *args, token=token)
    assert code == 2, err
    assert error_lines(err) == [f"geti-bulk: error: {other}: not a geti-bulk journal"]
    assert other.read_bytes() == before and server.store.count() == 0
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    code, _, err = await patched_cli("", "status", str(text), token=token)
    assert code == 2 and error_lines(err) == [f"geti-bulk: error: {text}: not a geti-bulk journal"]


# --- the report ----------------------------------------------------------------------

async def test_a_full_disk_under_the_report_stops_the_run_with_one_line(server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 15, size=(40, 36))
    patch = """
        import errno, os
        import geti_bulk.report as r
        real = r.ReportWriter.__init__
        class Full:
            def __init__(self, f):
                self._f, self.n = f, 0
            def write(self, text):
                self.n += 1
                if self.n > 3:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return self._f.write(text)
            def __getattr__(self, name):
                return getattr(self._f, name)
        def init(self, path, journal=None):
            real(self, path, journal)
            self._f = Full(self._f)
        r.ReportWriter.__init__ = init
    """
    code, _, err = await patched_cli(patch, *args_for(server, data, tmp_path, "--concurrency",
                                                        "2", "--fixed-concurrency"), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    assert line == (f"geti-bulk: error: the report {tmp_path / 'r.jsonl'} could not be written "
                    "(OSError: No space left on device); stopped (the journal has every file)")
    code, _, err = await patched_cli("", *args_for(server, data, tmp_path), token=token)
    assert code == 0, err
    exactly_once(server, files)


# --- the scanner ---------------------------------------------------------------------

async def test_a_source_that_fails_midway_stops_after_the_files_found_with_one_line(
        server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 10, size=(40, 36))
    patch = """
        import errno
        import geti_bulk.scan as s
        real = s.walk
        def walk(root, opts, counts=None, settle=None):
            for n, job in enumerate(real(root, opts, counts, settle)):
                if n == 5:
                    raise OSError(errno.EIO, "Input/output error", str(root) + "/dog")
                yield job
        s.walk = walk
    """
    code, out, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 3, err
    [line] = error_lines(err)
    assert line == (f"geti-bulk: error: reading the source failed: OSError: Input/output error "
                    f"({data}/dog); stopped after the files already found. Rerun the same "
                    "command to resume")
    assert "uploaded:    5" in out            # what was found before the error went out
    assert server.store.count() == 5
    code, _, err = await patched_cli("", *args_for(server, data, tmp_path), token=token)
    assert code == 0, err
    exactly_once(server, files)


# --- the display and stdout ----------------------------------------------------------

async def test_a_display_that_raises_is_switched_off_and_the_run_goes_on(server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 6)
    patch = """
        import geti_bulk.display.plain as p
        from geti_bulk.events import FileDone
        real = p.PlainReporter._line
        def line(self, event):
            if isinstance(event, FileDone):
                raise RuntimeError("injected display bug")
            return real(self, event)
        p.PlainReporter._line = line
    """
    code, out, err = await patched_cli(patch, *args_for(server, data, tmp_path), token=token)
    assert code == 0, err
    assert error_lines(err) == [
        "geti-bulk: warning: the display failed (RuntimeError: injected display bug) and was "
        "switched off; the run went on, and the report has every file"]
    assert "--- summary ---" not in out           # the display is off from then on
    exactly_once(server, files)
    assert {r["status"] for r in report_rows(tmp_path / "r.jsonl")} == {"uploaded"}


async def test_a_rich_display_that_raises_is_switched_off_too(server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat"], 4)
    patch = """
        import geti_bulk.display.rich_live as r
        def rows(self, event):
            raise ValueError("injected rich bug")
        r.RichReporter._update_rows = rows
    """
    code, _, err = await patched_cli(patch, *args_for(server, data, tmp_path)[:-1], "rich",
                                     token=token)
    assert code == 0, err
    assert error_lines(err) == [
        "geti-bulk: warning: the display failed (ValueError: injected rich bug) and was "
        "switched off; the run went on, and the report has every file"]
    exactly_once(server, files)


async def test_a_rich_display_that_fails_in_its_refresh_thread_says_so_in_one_line(
        server, token, tmp_path):
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 30, size=(40, 36))
    # the first draw works; a later one (the refresh thread's) raises. The run is kept
    # going until that happened (it may take a faster machine less than one refresh)
    patch = """
        import threading, time
        import geti_bulk.display.rich_live as r
        real = r.RichReporter._frame
        calls = [0]
        failed = threading.Event()
        real_emit = r.RichReporter.emit
        def emit(self, event):
            if type(event).__name__ == "RunFinished":
                failed.wait(10)
            return real_emit(self, event)
        r.RichReporter.emit = emit
        def parts(self):
            calls[0] += 1
            if calls[0] > 1 and threading.current_thread() is not threading.main_thread():
                failed.set()
                raise RuntimeError("injected drawing bug")
            return real(self)
        r.RichReporter._frame = parts
    """
    code, _, err = await patched_cli(patch, *args_for(server, data, tmp_path)[:-1], "rich",
                                     token=token)
    assert code == 0, err
    assert error_lines(err) == [
        "geti-bulk: warning: the display failed (RuntimeError: injected drawing bug) and was "
        "switched off; the run went on, and the report has every file"]
    exactly_once(server, files)


def _cli_cmd(*args: str) -> str:
    return " ".join(shlex.quote(x) for x in [sys.executable, "-m", "geti_bulk.cli", *args])


async def test_a_closed_stdout_is_neither_a_traceback_nor_a_failed_run(server, token, tmp_path):
    """`>&-` (no stdout at all), a rich display into a pipe nobody reads, and `status`
    into a reader that is already gone."""
    data = tmp_path / "data"
    files = make_labelled_tree(data, ["cat", "dog"], 8)
    (data / "cat" / "broken.jpg").write_bytes(b"nope")
    code, _, err = await shell(_cli_cmd(*args_for(server, data, tmp_path)) + " >&-", token)
    assert code == 1, err                          # the broken file; the rest went up
    no_traceback(err)
    assert err == "", err
    exactly_once(server, files)
    journal = tmp_path / "j.sqlite"
    code, _, err = await shell(f"{_cli_cmd('status', str(journal))} | true; "
                               "exit ${PIPESTATUS[0]}", token)
    assert code == 0, err
    no_traceback(err)
    assert "BrokenPipe" not in err and err == "", err
    rich = args_for(server, data, tmp_path)[:-1] + ["rich", "-v"]
    code, out, err = await shell(f"{_cli_cmd(*rich)} | head -c 1; exit ${{PIPESTATUS[0]}}",
                                 token)
    assert code == 1, err                          # its own exit code: the broken file again
    no_traceback(err)
    assert "BrokenPipe" not in err and err == "", err


# --- the local servers ---------------------------------------------------------------

async def test_the_servers_log_a_client_gone_mid_request_as_one_line(token):
    """What aiohttp and asyncio log after a client is killed mid-request (the lingering
    read of an unread body, a TLS transport cut) is one line; a real bug keeps its
    traceback."""
    code = textwrap.dedent("""
        import asyncio, logging, ssl
        from geti_bulk.server import quietlog
        loop = asyncio.new_event_loop()
        quietlog.install(loop)
        logging.getLogger("aiohttp.server").error(
            "Unhandled exception", exc_info=ConnectionResetError("Connection lost"))
        try:
            raise OSError("wrapped") from BrokenPipeError(32, "Broken pipe")
        except OSError as e:
            logging.getLogger("aiohttp.server").error("Error handling request", exc_info=e)
        loop.call_exception_handler({"message": "Fatal error on SSL transport",
                                     "exception": ssl.SSLError(1, "record layer failure")})
        try:
            raise RuntimeError("a real bug")
        except RuntimeError:
            logging.getLogger("geti_bulk.server.app").exception("unhandled error in POST /x")
    """)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = err.decode().splitlines()
    assert lines[:3] == [
        "geti-bulk serve: connection reset by client (ConnectionResetError: Connection lost)",
        "geti-bulk serve: connection reset by client (OSError: wrapped)",
        "geti-bulk serve: connection reset by client (SSLError: record layer failure)"]
    rest = "\n".join(lines[3:])
    assert rest.startswith("geti-bulk serve: ERROR geti_bulk.server.app: unhandled error in "
                           "POST /x\nTraceback") and "RuntimeError: a real bug" in rest


async def test_a_host_that_is_not_a_url_is_one_usage_line(token, tmp_path):
    code, _, err = await patched_cli("", "upload", str(tmp_path), "--host", "http://[::1",
                                     "--project", "p", token=token)
    assert code == 2
    assert error_lines(err) == ["geti-bulk: error: host: invalid URL 'http://[::1' "
                                "(Invalid IPv6 URL)"]
