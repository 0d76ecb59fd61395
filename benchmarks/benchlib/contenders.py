"""How to start each contender: its command line and environment for one run."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .server import TARGET_PROJECT, LocalServer, Tls, geti_bulk_exe

HERE = Path(__file__).resolve().parent.parent / "contenders"


@dataclass
class RunContext:
    """Everything a contender needs for one measured run."""

    server: LocalServer
    folder: Path
    run_dir: Path
    token: str
    tls: Tls | None
    limit: int = 0                  # only the first N files (sequential contenders)
    files: list[Path] = field(default_factory=list)   # for curl: the exact files
    journal: Path | None = None     # geti-bulk: a prepared journal to resume from
    source: Path | None = None      # a geti_bulk export to run instead of the installed one
    annotations: bool = False       # the folder is a pre-labelled dataset: send its labels


@dataclass(frozen=True)
class Contender:
    name: str
    describe: str
    argv: Callable[[RunContext], list[str]]
    limited: bool = False          # honours RunContext.limit

    def env(self, ctx: RunContext) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env.update(GETI_TOKEN=ctx.token, NO_PROXY="127.0.0.1,localhost",
                   XDG_STATE_HOME=str(ctx.run_dir / "state"), PYTHONDONTWRITEBYTECODE="1")
        for k in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "GETI_CA_BUNDLE"):
            env.pop(k, None)
        env.pop("PYTHONPATH", None)
        if ctx.source is not None:
            env["PYTHONPATH"] = str(ctx.source)
        env.setdefault("TERM", "xterm-256color")
        env.update(COLUMNS="120", LINES="40")   # the pty of `script` has no size
        if ctx.tls is not None:
            env["REQUESTS_CA_BUNDLE"] = str(ctx.tls.bundle)
            env["SSL_CERT_FILE"] = str(ctx.tls.bundle)
        return env


def _script(name: str, *extra: str) -> Callable[[RunContext], list[str]]:
    def argv(ctx: RunContext) -> list[str]:
        cmd = [sys.executable, str(HERE / name), "--url", ctx.server.upload_url(), *extra]
        if ctx.limit:
            cmd += ["--limit", str(ctx.limit)]
        return [*cmd, str(ctx.folder)]
    return argv


def _geti_bulk(*extra: str, pty: bool = False) -> Callable[[RunContext], list[str]]:
    def argv(ctx: RunContext) -> list[str]:
        cmd = [geti_bulk_exe(), "upload", str(ctx.folder), "--project", TARGET_PROJECT,
               "--host", ctx.server.base_url]
        if not ctx.annotations:   # a labelled dataset's format is auto-detected
            cmd += ["--labels", "none"]
        if "--progress" not in extra:
            cmd += ["--progress", "none"]
        if ctx.tls is not None:
            cmd += ["--ca-bundle", str(ctx.tls.bundle)]
        if ctx.journal is not None:
            cmd += ["--journal", str(ctx.journal), "--report", str(ctx.run_dir / "report.jsonl")]
        cmd += extra
        if pty:   # a real pseudo-terminal, so rich renders as it would for a user
            return ["script", "-qefc", shlex.join(cmd), "/dev/null"]
        return cmd
    return argv


def _curl(ctx: RunContext) -> list[str]:
    """One curl process, one request per file (``--next``), headers read from a file."""
    header_file = ctx.run_dir / "curl-headers"
    fd = os.open(header_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"x-api-key: {ctx.token}\n")
    cmd = ["curl"]
    url = ctx.server.upload_url()
    for i, path in enumerate(ctx.files):
        if i:
            cmd.append("--next")
        cmd += ["-sS", "--fail", "-o", "/dev/null", "-H", f"@{header_file}",
                "-F", f"file=@{path}", url]
        if ctx.tls is not None:
            cmd += ["--cacert", str(ctx.tls.bundle)]
    return cmd


def sdk_python() -> str:
    """The interpreter that runs the Geti SDK contender: GETI_BULK_SDK_PYTHON names a
    separate venv with `geti-sdk` (its dependencies are heavy), else this one."""
    return os.environ.get("GETI_BULK_SDK_PYTHON") or sys.executable


def _sdk(ctx: RunContext) -> list[str]:
    script = "geti_sdk_coco.py" if ctx.annotations else "geti_sdk_upload.py"
    cmd = [sdk_python(), str(HERE / script), "--url", ctx.server.base_url,
           "--project", TARGET_PROJECT]
    if ctx.limit:
        cmd += ["--limit", str(ctx.limit)]
    return [*cmd, str(ctx.folder)]


def verify_argv(ctx: RunContext, report: Path) -> list[str]:
    """``geti-bulk verify`` of the run's folder against the server, as the user would run
    it after the import (read-only; its exit code is 0 only if everything matches)."""
    cmd = [geti_bulk_exe(), "verify", str(ctx.folder), "--project", TARGET_PROJECT,
           "--host", ctx.server.base_url, "--report", str(report)]
    if not ctx.annotations:
        cmd += ["--labels", "none"]
    if ctx.tls is not None:
        cmd += ["--ca-bundle", str(ctx.tls.bundle)]
    return cmd


def sdk_available() -> bool:
    if sdk_python() == sys.executable:
        return importlib.util.find_spec("geti_sdk") is not None
    probe = subprocess.run([sdk_python(), "-c", "import geti_sdk"], capture_output=True)
    return probe.returncode == 0


def curl_available() -> bool:
    return shutil.which("curl") is not None


def script_available() -> bool:
    if shutil.which("script") is None:
        return False
    probe = subprocess.run(["script", "-qefc", "true", "/dev/null"], capture_output=True)
    return probe.returncode == 0


CONTENDERS: dict[str, Contender] = {c.name: c for c in [
    Contender("tutorial_requests", "requests.post(files=open(...)) per file, no session",
              _script("tutorial_requests.py"), limited=True),
    Contender("tutorial_toolbelt", "requests-toolbelt MultipartEncoder, sequential, no session",
              _script("tutorial_toolbelt.py"), limited=True),
    Contender("sdk_like_threads", "5 threads, one requests.Session, files read whole",
              _script("sdk_like_threads.py"), limited=True),
    Contender("geti_sdk", "the Geti SDK's ImageClient.upload_folder (5 threads); with a "
              "labelled dataset, then AnnotationClient.upload_annotations_for_images", _sdk,
              limited=True),
    Contender("tutorial_annotations", "per image: requests.post the image, then its "
              "annotation; sequential, no session", _script("tutorial_annotations.py")),
    Contender("bare_aiohttp", "bare aiohttp, 8 workers, exact Content-Length, 1 MiB reads",
              _script("bare_aiohttp.py")),
    Contender("curl", "curl -F file=@..., one request per file (--next)", _curl),
    Contender("geti-bulk", "geti-bulk upload, defaults (--progress none)", _geti_bulk()),
    Contender("geti-bulk c=1", "geti-bulk --concurrency 1", _geti_bulk("--concurrency", "1")),
    Contender("geti-bulk c=4", "geti-bulk --concurrency 4", _geti_bulk("--concurrency", "4")),
    Contender("geti-bulk c=16", "geti-bulk --concurrency 16",
              _geti_bulk("--concurrency", "16")),
    Contender("geti-bulk no-journal", "geti-bulk --no-journal", _geti_bulk("--no-journal")),
    Contender("geti-bulk rich", "geti-bulk --progress rich under a pseudo-terminal",
              _geti_bulk("--progress", "rich", pty=True)),
    Contender("geti-bulk fixed c=4", "geti-bulk --fixed-concurrency --concurrency 4",
              _geti_bulk("--fixed-concurrency", "--concurrency", "4")),
    Contender("geti-bulk fixed c=8", "geti-bulk --fixed-concurrency (the default 8)",
              _geti_bulk("--fixed-concurrency")),
    Contender("geti-bulk fixed c=16", "geti-bulk --fixed-concurrency --concurrency 16",
              _geti_bulk("--fixed-concurrency", "--concurrency", "16")),
    Contender("geti-bulk resume", "geti-bulk rerun against a journal with nothing left to do",
              _geti_bulk()),
]}
