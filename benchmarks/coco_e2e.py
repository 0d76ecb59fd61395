"""COCO end to end: what a user sees importing a 1,000,000-image detection file with the CLI.

    python benchmarks/coco_e2e.py [--images N] [--seconds S] [--boxes-per-image K]
                                  [--distinct D] [--keep DIR] [--signal-to {group,pid}]
                                  [--json-only]

Generates (in a temp dir under /tmp, removed afterwards unless --keep) a COCO detection
dataset: `annotations/instances_train.json` with N images x K boxes, `categories`
(car, truck) LAST as in the official files, and `images/train/<id>.jpg` for every image.
The N files are hard links to D small real JPEGs (64x48, `sampledata.image_bytes`), so
every listed path exists without writing N images (ext4 allows 65,000 links per inode:
keep N / D below that).

Then it starts `geti-bulk serve --port 0 --discard --no-decode` as its own process, runs
`geti-bulk upload DATASET --host URL --project "Vehicle detection" --journal J
--progress json` (token in GETI_TOKEN) for S seconds, sends SIGINT (to the process group
by default, as Ctrl-C at a terminal does; `--signal-to pid` for the main process alone),
waits for the exit code, checks the journal, runs `geti-bulk status J`, and prints a
markdown summary followed by one JSON object.

Measured: seconds from spawn to the first `file_started` / `bytes_sent` event, and to
the other milestones of the event stream; peak RSS (VmHWM, sampled from /proc every
100 ms) of the uploader, of each of its child processes (the COCO indexer) and the peak
of their summed VmRSS, and of the server; an RSS timeline (is it flat?); `file_done`
events in the window, media stored but with the annotation deferred (journal state
`media`), and what the server holds (`/_admin/stats`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.measure import _tree  # noqa: E402  (the harness's cheap /proc tree walk)

PROJECT = "Vehicle detection"
CATEGORIES = [{"id": 1, "name": "car", "supercategory": "vehicle"},
              {"id": 2, "name": "truck", "supercategory": "vehicle"}]
W, H = 64, 48
STEP = 10_000


def exe() -> str:
    near = Path(sys.executable).parent / "geti-bulk"
    return str(near) if near.exists() else (shutil.which("geti-bulk") or "geti-bulk")


# --- the dataset ---------------------------------------------------------------------------

def _images(start: int, stop: int) -> str:
    return ",".join(
        f'{{"id": {i}, "file_name": "{i:012d}.jpg", "width": {W}, "height": {H}, '
        f'"license": 1, "date_captured": "2013-11-14 17:02:52"}}'
        for i in range(start, stop))


def _annotations(first_id: int, start: int, stop: int, k: int, rng: random.Random) -> str:
    parts = []
    ann_id = first_id
    for img in range(start, stop):
        for _ in range(k):
            w, h = rng.uniform(2, 20), rng.uniform(2, 16)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            parts.append(
                f'{{"id": {ann_id}, "image_id": {img}, "category_id": {rng.randint(1, 2)}, '
                f'"segmentation": [], "area": {w * h:.2f}, '
                f'"bbox": [{x:.2f}, {y:.2f}, {w:.2f}, {h:.2f}], "iscrowd": 0}}')
            ann_id += 1
    return ",".join(parts)


def write_coco(path: Path, n: int, k: int) -> int:
    rng = random.Random(7)
    with path.open("w") as f:
        f.write('{"info": {"description": "synthetic", "year": 2017}, '
                '"licenses": [{"id": 1, "name": "x", "url": ""}], "images": [')
        for start in range(1, n + 1, STEP):
            f.write(("," if start > 1 else "") + _images(start, min(start + STEP, n + 1)))
        f.write('], "annotations": [')
        ann_id = 1
        for start in range(1, n + 1, STEP):
            stop = min(start + STEP, n + 1)
            f.write(("," if start > 1 else "") + _annotations(ann_id, start, stop, k, rng))
            ann_id += (stop - start) * k
        f.write(f'], "categories": {json.dumps(CATEGORIES)}}}')
    return path.stat().st_size


def generate(root: Path, n: int, k: int, distinct: int) -> dict[str, Any]:
    from geti_bulk.sampledata import image_bytes

    if n / distinct > 60_000:
        raise SystemExit(f"--distinct {distinct}: {n / distinct:.0f} links per file is over "
                         "ext4's 65,000; raise --distinct")
    t0 = time.perf_counter()
    src = root / "src"
    src.mkdir(parents=True)
    sources = []
    for i in range(distinct):
        p = src / f"{i:05d}.jpg"
        p.write_bytes(image_bytes(W, H, seed=i))
        sources.append(str(p))
    t_jpeg = time.perf_counter() - t0
    images = root / "dataset" / "images" / "train"
    images.mkdir(parents=True)
    t1 = time.perf_counter()
    for i in range(1, n + 1):
        os.link(sources[i % distinct], images / f"{i:012d}.jpg")
    t_links = time.perf_counter() - t1
    ann = root / "dataset" / "annotations" / "instances_train.json"
    ann.parent.mkdir(parents=True)
    t2 = time.perf_counter()
    size = write_coco(ann, n, k)
    t_json = time.perf_counter() - t2
    info = {"images": n, "boxes": n * k, "distinct_jpegs": distinct,
            "jpeg_bytes_mean": round(sum(os.path.getsize(s) for s in sources) / distinct),
            "coco_bytes": size, "coco_gib": round(size / 2**30, 3),
            "jpegs_s": round(t_jpeg, 1), "links_s": round(t_links, 1),
            "json_s": round(t_json, 1), "generation_s": round(time.perf_counter() - t0, 1)}
    (root / "generated.json").write_text(json.dumps(info))
    return info


# --- /proc sampling ------------------------------------------------------------------------

def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"VmRSS:", b"VmHWM:")):
                    out[line[:5].decode()] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Every `interval` s: VmRSS and VmHWM of the uploader's tree and of the server."""

    def __init__(self, uploader: int, server: int, t0: float, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.uploader, self.server, self.t0, self.interval = uploader, server, t0, interval
        self.peak_hwm: dict[int, int] = {}         # pid -> KiB
        self.names: dict[int, str] = {}
        self.tree_rss_peak = 0                      # KiB, summed over the tree at one sample
        self.server_hwm = 0
        self.timeline: list[tuple[float, int, int, int]] = []  # t, main, children, server RSS
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        main = children = 0
        for pid in _tree(self.uploader):
            st = _status(pid)
            if not st:
                continue
            if pid not in self.names:
                self.names[pid] = _cmdline(pid)
            self.peak_hwm[pid] = max(self.peak_hwm.get(pid, 0), st.get("VmHWM", 0))
            if pid == self.uploader:
                main = st.get("VmRSS", 0)
            else:
                children += st.get("VmRSS", 0)
        srv = _status(self.server)
        self.server_hwm = max(self.server_hwm, srv.get("VmHWM", 0))
        self.tree_rss_peak = max(self.tree_rss_peak, main + children)
        self.timeline.append((time.time() - self.t0, main, children, srv.get("VmRSS", 0)))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _slope_mib_per_min(points: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS (KiB) over time (s), as MiB per minute."""
    if len(points) < 10:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return None
    return round(sum((t - mt) * (v - mv) for t, v in points) / den * 60 / 1024, 2)


# --- the event stream ----------------------------------------------------------------------

def read_events(path: Path, t0: float) -> dict[str, Any]:
    firsts: dict[str, float] = {}
    counts: dict[str, int] = {}
    done_shapes = done_adopted = 0
    done_ts: list[float] = []
    failures: list[str] = []
    notices: list[str] = []
    finished: dict[str, Any] | None = None
    stopping: dict[str, Any] | None = None
    scan: dict[str, Any] | None = None
    bad_lines = 0
    with path.open("rb") as fh:
        for raw in fh:
            try:
                e = json.loads(raw)
            except ValueError:
                bad_lines += 1
                continue
            kind = e.get("event", "?")
            counts[kind] = counts.get(kind, 0) + 1
            ts = float(e.get("ts", 0.0))
            firsts.setdefault(kind, ts)
            if kind == "file_done":
                done_ts.append(ts)
                done_shapes += e.get("shapes", 0) > 0
                done_adopted += bool(e.get("adopted"))
            elif kind == "file_failed" and len(failures) < 10:
                failures.append(f"{e.get('path')}: {e.get('reason')}")
            elif kind == "notice":
                notices.append(e.get("text", ""))
            elif kind == "run_finished":
                finished = e
            elif kind == "run_stopping":
                stopping = e
            elif kind == "scan_done":
                scan = e
    per_10s: dict[int, int] = {}
    for ts in done_ts:
        b = int((ts - t0) // 10) * 10
        per_10s[b] = per_10s.get(b, 0) + 1
    return {
        "counts": counts, "bad_lines": bad_lines,
        "first_s": {k: round(v - t0, 3) for k, v in firsts.items()},
        "file_done": len(done_ts), "file_done_with_shapes": done_shapes,
        "file_done_adopted": done_adopted,
        "file_done_per_10s": dict(sorted(per_10s.items())),
        "failures": failures, "notices": notices, "scan_done": scan,
        "run_stopping": stopping, "run_finished": finished,
    }


# --- the journal ---------------------------------------------------------------------------

def check_journal(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        q = conn.execute
        states = dict(q("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        out = {
            "states": states,
            "integrity": q("PRAGMA integrity_check").fetchone()[0],
            "sending_rows": states.get("sending", 0),
            "stored_without_media_id": q(
                "SELECT COUNT(*) FROM files WHERE state IN ('uploaded','media') "
                "AND (media_id IS NULL OR media_id = '')").fetchone()[0],
            "duplicate_media_ids": q(
                "SELECT COUNT(*) FROM (SELECT media_id FROM files WHERE media_id IS NOT NULL "
                "GROUP BY media_id HAVING COUNT(*) > 1)").fetchone()[0],
            "rows_with_media_id": q(
                "SELECT COUNT(*) FROM files WHERE media_id IS NOT NULL").fetchone()[0],
            "media_rows_without_dims": q(
                "SELECT COUNT(*) FROM files WHERE state='media' AND (width IS NULL OR "
                "height IS NULL)").fetchone()[0],
            "uncertain_rows": q("SELECT COUNT(*) FROM files WHERE uncertain != 0").fetchone()[0],
        }
    finally:
        conn.close()
    return out


def parse_status(text: str) -> dict[str, int]:
    m = re.search(r"(\d+) files: (\d+) uploaded, (\d+) skipped, (\d+) failed, (\d+) sending", text)
    if not m:
        return {}
    keys = ("files", "uploaded", "skipped", "failed", "sending")
    return dict(zip(keys, map(int, m.groups()), strict=True))


# --- the run -------------------------------------------------------------------------------

def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "GETI_TOKEN"}
    with open(data_dir.parent / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [exe(), "serve", "--data-dir", str(data_dir), "--port", "0", "--discard",
             "--no-decode"], stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError("the server did not start: "
                           + (data_dir.parent / "server.log").read_text(errors="replace")[-2000:])
    return proc, json.loads(line)


def server_stats(info: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(info["base_url"] + "/_admin/stats",
                                 headers={"x-admin-token": info["admin_token"]})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    data.pop("duplicate_groups", None)
    return data


def _tracebacks(path: Path) -> list[str]:
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    out = []
    for m in re.finditer(r"Traceback \(most recent call last\):", text):
        out.append(text[m.start():m.start() + 1500])
    return out


def run(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    gen_file = base / "generated.json"
    if gen_file.is_file() and json.loads(gen_file.read_text()).get("images") == args.images:
        gen = json.loads(gen_file.read_text())
        gen["reused"] = True
    else:
        for sub in ("src", "dataset", "generated.json"):
            p = base / sub
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        print(f"generating {args.images:,} images x {args.boxes_per_image} boxes in {base} ...",
              file=sys.stderr, flush=True)
        gen = generate(base, args.images, args.boxes_per_image, args.distinct)
    print(f"dataset: {json.dumps(gen)}", file=sys.stderr, flush=True)

    run_dir = base / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    server, info = start_server(run_dir / "server-data")
    token = Path(info["token_file"]).read_text().strip()
    journal = run_dir / "state" / "journal.sqlite"
    journal.parent.mkdir()
    dataset = base / "dataset"
    argv = [exe(), "upload", str(dataset), "--host", info["base_url"], "--project", PROJECT,
            "--journal", str(journal), "--progress", "json"]
    env = dict(os.environ, GETI_TOKEN=token, XDG_STATE_HOME=str(run_dir / "xdg"))
    events_path, stderr_path = run_dir / "events.jsonl", run_dir / "stderr.txt"
    result: dict[str, Any] = {
        "command": "GETI_TOKEN=... " + " ".join(
            a if re.fullmatch(r"[\w./:=-]+", a) else json.dumps(a) for a in argv),
        "dataset": gen,
    }
    try:
        with open(events_path, "wb") as out, open(stderr_path, "wb") as err:
            t0 = time.time()
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            sampler = Sampler(proc.pid, server.pid, t0)
            sampler.start()
            deadline = t0 + args.seconds
            while time.time() < deadline and proc.poll() is None:
                time.sleep(0.1)
            exited_early = proc.poll() is not None
            t_sig = time.time()
            if not exited_early:
                if args.signal_to == "group":
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    proc.send_signal(signal.SIGINT)
            killed = False
            try:
                code = proc.wait(args.stop_timeout)
            except subprocess.TimeoutExpired:
                killed = True
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            t_exit = time.time()
            sampler.stop()
        # the indexer may outlive the main process: give it a moment, then report it
        leftovers = []
        for pid, name in sampler.names.items():
            if pid != proc.pid and os.path.exists(f"/proc/{pid}") and "coco_index" in name:
                leftovers.append(pid)

        ev = read_events(events_path, t0)
        first = ev["first_s"]
        result["time_to_first_upload_s"] = first.get("file_started")
        result["time_to_first_byte_event_s"] = first.get("bytes_sent")
        result["milestones_s"] = {k: first.get(k) for k in
                                  ("run_started", "notice", "file_queued", "scan_done",
                                   "file_started", "bytes_sent", "file_done",
                                   "run_stopping", "run_finished") if k in first}
        result["exit"] = {"code": code, "exited_before_signal": exited_early,
                          "signal_at_s": round(t_sig - t0, 1),
                          "seconds_from_sigint_to_exit": round(t_exit - t_sig, 2),
                          "sigkilled_after_timeout": killed,
                          "indexer_still_running_after_exit": leftovers}
        result["events"] = {k: ev[k] for k in ("counts", "bad_lines", "file_done",
                                               "file_done_with_shapes", "file_done_adopted",
                                               "file_done_per_10s", "failures", "notices",
                                               "scan_done", "run_stopping", "run_finished")}

        tl = sampler.timeline
        children = {pid: hwm for pid, hwm in sampler.peak_hwm.items() if pid != proc.pid}
        main_pts = [(t, m) for t, m, _, _ in tl if m]
        srv_pts = [(t, s) for t, _, _, s in tl if s]
        third = args.seconds / 3
        result["rss"] = {
            "uploader_peak_mib": _mib(sampler.peak_hwm.get(proc.pid, 0)),
            "children_peak_mib": {f"{pid} {sampler.names.get(pid, '')[:80]}": _mib(h)
                                  for pid, h in children.items()},
            "uploader_tree_peak_sum_mib": _mib(sampler.tree_rss_peak),
            "uploader_plus_children_hwm_mib": _mib(sum(sampler.peak_hwm.values())),
            "server_peak_mib": _mib(sampler.server_hwm),
            "samples": len(tl),
            "uploader_slope_mib_per_min_after_first_third":
                _slope_mib_per_min([p for p in main_pts if p[0] >= third]),
            "server_slope_mib_per_min_after_first_third":
                _slope_mib_per_min([p for p in srv_pts if p[0] >= third]),
            "timeline_every_10s": _timeline(tl, 10.0),
        }
        result["journal"] = check_journal(journal) if journal.is_file() else None
        st = subprocess.run([exe(), "status", str(journal)], capture_output=True, text=True,
                            env=env, timeout=300)
        counts = parse_status(st.stdout)
        result["status"] = {"exit_code": st.returncode, "counts": counts,
                            "text": (st.stdout + st.stderr).strip()[:3000]}
        if counts:   # rows the one-line summary does not name (e.g. state `media`)
            result["status"]["files_not_in_listed_states"] = counts["files"] - sum(
                v for k, v in counts.items() if k != "files")
        media = result["events"]["counts"].get("file_started", 0)
        result["media_uploads_per_s"] = round(media / max(t_sig - t0, 1e-9), 1)
        try:
            result["server"] = server_stats(info)
        except OSError as e:
            result["server"] = {"error": str(e)}
        index_dir = journal.parent / "geti-bulk-index"
        index_logs = list(index_dir.glob("*.sqlite.log"))
        result["index"] = _index_info(index_dir)
        result["tracebacks"] = {
            "uploader_stderr": _tracebacks(stderr_path),
            "indexer_log": [t for p in index_logs for t in _tracebacks(p)],
            "server_log": _tracebacks(run_dir / "server.log"),
        }
        result["uploader_stderr_tail"] = stderr_path.read_text(errors="replace")[-1500:]
        result["events_file_mib"] = round(events_path.stat().st_size / 2**20, 1)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if server.stdout is not None:
            server.stdout.close()
    return result


def _index_info(folder: Path) -> dict[str, Any]:
    """Size, state and phase timings of the COCO index the run left in the journal's folder."""
    dbs = sorted(folder.glob("coco-index-*.sqlite"))
    out: dict[str, Any] = {
        "folder": str(folder),
        "mib": round(sum(p.stat().st_size for p in folder.glob("coco-index-*")) / 2**20, 1)
        if folder.is_dir() else 0.0}
    if dbs:
        try:
            conn = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            finally:
                conn.close()
            out["state"] = meta.get("state")
            if "timings" in meta:
                out["timings_s"] = json.loads(meta["timings"])
        except sqlite3.Error as e:
            out["error"] = str(e)
    return out


def _timeline(tl: list[tuple[float, int, int, int]], every: float) -> list[dict[str, float]]:
    out, next_t = [], 0.0
    for t, main, children, srv in tl:
        if t >= next_t:
            out.append({"t": round(t, 1), "uploader_mib": _mib(main),
                        "children_mib": _mib(children), "server_mib": _mib(srv)})
            next_t += every
    if tl:
        t, main, children, srv = tl[-1]
        out.append({"t": round(t, 1), "uploader_mib": _mib(main),
                    "children_mib": _mib(children), "server_mib": _mib(srv)})
    return out


def markdown(r: dict[str, Any]) -> str:
    g, rss, ex, ev = r["dataset"], r["rss"], r["exit"], r["events"]
    j, st = r.get("journal") or {}, r["status"]
    srv = r.get("server", {})
    lines = [
        "## COCO end to end",
        "",
        f"`{r['command']}`",
        "",
        "| | |", "|---|---|",
        f"| dataset | {g['images']:,} images x {g['boxes'] // max(g['images'], 1)} boxes, "
        f"{g['coco_gib']} GiB JSON, {g['distinct_jpegs']} distinct {W}x{H} JPEGs (hard links) |",
        f"| generation | {g['generation_s']} s (JPEGs {g['jpegs_s']} s, links {g['links_s']} s, "
        f"JSON {g['json_s']} s){' (reused)' if g.get('reused') else ''} |",
        f"| time to first `file_started` | {r['time_to_first_upload_s']} s |",
        f"| time to first `bytes_sent` | {r['time_to_first_byte_event_s']} s |",
        f"| peak RSS uploader | {rss['uploader_peak_mib']} MiB |",
        f"| peak RSS children | {rss['children_peak_mib']} |",
        f"| peak summed RSS uploader tree | {rss['uploader_tree_peak_sum_mib']} MiB |",
        f"| peak RSS server | {rss['server_peak_mib']} MiB |",
        f"| RSS slope after first third | uploader "
        f"{rss['uploader_slope_mib_per_min_after_first_third']} MiB/min, server "
        f"{rss['server_slope_mib_per_min_after_first_third']} MiB/min |",
        f"| `file_done` in window | {ev['file_done']:,} ({ev['file_done_with_shapes']:,} with shapes) |",
        f"| media stored, annotation deferred (journal `media`) | "
        f"{j.get('states', {}).get('media', 0):,} |",
        f"| server media / scenes | {srv.get('media_total')} / "
        f"{(srv.get('annotations') or {}).get('scenes_stored')} |",
        f"| exit code after SIGINT | {ex['code']} ({ex['seconds_from_sigint_to_exit']} s to exit) |",
        f"| journal | {j.get('states')}, integrity {j.get('integrity')}, "
        f"sending {j.get('sending_rows')}, duplicate media ids {j.get('duplicate_media_ids')} |",
        f"| `geti-bulk status` | {st['counts'] or st['text'][:200]}; rows in no listed state: "
        f"{st.get('files_not_in_listed_states')} |",
        f"| media uploads/s | {r.get('media_uploads_per_s')} |",
        f"| COCO index | {r.get('index', {}).get('state')}, {r.get('index', {}).get('mib')} MiB, "
        f"phases {r.get('index', {}).get('timings_s')} |",
        "| tracebacks | " + ", ".join(f"{k}: {len(v)}" for k, v in r["tracebacks"].items()) + " |",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--boxes-per-image", type=int, default=7)
    ap.add_argument("--distinct", type=int, default=1000, help="distinct JPEGs behind the links")
    ap.add_argument("--keep", type=Path, help="generate here and keep it (reused if present)")
    ap.add_argument("--signal-to", choices=("group", "pid"), default="group",
                    help="SIGINT the process group (like Ctrl-C; default) or the main pid")
    ap.add_argument("--stop-timeout", type=float, default=180.0,
                    help="seconds to wait for the exit after SIGINT before SIGKILL")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="coco-e2e-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        result = run(base, args)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if not args.json_only:
        print(markdown(result))
        print()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
