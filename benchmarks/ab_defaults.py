"""The defaults of two revisions, side by side, on the matrix's server models.

    .venv/bin/python benchmarks/ab_defaults.py --before REV [--after REV] [--rows wan50 oom]
                                               [--pairs 4] [--out DIR]

For a limiter change: one row of ``benchmarks/matrix.py`` measures each fixed setting
once, but on a busy 2-core machine the defaults' files/s can vary 2x from run to run
(WAN +50 ms: a run climbs past 16 in flight or stays at 8-14), so a change needs many
runs of the defaults alone, alternated with the revision before it (ABBA...) so the
machine's drift falls on both. Each run is a matrix cell (``Matrix.run_cell``: its own
server process and geti-bulk process, both of that revision, ``git archive`` exports);
``--after`` defaults to HEAD. Prints every run and the medians; writes ``ab.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import data  # noqa: E402
from benchlib.snapshot import export_rev  # noqa: E402
from matrix import ROWS, Matrix, parse_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the revision to compare with")
    p.add_argument("--after", default="HEAD")
    p.add_argument("--rows", nargs="+", default=["wan50"], choices=sorted(ROWS))
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    out = (a.out or HERE / "results" / f"ab-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    m = Matrix(parse_args(["--out", str(out), "--working-tree"]))
    sources = {a.before: export_rev(HERE.parent, a.before, out / "src"),
               a.after: export_rev(HERE.parent, a.after, out / "src")}
    results: dict[str, dict[str, list[dict[str, object]]]] = {}
    for key in a.rows:
        row = ROWS[key]
        folder = m.dataset(row, row.files)
        data.warm(folder)
        per = results.setdefault(key, {rev: [] for rev in sources})
        for i in range(a.pairs):
            order = list(sources) if i % 2 == 0 else list(sources)[::-1]
            for rev in order:
                m.source = sources[rev]
                rec = m.run_cell(row, "defaults", folder, row.files, len(per[rev]) + 100 * i)
                per[rev].append(rec)
                (out / "ab.json").write_text(json.dumps(results, indent=1))
        for rev, recs in per.items():
            rates = [float(r["files_per_s"]) for r in recs]   # type: ignore[arg-type]
            problems = sum(int(r["restarts"]) + int(r["locked"]) + int(r["lost"])  # type: ignore[call-overload]
                           for r in recs)
            print(f"# {key} {rev}: median {statistics.median(rates):.1f} files/s "
                  f"(runs {', '.join(f'{x:.1f}' for x in rates)}); "
                  f"restarts + locked + lost: {problems}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
