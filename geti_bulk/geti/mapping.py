"""The one place where HTTP statuses and aiohttp errors become geti-bulk errors
(httpx's `map_httpcore_exceptions`): retryable, per-file, or fatal."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import aiohttp

from geti_bulk.errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    FatalError,
    FileError,
    InvalidMediaError,
    ServerFullError,
    TargetNotFoundError,
    TransientError,
)

TARGET_ERRORS = {"project_not_found", "dataset_not_found_in_project", "dataset_not_found",
                 "organization_not_found", "workspace_not_found"}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _error_fields(body: bytes) -> tuple[str, str]:
    """(error_code, message) of a Geti JSON error, or ("", plain text)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return "", text[:300]
    if isinstance(data, dict):
        msg = data.get("message", data.get("detail", ""))
        return str(data.get("error_code", "")), (msg if isinstance(msg, str) else json.dumps(msg))
    return "", text[:300]


_GATEWAY_REFUSALS = ("no healthy upstream", "reset reason: overflow",
                     "reset reason: connection failure")


def _never_reached(status: int, message: str) -> bool:
    """An Envoy 503 that says the request never got to the upload service (circuit
    breaker overflow, no healthy upstream, connect failure): nothing can be stored, so
    there is nothing to reconcile. A "connection termination" (the service died under
    the request) stays ambiguous."""
    return status == 503 and message.strip().endswith(_GATEWAY_REFUSALS)


def map_status(status: int, body: bytes, headers: Any, *, what: str,
               body_complete: bool = True) -> Exception:
    """Turn a non-2xx answer into the error the pipeline acts on."""
    code, message = _error_fields(body)
    shown = f"{status} {code + ': ' if code else ''}{message}".strip()
    if status == 401:
        return AuthError(f"the server rejected the token ({shown}); check GETI_TOKEN or --token-file")
    if status == 403:
        return AuthError(f"access denied ({shown}); the token has no access to this {what}")
    if status == 404 and (code in TARGET_ERRORS or not code):
        return TargetNotFoundError(f"{what} not found ({shown})")
    if status == 404 and code == "label_not_found":
        return FileError(f"label not in the project ({shown})")
    if status == 507 or (status == 409 and code == "limit_reached"):
        return ServerFullError(f"the server has no room for more media ({shown})")
    if status in (408, 429) or status >= 500:
        maybe_stored = body_complete and status >= 500 and not _never_reached(status, message)
        cls = AmbiguousError if maybe_stored else TransientError
        return cls(f"server answered {shown}", status=status,
                   retry_after=parse_retry_after(headers.get("Retry-After")))
    if status in (413, 415):
        return InvalidMediaError(f"rejected by the server: {shown}")
    if status == 400 and not code and what == "server":
        return AuthError(f"the server refused the token's format ({shown}); check GETI_TOKEN or "
                         "--token-file")
    return FileError(f"rejected by the server: {shown}")


def map_network_error(e: BaseException, host: str, *, body_complete: bool) -> Exception:
    if isinstance(e, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        detail = str(getattr(e, "certificate_error", e))
        if "WRONG_VERSION_NUMBER" in detail or "record layer failure" in detail:
            return FatalError(f"{host} does not speak TLS on that port; if it is plain HTTP, "
                              f"write the host as http://{host.split('://', 1)[-1]}")
        return FatalError(f"TLS verification failed for {host}: {detail}; trust its "
                          "certificate with --ca-bundle FILE (a Geti 3 desktop or Docker "
                          "install serves a self-signed one: its cert.pem), or pass "
                          "--insecure to skip verification")
    if isinstance(e, aiohttp.InvalidURL):
        return ConfigError(f"host: invalid URL {host!r}")
    if isinstance(e, TimeoutError):
        cls = AmbiguousError if body_complete else TransientError
        return cls("timed out waiting for the server", cause="timeout")
    if isinstance(e, aiohttp.ClientConnectorError):
        return TransientError(f"cannot connect to {host}: {e.os_error.strerror or e}",
                              cause="connect")
    cls = AmbiguousError if body_complete else TransientError
    return cls(f"connection lost: {type(e).__name__}", cause="network")
