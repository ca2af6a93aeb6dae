"""Throwaway certificates for TLS tests, made with the ``openssl`` command line tool.

`make_test_pki(directory)` writes a small private CA, a server certificate it signed for
``127.0.0.1`` and ``localhost`` (the names a test broker is reached by), and a second,
unrelated CA that signed nothing the broker presents (for "wrong CA" tests).  Keys are
EC P-256, certificates are valid for two days; nothing here is meant to be kept.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .broker import TlsListener

DAYS = "2"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

CA_EXTENSIONS = """\
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TestPki:
    """Paths of the generated files (PEM)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path
    """A CA that did not sign the server certificate."""

    def listener(self, *, require_certificate: bool = False) -> TlsListener:
        """A Mosquitto TLS listener presenting the server certificate."""
        return TlsListener(cafile=self.ca_cert, certfile=self.server_cert,
                           keyfile=self.server_key, require_certificate=require_certificate)


def find_openssl() -> str | None:
    return shutil.which("openssl")


def _openssl(*args: str | Path, cwd: Path) -> None:
    tool = find_openssl()
    if tool is None:
        raise FileNotFoundError("openssl is not installed")
    result = subprocess.run([tool, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")


def _make_ca(directory: Path, name: str, common_name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    ext = directory / f"{name}.ext"
    ext.write_text(CA_EXTENSIONS)
    # A CSR signed by its own key, so the extensions come only from our file.
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", *CURVE, "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}",
             cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-signkey", key, "-days", DAYS, "-sha256",
             "-extfile", ext, "-out", cert, cwd=directory)
    return cert, key


def make_test_pki(directory: str | Path) -> TestPki:
    """Create the CA, the server certificate and the unrelated CA under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _make_ca(directory, "ca", "Smart City test CA")
    other_ca_cert, _ = _make_ca(directory, "other-ca", "Some other CA")
    server_cert, server_key = directory / "server.crt", directory / "server.key"
    csr, ext = directory / "server.csr", directory / "server.ext"
    ext.write_text(SERVER_EXTENSIONS)
    _openssl("req", "-new", *CURVE, "-keyout", server_key, "-out", csr, "-subj",
             "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
             "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", ext,
             "-out", server_cert, cwd=directory)
    for key in (ca_key, server_key, directory / "other-ca.key"):
        key.chmod(0o600)
    return TestPki(ca_cert=ca_cert, ca_key=ca_key, server_cert=server_cert,
                   server_key=server_key, other_ca_cert=other_ca_cert)
