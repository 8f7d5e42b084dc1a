"""A throwaway PKI made with openssl, and Mosquitto with a TLS listener that uses it.

The fixtures ``pki`` and ``tls_broker`` are registered in tests/integration/conftest.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from siteline.simulator.broker import BrokerHandle, TlsListener, start_mosquitto
from tests.peers import require_tool


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate signed by it; another CA; and a
    server certificate for another name."""

    dir: Path
    ca: Path
    server: Path
    server_key: Path
    client: Path
    client_key: Path
    other_ca: Path
    wrong_name: Path
    wrong_name_key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"), "-subj", f"/CN=Siteline test {name}")
    return d / f"{name}.pem"


def _leaf(d: Path, name: str, ca: str, ext: str) -> tuple[Path, Path]:
    key, csr, pem, extfile = (d / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem", ".ext"))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", f"/CN={name}")
    extfile.write_text(ext + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(d / f"{ca}.pem"), "-CAkey", str(d / f"{ca}.key"),
             "-CAcreateserial", "-days", "2", "-out", str(pem), "-extfile", str(extfile))
    return pem, key


def make_pki(d: Path) -> Pki:
    require_tool("openssl")
    d.mkdir(parents=True, exist_ok=True)
    ca, other = _ca(d, "ca"), _ca(d, "other-ca")
    server = _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client = _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth")
    wrong = _leaf(d, "wrong-name", "ca", "subjectAltName=DNS:broker.example\nextendedKeyUsage=serverAuth")
    return Pki(d, ca, *server, *client, other, *wrong)


def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def start_tls_broker(workdir: Path, pki: Pki, *, require_certificate: bool, wrong_name: bool = False) -> BrokerHandle:
    require_tool("mosquitto")
    cert, key = (pki.wrong_name, pki.wrong_name_key) if wrong_name else (pki.server, pki.server_key)
    return start_mosquitto(workdir, 0, tls=TlsListener(cert, key, pki.ca, require_certificate))


def tls_broker_fixture(tmp_path: Path, pki: Pki) -> Iterator[BrokerHandle]:
    """Mosquitto with a TLS listener that requires a client certificate signed by ``pki.ca``."""
    handle = start_tls_broker(tmp_path / "mosquitto-tls", pki, require_certificate=True)
    try:
        yield handle
    finally:
        handle.stop()


