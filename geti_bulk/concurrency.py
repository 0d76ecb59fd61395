"""Adaptive concurrency: how many uploads are in flight adapts to the server, within a
ceiling and a budget of server memory in flight (an upload weighs its size, or its
decoded size for an image), so that large files are not sent ten at a time
(GETI_API.md §5: the real upload service decodes whole images in a 3 GiB pod and is
OOM-killed when pushed; its own web UI throttles).

The ceiling is high (64 by default, 10 for Geti 3's SQLite writes): the knee is found
from the server's answers, with two signals, as in TCP Vegas/BBR next to Reno:

* **delay**: the time the server takes to answer once the body is sent (last byte sent
  to the answer: the time on the network sending the body is not counted, so a long
  upload over a slow link is not read as queueing; a constant round trip is in the
  base and cancels out). Each answer is compared with the base of its own size class
  (the lowest round mean of uploads of about its weight, within a factor of √2, in the
  last ``BASE_WINDOW`` seconds), so a 20 MB 8K image next to 100 KB thumbnails does not
  read as congestion. Per round (about one window of answers, and at least
  ``ROUND_MIN_S`` once slow start is over), Vegas gives the uploads queued in the
  server: load x (mean - expected) / mean, each held in its memory; from 8 in flight a
  slowdown within the round's own noise (2 standard errors) does not count.
* **slow start** grows the level x1.5 per round below 8, x2 from 8 and x3 from 16
  while answers come as fast as the base, +2 at most once they slow at all. A round
  counts only answers to uploads sent at its level (a whole window of them at 8..15,
  where a service that holds just above its knee would be killed by the next step).
  It ends when uploads queue, unless (from 8, measured twice) 70 % of the uploads the
  last step added work rather than wait: then the slowdown is per-request CPU, not a
  full server, and it goes on x1.5. Four rounds in a row with nothing queued start it
  again (it ended on noise, or the server got faster).
* **after slow start** the level grows by one per round (10 % from 20) while fewer
  than ``ALPHA`` queue, holds up to ``BETA``, and steps down by one per round beyond.
  Every ``PROBE_EVERY`` seconds it halves for two rounds, so the base is measured
  afresh rather than learned from an already queued server. A level changes at most
  once per round, so a fast server does not make it churn.
* **throughput trials**: from 8 in flight, a level the delay signal holds is tried x1.5
  and kept if the throughput rose with it (see ``_trial_or_hold``), but only where the
  throughput still grew from the level below (see ``_room``): past a full server's
  knee a trial only queues more uploads, and kills a service that holds just above it
  (that gate holds below 16 in flight, and anywhere once the run has seen a loss). A
  trial that paid well (``TRIAL_CHAIN``) is followed at once by the next.
* **growth through per-request CPU** (below 16 in flight, see ``_growing``): a level
  the delay signal holds grows by one while its throughput still rose from the level
  below.
* **loss**: 503/502/504/429, timeouts and Geti 3's 500 "database is locked", when the
  recent answers show congestion, cut multiplicatively, once per congestion event, then
  the level holds ~10 round trips before probing upwards again. The level the first loss
  of an episode came at is a cliff: for ``CLIFF_MEMORY`` seconds growth stays below it
  (a service OOM-killed at 13 uploads kills again at 13); the cuts while the service
  restarts do not lower it, and once answers come again the level grows x1.5 a round
  back to half of it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable

import anyio

BASE_WINDOW = 10.0      # seconds of rounds the base (lowest round mean) is taken from
PROBE_EVERY = 10.0      # seconds between two base re-measurements
ALPHA = 0.5             # uploads queued in the server: below, grow; above, slow start ends
BETA = 1.5              # above this many queued, step down (one per round) ...
ALPHA_SHARE = 0.08      # ... or these shares of the uploads in flight, if larger
BETA_SHARE = 0.2
JITTER = 0.002          # seconds of slowdown not taken for queueing
DELAY_FLOOR = 2.0       # the level does not go below this on delay alone
FAST_FROM = 8.0         # slow start doubles per round from this level, x1.5 below
TRIAL_STEP = 1.5        # from 8 in flight, a level the delay signal holds is tried x1.5 ...
TRIAL_GAIN = 0.2        # ... and kept if answers/s rose by 20 % of that (10 % for x1.5)
TRIAL_AFTER_FAIL = 3.0  # seconds before the next trial once one did not pay
TRIAL_MEMORY = 10.0     # seconds before a trial goes again from where one did not pay
ROUND_MIN_S = 0.1       # after slow start, a round lasts at least this long (no churn)
CLIFF_MEMORY = 60.0     # seconds a level that drew a loss event stays out of reach
TRIAL_FREE_FROM = 16.0  # from here, and until a loss, a trial needs no measured room
LEVEL_MEMORY = 30.0     # seconds a level's throughput stays a reference for trials
ADD_FROM = 20.0         # from this level, the additive increase is ADD_SHARE of it
ADD_SHARE = 0.1         # the additive increase: +1 a round, or this share of the level
CLEAN_ROUNDS = 4        # rounds in a row with nothing queued that restart slow start
CLEAN_SHARE = 1.0       # ... with fewer queued than this share of ALPHA
SS_WORKING = 0.7        # slow start goes on through a slowdown while this share of the
SS_QUEUED_SHARE = 0.3   # uploads it added work (and fewer than this share of all queue)
GROW_ROOM = 0.4         # below 16, a held level grows +1 while this share of the uploads
                        # added since the level below works
TRIAL_CHAIN = 0.4       # a kept trial with this share of the proportional gain goes on x1.5


_TRACE = bool(os.environ.get("GETI_BULK_LIMITER_TRACE"))


def _trace(now: float, lim: AdaptiveLimiter, n: int, mean: float, expected: float,
           load: float, rate: float, peak: int) -> None:
    """GETI_BULK_LIMITER_TRACE=1: one line per round on stderr (for tuning)."""
    print(f"limiter t={now:.3f} level={lim._limit:.1f} slow_start={lim._slow_start} n={n} "
          f"mean={mean * 1000:.1f}ms base={expected * 1000:.1f}ms load={load:.1f} "
          f"queued={lim.queued:.2f} rate={rate:.0f}/s peak={peak}", file=sys.stderr, flush=True)


def size_class(size: int | None) -> int:
    """Uploads within a factor of √2 of each other in weight share a delay base."""
    if not size or size <= 0:
        return 0
    return int(2 * math.log2(max(size, 4096)))


class _WindowMin:
    """Minimum of the values seen in the last ``span`` seconds (monotonic deque)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._q: deque[tuple[float, float]] = deque()

    def add(self, now: float, value: float) -> float:
        q = self._q
        while q and q[-1][1] >= value:
            q.pop()
        q.append((now, value))
        while q[0][0] < now - self.span:
            q.popleft()
        return q[0][1]


