"""Run one contender in its own process and measure what that process (and the
processes it waited for) used: wall time, CPU seconds and peak RSS.

CPU seconds come from ``wait4``: the exact user + system time of the child and the
descendants it reaped. Peak RSS does not: on Linux a forked child inherits its parent's
RSS high-water mark, so ``ru_maxrss`` would report at least this harness's own ~60 MB.
Instead a thread reads ``VmHWM`` (the high-water mark of the exec'd program's own
address space) from ``/proc/<pid>/status`` every 50 ms for the child and its
descendants, and keeps the largest; since it is a high-water mark, only growth in the
last 50 ms of a process's life could be missed. The sampler costs the harness about
0.01 core.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    exit_code: int
    wall_s: float
    cpu_s: float
    user_s: float
    peak_rss_mb: float
    timed_out: bool
    stdout_tail: str
    stderr_tail: str


def run_measured(argv: list[str], env: dict[str, str], log_dir: Path, *,
                 timeout: float = 1800, cwd: Path | None = None) -> Measured:
    """Run ``argv`` to completion; its stdout and stderr go to files in ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    timed_out = threading.Event()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        sampler = HighWater(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            sampler.stop()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)   # so Popen does not wait again
    return Measured(
        exit_code=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        peak_rss_mb=sampler.peak_kib / 1024,
        timed_out=timed_out.is_set(),
        stdout_tail=_tail(out_path),
        stderr_tail=_tail(err_path),
    )


class HighWater(threading.Thread):
    """Largest ``VmHWM`` seen in the process tree under ``pid``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        for pid in _tree(self.pid):
            self.peak_kib = max(self.peak_kib, _vm_hwm_kib(pid))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc/<pid>/task/*/children`` (cheap: no
    scan of every process on the machine, which would cost the harness ~0.15 core)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", "rb") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return out


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _tail(path: Path, limit: int = 2000) -> str:
    data = path.read_bytes()
    return data[-limit:].decode("utf-8", "replace")
