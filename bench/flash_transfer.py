"""Flash transfer: an image uploaded by Siteline vs OpenSSH's scp, through a shaped LTE link and on loopback.

    .venv/bin/python bench/flash_transfer.py [--size-mib N] [--quick] [--repeat N] [--variant K=V[,K=V]]...

Issue 6's transfer benchmark, every figure measured in the same run against the same real sshd:
- shaped: the tests' fault proxy as a good LTE link (20 Mbit/s each way, 30 ms delay each way = 60 ms RTT);
  Siteline's ``SshTransport.put`` (resumable SFTP + SHA-256 check) vs ``scp`` through the same proxy port,
  ratio = scp time / Siteline time (> 1: Siteline faster; goal >= 0.95);
- loopback: the same pair straight to sshd (goal >= 0.7), the median of ``--repeat`` (default 5) alternating runs;
- bmap-sparse: a sparse raw image (default 256 MiB holding 8 MiB of data) with its .bmap, compressed as a
  technician ships it (zstd, gzip); the bytes Siteline sends for it (compressed image + .bmap, counted on the
  proxy's wire, SSH framing included) against the image's size.
``--variant parallel=32,block=65536,channels=1`` also times Siteline with those transfer.py settings
(monkeypatched here, for this run only) on both links, to measure a tuning before anyone changes transfer.py.

Both timings start before the SSH handshake and after ``os.sync()`` (dirty pages of one upload must not be
written back on the next one's clock); Siteline's includes its fsync and SHA-256 check, scp's checks nothing.
The default is 512 MiB as the issue asks (~215 s a run at 20 Mbit/s); ``--quick`` is a 32 MiB smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle, start_sshd

from siteline.core.images.formats import describe
from siteline.core.targets import parse_target
from siteline.core.transports import integrity, transfer
from siteline.core.transports.base import Credentials
from siteline.core.transports.ssh import SshTransport

MIB = 1 << 20
BMAP_BLOCK = 4096


@dataclass(frozen=True)
class Variant:
    """transfer.py settings for one Siteline run; None keeps the shipped value."""

    parallel: int | None = None
    block: int | None = None
    channels: int | None = None

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in (("parallel", self.parallel), ("block", self.block),
                                         ("channels", self.channels)) if v is not None]
        return ",".join(parts) or "shipped"


def parse_variant(text: str) -> Variant:
    values: dict[str, int] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip() not in ("parallel", "block", "channels") or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: use parallel=N, block=BYTES or channels=N")
        values[key.strip()] = int(value)
    return Variant(**values)


@dataclass
class Runs:
    siteline: list[float] = field(default_factory=list)
    scp: list[float] = field(default_factory=list)
    wire_siteline: int = 0  # bytes up through the proxy in the last Siteline run (0 on loopback)
    wire_scp: int = 0
    checks: list[dict[str, float]] = field(default_factory=list)  # Siteline's fsync / far-side hash seconds


# -- the two uploaders ------------------------------------------------------------------------------


def _transport(sshd: SshdHandle, port: int, known: Path) -> SshTransport:
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{port}")
    return SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False), known,
                        accept_new_host_key=True)


@contextlib.contextmanager
def _channels(n: int | None) -> Iterator[None]:
    """transfer.CHANNELS is read at call time, so it can be set for one run; PARALLEL and the block size
    are sftp_put's default arguments and go in as arguments instead."""
    old = transfer.CHANNELS
    transfer.CHANNELS = n if n is not None else old
    try:
        yield
    finally:
        transfer.CHANNELS = old


async def _siteline_put(sshd: SshdHandle, port: int, src: Path, remote: str, known: Path, v: Variant) -> float:
    t = _transport(sshd, port, known)
    began = time.monotonic()  # from before the handshake, as scp's time includes its own
    await t.connect()
    try:
        if v == Variant():
            await t.put(src, remote)  # exactly what a flash job calls
        else:
            with _channels(v.channels):
                # _device(): the connection put() itself uses; the bench's way to pass sftp_put other settings
                await transfer.sftp_put(t._device(), src, remote,
                                        parallel=v.parallel or transfer.PARALLEL,
                                        block_size=v.block or integrity.BLOCK_SIZE)
        return time.monotonic() - began
    finally:
        await t.close()


