"""Hostile input: every odd file ends as one clear per-file row, never a hang or a crash,
and the rest of the run goes on. The real uploader against the real local server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from geti_bulk import config
from geti_bulk.display import JsonReporter
from geti_bulk.errors import ConfigError, FileChangedError
from geti_bulk.events import (
    BytesSent,
    Event,
    FileDone,
    FileFailed,
    FileRetrying,
    MultiReporter,
    RecordingReporter,
)
from geti_bulk.geti.body import MultipartFileBody
from geti_bulk.geti.client import GetiClient, Secret, Target
from geti_bulk.pipeline import Run, RunResult
from geti_bulk.sampledata import image_bytes
from tests.conftest import make_cfg, sha256, stored_by_sha

RUN_LIMIT = 30   # seconds: a hang becomes a clear failure, not the 120 s test timeout


async def bounded_upload(cfg: Any, reporter: Any = None) -> tuple[RunResult, RecordingReporter]:
    rec = RecordingReporter()
    sink = MultiReporter(rec, reporter) if reporter is not None else rec
    async with asyncio.timeout(RUN_LIMIT):
        result = await Run(cfg, sink).execute()
    return result, rec


def failures(rec: RecordingReporter) -> dict[str, str]:
    """file name (last path part, or folder + '/') → reason."""
    out = {}
    for e in rec.events:
        if isinstance(e, FileFailed):
            parts = e.path.rstrip("/").split("/")
            out[parts[-1] + ("/" if e.path.endswith("/") else "")] = e.reason
    return out


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@contextlib.asynccontextmanager
async def geti(server: Any, token: str) -> AsyncIterator[tuple[GetiClient, Target]]:
    async with aiohttp.ClientSession() as session:
        client = GetiClient(session, server.base_url, Secret(token))
        yield client, await client.resolve("Pets classification")


async def settled(server: Any) -> None:
    """Wait until the server has finished every request it received (aborted ones too)."""
    for _ in range(200):
        if server.state.service.inflight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("server still busy")


# --- one tree full of trouble ------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="FIFOs and symlinks")
async def test_hostile_tree_every_file_gets_a_clear_row(server, token, tmp_path):
    data = tmp_path / "data"
    good = write(data / "good.jpg", image_bytes(64, 64, seed=1))
    png_as_jpg = write(data / "png_named.jpg", image_bytes(64, 64, "PNG", seed=2))
    write(data / "empty.jpg", b"")
    write(data / "corrupt.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 40)
    full_png = image_bytes(300, 200, "PNG", seed=3)
    write(data / "truncated.png", full_png[: len(full_png) // 2])   # header fine, data cut
    write(data / "text.jpg", b"hello, I am a text file with a .jpg name\n" * 5)
    write(data / "anim.gif", b"GIF89a" + b"\0" * 64)
    write(data / "README", b"no extension at all")
    write(data / "narrow.png", image_bytes(31, 200, "PNG", seed=4))
    os.mkfifo(data / "pipe.jpg")                                   # opening it would block
    (data / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (data / "loop1.jpg").symlink_to(data / "loop2.jpg")
    (data / "loop2.jpg").symlink_to(data / "loop1.jpg")
    cfg = make_cfg(server, token, tmp_path, (data,), labels="none", follow_symlinks=True)
    result, rec = await bounded_upload(cfg)

    reasons = failures(rec)
    # README is not media at all: ignored and counted, not failed (a .gif is media Geti refuses)
    assert set(reasons) == {"empty.jpg", "corrupt.png", "truncated.png", "text.jpg", "anim.gif",
                            "narrow.png", "pipe.jpg", "gone.jpg", "loop1.jpg", "loop2.jpg"}
    assert result.ignored == 1
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["corrupt.png"].startswith("not a readable image")
    assert "415" in reasons["truncated.png"] and "not able to interpret" in reasons["truncated.png"]
    assert reasons["text.jpg"].startswith("not a readable image: text.jpg has no image header")
    assert reasons["anim.gif"].startswith("unsupported file type .gif")
    assert "31x200 px" in reasons["narrow.png"] and "32 to 20000" in reasons["narrow.png"]
    assert reasons["pipe.jpg"] == "a FIFO, not a file"
    assert reasons["gone.jpg"] == "broken symlink"
    assert reasons["loop1.jpg"] == reasons["loop2.jpg"] == "symlink loop"

    # a PNG named .jpg: Geti decodes by content and takes it, under the name it was given
    assert (result.uploaded, result.failed, result.exit_code) == (2, 10, 1)
    by_sha = stored_by_sha(server)
    assert set(by_sha) == {sha256(good), sha256(png_as_jpg)}
    assert by_sha[sha256(png_as_jpg)][0].original_filename == "png_named.jpg"
    report = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in report) == ["failed"] * 10 + ["uploaded"] * 2


async def test_fifo_or_device_given_as_a_source_is_refused_not_opened(server, token, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    sources = [fifo]
    with contextlib.suppress(PermissionError, OSError):
        os.mknod(tmp_path / "null.jpg", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        sources.append(tmp_path / "null.jpg")
    result, rec = await bounded_upload(make_cfg(server, token, tmp_path, tuple(sources)))
    want = {"pipe.jpg": "a FIFO, not a file", "null.jpg": "a device file, not a file"}
    assert failures(rec) == {s.name: want[s.name] for s in sources}
    assert result.exit_code == 1 and server.state.uploads_received == 0


async def test_device_file_in_a_tree(server, token, tmp_path):
    data = tmp_path / "data"
    good = write(data / "good.jpg", image_bytes(64, 64))
    try:
        os.mknod(data / "zero.jpg", 0o600 | stat.S_IFCHR, os.makedev(1, 5))   # /dev/zero
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot create a device file here: {e}")
    result, rec = await bounded_upload(make_cfg(server, token, tmp_path, (data,)))
    assert failures(rec) == {"zero.jpg": "a device file, not a file"}
    assert result.uploaded == 1 and set(stored_by_sha(server)) == {sha256(good)}


# --- permissions (root reads everything: skip only when chmod really does not bite) ---------

def _readable(path: Path) -> bool:
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            path.open("rb").close()
    except PermissionError:
        return False
    return True


async def test_unreadable_file(server, token, tmp_path):
    data = tmp_path / "data"
    good = write(data / "good.jpg", image_bytes(64, 64, seed=1))
    secret = write(data / "secret.jpg", image_bytes(64, 64, seed=2))
    secret.chmod(0)
    try:
        if _readable(secret):
            pytest.skip("chmod 000 does not stop this user (root) from reading")
        result, rec = await bounded_upload(make_cfg(server, token, tmp_path, (data,)))
    finally:
        secret.chmod(0o644)
    assert failures(rec) == {"secret.jpg": "cannot read file: Permission denied"}
    assert result.uploaded == 1 and set(stored_by_sha(server)) == {sha256(good)}


async def test_unreadable_folder(server, token, tmp_path):
    data = tmp_path / "data"
    good = write(data / "a" / "good.jpg", image_bytes(64, 64, seed=1))
    write(data / "locked" / "hidden.jpg", image_bytes(64, 64, seed=2))
    (data / "locked").chmod(0)
    try:
        if _readable(data / "locked"):
            pytest.skip("chmod 000 does not stop this user (root) from listing")
        result, rec = await bounded_upload(make_cfg(server, token, tmp_path, (data,),
                                                    labels="none"))
    finally:
        (data / "locked").chmod(0o755)
    assert failures(rec) == {"locked/": "cannot read folder: Permission denied"}
    assert result.uploaded == 1 and set(stored_by_sha(server)) == {sha256(good)}


# --- names -----------------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="byte file names")
async def test_non_utf8_names_upload_and_every_output_stays_utf8(server, token, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    raw_dir = os.fsencode(data)
    blobs = {}
    for i, name in enumerate([b"caf\xe9.jpg", b"caf\xe8.jpg", b"\xff\xfe.png"]):
        content = image_bytes(64, 64, "PNG" if name.endswith(b".png") else "JPEG", seed=i)
        with open(os.path.join(raw_dir, name), "wb") as f:
            f.write(content)
        blobs[name] = content
    stream = io.StringIO()
    json_out = JsonReporter(stream, coalesce=0)
    result, _ = await bounded_upload(make_cfg(server, token, tmp_path, (data,)), json_out)
    assert (result.uploaded, result.failed) == (3, 0)
    import hashlib
    assert set(stored_by_sha(server)) == {hashlib.sha256(b).hexdigest() for b in blobs.values()}
    assert sorted(r.name for r in server.store.list_media()) == ["caf\ufffd", "caf\ufffd",
                                                                 "\ufffd\ufffd"]
    report = (tmp_path / "report.jsonl").read_bytes().decode("utf-8")   # strict: valid UTF-8
    rows = [json.loads(x) for x in report.splitlines()]
    paths = {r["path"] for r in rows}
    assert len(paths) == 3, f"two files must never share one journal key / report path: {paths}"
    stream.getvalue().encode("utf-8")                                   # no lone surrogates
    assert all(json.loads(x) for x in stream.getvalue().splitlines())

    # a second run finds all three in the journal, each as its own file
    result, rec = await bounded_upload(make_cfg(server, token, tmp_path, (data,)))
    assert (result.uploaded, result.skipped, result.failed) == (0, 3, 0)
    assert server.store.count() == 3


@pytest.mark.parametrize("name", ['quote"d.jpg', "new\nline.jpg", "cr\rname.jpg",
                                  "back\\slash.jpg", "semi;colon.jpg", "  padded  .jpg",
                                  "pct%22lit.jpg"])
async def test_odd_names_are_reconciled_after_a_stored_500(server, token, tmp_path, name):
    """The server stores a name as it arrives on the wire (`"` as %22, CR/LF as %0D/%0A);
    reconciliation must ask for that name, or a stored-then-500 upload is sent twice."""
    data = tmp_path / "data"
    p = write(data / name, image_bytes(64, 64))
    server.set_faults(script=["stored500"])
    result, rec = await bounded_upload(make_cfg(server, token, tmp_path, (data,), labels="none"))
    [done] = [e for e in rec.events if isinstance(e, FileDone)]
    assert done.adopted and done.attempts == 1
    [stored] = stored_by_sha(server)[sha256(p)]
    assert server.store.count() == 1
    assert done.media_id == stored.id


async def test_find_by_name_over_255_characters_uses_contains_and_filters_exactly(
        server, token, tmp_path):
    """No file on disk can have a name over 255 bytes, but Geti can hold one (uploaded by
    another tool); `equal` filters refuse values over 255 characters (§3.6)."""
    p = write(tmp_path / "short.jpg", image_bytes(64, 64))
    st = p.stat()
    long_name = "é" * 300
    names = [long_name, long_name + "x", "y" + long_name, long_name[:-1], "short",
             "b" * 255, "b" * 256, "b" * 257]
    async with geti(server, token) as (client, target):
        ids = {}
        for n in names:
            body = MultipartFileBody(str(p), n + ".jpg", st.st_size, st.st_mtime_ns)
            ids[n] = (await client.upload(target, "image", body)).id
        # the server really refuses an `equal` filter this long: the prefix query is needed
        rule = [{"field": "media_name", "operator": "equal", "value": long_name}]
        with pytest.raises(Exception, match="255"):
            async for _ in client.query_media(target, rule):
                pass
        found = await client.find_by_name(target, long_name, "image")
        assert [m.id for m in found] == [ids[long_name]]
        for n in ("short", long_name[:-1], "b" * 255, "b" * 256, "b" * 257):   # both sides of 255
            assert [m.id for m in await client.find_by_name(target, n, "image")] == [ids[n]]
        assert await client.find_by_name(target, long_name, "video") == []


# --- files that change under us --------------------------------------------------------

class DeleteOnFirstDone:
    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def emit(self, event: Event) -> None:
        if isinstance(event, FileDone) and self.victim.exists():
            self.victim.unlink()


@pytest.mark.parametrize("via", ["folder", "manifest"])
async def test_file_deleted_between_scan_and_upload(server, token, tmp_path, via):
    data = tmp_path / "data"
    files = [write(data / f"f{i}.jpg", image_bytes(64, 64, seed=i)) for i in range(6)]
    late = files[-1]
    if via == "folder":
        cfg = make_cfg(server, token, tmp_path, (data,), concurrency=1, labels="none")
    else:
        m = write(tmp_path / "list.csv",
                  ("path\n" + "".join(f"data/{f.name}\n" for f in files)).encode())
        cfg = make_cfg(server, token, tmp_path, manifests=(m,), concurrency=1, labels="none")
    result, rec = await bounded_upload(cfg, DeleteOnFirstDone(late))
    assert not late.exists(), "the scan saw it; it was gone before its turn"
    assert failures(rec) == {"f5.jpg": "cannot read file: No such file or directory"}
    assert (result.uploaded, result.failed) == (5, 1)
    assert set(stored_by_sha(server)) == {sha256(f) for f in files[:-1]}


@pytest.mark.parametrize("change", ["grow", "shrink", "touch"])
async def test_file_changing_while_sent_fails_and_stores_nothing(server, token, tmp_path, change):
    p = write(tmp_path / "big.png", image_bytes(300, 300, "PNG", noise=1.0))
    st = p.stat()
    assert st.st_size > 8 * 16 * 1024
    calls = []

    def on_progress(n: int) -> None:
        calls.append(n)
        if len(calls) != 2:
            return
        if change == "grow":
            with p.open("ab") as f:
                f.write(b"\0" * 1000)
        elif change == "shrink":
            os.truncate(p, st.st_size // 2)
        else:   # same size, new content and mtime
            with p.open("r+b") as f:
                f.seek(st.st_size - 10)
                f.write(b"\xff" * 10)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))

    body = MultipartFileBody(str(p), p.name, st.st_size, st.st_mtime_ns,
                             on_progress=on_progress, chunk=16 * 1024)
    want = {"grow": r"\(grew\)", "shrink": rf"\(shrank to {st.st_size // 2} bytes\)",
            "touch": r"\(size or modification time differs\)"}[change]
    async with geti(server, token) as (client, target):
        with pytest.raises(FileChangedError, match=want):
            await client.upload(target, "image", body)
        assert not body.complete, "the closing boundary must never go out"
        await settled(server)
        assert server.store.count() == 0
        assert not list(server.store.tmp_dir.iterdir()), "the spool file was not cleaned up"
        # the session is still good for the next file
        q = write(tmp_path / "next.jpg", image_bytes(64, 64))
        qs = q.stat()
        item = await client.upload(target, "image",
                                   MultipartFileBody(str(q), q.name, qs.st_size, qs.st_mtime_ns))
    assert [r.id for r in server.store.list_media()] == [item.id]


class TruncateOnFirstBytes:
    def __init__(self, victim: Path) -> None:
        self.victim = victim
        self.done = False

    def emit(self, event: Event) -> None:
        if isinstance(event, BytesSent) and event.n > 0 and not self.done \
                and event.path.endswith(self.victim.name):
            self.done = True
            os.truncate(self.victim, self.victim.stat().st_size // 2)


async def test_file_shrinking_mid_upload_fails_that_file_without_retries(server, token, tmp_path):
    data = tmp_path / "data"
    big = write(data / "big.png", image_bytes(700, 700, "PNG", noise=1.0))   # > head + chunks
    small = write(data / "small.jpg", image_bytes(64, 64))
    cfg = make_cfg(server, token, tmp_path, (data,), labels="none", chunk_size=16 * 1024)
    result, rec = await bounded_upload(cfg, TruncateOnFirstBytes(big))
    reasons = failures(rec)
    assert list(reasons) == ["big.png"]
    assert reasons["big.png"].startswith("file changed while being sent (shrank to")
    assert not [e for e in rec.events if isinstance(e, FileRetrying)]
    await settled(server)
    assert set(stored_by_sha(server)) == {sha256(small)}
    assert result.exit_code == 1


async def test_sparse_file_over_4_7_gib_fails_locally_without_sending(server, token, tmp_path):
    data = tmp_path / "data"
    good = write(data / "good.jpg", image_bytes(64, 64))
    huge = data / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(5 * 1024**3)                       # sparse: no disk used
    result, rec = await bounded_upload(make_cfg(server, token, tmp_path, (data,), labels="none"))
    reason = failures(rec)["huge.jpg"]
    assert reason.startswith(f"too large: {5 * 1024**3} bytes") and "4.7 GiB" in reason
    assert server.state.uploads_received == 1, "only good.jpg reached the server"
    assert result.bytes_sent == good.stat().st_size
    assert set(stored_by_sha(server)) == {sha256(good)}


# --- manifests and config point at the line or key ---------------------------------------

async def test_manifest_bad_rows_point_at_the_line(server, token, tmp_path):
    good = write(tmp_path / "imgs" / "ok.jpg", image_bytes(64, 64))
    (tmp_path / "imgs" / "sub").mkdir()
    csv = tmp_path / "list.csv"
    csv.write_text("path,labels\n"
                   "imgs/ok.jpg,cat\n"
                   ",dog\n"                         # line 3: empty path
                   "imgs/missing.jpg,cat\n"         # line 4: no such file
                   "imgs/sub,cat\n")                # line 5: a folder
    jl = tmp_path / "more.jsonl"
    jl.write_text('{"path": "imgs/ok.jpg"}\n'
                  "{not json\n"                     # line 2
                  '{"labels": ["cat"]}\n'           # line 3: no path
                  "\n"
                  '["imgs/ok.jpg"]\n')              # line 5: not an object
    nohdr = tmp_path / "nohdr.csv"
    nohdr.write_text("file,label\nimgs/ok.jpg,cat\n")
    from geti_bulk.errors import ConfigError
    from geti_bulk.scan import check_manifests
    with pytest.raises(ConfigError, match="nohdr.csv:1: CSV header needs a 'path' column "
                                          r"\(found: file, label\)"):
        check_manifests([csv, jl, nohdr])
    check_manifests([csv, jl])   # bad rows are per-file failures, not a usage error
    result, rec = await bounded_upload(make_cfg(server, token, tmp_path,
                                                manifests=(csv, jl)))
    # the row's line is its path (`list.csv:3`) or in its reason (`list.csv:4: cannot …`)
    reasons = sorted(f"{os.path.basename(e.path)}: {e.reason}" if ":" in e.path else e.reason
                     for e in rec.events if isinstance(e, FileFailed))
    expected_starts = ["list.csv:3: empty path",
                       "list.csv:4: cannot read imgs/missing.jpg: No such file or directory",
                       "list.csv:5: not a regular file, not a file",
                       "more.jsonl:2: not JSON",
                       'more.jsonl:3: needs a non-empty "path" string',
                       'more.jsonl:5: needs a non-empty "path" string']
    assert len(reasons) == len(expected_starts)
    for got, want in zip(reasons, sorted(expected_starts), strict=True):
        assert got.startswith(want), (got, want)
    # ok.jpg is named by the CSV (cat) and by the JSON lines: one file, uploaded once
    assert (result.uploaded, result.skipped) == (1, 1)
    assert list(stored_by_sha(server)) == [sha256(good)] and server.store.count() == 1


@pytest.mark.parametrize("toml, message", [
    ("[target]\ncolour = 'red'\n", "target -> colour: unknown key (known: ca_bundle, dataset"),
    ("[colour]\nred = 1\n", "[colour]: unknown section (known: output, target, upload)"),
    ("colour = 'red'\n", "colour: expected a [colour] table"),
    ("[upload]\nconcurrency = 'eight'\n", "upload -> concurrency: must be a whole number, not 'eight'"),
    ("[upload]\nconcurrency = 0\n", "upload -> concurrency: must be at least 1, not 0"),
    ("[upload]\nconcurrency = true\n", "upload -> concurrency: must be a whole number, not True"),
    ("[upload]\nfollow_symlinks = 'yes'\n", "upload -> follow_symlinks: must be true or false"),
    ("[upload]\ninclude = [1, 2]\n", "upload -> include: must be a list of strings"),
    ("[upload]\nlabels = 'maybe'\n", "upload -> labels: must be one of folders, none, not 'maybe'"),
    ("[upload]\nchunk_kb = 1\n", "upload -> chunk_kb: must be at least 16, not 1"),
    ("[output]\nprogress = 'loud'\n", "output -> progress: must be one of auto, rich, plain"),
    ("[target]\nhost = 42\n", "target -> host: must be a string, not 42"),
    ("[upload\nconcurrency = 1\n", "is not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, toml, message):
    cfg_file = tmp_path / "geti-bulk.toml"
    cfg_file.write_text(toml)
    env = {"GETI_TOKEN": "t", "GETI_PROJECT": "p"}     # no GETI_HOST: the file's host counts
    with pytest.raises(ConfigError) as err:
        config.build({}, env, cfg_file, sources=(tmp_path,))
    assert message in str(err.value)


def test_config_env_errors_name_the_variable(tmp_path):
    env = {"GETI_TOKEN": "t", "GETI_PROJECT": "p", "GETI_HOST": "http://127.0.0.1:1",
           "GETI_BULK_CONCURRENCY": "lots"}
    with pytest.raises(ConfigError, match="GETI_BULK_CONCURRENCY: must be a whole number, not 'lots'"):
        config.build({}, env, None, sources=(tmp_path,))


def test_cli_config_error_is_one_line_and_exit_2(tmp_path, capsys):
    from geti_bulk.cli import main

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[upload]\nconcurency = 4\n")
    code = main(["upload", str(tmp_path), "--host", "http://127.0.0.1:1", "--project", "p",
                 "--config", str(cfg_file)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("geti-bulk: error: upload -> concurency: unknown key (known: ")
    assert "Traceback" not in err and err.count("\n") == 1
