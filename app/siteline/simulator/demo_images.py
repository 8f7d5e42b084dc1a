"""Update images for the demo site: signed RAUC bundles a technician can flash from the Update tab.

One that works, one that boots but fails the Northwind health check, one that does not boot: the three
outcomes the Update tab must explain. They are real ``rauc bundle`` squashfs bundles with a CMS signature,
plus the detached ``.sig`` ops teams make (``openssl dgst -sha256 -sign``), signed by a demo key that the
demo's own Siteline home trusts; the technician's own keys and library are never touched.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from siteline.simulator.slots import COMPATIBLE

DEMO_KEY_NAME = "demo-ops"
# (version, boots, healthy): what each image does on a simulated device.
IMAGES = (("2024.09.0", True, True), ("2024.09.1-unhealthy", True, False), ("2024.09.2-noboot", False, True))
HEALTH_CHECKS = {"families": [{"family": "Northwind edge gateway", "compatibles": ["nwedge-gw-*"],
                               "units": ["edge-agent.service"], "settle": 3, "timeout": 20}]}


def _signer(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, Path, Path, bytes]:
    """The demo key, made once per demo folder: a demo started again with --dir keeps trusting the same key."""
    key_path, cert_path = folder / "demo-key.pem", folder / "demo-cert.pem"
    if key_path.is_file() and cert_path.is_file():
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey):
            public = loaded.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
            return loaded, key_path, cert_path, public
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "siteline-demo-ops")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, key_path, cert_path, public


def _sign_file(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    """What `openssl dgst -sha256 -sign key.pem -out path.sig path` writes for an EC key (DER ECDSA)."""
    sig = key.sign(path.read_bytes(), ec.ECDSA(hashes.SHA256()))
    path.with_name(path.name + ".sig").write_bytes(sig)


def make_demo_images(folder: Path) -> tuple[list[Path], bytes] | str:
    """The bundles and the public key that signed them, or in words why there are none."""
    rauc = shutil.which("rauc") or shutil.which("rauc", path="/usr/sbin:/sbin")
    if rauc is None or shutil.which("mksquashfs", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        return "no demo update images: rauc and mksquashfs are needed to build them (./run.sh setup installs them)"
    folder.mkdir(parents=True, exist_ok=True)
    key, key_path, cert_path, public = _signer(folder)
    images: list[Path] = []
    for version, boots, healthy in IMAGES:
        out = folder / f"nwedge-{version}.raucb"
        if out.is_file() and out.with_name(out.name + ".sig").is_file():  # built by an earlier start: kept
            images.append(out)
            continue
        content = folder / f"content-{version}"
        shutil.rmtree(content, ignore_errors=True)
        content.mkdir()
        (content / "rootfs.ext4").write_bytes(os.urandom(256 * 1024))
        (content / "manifest.raucm").write_text(
            f"[update]\ncompatible={COMPATIBLE}\nversion={version}\ndescription=Northwind Edge OS {version}\n\n"
            "[image.rootfs]\nfilename=rootfs.ext4\n")
        (content / "siteline-sim.conf").write_text(
            f"[siteline-sim]\nboots={str(boots).lower()}\nhealthy={str(healthy).lower()}\n")
        out.unlink(missing_ok=True)
        done = subprocess.run([rauc, "bundle", f"--cert={cert_path}", f"--key={key_path}", str(content), str(out)],
                              capture_output=True, text=True, timeout=120, check=False)
        shutil.rmtree(content, ignore_errors=True)
        if done.returncode != 0:
            return f"no demo update images: rauc bundle failed ({done.stderr.strip()[-300:]})"
        _sign_file(key, out)
        images.append(out)
    (folder / "demo-pub.pem").write_bytes(public)
    return images, public


def install_demo_images(folder: Path, config_dir: Path) -> str:
    """Build the images, trust the demo key and fill the (demo home's) image library; one line to print."""
    from siteline.core.errors import SitelineError
    from siteline.core.images.library import ImageLibrary
    from siteline.core.images.trusted_keys import TrustedKeys

    made = make_demo_images(folder)
    if isinstance(made, str):
        return made
    images, public = made
    try:
        TrustedKeys().add(public, DEMO_KEY_NAME)
        library = ImageLibrary()
        for image in images:
            library.import_image(image)
    except SitelineError as exc:
        return f"no demo update images: {exc}"
    health = config_dir / "health-checks.json"
    if not health.exists():
        health.write_text(json.dumps(HEALTH_CHECKS, indent=1))
    return (f"update images in the library (Update tab): {', '.join(v for v, _b, _h in IMAGES)}, "
            f"signed by '{DEMO_KEY_NAME}'")
