"""Helpers for the flash tests, and a Siteline stand-in that dies mid-job (the kill test runs it as a process).

``python -m tests.integration.flash_worker STORE JOB_ID PORT KNOWN_HOSTS KEYS DIE_AFTER`` runs the stored job
against the simulated device on PORT and kills itself (SIGKILL, no cleanup at all) right after the step
DIE_AFTER was saved as done (or, for ``reboot-sent`` / ``reboot-sent-2``, the moment the device took the first /
second reboot command): what a laptop losing power or an OOM kill leaves behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from siteline.core.flash.job import FlashJob, FlashOptions, HealthCheck
from siteline.core.flash.link import TransportLink
from siteline.core.flash.machine import run_job
from siteline.core.flash.store import JobStore
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.core.plugin_api import UpdateBackend
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result, Transport
from siteline.core.transports.ssh import SshTransport
from siteline_slots.update import RaucBackend

PASSWORD = "s1te-line-test"  # tests.peers.sim.PASSWORD (not imported: this file also runs as a script)
COMPATIBLE = "nwedge-gw-imx8mm"


def openssl(*args: str | Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def rauc_tool(*args: str | Path) -> None:
    done = subprocess.run(["rauc", *map(str, args)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def make_signer(d: Path) -> tuple[Path, Path, TrustedKeys]:
    """An EC key (signs the .sig and the bundle's CMS), its certificate, and a trusted-keys store holding it."""
    d.mkdir(parents=True, exist_ok=True)
    key, cert, pub = d / "key.pem", d / "cert.pem", d / "pub.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-out", cert, "-days", "1", "-subj", "/CN=siteline-flash-test")
    openssl("pkey", "-in", key, "-pubout", "-out", pub)
    keys = TrustedKeys(d / "trusted")
    keys.add(pub.read_bytes(), "flash-test")
    return key, cert, keys


def bundle(d: Path, key: Path, cert: Path, version: str, *, boots: bool = True, healthy: bool = True,
           compatible: str = COMPATIBLE, size: int = 65536) -> Path:
    """A real `rauc bundle` (squashfs + CMS) with the simulator's drill flags, signed as ops teams sign."""
    content = d / f"content-{version}"
    content.mkdir(parents=True)
    (content / "rootfs.ext4").write_bytes(os.urandom(size))
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={compatible}\nversion={version}\n\n"
                                            "[image.rootfs]\nfilename=rootfs.ext4\n")
    (content / "siteline-sim.conf").write_text(f"[siteline-sim]\nboots={str(boots).lower()}\n"
                                               f"healthy={str(healthy).lower()}\n")
    out = d / f"update-{version}.raucb"
    rauc_tool("bundle", f"--cert={cert}", f"--key={key}", content, out)
    openssl("dgst", "-sha256", "-sign", key, "-out", f"{out}.sig", out)
    return out


def ssh_link(port: int, known_hosts: Path) -> TransportLink:
    async def connect() -> Transport:
        transport = SshTransport(parse_target(f"ssh://root@127.0.0.1:{port}"),
                                 Credentials(username="root", password=PASSWORD, use_agent=False), known_hosts,
                                 accept_new_host_key=True, connect_timeout=5.0)
        await transport.connect()
        return transport

    return TransportLink(connect)


def fast_options(**changes: Any) -> FlashOptions:
    health = HealthCheck(units=("edge-agent.service",), settle=0.0, timeout=0.3)
    return FlashOptions(**{"boot_timeout": 20.0, "health": health, "remote_dir": "/data", **changes})


def backends() -> list[UpdateBackend]:
    return [RaucBackend()]


class _DiesAfterReboot(TransportLink):
    """Dies the moment the device took its ``nth`` reboot command: Siteline gone while the device reboots."""

    def __init__(self, connect: Callable[[], Awaitable[Transport]], nth: int) -> None:
        super().__init__(connect)
        self.left = nth

    async def run(self, command: str, timeout: float) -> Result:
        try:
            return await super().run(command, timeout)
        finally:
            if command == "reboot":
                self.left -= 1
                if self.left == 0:
                    os.kill(os.getpid(), signal.SIGKILL)


async def _work(store: JobStore, job: FlashJob, port: int, known_hosts: Path, keys: TrustedKeys,
                die_after: str) -> None:
    def listener(saved: FlashJob) -> None:
        if any(s.name == die_after and s.state == "done" for s in saved.steps):
            os.kill(os.getpid(), signal.SIGKILL)

    link = ssh_link(port, known_hosts)
    if die_after.startswith("reboot-sent"):  # reboot-sent: the first reboot; reboot-sent-2: the rollback's
        link = _DiesAfterReboot(link._connect, int(die_after.rpartition("-")[2]) if die_after[-1].isdigit() else 1)
    try:
        await run_job(job, link, store=store, record=lambda *_: None, backends=backends(), keys=keys,
                      listener=listener)
    finally:
        await link.close()


def main(argv: list[str]) -> int:
    store_dir, job_id, port, known_hosts, keys_dir, die_after = argv
    store = JobStore(Path(store_dir))
    asyncio.run(_work(store, store.load(job_id), int(port), Path(known_hosts), TrustedKeys(Path(keys_dir)),
                      die_after))
    return 3  # only reached when the step never came: the test reads this as "it did not die"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