@contextlib.contextmanager
def _timing_checks(into: dict[str, float]) -> Iterator[None]:
    """Time the two checks scp does not make (the fsync on the device, the device's SHA-256 of the file) by
    wrapping what sftp_put calls; both are looked up at call time, so the wrappers see every call."""
    names = vars(transfer)  # transfer.py's globals: sftp_put finds remote_hash there at each call
    hash_fn: Callable[..., Awaitable[str]] = names["remote_hash"]
    fsync_fn = asyncssh.SFTPClientFile.fsync
    into.update(fsync=0.0, hash=0.0)

    async def timed_hash(*args: Any, **kwargs: Any) -> str:
        began = time.monotonic()
        try:
            return await hash_fn(*args, **kwargs)
        finally:
            into["hash"] += time.monotonic() - began

    async def timed_fsync(self: asyncssh.SFTPClientFile) -> None:
        began = time.monotonic()
        try:
            await fsync_fn(self)
        finally:
            into["fsync"] += time.monotonic() - began

    names["remote_hash"] = timed_hash
    asyncssh.SFTPClientFile.fsync = timed_fsync  # type: ignore[method-assign]
    try:
        yield
    finally:
        names["remote_hash"] = hash_fn
        asyncssh.SFTPClientFile.fsync = fsync_fn  # type: ignore[method-assign]


def siteline(sshd: SshdHandle, port: int, src: Path, remote: Path, known: Path, v: Variant = Variant(),
             checks: dict[str, float] | None = None) -> float:
    remote.unlink(missing_ok=True)
    os.sync()
    with _timing_checks(checks if checks is not None else {}):
        return asyncio.run(_siteline_put(sshd, port, src, str(remote), known, v))


def scp(sshd: SshdHandle, port: int, src: Path, remote: Path, known: Path) -> float:
    cmd = ["scp", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={known}",
           "-o", "IdentitiesOnly=yes", "-F", "/dev/null", "-i", str(sshd.client_key), "-P", str(port),
           str(src), f"{sshd.user}@127.0.0.1:{remote}"]
    remote.unlink(missing_ok=True)
    os.sync()
    began = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, timeout=3600)
    return time.monotonic() - began


# -- the pairs --------------------------------------------------------------------------------------


def pair(sshd: SshdHandle, port: int, src: Path, folder: Path, proxy: FaultProxy | None, repeat: int) -> Runs:
    """Siteline and scp ``repeat`` times each, alternating who goes first (neither always meets the
    other's leftovers: writeback, caches)."""
    runs = Runs()
    dst_mine, dst_scp = folder / "far-siteline.img", folder / "far-scp.img"
    for i in range(repeat):
        for who in (("scp", "siteline") if i % 2 else ("siteline", "scp")):
            if proxy is not None:
                proxy.reset_counters()
            if who == "siteline":
                runs.checks.append({})
                runs.siteline.append(siteline(sshd, port, src, dst_mine, folder / "known_siteline",
                                              checks=runs.checks[-1]))
                runs.wire_siteline = proxy.bytes_up if proxy else 0
            else:
                runs.scp.append(scp(sshd, port, src, dst_scp, folder / "known_scp"))
                runs.wire_scp = proxy.bytes_up if proxy else 0
    for p in (dst_mine, dst_scp):
        p.unlink(missing_ok=True)
    return runs


def report(label: str, runs: Runs, size: int, goal: float) -> float:
    mine, theirs = statistics.median(runs.siteline), statistics.median(runs.scp)
    mb = size / 1e6
    ratio = theirs / mine
    print(f"{label:>9}: siteline {mine:7.1f} s {mb / mine:7.2f} MB/s | scp {theirs:7.1f} s {mb / theirs:7.2f} MB/s"
          f" | ratio scp/siteline {ratio:.3f} (goal >= {goal}: {'met' if ratio >= goal else 'NOT met'})")
    if len(runs.siteline) > 1:
        each = ", ".join(f"{t / m:.3f}" for m, t in zip(runs.siteline, runs.scp, strict=True))
        print(f"{'':>11}median of {len(runs.siteline)}; each run's ratio: {each}")
    fsync, hashed = (statistics.median(c[k] for c in runs.checks) for k in ("fsync", "hash"))
    print(f"{'':>11}of Siteline's time: fsync on the device {fsync:.2f} s, the device's SHA-256 {hashed:.2f} s "
          f"(checks scp does not make; median)")
    if runs.wire_siteline:
        print(f"{'':>11}bytes on the wire (up): siteline {runs.wire_siteline / size:.4f} x the file, "
              f"scp {runs.wire_scp / size:.4f} x")
    return ratio


def fixed_cost(sshd: SshdHandle, proxy: FaultProxy, folder: Path) -> None:
    """What one upload costs besides its bytes (handshake, round trips, the checks): a 64 KiB file each."""
    tiny = folder / "tiny.bin"
    tiny.write_bytes(os.urandom(64 * 1024))
    runs = pair(sshd, proxy.port, tiny, folder, proxy, 3)
    mine, theirs = statistics.median(runs.siteline), statistics.median(runs.scp)
    print(f"{'':>11}fixed cost of one upload (64 KiB file, median of 3): siteline {mine:.2f} s, scp {theirs:.2f} s")


