"""What gets measured: scenarios (as named on the command line) expand into cases, one
per transport / server setting, each with its dataset, contenders and repeats."""

from __future__ import annotations

from dataclasses import dataclass, field

SCENARIOS = ("small", "medium", "large", "tiny", "faults", "journal", "display", "overload",
             "annotations", "geti3")
FAULT_SPEC = "503=0.05,reset=0.02,stored500=0.02"

OVERLOAD_SERVER = ("--overload", "oom", "--restart-ms", "2000", "--workers", "2",
                   "--service-ms", "20")

OVERLOAD_REFUSE = ("--overload", "refuse", "--workers", "2", "--service-ms", "20")

SEQUENTIAL = ("tutorial_requests", "tutorial_toolbelt")
REQUESTS_FAMILY = (*SEQUENTIAL, "sdk_like_threads", "geti_sdk")


@dataclass(frozen=True)
class Sizes:
    """Dataset sizes and budgets for one mode (full or quick)."""

    small: int
    medium: tuple[int, int]        # (files, bytes each)
    large: tuple[int, int]
    tiny: int
    resume_rows: int
    slow_subset: int               # files for sequential clients where they take minutes
    latency_subset: int            # files for every client in the 50 ms latency cases
    overload_subset: int
    coco: int = 1000               # images of the pre-labelled COCO detection dataset


FULL = Sizes(small=2000, medium=(20, 50 * 1000**2), large=(2, 1 << 30), tiny=10_000,
             resume_rows=1_000_000, slow_subset=200, latency_subset=500,
             overload_subset=1000, coco=1000)
QUICK = Sizes(small=60, medium=(2, 8 * 1000**2), large=(1, 48 << 20), tiny=400,
              resume_rows=5000, slow_subset=30, latency_subset=40, overload_subset=60,
              coco=100)


@dataclass(frozen=True)
class Case:
    scenario: str
    name: str                      # shown in the table, e.g. "small, 50 ms latency"
    transport: str                 # "http" | "https"
    dataset: str                   # "small" | "medium" | "large" | "tiny" | "resume" | "coco"
    contenders: tuple[str, ...]
    limits: dict[str, int] = field(default_factory=dict)   # contender → first N files
    subset: int = 0                # every contender gets the first N files
    latency_ms: int = 0
    faults: str = ""
    max_inflight: int = 0
    server_args: tuple[str, ...] = ()   # more `geti-bulk serve` flags (the overload model)
    repeats: int | None = None     # None: --repeats
    reference: str = "geti-bulk"   # ratios are this contender vs each other one
    bytes_metric: bool = False     # MB/s matters more than files/s

    @property
    def key(self) -> str:
        return f"{self.name} [{self.transport}]"


def cases(scenarios: list[str], sizes: Sizes, quick: bool) -> list[Case]:
    out: list[Case] = []
    sweep = () if quick else ("geti-bulk c=1", "geti-bulk c=4", "geti-bulk c=16")
    for scenario in scenarios:
        out += _expand(scenario, sizes, quick, sweep)
    return out


def _expand(scenario: str, s: Sizes, quick: bool, sweep: tuple[str, ...]) -> list[Case]:
    base = ("tutorial_requests", "tutorial_toolbelt", "sdk_like_threads", "geti_sdk",
            "bare_aiohttp", "geti-bulk")
    if scenario == "small":
        slow = {c: s.slow_subset for c in SEQUENTIAL}
        return [
            Case("small", "small, 0 ms", "http", "small", (*base, *sweep)),
            Case("small", "small, 0 ms", "https", "small", base, limits=slow, repeats=2),
            Case("small", "small, 50 ms latency", "http", "small", (*base, *sweep),
                 subset=s.latency_subset, latency_ms=50,
                 limits={**slow, "geti-bulk c=1": s.slow_subset}, repeats=1),
            Case("small", "small, 50 ms latency", "https", "small", base,
                 subset=s.latency_subset, latency_ms=50, limits=slow, repeats=1),
        ]
    if scenario in ("medium", "large"):
        contenders = (*base, "curl")
        if scenario == "large":   # the sweep that matters for big files is 1 vs many streams
            contenders += ("geti-bulk c=1",)
        return [Case(scenario, scenario, "http", scenario, contenders, bytes_metric=True,
                     repeats=1 if scenario == "large" else 2),
                # over TLS the sequential requests clients tell nothing new about big files
                Case(scenario, scenario, "https", scenario,
                     contenders if scenario == "medium" else tuple(
                         c for c in contenders if c not in ("tutorial_requests",
                                                            "sdk_like_threads")),
                     bytes_metric=True, repeats=1 if scenario == "large" else 2)]
    if scenario == "tiny":
        return [Case("tiny", "tiny", "http", "tiny",
                     ("sdk_like_threads", "bare_aiohttp", "geti-bulk"), repeats=1)]
    if scenario == "faults":
        return [Case("faults", "faults " + FAULT_SPEC, "http", "small",
                     ("tutorial_requests", "tutorial_toolbelt", "sdk_like_threads",
                      "bare_aiohttp", "geti-bulk"), faults=FAULT_SPEC, repeats=1)]
    if scenario == "journal":
        return [Case("journal", "journal on/off", "http", "small",
                     ("geti-bulk", "geti-bulk no-journal")),
                Case("journal", f"resume, {s.resume_rows:,}-row journal", "http", "resume",
                     ("geti-bulk resume",), repeats=1, reference="geti-bulk resume")]
    if scenario == "display":
        return [Case("display", "display rich/none", "http", "small",
                     ("geti-bulk", "geti-bulk rich"))]
    if scenario == "overload":
        # a small upload service: 2 workers of 20 ms each, room for 6 uploads, OOM-killed
        # (2 s down) by a 7th; 20 ms away. It peaks at 100 files/s from 4 in flight.
        return [Case("overload", "overload (2 workers, holds 6, 20 ms)", "http", "small",
                     ("geti-bulk", "geti-bulk c=16", "geti-bulk fixed c=4",
                      "geti-bulk fixed c=8", "geti-bulk fixed c=16"), latency_ms=20,
                     max_inflight=6, server_args=OVERLOAD_SERVER,
                     subset=s.overload_subset, repeats=1),
                # the same service as a circuit breaker: the 7th upload alone is refused,
                # at no cost to the others (kinder to a client that pushes than an OOM)
                Case("overload", "overload, refuse mode", "http", "small",
                     ("geti-bulk", "geti-bulk fixed c=8", "geti-bulk fixed c=16"),
                     latency_ms=20, max_inflight=6, server_args=OVERLOAD_REFUSE,
                     subset=s.overload_subset, repeats=1)]
    if scenario == "annotations":
        # a pre-labelled COCO detection dataset, media and boxes together; HTTPS only, as
        # the SDK rewrites http:// to https://. Every run is checked with geti-bulk verify.
        return [Case("annotations", f"annotations, COCO {s.coco:,} images", "https", "coco",
                     ("tutorial_annotations", "geti_sdk", "geti-bulk"))]
    if scenario == "geti3":
        # the local Geti 3 with its SQLite lock model (benchlib/geti3.py runs it)
        from .geti3 import CONTENDERS as GETI3

        return [Case("geti3", "geti3 locked", "https", "coco", tuple(GETI3), repeats=2)]
    raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
