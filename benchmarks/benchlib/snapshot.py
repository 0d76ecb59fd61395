"""Measure a commit, not a working tree that others may be editing mid-run.

The server and geti-bulk run with ``PYTHONPATH`` pointing at an export of
``geti_bulk/`` from ``HEAD`` (``git archive``), which shadows the editable install, so
every run of one benchmark measures the same code and the results name its commit.
"""

from __future__ import annotations

import compileall
import io
import subprocess
import tarfile
from pathlib import Path


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True,
                          timeout=60).stdout


def export_head(repo: Path, dest: Path) -> tuple[Path | None, str]:
    """(folder to put on PYTHONPATH, description); (None, …) when not a git checkout."""
    try:
        rev = _git(repo, "rev-parse", "--short", "HEAD").decode().strip()
        # the last commit that changed the package says more than HEAD
        last = _git(repo, "log", "-1", "--format=%h %cs", "--", "geti_bulk").decode().strip()
        dirty = bool(_git(repo, "status", "--porcelain", "geti_bulk").strip())
        folder = dest / f"geti_bulk-{rev}"
        if not (folder / "geti_bulk" / "__init__.py").is_file():
            data = _git(repo, "archive", "--format=tar", "HEAD", "geti_bulk")
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(folder, filter="data")
            # byte-compiled once, as pip does on install: the contenders run with
            # PYTHONDONTWRITEBYTECODE, and compiling geti_bulk on every start costs ~80 ms
            compileall.compile_dir(str(folder), quiet=1)
    except (OSError, subprocess.SubprocessError):
        return None, "working tree (not a git checkout)"
    note = " (uncommitted changes in geti_bulk/ not measured)" if dirty else ""
    return folder, f"HEAD {rev} exported (geti_bulk/ last changed in {last}){note}"


def export_rev(repo: Path, rev: str, dest: Path) -> Path:
    """``geti_bulk/`` of ``rev`` in ``dest/geti_bulk-<sha>``, byte-compiled (for PYTHONPATH)."""
    sha = _git(repo, "rev-parse", "--short", rev).decode().strip()
    folder = dest / f"geti_bulk-{sha}"
    if not (folder / "geti_bulk" / "__init__.py").is_file():
        data = _git(repo, "archive", "--format=tar", sha, "geti_bulk")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(folder, filter="data")
        compileall.compile_dir(str(folder), quiet=1)
    return folder