def variants(sshd: SshdHandle, port: int, src: Path, folder: Path, label: str, chosen: list[Variant],
             repeat: int) -> None:
    """The shipped settings and each variant, ``repeat`` rounds in rotating order; medians (with the checks'
    time taken out too, since they do not depend on the settings)."""
    mb = src.stat().st_size / 1e6
    dst = folder / "far-variant.img"
    every = [Variant(), *chosen]
    took: dict[Variant, list[float]] = {v: [] for v in every}
    net: dict[Variant, list[float]] = {v: [] for v in every}
    for i in range(repeat):
        for v in every[i % len(every):] + every[: i % len(every)]:
            checks: dict[str, float] = {}
            took[v].append(siteline(sshd, port, src, dst, folder / "known_siteline", v, checks))
            net[v].append(took[v][-1] - checks["fsync"] - checks["hash"])
    base, base_net = statistics.median(took[Variant()]), statistics.median(net[Variant()])
    print(f"{label:>9}: settings, median of {repeat} (shipped: parallel={transfer.PARALLEL}, "
          f"block={integrity.BLOCK_SIZE}, channels={transfer.CHANNELS})")
    for v in every:
        t, n = statistics.median(took[v]), statistics.median(net[v])
        print(f"{'':>11}{v.label:<34} {t:7.2f} s {mb / t:7.2f} MB/s ({base / t:.3f} x shipped; "
              f"without the checks {n:.2f} s, {base_net / n:.3f} x)")
    dst.unlink(missing_ok=True)


# -- the bmap-sparse image --------------------------------------------------------------------------


