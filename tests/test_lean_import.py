"""`geti_bulk.lean_import`: the CLI imports aiohttp without loading the system CAs into
aiohttp's two default SSL contexts. Those defaults must then fail closed, and no code path
of geti-bulk may rely on them: every connector gets an explicit ``ssl=``.

The upload connector through the real CLI (which takes the lean import) is checked in
test_security.py (`test_tls_cli_refuses_unknown_ca_and_insecure_warns_once`: refused
without the CA, uploads with `--ca-bundle`); migrate's connector here, in a subprocess
that imports aiohttp the CLI's way.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sys
from pathlib import Path

from geti_bulk.server import LocalGeti

PACKAGE = Path(__file__).resolve().parent.parent / "geti_bulk"

# Run in a fresh interpreter: imports aiohttp (the CLI's way unless LEAN=0), then tries
# each kind of session against the HTTPS server at sys.argv[1], printing JSON results.
PROBE = r"""
import asyncio, json, os, ssl, sys
if os.environ["LEAN"] == "1":
    from geti_bulk.lean_import import import_aiohttp
    aiohttp = import_aiohttp()
else:
    import aiohttp
from aiohttp import connector as c
from geti_bulk.geti.client import Secret
from geti_bulk.migrate.config import Side
from geti_bulk.migrate.sides import side_session

url, ca = sys.argv[1], sys.argv[2]

async def get(session):
    try:
        async with session.get(url + "/api/v1/product_info") as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientConnectorCertificateError:
        return "certificate refused"

async def main():
    out = {"default_cas": c._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
           "default_verifies": c._SSL_CONTEXT_VERIFIED.verify_mode == ssl.CERT_REQUIRED
                               and c._SSL_CONTEXT_VERIFIED.check_hostname,
           "patch_left": "set_default_verify_paths" in ssl.SSLContext.__dict__,
           "new_context_cas": ssl.create_default_context().cert_store_stats()["x509_ca"]}
    async with aiohttp.ClientSession() as s:           # aiohttp's own default context
        out["default_session"] = await get(s)
    for name, side in (("migrate_with_ca", Side(url, None, Secret(""), ca_bundle=ca)),
                       ("migrate_without_ca", Side(url, None, Secret("")))):
        async with side_session(side, 2) as s:
            out[name] = await get(s)
    print(json.dumps(out))

asyncio.run(main())
"""


async def _probe(srv: LocalGeti, ca_file: Path, lean: bool) -> dict[str, object]:
    # SSL_CERT_FILE names the test CA: aiohttp's default context trusts the server exactly
    # when it loaded the default verify paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GETI", "SSL_CERT"))}
    env.update(SSL_CERT_FILE=str(ca_file), LEAN="1" if lean else "0",
               NO_PROXY="127.0.0.1,localhost")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PROBE, srv.base_url, str(ca_file), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_lean_import_leaves_aiohttp_defaults_failing_closed(tls_server):
    srv, ca_file = tls_server
    lean = await _probe(srv, ca_file, lean=True)
    # the default verified context has no CA and still verifies: it trusts no server
    assert lean["default_cas"] == 0 and lean["default_verifies"] is True, lean
    assert lean["default_session"] == "certificate refused", lean
    # the patch lasted the import only: contexts made afterwards load the defaults
    assert lean["patch_left"] is False and lean["new_context_cas"] == 1, lean
    # migrate's connector: verified with its CA bundle, refused without
    assert lean["migrate_with_ca"] == 200, lean
    assert lean["migrate_without_ca"] == "certificate refused", lean


async def test_without_the_lean_import_the_default_context_trusts_ssl_cert_file(tls_server):
    """The control: the same probe with a plain `import aiohttp` is trusted, so the refusal
    above comes from the lean import, not from the test's set-up."""
    srv, ca_file = tls_server
    plain = await _probe(srv, ca_file, lean=False)
    assert plain["default_cas"] == 1 and plain["default_session"] == 200, plain
    assert plain["migrate_with_ca"] == 200, plain
    assert plain["migrate_without_ca"] == "certificate refused", plain


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and (getattr(n.func, "attr", None) == name or getattr(n.func, "id", None) == name)]


def test_every_connector_and_session_names_its_tls_context():
    """aiohttp's defaults are never used: each TCPConnector gets `ssl=`, each ClientSession
    a `connector=`, and nothing calls `aiohttp.request` (a session of its own)."""
    connectors = sessions = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "TCPConnector"):
            connectors += 1
            assert "ssl" in {k.arg for k in call.keywords}, f"{path}:{call.lineno}"
        for call in _calls(tree, "ClientSession"):
            sessions += 1
            assert "connector" in {k.arg for k in call.keywords}, f"{path}:{call.lineno}"
        for call in _calls(tree, "request"):
            assert getattr(call.func, "value", None) is None or \
                getattr(call.func.value, "id", None) != "aiohttp", f"{path}:{call.lineno}"
    assert connectors >= 2 and sessions >= 2, (connectors, sessions)
