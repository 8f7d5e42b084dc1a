"""SFTP upload speed against OpenSSH's scp, measured in the same run against the same real sshd.

    .venv/bin/python bench/sftp.py [--size MIB] [--rate MBIT] [--rtt MS] [--repeat N]

Prints, for a random file of ``--size`` MiB (default 256, as the issue asks):
- through the tests' fault proxy shaped as a good LTE link (20 Mbit/s, 60 ms RTT): Siteline's
  ``sftp_put`` vs ``scp`` (same key, same sshd, same proxy), and the ratio (goal >= 0.95);
- on raw loopback (no proxy): the same pair and ratio (goal >= 0.7), the median of ``--repeat`` runs
  (default 3) taken alternately, because a loopback figure on a shared machine swings with its load;
- a cut at 50 % through the proxy, then a resume: bytes sent in total as a multiple of the file (goal <= 1.05).

Every timing starts after ``os.sync()``: dirty pages of the previous upload must not be written back
on the next one's clock. Both times include connecting; Siteline's also its SHA-256 check of the
result (scp checks nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle, start_sshd

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.ssh import SshTransport


async def _put(sshd: SshdHandle, port: int, src: Path, remote: str, known: Path) -> float:
    t = SshTransport(
        parse_target(f"ssh://{sshd.user}@127.0.0.1:{port}"),
        Credentials(key_path=str(sshd.client_key), use_agent=False), known,
     accept_new_host_key=True,)
    os.sync()
    began = time.monotonic()  # from before the handshake, as scp's time includes its own
    await t.connect()
    try:
        await t.put(src, remote)
        return time.monotonic() - began
    finally:
        await t.close()


def _scp(sshd: SshdHandle, port: int, src: Path, remote: str) -> float:
    cmd = [
        "scp", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-i", str(sshd.client_key), "-P", str(port), str(src), f"{sshd.user}@127.0.0.1:{remote}",
    ]
    os.sync()
    began = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - began


def _pair(sshd: SshdHandle, port: int, src: Path, folder: Path, label: str, repeat: int = 1) -> None:
    mine: list[float] = []
    theirs: list[float] = []
    known = folder / "known_hosts"
    for i in range(repeat):
        # Alternate who goes first, so neither always meets the other's leftovers (writeback, caches).
        if i % 2:
            theirs.append(_scp(sshd, port, src, str(folder / f"{label}-scp.bin")))
        mine.append(asyncio.run(_put(sshd, port, src, str(folder / f"{label}-siteline.bin"), known)))
        if not i % 2:
            theirs.append(_scp(sshd, port, src, str(folder / f"{label}-scp.bin")))
    mb = src.stat().st_size / 1e6
    a, b = statistics.median(mine), statistics.median(theirs)
    each = ", ".join(f"{t / m:.2f}" for m, t in zip(mine, theirs, strict=True))
    runs = f"  (median of {repeat}; each run: {each})" if repeat > 1 else ""
    print(f"{label:>9}: siteline {mb / a:7.2f} MB/s  scp {mb / b:7.2f} MB/s  ratio {b / a:.3f}{runs}")


async def _resume(sshd: SshdHandle, proxy: FaultProxy, src: Path, size: int, remote: str, known: Path) -> None:
    proxy.reset_counters()
    proxy.cut_after(up=size // 2)
    with contextlib.suppress(TransportError):
        await _put(sshd, proxy.port, src, remote, known)
    proxy.cut_after(up=10 * size)
    await _put(sshd, proxy.port, src, remote, known)
    print(f"   resume: cut at 50 %, bytes sent in total {proxy.bytes_up / size:.3f} x the file")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="file size in MiB (default 256)")
    ap.add_argument("--rate", type=float, default=20.0, help="proxy bandwidth in Mbit/s (default 20)")
    ap.add_argument("--rtt", type=float, default=60.0, help="proxy round trip in ms (default 60)")
    ap.add_argument("--repeat", type=int, default=3, help="loopback runs, median reported (default 3)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="siteline-bench-sftp-") as tmp:
        folder = Path(tmp)
        src = folder / "src.bin"
        with src.open("wb") as fh:
            for _ in range(args.size):
                fh.write(os.urandom(1 << 20))
        sshd = start_sshd(folder / "sshd")
        try:
            with FaultProxy(sshd.port) as proxy:
                proxy.shape(rtt=args.rtt / 1000, rate=args.rate * 1e6 / 8)
                print(f"{args.size} MiB upload; proxy {args.rate:g} Mbit/s, {args.rtt:g} ms RTT")
                _pair(sshd, proxy.port, src, folder, "shaped")
                _pair(sshd, sshd.port, src, folder, "loopback", max(1, args.repeat))
                proxy.shape()
                resume_to, known = str(folder / "resume.bin"), folder / "known_hosts"
                asyncio.run(_resume(sshd, proxy, src, src.stat().st_size, resume_to, known))
        finally:
            sshd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