def sparse_image(path: Path, size: int, data: int) -> None:
    """A raw image with holes: 1 MiB at the start (partition table, boot), the rest of ``data`` in
    512 KiB pieces spread evenly, like a filesystem image with free space left unwritten. Random bytes:
    a worst case for the compressors (rootfs images are mostly compressed squashfs anyway)."""
    with path.open("wb") as fh:
        fh.truncate(size)
        fh.write(os.urandom(MIB))
        pieces = max(0, (data - MIB) // (512 * 1024))
        for i in range(pieces):
            offset = MIB + (i + 1) * ((size - 2 * MIB) // (pieces + 1)) // BMAP_BLOCK * BMAP_BLOCK
            os.pwrite(fh.fileno(), os.urandom(512 * 1024), offset)


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """(first, last) blocks that hold data, from SEEK_DATA/SEEK_HOLE: what `bmaptool create` reads too."""
    size = path.stat().st_size
    out: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start // BMAP_BLOCK, (min(end, size) - 1) // BMAP_BLOCK))
            pos = end
    finally:
        os.close(fd)
    return out


def write_bmap(image: Path, out: Path) -> None:
    """A .bmap in bmaptool's format 2.0 (sha256 per range, the file's own checksum) from ``mapped_ranges``."""
    size = image.stat().st_size
    ranges = mapped_ranges(image)
    lines = []
    with image.open("rb") as fh:
        for first, last in ranges:
            fh.seek(first * BMAP_BLOCK)
            digest = hashlib.sha256(fh.read(min((last + 1) * BMAP_BLOCK, size) - first * BMAP_BLOCK))
            span = f"{first}-{last}" if last > first else f"{first}"
            lines.append(f'        <Range chksum="{digest.hexdigest()}"> {span} </Range>\n')
    mapped = sum(last - first + 1 for first, last in ranges)
    text = (f'<?xml version="1.0" ?>\n<bmap version="2.0">\n    <ImageSize> {size} </ImageSize>\n'
            f"    <BlockSize> {BMAP_BLOCK} </BlockSize>\n    <BlocksCount> {-(-size // BMAP_BLOCK)} </BlocksCount>\n"
            f"    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n    <ChecksumType> sha256 </ChecksumType>\n"
            f"    <BmapFileChecksum> {'0' * 64} </BmapFileChecksum>\n    <BlockMap>\n{''.join(lines)}"
            "    </BlockMap>\n</bmap>\n")
    out.write_text(text.replace("0" * 64, hashlib.sha256(text.encode()).hexdigest(), 1))


def make_bmap(image: Path, out: Path) -> str:
    """bmaptool's own .bmap where it is installed, else this bench's; says which."""
    tool = shutil.which("bmaptool")
    if tool is not None:
        subprocess.run([tool, "create", "-o", str(out), str(image)], check=True, capture_output=True, timeout=600)
        return "bmaptool create"
    write_bmap(image, out)
    return "bmaptool is not installed here: .bmap written by this bench in its format 2.0 from SEEK_DATA/SEEK_HOLE"


def compress(image: Path, tool: str) -> Path:
    suffix = {"zstd": ".zst", "gzip": ".gz"}[tool]
    out = image.with_name(image.name + suffix)
    cmd = [tool, "-q", "-T0", "-f", "-o", str(out), str(image)] if tool == "zstd" else [tool, "-k", "-f", str(image)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return out


def bmap_sparse(sshd: SshdHandle, proxy: FaultProxy, folder: Path, size: int, data: int) -> None:
    image = folder / "sparse.img"
    sparse_image(image, size, data)
    how = make_bmap(image, folder / "sparse.bmap")
    mapped = sum((b - a + 1) * BMAP_BLOCK for a, b in mapped_ranges(image))
    packed = {tool: compress(image, tool) for tool in ("zstd", "gzip") if shutil.which(tool)}
    bmap = folder / "sparse.bmap"
    print(f"bmap-sparse: {size / MIB:g} MiB image, {mapped / MIB:.2f} MiB mapped ({how})")
    for tool, path in packed.items():
        checked = describe(path).details.get("bmap_ok")
        proxy.reset_counters()
        began = time.monotonic()
        for f in (path, bmap):  # what a flash job of a raw image sends: the shipped file and its block map
            siteline(sshd, proxy.port, f, folder / ("far-" + f.name), folder / "known_siteline")
        took = time.monotonic() - began
        shipped = path.stat().st_size + bmap.stat().st_size
        print(f"{'':>11}{tool}: {path.stat().st_size} + .bmap {bmap.stat().st_size} bytes = {shipped / size:.4f} x the "
              f"image; on the wire {proxy.bytes_up} bytes = {proxy.bytes_up / size:.4f} x the image, {took:.1f} s "
              f"(the raw image: ~{size / (proxy.up.rate or 1):.0f} s); bmap check {checked}")


# -- main -------------------------------------------------------------------------------------------


def random_file(path: Path, mib: int) -> None:
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(MIB))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512, help="upload size in MiB (default 512)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 32 MiB upload, 64 MiB sparse image, 1 repeat")
    ap.add_argument("--rate", type=float, default=20.0, help="proxy bandwidth each way in Mbit/s (default 20)")
    ap.add_argument("--rtt", type=float, default=60.0, help="proxy round trip in ms (default 60)")
    ap.add_argument("--repeat", type=int, default=5, help="loopback runs, median reported (default 5)")
    ap.add_argument("--sparse-mib", type=int, default=256, help="bmap-sparse image size (default 256)")
    ap.add_argument("--sparse-data-mib", type=int, default=8, help="data in the sparse image (default 8)")
    ap.add_argument("--variant", type=parse_variant, action="append", default=[],
                    help="also time Siteline with transfer.py settings, e.g. parallel=32,block=65536,channels=1")
    ap.add_argument("--skip", choices=("shaped", "loopback", "sparse"), action="append", default=[])
    args = ap.parse_args()
    logging.getLogger("siteline").setLevel(logging.ERROR)  # no "first contact: trusting its host key" lines
    if args.quick:
        args.size_mib, args.sparse_mib, args.repeat = min(args.size_mib, 32), min(args.sparse_mib, 64), 1
    with tempfile.TemporaryDirectory(prefix="siteline-bench-flash-") as tmp:
        folder = Path(tmp)
        src = folder / "image.img"
        random_file(src, args.size_mib)
        size = src.stat().st_size
        sshd = start_sshd(folder / "sshd")
        try:
            with FaultProxy(sshd.port) as proxy:
                proxy.shape(rtt=args.rtt / 1000, rate=args.rate * 1e6 / 8)
                print(f"{args.size_mib} MiB image; shaped link {args.rate:g} Mbit/s each way, {args.rtt:g} ms RTT")
                if "shaped" not in args.skip:
                    report("shaped", pair(sshd, proxy.port, src, folder, proxy, 1), size, 0.95)
                    fixed_cost(sshd, proxy, folder)
                    if args.variant:
                        variants(sshd, proxy.port, src, folder, "shaped", args.variant, 1)
                if "loopback" not in args.skip:
                    report("loopback", pair(sshd, sshd.port, src, folder, None, max(1, args.repeat)), size, 0.7)
                    if args.variant:
                        variants(sshd, sshd.port, src, folder, "loopback", args.variant, max(1, args.repeat))
                if "sparse" not in args.skip:
                    bmap_sparse(sshd, proxy, folder, args.sparse_mib * MIB, args.sparse_data_mib * MIB)
        finally:
            sshd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
