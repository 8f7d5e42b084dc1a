"""An image upload cut at random offsets (fault proxy in front of real sshd) resumes and completes.

Every attempt connects afresh (as the flash job does after a drop), puts the same file, and is cut
after a random number of bytes: half the cuts close the link with a FIN once N more bytes went up
(a cellular drop), half reset it (an RST, as a NAT that forgot the connection answers). The offsets
come from a seeded generator whose seed is printed (``SITELINE_CUT_SEED`` replays a run). In the end
the device's file must carry the source's SHA-256 and, because every resume kept the checked prefix,
the bytes sent over all attempts stay close to one copy of the file: each cut may cost at most what
was in flight (PARALLEL requests of BLOCK_SIZE), never the file so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.sshd import SshdHandle

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.integrity import BLOCK_SIZE
from siteline.core.transports.ssh import SshTransport
from siteline.core.transports.transfer import PARALLEL

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd"), pytest.mark.timeout(30)]
MIB = 1 << 20
SIZE = 8 * MIB
CUTS = 4
WINDOW = PARALLEL * BLOCK_SIZE  # the most a cut can lose: the requests in flight
# What the cuts may cost on top of one copy: an RST can lose a whole window (sshd's unread socket buffer goes
# with it), a FIN only the blocks torn or left as holes (most are found good again); plus SSH/SFTP framing,
# ~0.3 %. Measured: 1.02-1.05 x the file, 1.03-1.22 x with both cores busy; this bound is ~1.6 x. The
# resume itself is proven by the .part never shrinking: starting over opens it with "wb", truncating it.
RESENT_LIMIT = CUTS // 2 * WINDOW + CUTS // 2 * WINDOW // 4 + SIZE // 100


@pytest.fixture
def proxy(sshd: SshdHandle) -> Iterator[FaultProxy]:
    with FaultProxy(sshd.port) as p:
        # A fast link with some delay, so requests are really in flight when a cut lands.
        p.shape(rtt=0.01, rate=16_000_000)
        yield p


def _transport(sshd: SshdHandle, proxy: FaultProxy, tmp: Path) -> SshTransport:
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{proxy.port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    return SshTransport(target, creds, tmp / "known_hosts", keepalive_interval=1.0, connect_timeout=5,
                        accept_new_host_key=True)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _size(path: Path) -> int:
    """The partial file's size (0: none yet); sync, so the async test touches files only through helpers."""
    return path.stat().st_size if path.exists() else 0


async def _settled_size(path: Path) -> int:
    """The partial file's size once the device stopped writing: sftp-server goes on with the requests it had
    read for a moment after the client saw the cut."""
    last, stable_since = _size(path), time.monotonic()
    deadline = stable_since + 5.0
    while time.monotonic() - stable_since < 0.2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if (now := _size(path)) != last:
            last, stable_since = now, time.monotonic()
    return last


def _exists(path: Path) -> bool:
    return path.exists()


def _make(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _seed() -> int:
    text = os.environ.get("SITELINE_CUT_SEED", "")
    return int(text) if text.isdigit() else random.SystemRandom().randrange(1 << 31)


async def _reset_when(proxy: FaultProxy, up_bytes: int) -> None:
    """Reset every connection once ``up_bytes`` more went up (polling: the proxy cuts with FIN only by count)."""
    target = proxy.bytes_up + up_bytes
    deadline = time.monotonic() + 20.0
    while proxy.bytes_up < target:
        if time.monotonic() > deadline:
            return  # the put ended first: the test's pytest.raises says so
        await asyncio.sleep(0.002)
    await asyncio.to_thread(proxy.cut, True)


async def _attempt(t: SshTransport, proxy: FaultProxy, src: Path, remote: str, cut: tuple[str, int] | None) -> int:
    """One connect + put; returns where the put started (the prefix a resume kept). Raises on a cut."""
    await t.connect()
    resetter: asyncio.Task[None] | None = None
    try:
        if cut is not None and cut[0] == "fin":
            proxy.cut_after(up=cut[1])
        elif cut is not None:
            resetter = asyncio.ensure_future(_reset_when(proxy, cut[1]))
        result = await t.put(src, remote)
        return result.resumed_from
    finally:
        if resetter is not None:
            resetter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resetter
        await t.close()
        proxy.cut_after(up=100 * SIZE)  # a landed cut must not stay armed for the next attempt


async def test_upload_cut_at_random_offsets_resumes_and_completes(
    sshd: SshdHandle, proxy: FaultProxy, tmp_path: Path
) -> None:
    seed = _seed()
    rng = random.Random(seed)
    cuts = [("fin" if i % 2 == 0 else "rst", rng.randrange(MIB // 2, 3 * MIB // 2)) for i in range(CUTS)]
    print(f"SITELINE_CUT_SEED={seed}; cuts (kind, bytes up after connecting): {cuts}")
    src = _make(tmp_path / "image.img.zst", SIZE)
    remote = str(tmp_path / "far" / "image.img.zst")
    (tmp_path / "far").mkdir()
    t = _transport(sshd, proxy, tmp_path)
    began = time.monotonic()
    part = Path(remote + ".part")
    restart_cost = SIZE  # what the attempts would send if every one started over
    after = 0
    for cut in cuts:
        before = after
        with pytest.raises(TransportError, match=r"(?i)again"):
            await _attempt(t, proxy, src, remote, cut)
        after = await _settled_size(part)
        print(f"  {cut[0]} after {cut[1]} bytes: .part {before} -> {after}")
        # A restart would truncate the .part ("wb"); a resume keeps it and writes on (an RST may lose all
        # of one attempt's bytes in flight, so equal is allowed).
        assert after >= before, "the partial file shrank: the upload started over instead of resuming"
        restart_cost += after
    resumed_from = await _attempt(t, proxy, src, remote, None)
    took = time.monotonic() - began
    sent = proxy.bytes_up
    print(f"resumed last from {resumed_from}; sent {sent} bytes up for a {SIZE} byte file "
          f"({sent / SIZE:.3f} x; starting over each time: {restart_cost / SIZE:.3f} x) "
          f"over {CUTS + 1} attempts in {took:.1f} s")
    assert _sha(Path(remote)) == _sha(src)
    assert not _exists(part), "the .part must be renamed into place"
    assert resumed_from >= after - WINDOW > 0, "the last resume must keep the checked prefix"
    assert sent - SIZE <= RESENT_LIMIT, f"sent {sent / SIZE:.3f} x the file"
