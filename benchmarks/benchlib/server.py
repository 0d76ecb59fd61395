"""The local Geti server in its own process, restarted for every measured run.

``geti-bulk serve --discard --no-decode`` (benchmark mode): the server reads bodies in
1 MiB chunks, hashes them and keeps no bytes, so it is not disk-bound, and checks image
headers instead of decoding every image. Decoding a 100 KB JPEG costs the server about
1.4 ms of CPU, which on a 2-core machine shared with the client measures Pillow rather
than the uploaders; ``run.py --server-decode`` puts it back (real Geti decodes, on its
own machines). A fresh data directory per run makes the stored and duplicate counts of
``/_admin/stats`` belong to that run alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import psutil

TARGET_PROJECT = "Vehicle detection"


def server_name(decode: bool) -> str:
    flags = "--discard" if decode else "--discard --no-decode"
    what = "images ≤ 1 MiB fully decoded" if decode else "image headers checked, not decoded"
    return (f"geti-bulk serve {flags} (aiohttp on 127.0.0.1; bodies read in 1 MiB chunks, "
            f"hashed, not kept; {what})")


@dataclass(frozen=True)
class Tls:
    """Files for HTTPS: the server's certificate and key, and bundles for clients."""

    cert: Path
    key: Path
    ca: Path          # the test CA alone
    bundle: Path      # certifi's roots + the test CA: what a client would load for real


def make_tls(folder: Path) -> Tls:
    """A trustme CA and a server certificate for 127.0.0.1 / localhost."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tls = Tls(folder / "server.pem", folder / "server.key", folder / "ca.pem",
              folder / "bundle.pem")
    cert.cert_chain_pems[0].write_to_path(str(tls.cert))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(tls.cert), append=True)
    cert.private_key_pem.write_to_path(str(tls.key))
    ca.cert_pem.write_to_path(str(tls.ca))
    tls.bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + tls.ca.read_bytes())
    return tls


def make_token(folder: Path) -> tuple[str, Path]:
    from geti_bulk.server.seed import generate_pat

    folder.mkdir(parents=True, exist_ok=True)
    token = generate_pat()
    path = folder / "token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token, path


def geti_bulk_exe() -> str:
    """The ``geti-bulk`` console script of the running interpreter's environment."""
    near = Path(sys.executable).parent / "geti-bulk"
    return str(near) if near.exists() else (shutil.which("geti-bulk") or "geti-bulk")


class LocalServer:
    """``geti-bulk serve`` as a child process; ``start()`` returns when it listens."""

    def __init__(self, data_dir: Path, token_file: Path, *, tls: Tls | None = None,
                 latency_ms: int = 0, faults: str = "", max_inflight: int = 0,
                 seed: int = 0, decode: bool = False, source: Path | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.token_file = token_file
        self.tls = tls
        self.argv = [geti_bulk_exe(), "serve", "--host", "127.0.0.1", "--port", "0",
                     "--data-dir", str(data_dir), "--token-file", str(token_file),
                     "--seed", str(seed), "--discard"]
        if not decode:
            self.argv.append("--no-decode")
        if latency_ms:
            self.argv += ["--latency-ms", str(latency_ms)]
        if faults:
            self.argv += ["--faults", faults]
        if max_inflight:
            self.argv += ["--max-inflight", str(max_inflight)]
        self.argv += list(extra_args)
        if tls is not None:
            self.argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        self.source = source      # a geti_bulk export to run instead of the installed one
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._cpu0 = 0.0

    def start(self) -> LocalServer:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k != "GETI_TOKEN"}
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        with open(self.data_dir / "server.log", "wb") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log, env=env,
                                         cwd=self.data_dir)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            log = (self.data_dir / "server.log").read_text(errors="replace")
            raise RuntimeError(f"the server did not start: {log[-2000:]}")
        self.info = json.loads(line)
        self._cpu0 = self.cpu_seconds()
        return self

    # --- what contenders need --------------------------------------------------------

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    def target(self, project: str = TARGET_PROJECT) -> tuple[str, str]:
        """(project id, training dataset id) of a seeded project."""
        for p in self.info["projects"]:
            if p["name"] == project:
                dataset = next(d for d in p["datasets"] if d["use_for_training"])
                return p["id"], dataset["id"]
        raise KeyError(project)

    def upload_url(self, kind: str = "images", project: str = TARGET_PROJECT) -> str:
        pid, did = self.target(project)
        return (f"{self.base_url}/api/v1/organizations/{self.info['organization_id']}"
                f"/workspaces/{self.info['workspace_id']}/projects/{pid}/datasets/{did}"
                f"/media/{kind}")

    # --- what the harness reads ------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        req = urllib.request.Request(self.base_url + "/_admin/stats",
                                     headers={"x-admin-token": self.info["admin_token"]})
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        data.pop("duplicate_groups", None)   # can be long; the count is enough
        return data

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def cpu_since_start(self) -> float:
        return self.cpu_seconds() - self._cpu0

    def mark(self) -> None:
        """Start counting server CPU from now."""
        self._cpu0 = self.cpu_seconds()

    def stop(self, keep_log: Path | None = None) -> None:
        """Stop the server; its log is copied to ``keep_log`` first, if given."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        if keep_log is not None and (self.data_dir / "server.log").is_file():
            shutil.copyfile(self.data_dir / "server.log", keep_log)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
