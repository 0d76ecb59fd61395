"""Medians, ratios, the Markdown table and the chart."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def group(records: list[Record]) -> dict[str, dict[str, list[Record]]]:
    """case key → contender → runs, in first-seen order."""
    out: dict[str, dict[str, list[Record]]] = defaultdict(dict)
    for r in records:
        out[r["case"]].setdefault(r["contender"], []).append(r)
    return out


def _median(runs: list[Record], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summarize(runs: list[Record]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "files": runs[0]["files"],
        "mb": runs[0]["bytes"] / 1e6,
        "wall_s": _median(runs, "wall_s"),
        "files_per_s": _median(runs, "files_per_s"),
        "mb_per_s": _median(runs, "mb_per_s"),
        "peak_rss_mb": _median(runs, "peak_rss_mb"),
        "cpu_s": _median(runs, "cpu_s"),
        "server_cpu_s": _median(runs, "server_cpu_s"),
        "stored": _span(r["stored"] for r in runs),
        "duplicates": _span(r["duplicates"] for r in runs),
        "exit": "/".join(sorted({str(r["exit_code"]) for r in runs})),
        "server_503": _span(r.get("overload_503", r["faults"].get("overload", 0))
                            for r in runs),
        "restarts": _span(r.get("restarts", 0) for r in runs),
        # labelled datasets: geti-bulk verify after every run, and the annotation POSTs
        "wrong_shapes": _span(r.get("verify", {}).get("wrong_shapes", 0) for r in runs),
        "empty_unlabelled": _span(r.get("verify", {}).get("empty_unlabelled", 0)
                                  for r in runs),
        "verify_ok": _span(r.get("verify", {}).get("ok", 0) for r in runs),
        "annotation_posts": _span(r.get("annotation_posts", 0) for r in runs),
        "auto_train_on": _span(r.get("posted_with_auto_training_on", 0) for r in runs),
    }


def _span(values: Any) -> str:
    vals = sorted(values)
    return str(vals[0]) if vals[0] == vals[-1] else f"{vals[0]}–{vals[-1]}"


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def markdown(records: list[Record], reference_of: dict[str, str],
             bytes_metric: dict[str, bool]) -> str:
    lines: list[str] = []
    for case, by_contender in group(records).items():
        ref_name = reference_of.get(case, "geti-bulk")
        ref = summarize(by_contender[ref_name]) if ref_name in by_contender else None
        rate = "mb_per_s" if bytes_metric.get(case) else "files_per_s"
        overload = any(r.get("max_inflight") for runs in by_contender.values() for r in runs)
        labelled = any("verify" in r for runs in by_contender.values() for r in runs)
        lines += [f"### {case}", ""]
        head = ["contender", "files", "runs", "wall s", "files/s", "MB/s", "peak RSS MB",
                "CPU s", "server CPU s", "stored", "dups", "exit"]
        if overload:
            head += ["server 503s", "OOM restarts"]
        if labelled:
            head += ["verify ok", "wrong shapes", "empty, no label", "annotation POSTs",
                     "POSTs with auto-training on"]
        head.append(f"{ref_name} ×")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name, runs in by_contender.items():
            s = summarize(runs)
            ratio = "—"
            if ref is not None and name != ref_name and s[rate] > 0:
                ratio = f"{ref[rate] / s[rate]:.2f}×"
            row = [f"**{name}**" if name == ref_name else name, f"{s['files']:,}",
                   str(s["runs"]), _num(s["wall_s"]), _num(s["files_per_s"]),
                   _num(s["mb_per_s"]), _num(s["peak_rss_mb"]), _num(s["cpu_s"]),
                   _num(s["server_cpu_s"]), s["stored"], s["duplicates"], s["exit"]]
            if overload:
                row += [s["server_503"], s["restarts"]]
            if labelled:
                row += [s["verify_ok"], s["wrong_shapes"], s["empty_unlabelled"],
                        s["annotation_posts"], s["auto_train_on"]]
            row.append(ratio)
            lines.append("| " + " | ".join(row) + " |")
        lines += [""]
        lines += _notes(case, by_contender)
    return "\n".join(lines)


def _notes(case: str, by_contender: dict[str, list[Record]]) -> list[str]:
    """Per-file overheads for the A/B scenarios."""
    pairs = [("geti-bulk", "geti-bulk no-journal", "the journal"),
             ("geti-bulk rich", "geti-bulk", "the rich display")]
    out = []
    for with_, without, what in pairs:
        if with_ in by_contender and without in by_contender:
            a, b = summarize(by_contender[with_]), summarize(by_contender[without])
            n = a["files"]
            out.append(f"Cost of {what}: {(a['wall_s'] - b['wall_s']) / n * 1e3:+.3f} ms wall "
                       f"and {(a['cpu_s'] - b['cpu_s']) / n * 1e3:+.3f} ms CPU per file "
                       f"(medians, {n:,} files).")
    other = [r["other_cpu_s"] for runs in by_contender.values() for r in runs
             if "other_cpu_s" in r]
    wall = [r["wall_s"] for runs in by_contender.values() for r in runs if "other_cpu_s" in r]
    if other and sum(wall) > 0 and sum(other) / sum(wall) > 0.1:
        out.append(f"Interference: other processes used {sum(other) / sum(wall):.2f} CPU "
                   f"cores on average during these runs (max {max(other):.1f} CPU s in one run).")
    if any("verify" in r for runs in by_contender.values() for r in runs):
        out.append("Files are images, each sent with its boxes: the rate counts media and "
                   "annotations together. After every run `geti-bulk verify` checks each "
                   "image stored once and its latest annotation equal, within 1 px, to what "
                   "geti-bulk would post (boxes clipped to the image; \"No object\" for an "
                   "image without boxes): `wrong shapes` are images whose stored annotation "
                   "differs or is missing although the image has boxes; `empty, no label` "
                   "are images without boxes left with no annotation at all.")
    if "geti-bulk resume" in by_contender:
        s = summarize(by_contender["geti-bulk resume"])
        out.append(f"Resume with nothing to do: {s['wall_s']:.1f} s wall, {s['cpu_s']:.1f} s CPU, "
                   f"{s['peak_rss_mb']:.0f} MB peak RSS for {s['files']:,} files "
                   f"({s['wall_s'] / s['files'] * 1e6:.0f} µs per file).")
    return [*out, ""] if out else []


def chart(records: list[Record], reference_of: dict[str, str],
          bytes_metric: dict[str, bool], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group(records)
    n = len(groups)
    cols = 3 if n > 4 else max(1, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 2.9 * rows), squeeze=False)
    for ax, (case, by_contender) in zip(axes.flat, groups.items(), strict=False):
        rate = "mb_per_s" if bytes_metric.get(case) else "files_per_s"
        names = list(by_contender)
        values = [summarize(by_contender[c])[rate] for c in names]
        ref = reference_of.get(case, "geti-bulk")
        colors = ["#1f6feb" if c.startswith("geti-bulk") else "#8b949e" for c in names]
        colors = ["#d1242f" if c == ref else col for c, col in zip(names, colors, strict=True)]
        ax.barh(names, values, color=colors)
        ax.invert_yaxis()
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("MB/s" if rate == "mb_per_s" else "files/s", fontsize=8)
        ax.tick_params(labelsize=7)
        for y, (c, v) in enumerate(zip(names, values, strict=True)):
            s = summarize(by_contender[c])
            short = s["stored"] != str(s["files"]) and c != "geti-bulk resume"
            extra = f"  stored {s['stored']}/{s['files']:,}, dups {s['duplicates']}" if short else ""
            ax.text(v, y, f" {_num(v)}{extra}", va="center", fontsize=7)
        ax.margins(x=0.18)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
