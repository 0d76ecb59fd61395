"""The benchmark matrix: server models x {defaults, fixed 2, 4, 8, 16, 32, 64}.

    python benchmarks/matrix.py [--quick] [--out DIR] [--rows local wan50 ...] [--repeats N]

Every cell is one ``geti-bulk upload`` (its own process, journal on, ``--progress
none``) against a fresh local server (its own process) playing one server model:

* ``local``: Geti 2, 0 ms; also bare aiohttp at 8..64 workers and the defaults with the
  rich display under a pseudo-terminal (small files: geti-bulk against bare aiohttp);
* ``wan50`` / ``wan150``: Geti 2, 50 / 150 ms added to every answer by the server,
  unlimited server parallelism;
* ``oom``: the OOM-killed upload service (2 workers x 20 ms, holds 6, a 7th kills it for
  2 s; 20 ms away), run.py's overload model;
* ``pixels``: 4 decoders whose cost grows with the pixels (10 ns each: 0.33 s for an 8K
  image), one run mixing 100 KB thumbnails, 12 MP JPEGs and 20 MB 8K PNGs, 10 ms away;
* ``locked``: Geti 3 (plain HTTP): one SQLite writer, 8 ms per commit, a write arriving
  while 6 are in flight waits 2 s and answers 500 "database is locked"; 20 ms away.

Per cell: files/s (stored files / wall time of the process, start-up included), OOM
restarts, ``locked`` 500s, files not stored (lost), and the start-up time: the server's
wall clock at the first upload's arrival minus the client's spawn time. Per row: the
defaults' files/s / the best fixed setting's. Slow fixed settings over WAN get fewer
files (what they move in ~``CELL_S`` seconds) so the matrix stays within 15 minutes;
the defaults and the fast settings get the whole row.

Writes ``matrix.json``, ``matrix.md`` and ``matrix.png`` to the out folder
(default ``benchmarks/results/matrix-<time>``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import data  # noqa: E402
from benchlib.contenders import CONTENDERS, RunContext, _geti_bulk, script_available  # noqa: E402
from benchlib.measure import run_measured  # noqa: E402
from benchlib.server import LocalServer, geti_bulk_exe, make_token  # noqa: E402
from benchlib.snapshot import export_head  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXED = (2, 4, 8, 16, 32, 64)
SETTINGS: tuple[str, ...] = ("defaults", *(f"fixed {c}" for c in FIXED))
CELL_S = 6.0          # a slow fixed setting over WAN gets what it moves in about this long
MIN_FILES = 60


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    dataset: str                    # "small" | "mixed"
    files: int
    quick_files: int
    dialect: str = "geti2"
    latency_ms: int = 0
    server_args: tuple[str, ...] = ()
    per_slot_s: float = 0.0         # seconds per upload per slot, if the network is the limit
    extras: tuple[str, ...] = ()    # more contenders in this row
    caps: tuple[tuple[str, int], ...] = ()   # (setting, files): a setting that thrashes
    timeout_s: float = 120.0


OOM = ("--max-inflight", "6", "--overload", "oom", "--restart-ms", "2000",
       "--workers", "2", "--service-ms", "20")
PIXELS = ("--workers", "4", "--decode-ns-per-pixel", "10")
LOCKED = ("--locked-writers", "10", "--locked-ms", "2000", "--write-ms", "8")

ROWS = {r.key: r for r in [
    Row("local", "local, 0 ms", "small", 3000, 200,
        extras=("bare c=8", "bare c=16", "bare c=32", "bare c=64", "defaults, rich display")),
    Row("wan50", "WAN +50 ms, unlimited server parallelism", "small", 5000, 400,
        latency_ms=50, per_slot_s=0.055),
    Row("wan150", "WAN +150 ms, unlimited server parallelism", "small", 4000, 400,
        latency_ms=150, per_slot_s=0.155),
    Row("oom", "OOM-killed upload service (2 workers x 20 ms, holds 6, 20 ms)", "small",
        800, 120, latency_ms=20, server_args=OOM, timeout_s=150,
        caps=(("fixed 8", 300), ("fixed 16", 150), ("fixed 32", 150), ("fixed 64", 150))),
    Row("pixels", "decoder cost per pixel (4 x 10 ns/px), thumbnails to 8K PNGs, 10 ms",
        "mixed", 240, 60, latency_ms=10, server_args=PIXELS, timeout_s=180),
    Row("locked", "Geti 3 SQLite: 1 writer x 8 ms, locked beyond 10 writers, 20 ms",
        "small", 800, 120, dialect="geti3", latency_ms=20, server_args=LOCKED,
        timeout_s=150, caps=(("fixed 32", 300), ("fixed 64", 200))),
]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run with few files (~3 min)")
    p.add_argument("--out", type=Path, default=None, help="output folder")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset cache (default: benchmarks/results/data)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS),
                   metavar="ROW", help=f"any of: {' '.join(ROWS)} (default: all)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per cell, the median kept (default 1)")
    p.add_argument("--working-tree", action="store_true",
                   help="measure geti_bulk/ as on disk (default: an export of HEAD)")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: rewrite matrix.md and matrix.png from --out's matrix.json")
    return p.parse_args(argv)


# --- datasets ------------------------------------------------------------------------


def _unique_copies(root: Path, name: str, ext: str, head: bytes, count: int) -> None:
    """``count`` files of ``head`` with a distinct trailer each (decoders stop at the end
    marker), so the server stores ``count`` different files."""
    for i in range(count):
        (root / f"{name}_{i:04d}{ext}").write_bytes(head + b"geti-bulk-matrix:%06d" % i)


def _png_8k() -> bytes:
    """A 7680x4320 PNG of about 20-25 MB: every channel quantised to 4 levels of noise
    (2 bits of entropy a byte), so zlib keeps about a quarter of the 99.5 MB decoded."""
    import io

    from PIL import Image

    w, h = 7680, 4320
    table = bytes((b & 3) * 85 for b in range(256))
    raw = os.urandom(w * h * 3).translate(table)
    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), raw).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _jpeg_12mp() -> bytes:
    from geti_bulk.sampledata import image_bytes

    return image_bytes(4000, 3000, "JPEG", seed=12, noise=0.3)


def mixed(base: Path, count: int) -> Path:
    """``count`` images, sorted by name so that sizes interleave: 80 % 100 KB thumbnails
    (448x336 JPEG), 15 % 12 MP JPEGs (4000x3000), 5 % 8K PNGs (7680x4320, ~20 MB)."""
    def build(root: Path) -> None:
        from geti_bulk.sampledata import image_bytes

        big, photo = max(1, count // 20), max(1, count * 3 // 20)
        small_n = count - big - photo
        png, jpeg = _png_8k(), _jpeg_12mp()
        # names interleave the kinds when sorted (a0000_…), as a real folder would
        order = [("thumb", i) for i in range(small_n)] + [("photo", i) for i in range(photo)] \
            + [("8k", i) for i in range(big)]
        order.sort(key=lambda kv: (kv[1] / {"thumb": small_n, "photo": photo, "8k": big}[kv[0]]))
        for n, (kind, i) in enumerate(order):
            stem = root / f"m{n:05d}_{kind}_{i:04d}"
            trailer = b"geti-bulk-matrix:%06d" % n
            if kind == "thumb":
                stem.with_suffix(".jpg").write_bytes(
                    image_bytes(*data.SMALL_SIZE, "JPEG", seed=2_000_003 + i, noise=0.5))
            elif kind == "photo":
                stem.with_suffix(".jpg").write_bytes(jpeg + trailer)
            else:
                stem.with_suffix(".png").write_bytes(png + trailer)

    return data._cached(base / f"mixed-{count}", {"kind": "mixed", "count": count}, build)


# --- servers -------------------------------------------------------------------------


class Geti3Server(LocalServer):
    """``geti-bulk serve --dialect geti3 --plain-http`` (no token) as a child process."""

    def __init__(self, data_dir: Path, *, latency_ms: int = 0,
                 extra_args: tuple[str, ...] = (), source: Path | None = None) -> None:
        super().__init__(data_dir, data_dir / "unused", source=source)
        self.argv = [geti_bulk_exe(), "serve", "--dialect", "geti3", "--host", "127.0.0.1",
                     "--port", "0", "--data-dir", str(data_dir), "--plain-http", "--no-spa",
                     *(["--latency-ms", str(latency_ms)] if latency_ms else []), *extra_args]


# --- cells ---------------------------------------------------------------------------


@dataclass
class Cell:
    row: str
    setting: str
    files: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        values = [r[key] for r in self.runs if r.get(key) is not None]
        return float(statistics.median(values)) if values else float("nan")

    def worst(self, key: str) -> int:
        return max((int(r.get(key) or 0) for r in self.runs), default=0)


def cell_files(row: Row, setting: str, total: int) -> int:
    """What a setting uploads in this row: all of it, or for a slow fixed setting over a
    slow network what it moves in about ``CELL_S`` seconds."""
    for name, files in row.caps:
        if name == setting:
            return min(total, files)
    if not setting.startswith("fixed ") or not row.per_slot_s:
        return total
    c = int(setting.split()[1])
    return max(MIN_FILES, min(total, math.ceil(c / row.per_slot_s * CELL_S)))


def _bare_argv(ctx: RunContext, workers: int) -> list[str]:
    argv = CONTENDERS["bare_aiohttp"].argv(ctx)
    return [*argv[:-1], "--concurrency", str(workers), argv[-1]]


class Matrix:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = bool(args.quick)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out: Path = (args.out or HERE / "results" / f"matrix-{stamp}").resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.data_dir: Path = (args.data or HERE / "results" / "data").resolve()
        self.token, self.token_file = make_token(self.out / "secrets")
        if args.working_tree:
            self.source, self.revision = None, "the working tree as it was during the run"
        else:
            self.source, self.revision = export_head(HERE.parent, self.out / "src")
        self.cells: dict[tuple[str, str], Cell] = {}
        self.errors: list[str] = []

    def dataset(self, row: Row, files: int) -> Path:
        if row.dataset == "mixed":
            folder = mixed(self.data_dir, files)
        else:
            folder = data.small(self.data_dir, files)
        return folder

    def run_row(self, row: Row) -> None:
        total = row.quick_files if self.quick else row.files
        full = self.dataset(row, total)
        data.warm(full)
        settings = [*SETTINGS, *row.extras]
        for rep in range(self.args.repeats):
            for setting in settings if rep % 2 == 0 else settings[::-1]:
                n = cell_files(row, setting, total)
                folder = full if n == total else data.subset(full, n)
                cell = self.cells.setdefault((row.key, setting), Cell(row.key, setting, n))
                cell.runs.append(self.run_cell(row, setting, folder, n, rep))
                self.save()

    def _server(self, row: Row, run_dir: Path) -> LocalServer:
        if row.dialect == "geti3":
            return Geti3Server(run_dir / "server", latency_ms=row.latency_ms,
                               extra_args=row.server_args, source=self.source)
        return LocalServer(run_dir / "server", self.token_file, latency_ms=row.latency_ms,
                           extra_args=row.server_args, source=self.source)

    def run_cell(self, row: Row, setting: str, folder: Path, files: int,
                 rep: int) -> dict[str, Any]:
        slug = setting.replace(" ", "-").replace(",", "")
        run_dir = self.out / "runs" / row.key / f"{slug}-{rep + 1}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        server = self._server(row, run_dir)
        server.start()
        try:
            ctx = RunContext(server=server, folder=folder, run_dir=run_dir, token=self.token,
                             tls=None, source=self.source)
            if setting == "defaults":
                argv = _geti_bulk()(ctx)
            elif setting == "defaults, rich display":
                argv = _geti_bulk("--progress", "rich", pty=script_available())(ctx)
            elif setting.startswith("fixed "):
                argv = _geti_bulk("--fixed-concurrency", "--concurrency",
                                  setting.split()[1])(ctx)
            elif setting.startswith("bare c="):
                argv = _bare_argv(ctx, int(setting.split("=")[1]))
            else:
                raise ValueError(setting)
            env = CONTENDERS["geti-bulk"].env(ctx)
            if row.dialect == "geti3":
                env.pop("GETI_TOKEN", None)      # Geti 3 has no authentication
            (run_dir / "argv.json").write_text(json.dumps(argv))
            spawned = time.time()
            m = run_measured(argv, env, run_dir, timeout=row.timeout_s, cwd=run_dir)
            stats = server.stats() if server.alive() else {}
        finally:
            server.stop(keep_log=run_dir / "server.log")
        stored = int(stats.get("media_total", -1))
        first = stats.get("first_upload_at")
        rec = {
            "row": row.key, "setting": setting, "repeat": rep + 1, "files": files,
            "wall_s": m.wall_s, "files_per_s": max(stored, 0) / m.wall_s,
            "stored": stored, "lost": files - stored if stored >= 0 else files,
            "restarts": int(stats.get("restarts", 0)),
            "locked": int(stats.get("locked_errors", 0)),
            "overload_503": int(stats.get("overload_503", 0)),
            "peak_inflight": stats.get("peak_inflight", stats.get("peak_writers")),
            "startup_ms": (first - spawned) * 1000 if isinstance(first, float) else None,
            "exit_code": m.exit_code, "timed_out": m.timed_out, "cpu_s": m.cpu_s,
            "peak_rss_mb": m.peak_rss_mb,
        }
        if m.exit_code != 0 or m.timed_out:
            rec["stderr_tail"] = m.stderr_tail[-400:]
        start = f" start-up {rec['startup_ms']:.0f} ms" if rec["startup_ms"] is not None else ""
        print(f"[{row.key}] {setting}: {files} files {m.wall_s:.2f} s "
              f"{rec['files_per_s']:.1f} files/s stored {stored} restarts {rec['restarts']} "
              f"locked {rec['locked']} exit {m.exit_code}"
              + (" TIMEOUT" if m.timed_out else "") + start, flush=True)
        return rec

    # --- output ----------------------------------------------------------------------

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for key in self.args.rows:
            row = ROWS[key]
            cells = {s: c for (r, s), c in self.cells.items() if r == key}
            if "defaults" not in cells:
                continue
            rate = {s: c.median("files_per_s") for s, c in cells.items()}
            fixed = {s: rate[s] for s in SETTINGS[1:] if s in rate}
            best = max(fixed, key=lambda s: fixed[s]) if fixed else None
            d = cells["defaults"]
            clean_fixed = any(cells[s].worst("restarts") == 0 and cells[s].worst("locked") == 0
                              and cells[s].worst("lost") == 0 for s in fixed)
            defaults_clean = (d.worst("restarts") == 0 and d.worst("locked") == 0
                              and d.worst("lost") == 0)
            out: dict[str, Any] = {
                "row": key, "title": row.title, "rate": rate, "best": best,
                "ratio": rate["defaults"] / fixed[best] if best else float("nan"),
                "problems": {s: (c.worst("restarts"), c.worst("locked"), c.worst("lost"))
                             for s, c in cells.items()},
                "files": {s: c.files for s, c in cells.items()},
                "clean_ok": defaults_clean or not clean_fixed,
                "startup_ms": d.median("startup_ms"),
            }
            bare = {s: rate[s] for s in rate if s.startswith("bare")}
            if bare:
                best_bare = max(bare, key=lambda s: bare[s])
                out["bare_best"] = best_bare
                rich = rate.get("defaults, rich display")
                out["vs_bare"] = rate["defaults"] / bare[best_bare]
                if rich is not None:
                    out["rich_vs_bare"] = rich / bare[best_bare]
            rows.append(out)
        return rows

    def markdown(self, elapsed: float) -> str:
        summary = self.summary()
        head = [
            "# geti-bulk benchmark matrix", "",
            f"- command: `python benchmarks/matrix.py {' '.join(sys.argv[1:])}`".replace(
                "matrix.py `", "matrix.py`"),
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; total {elapsed / 60:.1f} min; "
            f"{os.cpu_count()} CPUs; geti-bulk: {self.revision}",
            "- files/s = files stored / wall time of the geti-bulk process (start-up "
            "included), median of the repeats; `ratio` = defaults ÷ best fixed setting",
            "- problems per cell: OOM restarts / `locked` 500s / files not stored",
        ]
        lines = ["| server model | " + " | ".join(SETTINGS) + " | best fixed | ratio |",
                 "|---|" + "---:|" * (len(SETTINGS) + 2)]
        for r in summary:
            cells = []
            for s in SETTINGS:
                v = r["rate"].get(s)
                txt = "—" if v is None else f"{v:,.1f}"
                if s in r["files"] and r["files"][s] != r["files"]["defaults"]:
                    txt += f" ({r['files'][s]})"
                cells.append(txt)
            lines.append(f"| {r['title']} | " + " | ".join(cells)
                         + f" | {r['best'] or '—'} | **{r['ratio']:.2f}** |")
        lines += ["", "| server model | " + " | ".join(SETTINGS) + " | defaults clean? |",
                  "|---|" + "---:|" * len(SETTINGS) + "---|"]
        for r in summary:
            cells = ["/".join(str(x) for x in r["problems"][s]) if s in r["problems"] else "—"
                     for s in SETTINGS]
            lines.append(f"| {r['title']} | " + " | ".join(cells)
                         + f" | {'yes' if r['clean_ok'] else '**NO**'} |")
        notes = ["", "(n) after a rate: that setting uploaded n files only (what it moves in "
                 f"~{CELL_S:.0f} s over WAN, or a setting that thrashes the server), the "
                 "others the whole row."]
        for r in summary:
            if "vs_bare" in r:
                bare = ", ".join(f"{s} {v:,.1f}" for s, v in r["rate"].items()
                                 if s.startswith("bare"))
                notes.append(f"- small files at 0 ms: bare aiohttp {bare} files/s; the "
                             f"defaults reach {r['vs_bare']:.2f}× the best ({r['bare_best']})"
                             + (f", {r['rich_vs_bare']:.2f}× with the rich display on"
                                if "rich_vs_bare" in r else "") + " (journal on in both).")
        starts = [c.median("startup_ms") for (_r, s), c in self.cells.items()
                  if not s.startswith("bare") and not math.isnan(c.median("startup_ms"))]
        if starts:
            notes.append(f"- start-up (client spawn → the server sees the first upload), "
                         f"median over geti-bulk cells: {statistics.median(starts):.0f} ms "
                         f"(min {min(starts):.0f}, max {max(starts):.0f}); the defaults, per row: "
                         + ", ".join(f"{r['row']} {r['startup_ms']:.0f} ms" for r in summary
                                     if not math.isnan(r["startup_ms"])))
        for e in self.errors:
            notes.append(f"- **ERROR** {e}")
        return "\n".join(head) + "\n\n" + "\n".join(lines) + "\n" + "\n".join(notes) + "\n"

    def chart(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        summary = self.summary()
        if not summary:
            return
        fig, ax = plt.subplots(figsize=(11, 0.9 + 0.75 * len(summary)))
        height = 0.8 / len(SETTINGS)
        colours = ["#d62728", *plt.cm.Blues([0.3 + 0.1 * i for i in range(len(FIXED))])]
        for i, r in enumerate(summary):
            best = r["rate"][r["best"]] if r["best"] else 1.0
            for j, s in enumerate(SETTINGS):
                v = r["rate"].get(s)
                if v is None:
                    continue
                y = i + (j - len(SETTINGS) / 2) * height
                ax.barh(y, v / best, height=height, color=colours[j],
                        label=s if i == 0 else None)
                bad = r["problems"].get(s, (0, 0, 0))
                if any(bad):
                    ax.text(v / best + 0.01, y, "/".join(map(str, bad)), va="center",
                            fontsize=6, color="#555")
        ax.set_yticks(range(len(summary)))
        ax.set_yticklabels([f"{r['title'][:48]}\n(defaults {r['ratio']:.2f}× best)"
                            for r in summary], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0.9, color="#d62728", linestyle=":", linewidth=1)
        ax.set_xlabel("files/s ÷ the best fixed setting's (dotted: 0.9); "
                      "labels: OOM restarts / locked / lost")
        ax.set_title(f"geti-bulk defaults against fixed concurrency ({os.cpu_count()} CPUs)",
                     fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(path, dpi=130)
        plt.close(fig)

    def save(self) -> None:
        doc = {"command": " ".join(["python", "benchmarks/matrix.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "revision": self.revision,
               "quick": self.quick,
               "cells": [{"row": c.row, "setting": c.setting, "files": c.files,
                          "runs": c.runs} for c in self.cells.values()]}
        (self.out / "matrix.json").write_text(json.dumps(doc, indent=1))


def report_only(args: argparse.Namespace) -> int:
    if args.out is None or not (args.out / "matrix.json").is_file():
        print("--report-only needs --out DIR holding a matrix.json", file=sys.stderr)
        return 2
    doc = json.loads((args.out / "matrix.json").read_text())
    matrix = Matrix.__new__(Matrix)
    matrix.args, matrix.quick, matrix.out = args, bool(doc.get("quick")), args.out.resolve()
    matrix.revision, matrix.errors = str(doc.get("revision")), []
    matrix.cells = {}
    for c in doc["cells"]:
        matrix.cells[(c["row"], c["setting"])] = Cell(c["row"], c["setting"], c["files"],
                                                      c["runs"])
    text = matrix.markdown(0.0)
    (matrix.out / "matrix.md").write_text(text)
    matrix.chart(matrix.out / "matrix.png")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.report_only:
        return report_only(args)
    matrix = Matrix(args)
    print(f"# geti-bulk matrix ({'quick' if matrix.quick else 'full'}); out {matrix.out}; "
          f"geti-bulk {matrix.revision}", flush=True)
    for key in args.rows:
        t = time.perf_counter()
        try:
            matrix.run_row(ROWS[key])
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            matrix.errors.append(f"{key}: {e}")
            print(f"# ERROR in row {key}: {e}", file=sys.stderr, flush=True)
        print(f"# row {key} done in {time.perf_counter() - t:.0f} s", flush=True)
    text = matrix.markdown(time.perf_counter() - start)
    (matrix.out / "matrix.md").write_text(text)
    matrix.chart(matrix.out / "matrix.png")
    print()
    print(text)
    print(f"# {matrix.out / 'matrix.md'}, {matrix.out / 'matrix.png'}, "
          f"{matrix.out / 'matrix.json'}; total {time.perf_counter() - start:.0f} s")
    return 1 if matrix.errors else 0


if __name__ == "__main__":
    sys.exit(main())
