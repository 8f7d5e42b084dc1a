"""A device that runs the real RAUC 1.8 service, reachable through the real OpenSSH sshd.

Everything lives under one temp dir and runs as the current user; nothing system-wide is touched:

- a private D-Bus (``dbus-daemon``, session type, on a socket in the dir) that ``rauc service`` registers on;
- ``rauc service`` with its own system.conf: two raw slots backed by files (rootfs.0 = A, rootfs.1 = B),
  a keyring made with openssl, status in the dir, ``bootloader=custom`` with tests/peers/rauc_bootloader.sh
  keeping U-Boot-style counters (BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT) in a file env with fw_setenv. The
  booted slot is A, told with ``--override-boot-slot`` (RAUC would read rauc.slot= on the host's
  /proc/cmdline). It runs in a private mount namespace where possible, so the bundle it mounts during an
  install is never seen on the host;
- sshd whose sessions have the bus in their environment (sshd_config SetEnv) and a PATH whose fw_printenv /
  fw_setenv read the device's env file: the stand-in for the /etc/fw_env.config a real device has.

Only plain-format bundles install here (verity bundles need /dev/mapper/control).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from siteline.simulator.lifetime import die_with_parent
from tests.peers import require_tool
from tests.peers.process import stop_tree
from tests.peers.sshd import NAMESPACES, SshdHandle, keygen, unshare_works

COMPATIBLE = "siteline-test-rauc"
INSTALLED_VERSION = "1.0.0"  # what rootfs.0 (A, booted) says it runs
SLOT_SIZE = 1024 * 1024
ENV_SIZE = 0x4000
TOOLS = ("rauc", "dbus-daemon", "fw_setenv", "fw_printenv", "openssl", "sshd", "ssh-keygen", "mksquashfs")
_BACKEND = Path(__file__).with_name("rauc_bootloader.sh")
_READY_TIMEOUT = 10.0
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
_STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class RaucDevice:
    dir: Path
    sshd: SshdHandle | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def bus(self) -> str:
        return f"unix:path={self.dir / 'bus.sock'}"

    @property
    def bin(self) -> Path:
        return self.dir / "bin"

    @property
    def fw_env_config(self) -> Path:
        return self.dir / "fw_env.config"

    @property
    def env_file(self) -> Path:
        return self.dir / "uboot.env"

    @property
    def ca(self) -> Path:
        return self.dir / "pki" / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.dir / "pki" / "signer.pem"

    @property
    def key(self) -> Path:
        return self.dir / "pki" / "signer.key"

    @property
    def log_file(self) -> Path:
        return self.dir / "rauc.log"

    def slot_file(self, bootname: str) -> Path:
        return self.dir / f"slot{bootname}.img"

    def client_env(self) -> dict[str, str]:
        """What a shell on the device has: the bus, and fw_printenv reading the device's env."""
        return {
            "DBUS_SESSION_BUS_ADDRESS": self.bus,
            "DBUS_STARTER_BUS_TYPE": "session",
            "FW_ENV_CONFIG": str(self.fw_env_config),
            "PATH": f"{self.bin}:{_STD_PATH}",
        }

    def run(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """A command as the device's own shell would run it (for checks from the test, not through Siteline)."""
        return subprocess.run(list(args), env={**os.environ, **self.client_env()}, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def fw_env(self) -> dict[str, str]:
        out = subprocess.run(["fw_printenv", "-c", str(self.fw_env_config)], capture_output=True, text=True,
                             timeout=10, check=True)
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """sshd first (its sessions talk to RAUC), then RAUC, then the bus."""
        if self.sshd is not None:
            self.sshd.stop()
        while self.processes:
            stop_tree(self.processes.pop())


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _make_pki(d: Path) -> None:
    """A CA (RAUC's keyring) and a signer certificate it issued: RAUC checks the bundle's CMS signature
    chains to the keyring, and Siteline checks the same key's detached openssl signature."""
    d.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "2", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-subj", "/CN=Siteline test RAUC CA")
    _openssl("req", *ec, "-keyout", str(d / "signer.key"), "-out", str(d / "signer.csr"),
             "-subj", "/CN=Siteline test RAUC signer")
    _openssl("x509", "-req", "-in", str(d / "signer.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-days", "2", "-out", str(d / "signer.pem"))


def _write_env(dev: RaucDevice) -> None:
    dev.fw_env_config.write_text(f"{dev.env_file} 0x0000 {ENV_SIZE:#x}\n")
    defaults = dev.dir / "uboot-defaults.txt"
    defaults.write_text("BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n")
    dev.env_file.write_bytes(bytes(ENV_SIZE))  # blank: fw_setenv -f writes the defaults with a good CRC
    subprocess.run(["fw_setenv", "-c", str(dev.fw_env_config), "-f", str(defaults)], check=True,
                   capture_output=True, timeout=10)
    dev.bin.mkdir()
    for tool in ("fw_printenv", "fw_setenv"):
        wrapper = dev.bin / tool
        wrapper.write_text(f'#!/bin/sh\nexec {require_tool(tool)} -c "{dev.fw_env_config}" "$@"\n')
        wrapper.chmod(0o755)


def _write_system_conf(dev: RaucDevice) -> Path:
    backend = dev.dir / "rauc_bootloader.sh"
    shutil.copyfile(_BACKEND, backend)
    backend.chmod(0o755)
    for name in ("A", "B"):
        with dev.slot_file(name).open("wb") as fh:
            fh.truncate(SLOT_SIZE)
    data = dev.dir / "data"
    data.mkdir()
    # A is what the device runs: give it a version, so the image gate has one to compare with.
    (data / "central.raucs").write_text(
        f"[slot.rootfs.0]\nbundle.compatible={COMPATIBLE}\nbundle.version={INSTALLED_VERSION}\nstatus=ok\n")
    (dev.dir / "mnt").mkdir()
    conf = dev.dir / "system.conf"
    conf.write_text(
        f"[system]\ncompatible={COMPATIBLE}\nbootloader=custom\nmountprefix={dev.dir / 'mnt'}\n"
        f"data-directory={data}\n\n"
        f"[handlers]\nbootloader-custom-backend={backend}\n\n"
        f"[keyring]\npath={dev.ca}\n\n"
        f"[slot.rootfs.0]\ndevice={dev.slot_file('A')}\ntype=raw\nbootname=A\n\n"
        f"[slot.rootfs.1]\ndevice={dev.slot_file('B')}\ntype=raw\nbootname=B\n"
    )
    return conf


def _spawn(dev: RaucDevice, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                                env={**os.environ, **dev.client_env()},
                                start_new_session=True,  # stop_tree ends the whole group
                                preexec_fn=die_with_parent())
    dev.processes.append(proc)
    return proc


def _wait(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if ready():
            return
        time.sleep(0.03)
    text = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {_READY_TIMEOUT} s (exit {proc.poll()}): {text}")


def _bus_answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
        return True


def _start_bus_and_rauc(dev: RaucDevice, conf: Path) -> None:
    # Our own bus config rather than the host's session.conf: no service activation (nothing but our
    # rauc service may answer for RAUC's name), no host policy files read.
    conf_bus = dev.dir / "bus.conf"
    conf_bus.write_text(_BUS_CONFIG.format(address=dev.bus))
    bus_proc = _spawn(dev, [require_tool("dbus-daemon"), f"--config-file={conf_bus}", "--nofork", "--nopidfile"],
                      dev.dir / "dbus.log")
    _wait("dbus-daemon", lambda: _bus_answers(dev.dir / "bus.sock"), bus_proc, dev.dir / "dbus.log")
    cmd = [require_tool("rauc"), "service", f"--conf={conf}", "--override-boot-slot=A"]
    if unshare_works():  # the bundle RAUC mounts during an install stays in its own mount namespace
        cmd = ["unshare", *NAMESPACES, *cmd]
    rauc = _spawn(dev, cmd, dev.log_file)

    def answers() -> bool:
        try:
            return dev.run("rauc", "status", "--output-format=json", timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    _wait("rauc service", answers, rauc, dev.log_file)


def _start_sshd(dev: RaucDevice) -> SshdHandle:
    workdir = dev.dir / "sshd"
    workdir.mkdir(mode=0o700)
    setenv = " ".join(f'"{k}={v}"' for k, v in dev.client_env().items())
    handle = SshdHandle(workdir=workdir, sshd=require_tool("sshd"), extra_config=f"SetEnv {setenv}\n")
    keygen(handle.host_key)
    keygen(handle.client_key)
    (workdir / "authorized_keys").write_text("")
    handle.authorize(handle.client_key)
    dev.sshd = handle
    handle.start()
    return handle


def start_rauc_device(workdir: Path) -> RaucDevice:
    """Start the bus, RAUC and sshd under ``workdir``; on any failure, what was started is stopped."""
    for tool in TOOLS:
        require_tool(tool)
    workdir.mkdir(parents=True, exist_ok=True)
    dev = RaucDevice(dir=workdir)
    try:
        _make_pki(workdir / "pki")
        _write_env(dev)
        _start_bus_and_rauc(dev, _write_system_conf(dev))
        _start_sshd(dev)
    except BaseException:
        dev.stop()
        raise
    return dev


def rauc_device_fixture(tmp_path: Path) -> Iterator[RaucDevice]:
    """Register with ``pytest.fixture(name=...)(rauc_device_fixture)`` in a test module or conftest."""
    dev = start_rauc_device(tmp_path / "rauc-device")
    try:
        yield dev
    finally:
        dev.stop()


# --- bundles -------------------------------------------------------------------------------------------


def make_bundle(dev: RaucDevice, out: Path, version: str, payload: bytes, *,
                compatible: str = COMPATIBLE) -> Path:
    """A plain-format bundle made and signed by the real ``rauc bundle`` with the device's signer."""
    content = out.with_name(out.name + ".content")
    content.mkdir(parents=True)
    (content / "rootfs.img").write_bytes(payload)
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\ndescription=Siteline test rootfs {version}\n\n"
        "[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n")
    out.unlink(missing_ok=True)
    subprocess.run([require_tool("rauc"), "bundle", f"--cert={dev.cert}", f"--key={dev.key}", str(content),
                    str(out)], check=True, capture_output=True, timeout=30)
    shutil.rmtree(content)
    return out


def sign_detached(dev: RaucDevice, path: Path) -> Path:
    """The ops team's detached signature: ``openssl dgst -sha256 -sign KEY -out FILE.sig FILE``."""
    sig = path.with_name(path.name + ".sig")
    _openssl("dgst", "-sha256", "-sign", str(dev.key), "-out", str(sig), str(path))
    return sig


def public_key_pem(dev: RaucDevice) -> bytes:
    out = subprocess.run(["openssl", "pkey", "-in", str(dev.key), "-pubout"], check=True, capture_output=True,
                         timeout=10)
    return out.stdout