class AdaptiveLimiter:
    def __init__(self, ceiling: int, *, initial: int | None = None, adaptive: bool = True,
                 max_bytes: int = 256 << 20, floor: int = 1,
                 on_change: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, trials: bool = True,
                 sharers: int = 1) -> None:
        self.ceiling = max(1, ceiling)
        # throughput trials (off for one of several shards: N processes trying x1.5 at once
        # cannot tell their own gain from the others', and compound into an overload; a
        # shard also holds after slow start and does not restart it on clean rounds, which
        # are often only the other shards being low at the time)
        self.trials = trials
        # processes sharing the server this way (shards): each sees the whole queue's delay
        # but holds only its share of it, so its thresholds in uploads queued shrink
        self.sharers = max(1, sharers)
        self.floor = max(1, min(floor, self.ceiling))
        self.adaptive = adaptive
        # adaptive: start at 2, so the first rounds measure the server unloaded
        start = initial if initial is not None else (min(2, self.ceiling) if adaptive else self.ceiling)
        self._limit = float(max(self.floor, min(self.ceiling, start)))
        self.max_bytes = max_bytes
        self.in_flight = 0
        self.bytes_in_flight = 0
        self.peak = 0
        self._waiters: deque[tuple[int, anyio.Event]] = deque()   # first come, first served
        self._on_change = on_change
        self._clock = clock
        self._last_cut = -1e9
        # like TCP: grow fast until the first congestion signal; not one of several shards
        # (they start together, each learning its base from a server the others already
        # load: four slow starts at once went past a service holding 12 and killed it)
        self._slow_start = adaptive and trials
        self._rtt: float | None = None   # smoothed seconds per upload
        self._recent: deque[bool] = deque(maxlen=20)   # last answers: True = overload signal
        # delay signal
        self._round_sum = 0.0
        self._round_n = 0
        self._round_load = 0.0         # sum of uploads in flight at each answer
        self._round_classes: dict[int, list[float]] = {}   # size class -> [sum, count]
        self._round_start = clock()
        self._released_load = 1        # uploads in flight at the last release
        self._bases: dict[int, _WindowMin] = {}   # size class -> lowest round means
        self.changes = 0               # level changes so far (churn)
        self._skip = 0                 # answers not to count: sent before a slow-start step
        # throughput trials (see _trial_or_hold): answers/s of the last rounds, the trial
        # in progress (level before it, answers/s before it), and the slowdown earned
        self._rates: deque[float] = deque(maxlen=2)
        self._rates_level = 0.0
        # per level (uploads in flight, rounded): when last measured, and uploads/s by
        # Little's law (averaged with the level's previous measure, and the best)
        self._levels: dict[int, tuple[float, float, float]] = {}
        self._trial: tuple[float, float] | None = None
        self._trial_rates: list[float] = []
        self._no_trial_until = 0.0
        self._tolerated = 0.0          # seconds of slowdown a kept trial showed to be cheap
        self._trial_failed = (0.0, -1e9)   # the level a trial last did not pay from, and when
        self.queued = 0.0              # estimate of the uploads waiting in the server
        self._delay_ok = True          # growth allowed by the delay signal
        self._round_peak = 0           # most uploads in flight at once during the round
        self._used = True              # ... reached the level: worth raising it
        self._rounds = 0               # rounds measured so far
        self._last_probe = clock()
        self._probe_rounds = 0         # > 0: holding low to re-measure the base
        self._probe_saved = 0.0
        # slow start: (load, unqueued uploads) of the last round at the level before and
        # at this one, and whether this level's slowdown is being measured again
        self._ss_prev: tuple[float, float] | None = None
        self._ss_here: tuple[float, float] | None = None
        self._ss_held = False
        self._clean = 0                # rounds in a row with (almost) nothing queued
        self._room_now: float | None = None   # this round's room, at a level held a while
        self._cliff: float | None = None   # the lowest level a loss event came at ...
        self._cliff_at = -1e9              # ... and when
        self._ok_since_cut = 0             # answers without overload since the last cut
        self._recover_to = 0.0             # after a cut, grow x1.5 a round up to this level

    def _cap(self, now: float) -> float:
        """The highest level growth may reach now: below a recent cliff, else the ceiling."""
        if self._cliff is not None and now - self._cliff_at < CLIFF_MEMORY:
            return min(float(self.ceiling), self._cliff - 1.0)
        return float(self.ceiling)

    @property
    def limit(self) -> int:
        return int(self._limit)

    def _fits(self, size: int) -> bool:
        if self.in_flight >= self.limit:
            return False
        # one file always goes, however large; otherwise keep within the byte budget
        return self.in_flight == 0 or self.bytes_in_flight + size <= self.max_bytes

    def _take(self, size: int) -> None:
        self.in_flight += 1
        self.bytes_in_flight += size
        self.peak = max(self.peak, self.in_flight)
        self._round_peak = max(self._round_peak, self.in_flight)

    def _grant(self) -> None:
        """Wake waiters in order while the first one fits (one wake-up per slot, not a
        stampede of every waiting worker on every release)."""
        while self._waiters and self._fits(self._waiters[0][0]):
            size, event = self._waiters.popleft()
            self._take(size)
            event.set()

    def try_acquire(self, size: int) -> bool:
        """Take a slot now if one is free and nobody waits for it."""
        if self._waiters or not self._fits(size):
            return False
        self._take(size)
        return True

    async def acquire(self, size: int) -> None:
        if not self._waiters and self._fits(size):
            self._take(size)
            return
        entry = (size, anyio.Event())
        self._waiters.append(entry)
        try:
            await entry[1].wait()
        except BaseException:
            if entry[1].is_set():      # granted as it was cancelled: hand the slot back
                self.release_now(size)
            else:
                self._waiters.remove(entry)
                self._grant()          # it may have been the one holding up the queue
            raise

    def release_now(self, size: int) -> None:
        self._released_load = self.in_flight   # uploads in flight as this one ended
        self.in_flight -= 1
        self.bytes_in_flight -= size
        self._grant()

    async def release(self, size: int) -> None:
        self.release_now(size)

    def _set(self, value: float) -> None:
        old = self.limit
        self._limit = max(float(self.floor), min(float(self.ceiling), value))
        if self.limit != old:
            self.changes += 1
            self._grant()
            if self._on_change is not None:
                self._on_change(self.limit)

    def _window(self) -> float:
        """One congestion event lasts about two round trips: cut once per event."""
        return max(0.05, 2.0 * (self._rtt if self._rtt is not None else 0.5))

    def _probe_delay(self) -> float:
        """After a cut, hold the level for ~10 round trips before probing upwards, so a
        steady server sees one probe (and at most one 503) per period, not one per window."""
        return max(0.2, 10.0 * (self._rtt if self._rtt is not None else 0.05))

    def on_success(self, rtt: float | None = None, wait: float | None = None,
                   size: int | None = None) -> None:
        """An upload succeeded: ``rtt`` from first byte to answer, ``wait`` from last
        byte to answer (the server's part: queueing and processing), ``size`` its weight
        (its decoded size for an image: what the server's work grows with)."""
        if rtt is not None:
            self._rtt = rtt if self._rtt is None else 0.9 * self._rtt + 0.1 * rtt
        self._recent.append(False)
        if not self.adaptive:
            return
        self._ok_since_cut += 1
        if wait is not None:       # with timing, the level changes at the end of a round
            self._sample(max(wait, 1e-6), size)
            return
        if self._probe_rounds or not self._used:
            return   # a level the uploads do not reach says nothing about a higher one
        if self._slow_start:       # no timing: grow per answer, x2 per round
            self._set(self._limit + 1.0)
        elif (self._clock() - self._last_cut >= self._probe_delay()
                and self._limit + 1.0 / self._limit <= self._cap(self._clock())):
            self._set(self._limit + 1.0 / self._limit)   # additive: +1 per window

    def _sample(self, wait: float, size: int | None) -> None:
        if self._skip:             # sent before the last step up: says nothing of it
            self._skip -= 1
            if not self._skip:
                self._round_start = self._clock()
            return
        self._round_sum += wait
        self._round_n += 1
        self._round_load += self._released_load   # in flight as it was answered
        acc = self._round_classes.setdefault(size_class(size), [0.0, 0.0, 0.0])
        acc[0] += wait
        acc[1] += 1
        acc[2] += wait * wait
        now = self._clock()
        # a round: about one window of answers, 4 at least; in slow start, answers to
        # uploads sent at the level: 3 below 8 (2 say too little to go on to a level a
        # small server may not hold), a whole window from 8 (the first answers at a new
        # level come before a queue has built up in the server: a service that holds
        # just above its knee would be killed by the next step), half a window from 16
        # (a far server needs many in flight, soon)
        if self._round_n < ((max(3, self.limit if self.limit < 2 * FAST_FROM else
                                 (self.limit + 1) // 2)
                             if self.limit >= FAST_FROM else 3 if self._rounds else 2)
                            if self._slow_start else max(4, self.limit)):
            return
        if not (self._slow_start or self._probe_rounds) and now - self._round_start < ROUND_MIN_S:
            return
        n = self._round_n
        if not self._rounds:
            # the first answers (new connections, a cold server) set no base: a slow
            # first round would let the next, already queued, pass for unloaded
            self._rounds = 1
            self._round_sum, self._round_n, self._round_load = 0.0, 0, 0.0
            self._round_classes = {}
            self._round_start = now
            return
        mean, load, peak = self._round_sum / n, self._round_load / n, self._round_peak
        rate = n / max(now - self._round_start, 1e-6)
        expected = 0.0
        spread = 0.0     # squared deviations from each class's mean: the answers' noise
        classes = len(self._round_classes)
        for cls, (total, count, squares) in self._round_classes.items():
            spread += max(0.0, squares - total * total / count)
            base = self._bases.setdefault(cls, _WindowMin(BASE_WINDOW))
            expected += count * base.add(now, total / count)
        expected /= n
        self._round_sum, self._round_n, self._round_load = 0.0, 0, 0.0
        self._round_classes = {}
        self._round_start = now
        self._round_peak = self.in_flight
        self._used = peak >= self.limit - 1
        self._rounds += 1
        # Vegas: of the uploads in flight, how many are queued in the server? (Less the
        # first milliseconds of slowdown: at that scale it is event-loop jitter, the
        # client's own CPU, not uploads held in the server's memory.)
        raw = mean - expected
        slower = raw if self._slow_start else raw - self._tolerated
        # from 8 in flight, a slowdown within the round's noise (twice the standard error
        # of its mean, from the answers' spread around their class's mean) is not taken
        # for queueing (below 8, rounds are too short to tell noise, and a small server
        # that holds its uploads in memory must be seen at once)
        jitter = JITTER if load < FAST_FROM else max(
            JITTER, 2.0 * math.sqrt(spread / max(1, n - classes) / n))
        self.queued = load * max(0.0, slower - jitter) / mean
        if _TRACE:
            _trace(now, self, n, mean, expected, load, rate, peak)
        if self._probe_rounds:
            self._note(now, load, load / max(mean, 1e-9))   # a lower level, measured afresh
            self._probe_rounds -= 1
            if not self._probe_rounds:
                self._last_probe = now
                self._set(self._probe_saved)
            return
        # thresholds in uploads queued: absolute at low levels, a share of the load at
        # high ones (where timing noise alone reads as a fraction of an upload queued)
        alpha = max(ALPHA / self.sharers, ALPHA_SHARE * load)
        beta = max(BETA / self.sharers, BETA_SHARE * load)
        self._delay_ok = self.queued < alpha
        self._clean = self._clean + 1 if self.queued < alpha * CLEAN_SHARE and self._used else 0
        self._room_now = None
        if self._slow_start:
            self._note(now, load, load / max(mean, 1e-9))
            # below 8, where a full server holds its uploads in memory, Vegas alone decides
            working = self._working(load) if self._limit >= FAST_FROM else 0.0
            through = working >= SS_WORKING and self.queued < SS_QUEUED_SHARE * load
            if self.queued > alpha and not through:
                self._slow_start = False          # the server queues: grow linearly now
                if not self.trials:               # one of several shards: hold a while
                    self._last_cut = now
                self._set(load - self.queued)     # the uploads it was not queueing
            elif self.queued > alpha and not self._ss_held:
                # answers slowed, but the uploads added seem to work: the first round at
                # a level can see a queue that is still building, so measure it again
                self._ss_held = True
            elif self._used:
                # a whole round at each level is measured before the next is tried: while
                # answers come as fast as unloaded, x1.5 below 8 (a small server can fall
                # over at 1.5x what fills it), x2 from 8 and x3 from 16 (a far one needs
                # many in flight, soon); x1.5 while they slow but half the uploads the
                # last step added work (from 8); +2 at most once they slow at all
                if slower <= jitter:
                    step = self._limit * (0.5 if self._limit < FAST_FROM else
                                          1.0 if self._limit < 2 * FAST_FROM else 2.0)
                elif through:
                    step = self._limit * 0.5
                elif self.queued < alpha / 2:
                    step = min(2.0, self._limit * 0.5)
                else:
                    step = 1.0
                self._skip = self.in_flight    # the next round: answers sent at the new level
                self._ss_prev, self._ss_held = self._ss_here, False
                self._set(min(self._limit + max(1.0, step), max(self._limit, self._cap(now))))
        elif self._trial_or_hold(now, rate, raw, beta, load, mean):
            pass
        elif self.queued > beta and self._limit > DELAY_FLOOR:
            self._set(max(DELAY_FLOOR, min(self._limit, peak + 1.0) - 1.0))
        elif (self.trials and self._clean >= CLEAN_ROUNDS and self._used
                and self._limit * 1.5 <= self._cap(now)
                and now - self._last_cut >= self._probe_delay()):
            # rounds in a row as fast as unloaded: slow start ended on noise, or the
            # server got faster; grow as in slow start again (it ends the same way)
            self._slow_start, self._ss_prev, self._ss_held = True, None, False
            self._skip = self.in_flight
            self._set(self._limit * 1.5)
        elif ((self._delay_ok or self._growing(beta)) and self._used
                and now - self._last_cut >= self._probe_delay()
                and self._limit + 1.0 <= self._cap(now)):
            # additive: +1 per round (+10 % from 20 in flight); x1.5 while below half the
            # level a loss came at (a service that restarted after an outage: the cuts
            # during it went far lower)
            fast = self._limit * (0.5 if self._limit * 1.5 <= self._recover_to else
                                  ADD_SHARE if self._limit >= ADD_FROM else 0.0)
            # (one of N shards adds 1/N: together they grow as one run would)
            self._set(min(self._limit + max(1.0 / self.sharers, fast), self._cap(now)))
        if now - self._last_probe >= PROBE_EVERY:
            self._probe_rounds = 2
            self._probe_saved = self._limit
            self._skip = self.in_flight    # answers to uploads sent at the halved level
            self._set(max(min(self._limit, DELAY_FLOOR), self._limit / 2))

    def _growing(self, beta: float) -> bool:
        """Held by the delay signal below 16 in flight (fewer than ``beta`` queued), at a
        level measured for a few rounds, whose throughput grew from the level below by
        ``GROW_ROOM`` of the proportional gain (see ``_room``): per-request CPU, not a
        full server (whose throughput is flat past its knee), so +1. (Not for one of
        several shards: its throughput moves with the others' levels.)"""
        return (self.trials and self._limit < TRIAL_FREE_FROM and self.queued <= beta
                and self._room_now is not None and self._room_now >= GROW_ROOM)

    def _working(self, load: float) -> float:
        """In slow start: of the uploads the last step added, the share that works rather
        than waits (Vegas: load - queued uploads are not queued), from this round and the
        last one at the level before it; 0 when unknown. About 1 when answers slow only from per-request CPU
        (on either side: a far server with no limit of its own), about 0 when the server
        is full and the extra uploads only queue in it."""
        unqueued = load - self.queued
        prev = self._ss_prev
        self._ss_here = (load, unqueued)
        if prev is None or load < prev[0] * 1.25:
            return 0.0
        return (unqueued - prev[1]) / (load - prev[0])

    def _note(self, now: float, load: float, thr: float) -> float:
        """Remember a round's throughput at its level (averaged with the level's last
        measure, and the best); the level's average now."""
        key = int(round(load))
        old = self._levels.get(key)
        if old is not None and now - old[0] < LEVEL_MEMORY:
            thr, best = (old[1] + thr) / 2, max(old[2], thr)
        else:
            best = thr
        self._levels[key] = (now, thr, best)
        return thr

    def _room(self, now: float, load: float, thr: float) -> float:
        """Of the uploads added since the nearest level at least 10 % (and 1 upload)
        lower, the share that works rather than waits: the gain in throughput (Little's
        law, see _trial_or_hold) against a proportional gain; 0 when no lower level was
        measured in the last ``LEVEL_MEMORY`` seconds (slow start's rounds and the
        probe's every ``PROBE_EVERY`` seconds are). About 0 at a full server's knee,
        where a throughput trial would only queue more uploads (and kill a service that
        holds just above it), about 1 where per-request CPU is what slows the answers. A
        lower level counts with the best it did (slow start's rounds included), so that a
        slow round there cannot make this one look like a gain."""
        thr = self._note(now, load, thr)
        below = [k for k, (t, _thr, _best) in self._levels.items()
                 if k <= min(load - 1.0, load * 0.9) and now - t < LEVEL_MEMORY]
        if not below:
            return 0.0
        ref = max(below)
        return (thr / self._levels[ref][1] - 1.0) / (load / ref - 1.0)

    def _trial_or_hold(self, now: float, rate: float, raw: float, beta: float,
                       load: float, mean: float) -> bool:
        """Above 8 in flight, the delay signal alone can hold a level the server is not
        full at: per-request work (CPU, on either side) slows every answer a little with
        each upload more, which reads as queueing. So a level it holds is tried x1.5 for
        two rounds, and kept only if the throughput rose with it (20 % of the
        proportional gain): then the slowdown it showed is tolerated from now on. Below
        8, where a full server holds its uploads in memory, Vegas alone decides. True
        when the round's decision is taken here. Throughput is measured by Little's law
        (uploads in flight / the round's mean answer time): a mean over the round's
        answers, far steadier than answers counted in a tenth of a second on a busy
        machine, and free of the base, which drifts."""
        rate = load / max(mean, 1e-9)
        if self._trial is not None:
            self._trial_rates.append(rate)
            if len(self._trial_rates) < 2:
                return True
            level, before = self._trial
            self._trial = None
            after = sum(self._trial_rates) / len(self._trial_rates)
            gain = (after / max(before, 1e-9) - 1.0) / max(self._limit / level - 1.0, 1e-9)
            if gain >= TRIAL_GAIN:
                self._tolerated = max(self._tolerated, raw)
                self._rates.clear()
                target = min(self._limit * TRIAL_STEP, self._cap(now))
                if gain >= TRIAL_CHAIN and target >= self._limit + 1.0:
                    # it paid well: the next trial goes at once, from what this one did
                    # (a far server needs x4 from where the delay signal stops)
                    self._trial = (self._limit, after)
                    self._trial_rates = []
                    self._skip = self.in_flight
                    self._set(target)
            else:
                self._no_trial_until = now + TRIAL_AFTER_FAIL
                self._trial_failed = (level, now)
                self._set(level)
            return True
        if self._limit != self._rates_level:
            # "before" is measured at the level tried from, and not in its first round:
            # that one still drains (or fills) the server's queue of the level before
            self._rates.clear()
            self._rates_level = self._limit
            return False
        self._rates.append(rate)
        room = self._room(now, load, rate)
        self._room_now = room if len(self._rates) == self._rates.maxlen else None
        # the gate holds below 16 in flight, and anywhere once the run has seen a loss: a
        # far server's throughput can look flat over a few uploads and still double from
        # 18 to 64 (the local WAN model: answers slow with the uploads each connection
        # keeps waiting), which only a trial finds out
        gated = self._limit < TRIAL_FREE_FROM or self._cliff is not None
        held = (not self._delay_ok and self.queued <= 2 * beta
                and (room >= SS_WORKING or not gated))
        target = min(max(self._limit + 2.0, self._limit * TRIAL_STEP), self._cap(now))
        failed, failed_at = self._trial_failed
        if (self.trials and held and self._used and self._limit >= FAST_FROM
                and target >= self._limit + 1.0
                and (now - failed_at >= TRIAL_MEMORY or self._limit < 0.9 * failed)
                and len(self._rates) == self._rates.maxlen and now >= self._no_trial_until
                and now - self._last_cut >= self._probe_delay()):
            self._trial = (self._limit, sum(self._rates) / len(self._rates))
            self._trial_rates = []
            self._skip = self.in_flight
            self._set(target)
            return True
        return False

    def on_overload(self) -> None:
        """Multiplicative decrease, once per congestion event, when the recent answers show
        congestion (at least 2, and a quarter, of the last 20): a stray 503 from a gateway
        blip must not collapse the rate, a saturated server answers many. Halve on the
        first event (slow start overshoots), then keep 85 %."""
        self._recent.append(True)
        if not self.adaptive:
            return
        bad = sum(self._recent)
        if bad < 2 or bad < 0.25 * len(self._recent):
            return
        now = self._clock()
        if now - self._last_cut < self._window():
            return
        beta = 0.5 if self._slow_start else 0.85
        level = max(self._limit, self._probe_saved if self._probe_rounds else 0.0)
        if self._cliff is None or self._ok_since_cut >= level:
            # a new congestion event (not more 503s from a service still restarting: the
            # level it is cut to then says nothing of what kills it): remember the level
            # as a cliff, and recover fast towards half of it once answers come again
            recent = self._cliff is not None and now - self._cliff_at < CLIFF_MEMORY
            self._cliff = min(self._cliff, level) if recent and self._cliff is not None else level
            self._cliff_at = now
            self._recover_to = level / 2
        self._ok_since_cut = 0
        self._slow_start = False
        self._last_cut = now
        self._recent.clear()           # the next cut needs fresh evidence
        self._tolerated = 0.0          # the server is full: no slowdown is cheap now
        if self._trial is not None:    # a trial in progress: cut from the level before it
            self._limit = self._trial[0]
            self._trial = None
            self._no_trial_until = now + TRIAL_AFTER_FAIL
        if self._probe_rounds:         # a probe in progress: cut from the level it saved
            self._probe_rounds = 0
            self._limit = self._probe_saved
        self._set(self._limit * beta)
