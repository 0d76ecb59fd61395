"""Text helpers shared by every reporter: units, durations, safe strings, event names.

Everything here is pure and rich-free, so the plain and JSON reporters stay simple.
"""

from __future__ import annotations

import re

_UNITS = ("kB", "MB", "GB", "TB", "PB")

# Belt and braces: no event should ever carry a credential, but reasons are built from
# server answers and exception messages, so anything shaped like one is masked anyway.
_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)(\S+)")
_KEYED = re.compile(
    r"(?i)\b(token|access_token|api[_-]?key|authorization|password|secret)"
    r"(\s*[:=]\s*(?:(?:bearer|basic)\s+)?)(\S+)"
)
_PAT = re.compile(r"(?i)\bgeti_pat_[A-Za-z0-9_\-]+")


def format_bytes(n: float) -> str:
    """Decimal units, one decimal: `512 B`, `1.5 kB`, `12.0 MB`."""
    if abs(n) < 1000:
        return f"{int(n)} B"
    value = float(n)
    for unit in _UNITS:
        value /= 1000
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def format_rate(bytes_per_second: float) -> str:
    return f"{format_bytes(max(0.0, bytes_per_second))}/s"


def format_duration(seconds: float) -> str:
    """`0:00:07`, `1:02:03`; days are folded into hours."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def event_name(cls: type) -> str:
    """`RunStarted` -> `run_started`, `BytesSent` -> `bytes_sent`."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def redact(text: str) -> str:
    """Mask anything that looks like a credential."""
    text = _PAT.sub("***", text)
    text = _KEYED.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def printable(text: str) -> str:
    """Escape control characters and lone surrogates (odd file names) so that nothing
    we print can move the cursor, inject colour or fail to encode."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def safe(text: str) -> str:
    """A path or a reason made fit for a terminal or a log line."""
    return printable(redact(text))
