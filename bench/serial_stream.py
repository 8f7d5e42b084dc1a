"""Serial console throughput through the simulator's paced console (`siteline sim`), every byte checked.

    .venv/bin/python bench/serial_stream.py [--big-mb 10] [--chunk-kb 512] [--skip-single]

(Not bench/serial.py: a file of that name in bench/ is what `import serial` finds first for every
script run from this folder, so pyserial would break for bench/roundtrip.py and the rest.)

The simulator paces its console at the rate the client set (10 bits a byte, 8N1); a bare pty
would ignore baud rates. For each row a deterministic random file is put in the device's home
directory and streamed back with ``base64 FILE`` through ``SerialTransport.run`` (the same path
every probe takes), then decoded and compared by SHA-256 with what was written. Throughput is
given as a ratio to the line rate: wire bytes (everything received: echo, output with CRLF,
markers, prompt) x 10 bits / baud / seconds. Kernel messages are switched off for the run: a
line printed in the middle of a base64 line would be a corrupted payload, not a slow one.

Rows: 100 KB at 115200 baud; 10 MB at 3,000,000 baud in one command; the same 10 MB in chunks
(one command per ``--chunk-kb``), to show what the line gives when each command's output fits the
simulator's output backlog (see the note printed at the end when bytes were lost).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.peers.sim import PASSWORD, SimProcess, make_state, start_sim_process

from siteline.core.errors import TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.serial import SerialTransport
from siteline.simulator.rootfs import home_of


@dataclass
class Row:
    label: str
    baud: int
    payload: int  # file bytes
    wire: int = 0  # bytes received on the line
    seconds: float = 0.0
    intact: bool = False
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.wire * 10 / self.baud / self.seconds if self.seconds else 0.0


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _stream(t: SerialTransport, name: str, data: bytes, baud: int) -> tuple[bool, int, float, str]:
    """``base64 name`` over the console: (intact, wire bytes, seconds, what went wrong)."""
    encoded = base64.encodebytes(data).decode()  # 76-character lines, as GNU base64 prints them
    budget = len(encoded) * 1.05 * 10 / baud * 1.5 + 10  # half again the line time, then give up
    peak = 0

    async def watch() -> None:  # how far a stream got when its end marker never arrives
        nonlocal peak
        while True:
            peak = max(peak, t._link.raw_total)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    began = time.monotonic()
    try:
        result = await t.run(f"base64 {name}", timeout=budget)
    except TransportError as exc:
        return False, peak, time.monotonic() - began, f"{type(exc).__name__}: {str(exc)[:90]}"
    finally:
        watcher.cancel()
    seconds = time.monotonic() - began
    wire = t._link.raw_total
    if result.exit_code != 0:
        return False, wire, seconds, f"exit {result.exit_code}: {result.stderr[:80]}"
    got = hashlib.sha256(result.stdout.encode()).hexdigest()
    if got != hashlib.sha256(encoded.encode()).hexdigest():
        return False, wire, seconds, f"hash differs: {len(result.stdout)} of {len(encoded)} characters"
    decoded = base64.b64decode(result.stdout)
    return hashlib.sha256(decoded).digest() == hashlib.sha256(data).digest(), wire, seconds, ""


async def _measure(link: Path, home: Path, baud: int, rows: list[tuple[Row, int]]) -> None:
    t = SerialTransport(parse_target(f"serial://{link}?baud={baud}"), Credentials("root", PASSWORD),
                        wake_timeout=2.0, login_timeout=10.0)
    await t.connect()
    try:
        for row, chunk in rows:
            data = _payload(row.payload, seed=row.payload)
            pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
            for n, piece in enumerate(pieces):
                (home / f"bench-{n}.bin").write_bytes(piece)
            for n, piece in enumerate(pieces):
                ok, wire, seconds, note = await _stream(t, f"bench-{n}.bin", piece, baud)
                row.wire, row.seconds = row.wire + wire, row.seconds + seconds
                if not ok:
                    row.note = note
                    break
            else:
                row.intact = True
            print(f"  {row.label}: done in {row.seconds:.1f} s", flush=True)
    finally:
        await t.close()


def _device(folder: Path, baud: int) -> tuple[SimProcess, Path, Path]:
    state = make_state(folder / f"dev-{baud}", serial_baud=baud, kernel_log_interval=3600.0)
    link = folder / f"tty-{baud}"
    sim = start_sim_process(state.root, "--serial-link", str(link))
    return sim, link, home_of(state.root, state.config.user)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--big-mb", type=float, default=10.0, help="payload at 3,000,000 baud in MB (default 10)")
    ap.add_argument("--chunk-kb", type=int, default=512, help="chunk size for the chunked row in KiB (default 512)")
    ap.add_argument("--skip-single", action="store_true", help="skip the 10 MB single-command row")
    args = ap.parse_args()
    big = int(args.big_mb * 1_000_000)
    plan: dict[int, list[tuple[Row, int]]] = {
        115200: [(Row("100 KB @ 115200, one command", 115200, 100_000), 100_000)],
        3_000_000: [],
    }
    if not args.skip_single:
        plan[3_000_000].append((Row(f"{args.big_mb:g} MB @ 3000000, one command", 3_000_000, big), big))
    plan[3_000_000].append((Row(f"{args.big_mb:g} MB @ 3000000, {args.chunk_kb} KiB commands", 3_000_000, big),
                            args.chunk_kb * 1024))
    with tempfile.TemporaryDirectory(prefix="siteline-bench-serial-") as tmp:
        for baud, rows in plan.items():
            sim, link, home = _device(Path(tmp), baud)
            try:
                asyncio.run(_measure(link, home, baud, rows))
            finally:
                sim.stop()
    _table([row for rows in plan.values() for row, _chunk in rows])
    return 0


def _table(rows: list[Row]) -> None:
    print()
    print(f"{'stream':<38} {'payload':>10} {'wire':>11} {'seconds':>8} {'ratio':>6}  bytes")
    for r in rows:
        verdict = "all intact (sha256)" if r.intact else f"LOST: {r.note}"
        ratio = f"{r.ratio:6.3f}" if r.intact else "     -"  # a stream that lost bytes has no honest rate
        print(f"{r.label:<38} {r.payload:>10,} {r.wire:>11,} {r.seconds:>8.2f} {ratio}  {verdict}")
    print("ratio = wire bytes x 10 bits / baud / seconds (1.0 = the line never idle; base64 adds 35 % on top).")
    if any(not r.intact for r in rows):
        print("Lost bytes are a fault: the simulated line pauses the shell above 256 KiB of backlog and holds")
        print("output back while the client reads slowly, so nothing should be dropped while a client reads.")

if __name__ == "__main__":
    sys.exit(main())
