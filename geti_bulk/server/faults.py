"""Seeded, reproducible fault injection for upload requests.

Spec: comma-separated ``kind=probability`` (``503=0.05,reset=0.02,stored500=0.02``).
A script (list of kinds, ``ok`` for "no fault") is consumed first, one entry per upload
request; after that one draw of ``random.Random(seed)`` per upload picks at most one
kind from the spec. Kinds:

=========== ================================================================
``502``      plain-text Envoy 502 after draining the body
``503``      plain-text Envoy 503 (``reset reason: overflow``) after draining
``504``      plain-text Envoy ``upstream request timeout`` after draining
``429``      ``local_rate_limited`` + ``x-local-rate-limit: true``, no Retry-After
``429ra``    as ``429`` but with ``Retry-After: 1``
``503ra``    as ``503`` but with ``Retry-After: 1``
``reset``    read part of the body, then abort the connection; nothing stored
``stored500`` store the media fully, then answer 500 ``Internal Server Error``
``slow``     answer normally, ``slow_ms`` late
``crash``    the upload service dies (as an OOM kill) with this upload in flight: it
             and every other upload in flight get Envoy's 503 ``connection
             termination``, nothing of theirs is stored, and the service is down for
             ``restart_ms`` (``no healthy upstream``)
=========== ================================================================

Media downloads (``display/full``, ``display/stream``) have a third (``DOWNLOAD_KINDS``:
the gateway kinds, ``slow``, and ``reset``, which sends the headers and half the bytes,
then drops the connection).

Annotation POSTs have their own injector (``ANNOTATION_KINDS``: every kind but ``crash``);
there ``stored500`` stores the scene, then answers 500, and ``reset`` stores nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from aiohttp import web

from .overload import OVERFLOW, TERMINATED
from .replies import plain

GATEWAY_KINDS = frozenset({"502", "503", "504", "429", "429ra", "503ra"})
KINDS = GATEWAY_KINDS | {"reset", "stored500", "slow", "crash"}
ANNOTATION_KINDS = KINDS - {"crash"}
DOWNLOAD_KINDS = GATEWAY_KINDS | {"reset", "slow"}   # media downloads: reset = cut mid-body
NO_FAULT = frozenset({"ok", "none", "-", ""})
_GATEWAY: dict[str, tuple[int, str]] = {
    "502": (502, TERMINATED),
    "503": (503, OVERFLOW),
    "503ra": (503, OVERFLOW),
    "504": (504, "upstream request timeout"),
    "429": (429, "local_rate_limited"),
    "429ra": (429, "local_rate_limited"),
}


def gateway_response(kind: str) -> web.Response:
    """Envoy's plain-text answer for a gateway fault kind (GETI_API.md §5)."""
    status, text = _GATEWAY[kind]
    headers = {"server": "envoy"}
    if status == 429:
        headers["x-local-rate-limit"] = "true"
        headers["x-envoy-ratelimited"] = "true"
    if kind.endswith("ra"):
        headers["Retry-After"] = "1"
    return plain(status, text, headers)


def abort(request: web.Request) -> web.Response:
    """Drop the connection; the returned response is never sent."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


def parse_spec(spec: str, kinds: frozenset[str] = KINDS) -> list[tuple[str, float]]:
    """``"503=0.05,reset=0.02"`` → ``[("503", 0.05), ("reset", 0.02)]`` (validated)."""
    result: list[tuple[str, float]] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, sep, prob_text = item.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in kinds:
            raise ValueError(f"bad fault {item!r}: expected kind=probability, kinds {sorted(kinds)}")
        try:
            prob = float(prob_text)
        except ValueError:
            raise ValueError(f"bad fault probability in {item!r}") from None
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"fault probability out of [0, 1] in {item!r}")
        result.append((kind, prob))
    if sum(p for _, p in result) > 1.0 + 1e-9:
        raise ValueError("fault probabilities add up to more than 1")
    return result


def _check_script(script: Iterable[str], kinds: frozenset[str]) -> list[str]:
    entries = [str(s).strip().lower() for s in script]
    for entry in entries:
        if entry not in kinds and entry not in NO_FAULT:
            raise ValueError(f"bad scripted fault {entry!r}: kinds {sorted(kinds)} or 'ok'")
    return entries


class FaultInjector:
    """Decides, per request, which fault (if any) to inject; counts them."""

    def __init__(self, spec: str = "", seed: int = 0, *, kinds: frozenset[str] = KINDS,
                 stream: str = "faults") -> None:
        self.kinds = kinds
        self._rng = random.Random(f"geti-bulk:{stream}:{seed}")
        self._spec = parse_spec(spec, kinds)
        self._script: list[str] = []
        self.counts: Counter[str] = Counter()

    def check(self, spec: str = "", script: Iterable[str] | None = None) -> None:
        """Raise ValueError if ``configure`` would refuse these (changes nothing)."""
        parse_spec(spec, self.kinds)
        _check_script(script or [], self.kinds)

    def configure(self, spec: str = "", script: Iterable[str] | None = None) -> None:
        """Replace the spec and the pending script (validated before anything changes)."""
        parsed = parse_spec(spec, self.kinds)
        entries = _check_script(script or [], self.kinds)
        self._spec = parsed
        self._script = entries

    def next_fault(self) -> str | None:
        if self._script:
            entry = self._script.pop(0)
            return None if entry in NO_FAULT else entry
        if not self._spec:
            return None
        draw = self._rng.random()
        for kind, prob in self._spec:
            if draw < prob:
                return kind
            draw -= prob
        return None

    def record(self, kind: str) -> None:
        self.counts[kind] += 1
