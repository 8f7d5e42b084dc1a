"""openssl: the host's real openssl, reading and writing the DEVICE's files; and the device's certificate.

The device certificate (/etc/ssl/device.crt, key in /etc/ssl/private/device.key) is a real X.509
certificate made with the ``cryptography`` package, issued by a per-device "factory CA" whose certificate
is in /etc/ssl/certs/northwind-factory-ca.pem; so ``openssl x509 -enddate``, ``-checkend`` or
``-text`` give openssl's own answers. Absolute paths in the arguments are mapped into the device's
rootfs as ``cat`` maps them (a path after -out or -keyout always is: nothing is written on the host).
"""

from __future__ import annotations

import datetime
import os
import sys

from siteline.simulator import rootfs
from siteline.simulator.private import write_private
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail
from siteline.simulator.tools.system import device_path, real_tool

CERT = "etc/ssl/device.crt"
KEY = "etc/ssl/private/device.key"
CA_CERT = "etc/ssl/certs/northwind-factory-ca.pem"
OUTPUTS = {"-out", "-keyout", "-signature"}
LIFETIME_DAYS = 365.0


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    from siteline.simulator.tools.storage import provision

    provision(state)
    real = real_tool("openssl", state)
    if real is None:
        return fail("openssl: the host has no openssl on PATH to answer for the device", 127)
    mapped: list[str] = []
    for n, arg in enumerate(argv):
        if arg.startswith("/") and n > 0 and argv[n - 1] in OUTPUTS:
            mapped.append(str(rootfs.rootfs(state.root) / os.path.normpath(arg).lstrip("/")))
            continue
        path = device_path(state, arg)
        mapped.append(str(path) if path is not None else arg)
    sys.stdout.flush()
    os.execv(real, [real, *mapped])


def ensure_certificate(state: DeviceState, days_left: float) -> None:
    """Make the device's certificate once: valid for a year, ending ``days_left`` days from now."""
    fs = rootfs.rootfs(state.root)
    if (fs / CERT).exists():
        return
    pem_cert, pem_key, pem_ca = make_certificate(state.hostname(), days_left)
    for rel in (CERT, KEY, CA_CERT):
        (fs / rel).parent.mkdir(parents=True, exist_ok=True)
    write_private(fs / KEY, pem_key)
    (fs / CA_CERT).write_bytes(pem_ca)
    (fs / CERT).write_bytes(pem_cert)  # last: its presence means "made"


def make_certificate(hostname: str, days_left: float) -> tuple[bytes, bytes, bytes]:
    """(device certificate, device key, CA certificate) as PEM; the CA key is thrown away."""
    # Imported here: only the first call on a device pays for loading cryptography.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    not_after = now + datetime.timedelta(days=days_left)
    not_before = not_after - datetime.timedelta(days=LIFETIME_DAYS)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Northwind Edge"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Northwind Factory CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(not_before - datetime.timedelta(days=30))
          .not_valid_after(not_before + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Northwind Edge"),
                         x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, ca.public_bytes(serialization.Encoding.PEM)
