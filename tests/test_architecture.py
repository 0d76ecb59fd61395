"""The dependency direction of STYLE.md, checked by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "geti_bulk"

# module -> geti_bulk modules it may import (prefix match)
ALLOWED = {
    "errors": set(),
    "events": set(),
    "jobs": {"sources.model"},
    "media": set(),
    "retry": {"errors"},
    "concurrency": set(),
    "labels": {"errors", "geti.models"},
    "shard": {"errors"},
    "deploy": set(),
    "status": {"journal", "journal_lock", "shard"},
    "scan": {"errors", "jobs", "media", "shard"},
    "journal": {"jobs", "errors"},
    "journal_lock": {"errors"},
    "report": {"events"},
    "config": {"errors", "geti.client", "shard"},
    "geti": {"errors", "geti", "media"},
    "display": {"events", "display"},
    # readers know only their model; shapes know the model, Geti's models and errors
    "sources": {"sources", "media", "errors"},
    "shapes": {"shapes", "sources.model", "geti.models", "errors"},
    "datasets": {"errors", "jobs", "media", "scan", "shard", "sources"},
    "annotate": {"outage", "tries", "concurrency", "errors", "events", "geti", "jobs", "labels", "retry",
                 "shapes", "sources.model"},
    "autotrain": {"errors", "events", "geti", "journal", "journal_lock", "shard"},
    "outage": {"errors", "events"},
    "tries": {"concurrency", "errors", "events", "outage", "retry"},
    "attempts": {"annotate", "outage", "tries", "media", "concurrency", "errors", "events", "geti", "jobs",
                 "journal", "labels", "retry", "sources.model"},
    "verify": {"annotate", "media", "errors", "geti", "jobs", "labels", "shapes",
               "sources.model"},
    "pipeline": {"annotate", "attempts", "autotrain", "concurrency", "config", "datasets",
                 "errors", "events", "geti", "jobs", "journal", "journal_lock", "labels",
                 "media", "outage", "report", "retry", "scan", "shard", "sources.model",
                 "verify"},
    # a Geti project into another Geti: the pipeline's pieces, a second source (a Geti);
    # `migrate.command` is the subcommand's CLI (its options, its reporter)
    "migrate": {"migrate", "annotate", "autotrain", "concurrency", "config", "display",
                "errors", "events", "geti", "jobs", "journal", "journal_lock", "labels",
                "media", "outage", "pipeline", "report", "retry", "shapes", "sources.model",
                "tries"},
    "server": {"server"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geti_bulk"):
            out.add(node.module.removeprefix("geti_bulk").lstrip("."))
        elif isinstance(node, ast.ImportFrom) and node.level and path.parent.name in ("server", "display", "geti"):
            out.add(f"{path.parent.name}.{node.module or ''}".rstrip("."))
        elif isinstance(node, ast.Import):
            out.update(a.name.removeprefix("geti_bulk.") for a in node.names
                       if a.name.startswith("geti_bulk"))
    return {m for m in out if m}


def test_imports_follow_the_layering():
    bad = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        top = rel.parts[0]
        if top not in ALLOWED:
            continue
        for mod in _imports(path):
            if not any(mod == a or mod.startswith(a + ".") for a in ALLOWED[top]):
                bad.append(f"{rel}: imports {mod}")
    assert bad == []


def test_display_and_server_stay_independent_of_the_uploader():
    for sub in ("display", "server"):
        for path in (PKG / sub).rglob("*.py"):
            text = path.read_text()
            for forbidden in ("geti_bulk.pipeline", "geti_bulk.attempts", "geti_bulk.cli",
                              "geti_bulk.geti"):
                assert forbidden not in text, f"{path.name} imports {forbidden}"
