"""Benchmarks for geti-bulk against the usual ways of uploading to Geti.

    python benchmarks/run.py [--quick] [--out DIR] [--scenarios small tiny ...] [--repeats N]

Starts the local Geti server (``geti-bulk serve --discard``) in its own process, fresh
for every measured run; generates deterministic datasets (cached under ``<out>/data``);
runs every contender in its own process, alternating and repeated; prints a Markdown
table of medians and ratios and writes ``results.json``, ``results.md`` and
``results.png`` to the out folder. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import data, geti3, plan, report  # noqa: E402
from benchlib.contenders import (  # noqa: E402
    CONTENDERS,
    RunContext,
    curl_available,
    script_available,
    sdk_available,
    verify_argv,
)
from benchlib.measure import run_measured  # noqa: E402
from benchlib.resume import build_journal, fresh_copy  # noqa: E402
from benchlib.server import LocalServer, make_tls, make_token, server_name  # noqa: E402
from benchlib.snapshot import export_head  # noqa: E402

HERE = Path(__file__).resolve().parent
NOISY = 0.3              # cores used by other processes during a run that make us redo it
MAX_NOISE_RETRIES = 25   # per benchmark, so that a busy machine cannot double the time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run of everything with tiny counts and 1 repeat (< 2 min)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: benchmarks/results/<timestamp>); datasets "
                        "are cached in <out>/data, so reuse a folder to skip generation")
    p.add_argument("--scenarios", nargs="+", default=list(plan.SCENARIOS),
                   choices=plan.SCENARIOS, metavar="NAME",
                   help=f"any of: {' '.join(plan.SCENARIOS)} (default: all)")
    p.add_argument("--repeats", type=int, default=None,
                   help="runs per contender (default 3, quick 1); some slow cases run once")
    p.add_argument("--server-decode", action="store_true",
                   help="let the server fully decode images up to 1 MiB, as Geti does "
                        "(default: header check only, so the server's CPU stays small)")
    p.add_argument("--working-tree", action="store_true",
                   help="measure geti_bulk/ as it is on disk (default: an export of HEAD, "
                        "so edits made during the run cannot change what is measured)")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset cache folder (default: <out>/data)")
    return p.parse_args(argv)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import aiohttp

    return {"nproc": os.cpu_count(), "cpu": model or platform.processor(),
            "python": platform.python_version(), "aiohttp": aiohttp.__version__,
            "platform": platform.platform()}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = bool(args.quick)
        self.sizes = plan.QUICK if self.quick else plan.FULL
        self.repeats = args.repeats or (1 if self.quick else 3)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.out: Path = (args.out or HERE / "results" / stamp).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.data_dir: Path = (args.data or self.out / "data").resolve()
        self.records: list[dict[str, Any]] = []
        self.geti3_records: list[dict[str, Any]] = []   # the Geti 3 scenario's own table
        self.skipped: list[str] = []
        self.errors: list[str] = []
        self.retries_left = 0 if self.quick else MAX_NOISE_RETRIES
        self.tls = make_tls(self.out / "tls")
        self.token, self.token_file = make_token(self.out / "secrets")
        self._datasets: dict[str, Path] = {}
        self.timeout = 120 if self.quick else 900
        self.server = server_name(args.server_decode)
        if args.working_tree:
            self.source, self.revision = None, "the working tree as it was during the run"
        else:
            self.source, self.revision = export_head(HERE.parent, self.out / "src")

    # --- datasets ------------------------------------------------------------------

    def dataset(self, name: str) -> Path:
        if name not in self._datasets:
            t = time.perf_counter()
            s = self.sizes
            if name == "small":
                path = data.small(self.data_dir, s.small)
            elif name == "tiny":
                path = data.tiny(self.data_dir, s.tiny)
            elif name == "medium":
                path = data.padded_jpegs(self.data_dir, "medium", *s.medium)
            elif name == "large":
                path = data.padded_jpegs(self.data_dir, "large", *s.large)
            elif name == "resume":
                path = data.resume_tree(self.data_dir, s.resume_rows)
            elif name == "coco":
                path = data.coco(self.data_dir, s.coco)
            else:
                raise ValueError(name)
            self._datasets[name] = path
            files, size = data.listing(path)
            print(f"# dataset {name}: {files:,} files, {size / 1e6:,.1f} MB in {path} "
                  f"(ready in {time.perf_counter() - t:.1f} s)", flush=True)
        return self._datasets[name]

    def folder_for(self, case: plan.Case, contender: str) -> Path:
        folder = self.dataset(case.dataset)
        n = case.limits.get(contender) or case.subset
        return data.subset(folder, n) if n else folder

    # --- running ---------------------------------------------------------------------

    def available(self, case: plan.Case) -> list[str]:
        out = []
        for name in case.contenders:
            why = None
            if name == "geti_sdk" and not sdk_available():
                why = "geti-sdk is not importable here (pip install geti-sdk to include it)"
            elif name == "geti_sdk" and case.transport == "http":
                continue   # the SDK rewrites http:// to https://; it runs in the HTTPS cases
            elif name == "curl" and not curl_available():
                why = "curl is not installed"
            elif name == "geti-bulk rich" and not script_available():
                why = "script(1) is not available to provide a pseudo-terminal"
            if why:
                line = f"{name}: skipped: {why}"
                if line not in self.skipped:
                    self.skipped.append(line)
                    print(f"# {line}", flush=True)
                continue
            out.append(name)
        return out

    def run_case(self, case: plan.Case) -> None:
        names = self.available(case)
        repeats = min(case.repeats or self.repeats, self.repeats)
        journal = None
        if case.dataset == "resume":
            t = time.perf_counter()
            journal = build_journal(self.dataset("resume"),
                                    self.data_dir / f"resume-{self.sizes.resume_rows}.sqlite")
            print(f"# journal {journal.name} ready in {time.perf_counter() - t:.1f} s",
                  flush=True)
        for name in names:
            data.warm(self.folder_for(case, name))
        for rep in range(repeats):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                self.records.append(self.run_measured_once(case, name, rep, journal))
                self.save()

    def run_geti3_case(self, case: plan.Case) -> None:
        folder = self.dataset(case.dataset)
        data.warm(folder)
        repeats = min(case.repeats or self.repeats, self.repeats)
        for rec in geti3.run_case(self.out, folder, repeats, self.source, self.timeout,
                                  case.contenders):
            self.geti3_records.append(rec)
            if rec["stored"] < 0:
                self.errors.append(f"geti3 {rec['contender']} #{rec['repeat']}: the server "
                                   "died")
        self.save()

    def run_measured_once(self, case: plan.Case, name: str, rep: int,
                          journal: Path | None) -> dict[str, Any]:
        """One run; redone once if other processes took more than ``NOISY`` cores
        meanwhile (the machine may be shared), keeping the quieter of the two."""
        rec = self.run_one(case, name, rep, journal)
        if _noise(rec) > NOISY and self.retries_left > 0:
            self.retries_left -= 1
            print(f"# {name}: other processes used {_noise(rec):.2f} cores during the run; "
                  "running it again", flush=True)
            again = self.run_one(case, name, rep, journal)
            rec = min(rec, again, key=_noise)
            rec["retried_for_noise"] = True
        return rec

    def run_one(self, case: plan.Case, name: str, rep: int,
                journal: Path | None) -> dict[str, Any]:
        contender = CONTENDERS[name]
        folder = self.folder_for(case, name)
        files, size = data.listing(folder)
        labelled = case.dataset == "coco"
        if labelled:   # the rate is images (media and annotations) per second
            files = len(data.coco_images(folder))
        run_dir = self.out / "runs" / _slug(case.key) / f"{_slug(name)}-{rep + 1}"
        run_dir.mkdir(parents=True, exist_ok=True)
        server = LocalServer(self.out / "server-data", self.token_file,
                             tls=self.tls if case.transport == "https" else None,
                             latency_ms=case.latency_ms, faults=case.faults,
                             max_inflight=case.max_inflight, seed=0,
                             extra_args=case.server_args,
                             decode=self.args.server_decode, source=self.source)
        server.start()
        try:
            ctx = RunContext(server=server, folder=folder, run_dir=run_dir, token=self.token,
                             tls=server.tls, files=data.files(folder), source=self.source,
                             annotations=labelled)
            if journal is not None:
                ctx.journal = fresh_copy(journal, run_dir)
            argv = contender.argv(ctx)
            env = contender.env(ctx)
            (run_dir / "argv.json").write_text(json.dumps(argv))
            busy0 = _busy_cpu_seconds()
            server.mark()
            m = run_measured(argv, env, run_dir, timeout=self.timeout, cwd=run_dir)
            busy = _busy_cpu_seconds() - busy0
            if server.alive():
                server_cpu = server.cpu_since_start()
                stats = server.stats()
                checked = self.verify(ctx, env, run_dir) if labelled else None
            else:   # recorded, reported, and the harness exits 1 at the end
                self.errors.append(f"{case.key} {name} #{rep + 1}: the server died; "
                                   f"see {run_dir / 'server.log'}")
                server_cpu = 0.0
                checked = None
                stats = {"media_total": -1, "duplicates": -1, "faults": {}, "overload_503": 0,
                         "restarts": 0,
                         "peak_inflight": 0, "uploads_received": 0}
        finally:
            server.stop(keep_log=run_dir / "server.log")
        if journal is not None:
            ctx.journal.unlink(missing_ok=True)   # 100+ MB each; the numbers are kept
        rec = {
            "case": case.key, "scenario": case.scenario, "transport": case.transport,
            "contender": name, "repeat": rep + 1, "files": files, "bytes": size,
            "wall_s": m.wall_s, "files_per_s": files / m.wall_s,
            "mb_per_s": size / 1e6 / m.wall_s, "peak_rss_mb": m.peak_rss_mb,
            "cpu_s": m.cpu_s, "server_cpu_s": server_cpu, "exit_code": m.exit_code,
            "timed_out": m.timed_out, "stored": stats["media_total"],
            "duplicates": stats["duplicates"], "faults": stats["faults"],
            "peak_inflight": stats["peak_inflight"], "uploads_received": stats["uploads_received"],
            "latency_ms": case.latency_ms, "fault_spec": case.faults,
            "max_inflight": case.max_inflight, "server_args": list(case.server_args),
            "overload_503": stats.get("overload_503", 0), "restarts": stats.get("restarts", 0),
            # CPU the machine spent on anything but this contender and the server
            # (the harness's sampler, and other people's work): interference
            "other_cpu_s": max(0.0, busy - m.cpu_s - server_cpu),
        }
        if labelled:
            notes = stats.get("annotations", {})
            rec["annotation_posts"] = notes.get("posts", 0)
            rec["scenes_stored"] = notes.get("scenes_stored", 0)
            rec["posted_with_auto_training_on"] = notes.get("posted_with_auto_training_on", 0)
            rec["verify"] = checked or {"exit_code": -1}
        if m.exit_code != 0:
            rec["stderr_tail"] = m.stderr_tail[-600:]
        print(f"[{case.key}] {name} #{rep + 1}: {files:,} files {m.wall_s:.2f} s "
              f"{rec['files_per_s']:,.0f} files/s {rec['mb_per_s']:,.1f} MB/s "
              f"rss {m.peak_rss_mb:,.0f} MB cpu {m.cpu_s:.2f} s srv-cpu {server_cpu:.2f} s "
              f"stored {rec['stored']} dups {rec['duplicates']} exit {m.exit_code}"
              + (" TIMEOUT" if m.timed_out else ""), flush=True)
        if labelled:
            v = rec["verify"]
            print(f"[{case.key}] {name} #{rep + 1}: verify {v.get('ok', 0)} ok, "
                  f"{v.get('wrong_shapes', '?')} wrong shapes, {v.get('empty_unlabelled', 0)} "
                  f"empty images without 'No object', {v.get('missing', 0)} missing, "
                  f"{v.get('duplicated', 0)} duplicated; {rec['annotation_posts']} annotation "
                  f"POSTs, {rec['posted_with_auto_training_on']} with auto-training on",
                  flush=True)
        return rec

    def verify(self, ctx: RunContext, env: dict[str, str], run_dir: Path) -> dict[str, Any]:
        """``geti-bulk verify`` after the run, its report read back into counts: every
        image stored once, and its latest annotation what geti-bulk would post (boxes
        clipped, ±1 px; "No object" for an image without boxes). An image without boxes
        that has no annotation at all is counted apart (``empty_unlabelled``: the SDK
        posts nothing for it), not as a wrong shape."""
        report_path = run_dir / "verify.jsonl"
        argv = verify_argv(ctx, report_path)
        (run_dir / "verify-argv.json").write_text(json.dumps(argv))
        with open(run_dir / "verify.log", "wb") as log:
            done = subprocess.run(argv, env=env, cwd=run_dir, stdout=log, stderr=log,
                                  stdin=subprocess.DEVNULL, timeout=self.timeout)
        boxed = {Path(k).name: v for k, v in data.coco_images(ctx.folder).items()}
        out = {"exit_code": done.returncode, "ok": 0, "missing": 0, "duplicated": 0,
               "wrong_shapes": 0, "empty_unlabelled": 0, "not_checked": 0}
        rows = report_path.read_text().splitlines() if report_path.is_file() else []
        for line in rows:
            row = json.loads(line)
            status = row.get("status")
            if status == "annotation_differs":
                absent = row.get("reason") == "no annotation on the server"
                empty = not boxed.get(Path(row["path"]).name, True)
                out["empty_unlabelled" if absent and empty else "wrong_shapes"] += 1
            elif status in out:
                out[status] += 1
        if not rows:
            out["wrong_shapes"] = -1   # verify wrote nothing: counted as a failure
        return out

    # --- output ------------------------------------------------------------------------

    def save(self) -> None:
        doc = {"command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "machine": machine(),
               "server": self.server, "geti_bulk": self.revision, "quick": self.quick, "repeats": self.repeats,
               "sizes": self.sizes.__dict__, "skipped": self.skipped, "runs": self.records,
               "geti3_runs": self.geti3_records}
        (self.out / "results.json").write_text(json.dumps(doc, indent=1))

    def finish(self, cases: list[plan.Case], elapsed: float) -> str:
        refs = {c.key: c.reference for c in cases}
        bytes_metric = {c.key: c.bytes_metric for c in cases}
        m = machine()
        head = [
            "# geti-bulk benchmark results", "",
            f"- command: `{' '.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}`",
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}; total {elapsed / 60:.1f} min",
            f"- machine: {m['nproc']} CPUs, {m['cpu']}; Python {m['python']}, "
            f"aiohttp {m['aiohttp']}",
            f"- geti-bulk: {self.revision}",
            f"- server: {self.server}, fresh process per run, same host",
            f"- medians of up to {self.repeats} runs (the runs column); "
            "the last column is the reference's rate ÷ this row's rate (files/s, or MB/s "
            "for medium/large): above 1× the reference is faster",
        ]
        head += [f"- {line}" for line in self.skipped]
        head += [f"- **ERROR** {line}" for line in self.errors]
        table = report.markdown(self.records, refs, bytes_metric)
        table += ("\n" + geti3.markdown(self.geti3_records)) if self.geti3_records else ""
        text = "\n".join(head) + "\n\n" + table
        (self.out / "results.md").write_text(text)
        if self.records:
            report.chart(self.records, refs, bytes_metric, self.out / "results.png",
                         f"geti-bulk benchmarks ({m['nproc']} CPUs, {m['cpu']}); "
                         f"server: {self.server.split(' (')[0]}")
        return text


def _noise(rec: dict[str, Any]) -> float:
    return float(rec.get("other_cpu_s", 0.0)) / max(float(rec["wall_s"]), 1e-9)


def _busy_cpu_seconds() -> float:
    import psutil

    # user + system only: irq/softirq time is mostly the kernel moving this run's own
    # loopback traffic, which no process is charged for
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    bench = Bench(args)
    scenarios = list(args.scenarios)
    if bench.quick and scenarios == list(plan.SCENARIOS):
        # about 1.5 min on its own (five runs against a server that waits on every
        # write): a quick run of everything leaves it out unless it is named
        scenarios.remove("geti3")
        print("# geti3: left out of --quick (name it with --scenarios geti3)", flush=True)
    cases = plan.cases(scenarios, bench.sizes, bench.quick)
    m = machine()
    print(f"# geti-bulk benchmarks ({'quick' if bench.quick else 'full'}): {m['nproc']} CPUs, "
          f"{m['cpu']}; out {bench.out}", flush=True)
    print(f"# server: {bench.server}", flush=True)
    for case in cases:
        if case.scenario == "geti3":
            bench.run_geti3_case(case)
        else:
            bench.run_case(case)
    text = bench.finish(cases, time.perf_counter() - start)
    print()
    print(text)
    print(f"# raw results: {bench.out / 'results.json'}; chart: {bench.out / 'results.png'}")
    print(f"# total {time.perf_counter() - start:.0f} s")
    for error in bench.errors:
        print(f"# ERROR: {error}", file=sys.stderr)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
