"""The self-signed certificate Geti 3 generates when it has none (GETI3_API.md §1:
RSA-2048, CN ``localhost``, SAN localhost/127.0.0.1/::1, ten years; ``app/core/certs.py``).

Generated with ``cryptography`` when importable, else with the ``openssl`` command.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
_DAYS = 3650


def ensure_certs(data_dir: Path) -> tuple[Path, Path]:
    """``(cert, key)`` in ``data_dir``; generated on first use and reused afterwards."""
    cert, key = data_dir / CERT_NAME, data_dir / KEY_NAME
    if cert.is_file() and key.is_file():
        return cert, key
    try:
        _generate_with_cryptography(cert, key)
    except ImportError:
        _generate_with_openssl(cert, key)
    return cert, key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _generate_with_cryptography(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_DAYS))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _generate_with_openssl(cert_path: Path, key_path: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise OSError("cannot generate a TLS certificate: neither the 'cryptography' package "
                      "nor the 'openssl' command is available; pass --tls-cert/--tls-key "
                      "or --plain-http")
    subprocess.run(
        [exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-days", str(_DAYS), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
         "-keyout", str(key_path), "-out", str(cert_path)],
        check=True, capture_output=True,
    )
    os.chmod(key_path, 0o600)
