"""The command line as scripts use it: exit codes, plain lines, JSON lines, status."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from geti_bulk.sampledata import image_bytes, make_labelled_tree


async def run_cli(*args: str, token: str | None = None, cwd: Path | None = None,
                  env_extra: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GETI_")}
    if token:
        env["GETI_TOKEN"] = token
    env.update(env_extra or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "geti_bulk.cli", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def dataset(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 6)
    (data / "cat" / "broken.jpg").write_bytes(b"nope")
    return data


def common(server, tmp_path: Path) -> list[str]:
    return ["--host", server.base_url, "--project", "Pets classification",
            "--journal", str(tmp_path / "j.sqlite"), "--report", str(tmp_path / "r.jsonl")]


async def test_plain_output_line_by_line(server, token, tmp_path):
    data = dataset(tmp_path)
    code, out, err = await run_cli("upload", str(data), *common(server, tmp_path),
                                   "--progress", "plain", token=token)
    assert code == 1, err
    assert "\x1b" not in out
    lines = out.splitlines()
    assert lines[0] == (f"start: {server.base_url} / Pets classification / Dataset "
                        "(concurrency adaptive from 2 up to 64)")
    assert "scan done: 7 files, " in out
    ids = {r.name: r.id for r in server.store.list_media()}
    uploaded = sorted(ln for ln in lines if ln.startswith("uploaded "))
    assert len(uploaded) == 6
    for ln in uploaded:
        _, path, size, media_id = ln.split(" ")
        local = Path(path)
        assert int(size) == local.stat().st_size and ids[local.stem] == media_id
    [failed] = [ln for ln in lines if ln.startswith("FAILED ")]
    broken = os.path.realpath(tmp_path / "data" / "cat" / "broken.jpg")   # its identity
    assert failed.startswith(f"FAILED {broken}: not a readable image")
    summary = lines[lines.index("--- summary ---"):]
    assert "uploaded:    6" in summary and "failed:      1" in summary
    assert any(ln.startswith("report:") and ln.endswith("r.jsonl") for ln in summary)
    assert err == ""


async def test_json_event_stream(server, token, tmp_path):
    data = dataset(tmp_path)
    code, out, _ = await run_cli("upload", str(data), *common(server, tmp_path), "--json",
                                 token=token)
    assert code == 1
    events = [json.loads(ln) for ln in out.splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert events[-1]["uploaded"] == 6 and events[-1]["failed"] == 1
    done = {e["path"]: e for e in events if e["event"] == "file_done"}
    assert len(done) == 6
    sent: dict[str, int] = {}
    for e in events:
        if e["event"] == "bytes_sent":
            sent[e["path"]] = sent.get(e["path"], 0) + e["n"]
    for path, e in done.items():
        assert sent[path] == e["size"] == Path(path).stat().st_size
    [failed] = [e for e in events if e["event"] == "file_failed"]
    assert failed["path"] == os.path.realpath(tmp_path / "data" / "cat" / "broken.jpg")


async def test_usage_errors_exit_2_with_one_line(server, token, tmp_path):
    data = dataset(tmp_path)
    code, out, err = await run_cli("upload", str(data), "--host", server.base_url,
                                   "--project", "Pets classification")
    assert code == 2 and err.strip().startswith("geti-bulk: error: token:")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    cfg = tmp_path / "c.toml"
    cfg.write_text('[upload]\nconcurency = 4\n')
    code, _, err = await run_cli("upload", str(data), "--config", str(cfg), token=token)
    assert code == 2 and "upload -> concurency: unknown key" in err
    cfg.write_text('[upload]\nconcurrency = "many"\n')
    code, _, err = await run_cli("upload", str(data), "--config", str(cfg), token=token)
    assert code == 2 and "upload -> concurrency: must be a whole number" in err
    code, _, err = await run_cli("upload", str(tmp_path / "missing"), *common(server, tmp_path),
                                 token=token)
    assert code == 2 and "does not exist" in err


async def test_config_file_and_env_precedence(server, token, tmp_path):
    data = dataset(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[target]\nhost = "{server.base_url}"\nproject = "No such"\n'
                   f'[upload]\nconcurrency = 2\n')
    # the flag beats the file's project; the file's host is used
    code, out, _ = await run_cli("upload", str(data), "--config", str(cfg), "--project",
                                 "Pets classification", "--journal", str(tmp_path / "j"),
                                 "--progress", "plain", token=token)
    assert code == 1 and "(concurrency 2)" in out.splitlines()[0]
    tok = tmp_path / "token.env"
    tok.write_text(f"# a .env file\nGETI_TOKEN={token}\n")
    code, out, _ = await run_cli("upload", str(data), "--config", str(cfg), "--project",
                                 "Pets classification", "--journal", str(tmp_path / "j"),
                                 "--token-file", str(tok), "--progress", "plain")
    assert code == 1 and "already uploaded (journal)" in out


async def test_fatal_errors_exit_3_with_one_readable_line(server, token, tmp_path):
    data = dataset(tmp_path)
    code, _, err = await run_cli("upload", str(data), "--host", server.base_url,
                                 "--project", "Nope", "--progress", "none", token=token)
    assert code == 3 and "Traceback" not in err
    assert "geti-bulk: error: no project named 'Nope'" in err
    code, _, err = await run_cli("upload", str(data), "--host", "http://127.0.0.1:9",
                                 "--project", "x", "--progress", "none", token=token)
    assert code == 3 and "cannot connect to http://127.0.0.1:9" in err
    bare = server.base_url.removeprefix("http://")       # https assumed, server speaks http
    code, _, err = await run_cli("upload", str(data), "--host", bare, "--project", "x",
                                 "--progress", "none", token=token)
    assert code == 3 and "does not speak TLS on that port" in err and f"http://{bare}" in err


async def test_dry_run_and_status(server, token, tmp_path):
    data = dataset(tmp_path)
    code, out, _ = await run_cli("upload", str(data), *common(server, tmp_path), "--dry-run",
                                 "--progress", "plain", token=token)
    assert code == 1   # the broken file still fails its local check
    assert out.count("dry run: would upload as image with labels") == 6
    assert server.store.count() == 0
    await run_cli("upload", str(data), *common(server, tmp_path), "--progress", "none", token=token)
    code, out, _ = await run_cli("status", str(tmp_path / "j.sqlite"))
    assert code == 0 and "7 files: 6 uploaded, 0 skipped, 1 failed, 0 sending" in out
    assert f"FAILED {os.path.realpath(data / 'cat' / 'broken.jpg')}: not a readable image" in out


async def test_help_names_every_env_var():
    code, out, _ = await run_cli("upload", "--help")
    assert code == 0
    for var in ("GETI_HOST", "GETI_TOKEN", "GETI_TOKEN_FILE", "GETI_PROJECT", "GETI_CA_BUNDLE"):
        assert var in out


async def test_video_goes_to_the_videos_endpoint(server, token, tmp_path):
    from geti_bulk.server.samples import avi_bytes

    d = tmp_path / "vid"
    d.mkdir()
    (d / "clip.avi").write_bytes(avi_bytes())
    (d / "still.jpg").write_bytes(image_bytes(64, 64))
    code, _, err = await run_cli("upload", str(d), "--host", server.base_url, "--project",
                                 "Vehicle detection", "--journal", str(tmp_path / "j"),
                                 "--progress", "none", token=token)
    assert code == 0, err
    assert sorted(r.type for r in server.store.list_media()) == ["image", "video"]


async def test_a_resume_prints_one_line_for_journal_skips_not_one_per_file(server, token, tmp_path):
    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 12)
    args = ("upload", str(data), *common(server, tmp_path), "--progress", "plain")
    code, _, _ = await run_cli(*args, token=token)
    assert code == 0
    code, out, _ = await run_cli(*args, token=token)
    assert code == 0
    where = os.path.realpath(data)
    assert not [ln for ln in out.splitlines() if ln.startswith(f"skipped {where}/")]
    assert ("skipped 12 files: already uploaded (journal); the report counts them in one "
            "line, `geti-bulk status --list done JOURNAL` names them") in out
    [row] = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert (row["status"], row["files"], row["reason"]) == ("skipped", 12,
                                                           "already uploaded (journal)")
    code, out, _ = await run_cli("status", str(tmp_path / "j.sqlite"), "--list", "done")
    listed = [ln.split("\t") for ln in out.splitlines() if "\t" in ln]
    assert sorted(p for _, p, _, _ in listed) == sorted(
        os.path.realpath(p) for p in data.rglob("*.*"))
    code, out, _ = await run_cli(*args, "-v", token=token)
    assert out.count(f"skipped {where}/") == 12                          # per file when verbose
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["status"] for r in rows} == {"skipped"}   # and in the report


async def test_a_closed_stdout_is_not_an_internal_error(server, token, tmp_path):
    """`geti-bulk upload --dry-run … | head -1`: the run goes on, no traceback."""
    import asyncio
    import os
    import shlex
    import sys

    from geti_bulk.sampledata import make_labelled_tree

    data = tmp_path / "data"
    make_labelled_tree(data, ["cat", "dog"], 300, size=(40, 36))
    cmd = " ".join(shlex.quote(x) for x in [
        sys.executable, "-m", "geti_bulk.cli", "upload", str(data), "--host", server.base_url,
        "--project", "Pets classification", "--dry-run", "--progress", "plain", "-v",
        "--journal", str(tmp_path / "j.sqlite")])
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", f"{cmd} 2>{tmp_path / 'err'} | head -1; exit ${{PIPESTATUS[0]}}",
        env={**os.environ, "GETI_TOKEN": token}, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    err = (tmp_path / "err").read_text()
    assert len(out.decode().splitlines()) == 1
    assert "internal error" not in err and "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 0, err
