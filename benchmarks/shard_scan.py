"""What `--shard` saves in the scanner: one shard of N against the whole tree.

    .venv/bin/python benchmarks/shard_scan.py [--files 200000] [--shards 4] [--data DIR]

Walks a tree of `--files` tiny files (hard links, ``benchlib.data.resume_tree``) with
the scanner alone (``geti_bulk.scan.iter_jobs``: listing, filtering, stat), unsharded and
as shard 0/N, alternately, twice each, and prints wall and CPU seconds of each. Another
shard's file is dropped on its directory entry (no stat), so what a shard still pays per
foreign file is the listing and one md5 of its relative path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import data  # noqa: E402

from geti_bulk.scan import ScanOptions, iter_jobs  # noqa: E402
from geti_bulk.shard import Shard  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=200_000)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "geti-bulk-shard-scan")
    args = p.parse_args(argv)
    root = data.resume_tree(args.data, args.files)
    runs = [("unsharded", None), (f"shard 0/{args.shards}", Shard(0, args.shards))] * 2
    for label, shard in runs:
        opts = ScanOptions(labels="none", shard=shard)
        t, c = time.perf_counter(), time.process_time()
        n = sum(1 for _ in iter_jobs([root], [], opts))
        print(f"{label}: {n:,} files in {time.perf_counter() - t:.2f} s wall, "
              f"{time.process_time() - c:.2f} s CPU", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
