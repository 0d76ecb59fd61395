"""Gateway-side authentication, decided from headers only (like Envoy ext_proc + the
Geti auth-proxy), before any body byte is read. Failures are plain text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from .replies import plain

_ORG_IN_PATH = re.compile(r"^/api/v\d+/organizations/([^/]+)")
_CSRF_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
# Paths the gateway lets through without credentials (the web UI reads it before login).
_ANONYMOUS = frozenset({"/api/v1/product_info"})


@dataclass(frozen=True, slots=True)
class AuthRules:
    token: str
    organization_id: str


def check(request: web.Request, rules: AuthRules) -> web.Response | None:
    """None when the request may pass; otherwise the gateway's refusal."""
    path = request.path
    if not path.startswith("/api/") or path in _ANONYMOUS:
        return None
    authorization = request.headers.get("Authorization")
    if authorization is not None:  # takes precedence over x-api-key
        scheme, _, value = authorization.partition(" ")
        if scheme != "Bearer":
            return plain(401, "Authorization header is in unexpected format")
        if value.strip() != rules.token:
            return plain(401, "Jwt verification fails")
        if request.method in _CSRF_METHODS and request.headers.get("x-geti-csrf-protection") != "1":
            return plain(403, "RBAC: access denied")
        return _check_org(path, rules)
    key = request.headers.get("x-api-key")
    if key is None:
        return plain(403, "RBAC: access denied")
    if key != rules.token:
        if not key.startswith("geti_pat_"):  # no gateway ALLOW rule matches
            return plain(403, "RBAC: access denied")
        if len(key.split("_")) != 4:
            return plain(400, "Bad request")
        return plain(401, "Invalid authorization token")
    return _check_org(path, rules)


def _check_org(path: str, rules: AuthRules) -> web.Response | None:
    match = _ORG_IN_PATH.match(path)
    if match and match.group(1) != rules.organization_id:
        return plain(401, "Invalid authorization token")
    return None
