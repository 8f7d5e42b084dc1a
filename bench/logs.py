"""Log viewer core benchmark: ingest, filter/search, memory per line, first screen of a 1 GB file.

    .venv/bin/python bench/logs.py [--lines 1000000] [--no-10m] [--file-gb 1.0] [--keep-file]

Rows (pure Python, no numpy):
- plain-text ingest (busybox logread lines) in 10 k-line chunks: lines/s and the slowest chunk (what
  one ingest step would stall a UI loop that ingests chunk by chunk; goal < 50 ms);
- journald JSON ingest (batches decoded with orjson, a dependency) against a bare `json.loads` loop
  over the same lines in the same run;
- filter (priority, unit, time range, combined) and regex search/next/previous over 1 M lines,
  then 10 M (built by replicating parsed rows, to spare 50 s of parsing);
- bytes per stored line (the columns) against a list of LogRecord objects;
- time to first screen (open, index the first block, parse 60 lines) of a generated 1 GB file, and
  the time to index all of it; GNU grep -c (and lnav, if installed) over the --lines file for scale.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))

from siteline.core.logs import LogFile, LogStore, Source
from siteline.core.logs.parsers import fields_chunk

UNITS = ["ModemManager", "NetworkManager", "rauc", "sshd", "dropbear", "udhcpc", "edge-app", "kernel", "cron",
         "chronyd", "mosquitto", "systemd"]
LEVELS = ["err", "warn", "notice", "info", "info", "info", "debug", "debug"]
WORDS = ["modem", "signal", "link", "wwan0", "eth0", "carrier", "slot", "rootfs", "booted", "timeout", "retry",
         "connection", "from", "lease", "failed", "ok", "state", "changed", "registered", "roaming", "operator",
         "bytes", "queue", "flush"]
T0 = 1795778711
CHUNK = 2_000  # lines per ingest step: what one step of the UI loop would take


def plain_lines(n: int, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        t = time.gmtime(T0 + i // 50)
        words = " ".join(rnd.choices(WORDS, k=rnd.randint(4, 12)))
        extra = f" error {rnd.randint(100, 999)}" if rnd.random() < 0.01 else ""
        out.append(f"{time.strftime('%b %e %H:%M:%S', t)} gw-site-a daemon.{LEVELS[i % 8]} "
                   f"{UNITS[i % 12]}[{1000 + i % 300}]: {words} #{i}{extra}")
    return out


def journal_lines(n: int) -> list[str]:
    rnd = random.Random(2)
    out = []
    for i in range(n):
        unit = UNITS[i % 12]
        entry = {"__CURSOR": f"s=5f1c0de0a1b2c3d4e5f60718293a4b5c;i={i:x};b=8d2c6e1f4a3b4c5d;m={i * 977:x}",
                 "__REALTIME_TIMESTAMP": str((T0 + i // 50) * 1_000_000 + i % 1000),
                 "__MONOTONIC_TIMESTAMP": str(47497655 + i), "_BOOT_ID": "8d2c6e1f4a3b4c5d9e0f1a2b3c4d5e6f",
                 "_TRANSPORT": "syslog", "PRIORITY": str(i % 8), "SYSLOG_FACILITY": "3", "SYSLOG_IDENTIFIER": unit,
                 "_PID": str(600 + i % 300), "_UID": "0", "_GID": "0", "_COMM": unit.lower(),
                 "_EXE": f"/usr/sbin/{unit}", "_CMDLINE": f"/usr/sbin/{unit} --debug",
                 "_SYSTEMD_CGROUP": f"/system.slice/{unit}.service", "_SYSTEMD_UNIT": f"{unit}.service",
                 "_SYSTEMD_SLICE": "system.slice", "_MACHINE_ID": "3f0e6a5d2c1b4a39876543210fedcba9",
                 "_HOSTNAME": "gw-site-a", "MESSAGE": " ".join(rnd.choices(WORDS, k=8)) + f" #{i}"}
        out.append(json.dumps(entry, separators=(",", ":")))
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def ingest(store: LogStore, lines: list[str], source: Source, chunk: int = 0, **opts: Any) -> tuple[float, float]:
    chunk = chunk or CHUNK
    worst, total = 0.0, 0.0
    for i in range(0, len(lines), chunk):
        took, _ = timed(lambda i=i: store.ingest(lines[i:i + chunk], source, **opts))
        worst, total = max(worst, took), total + took
    return total, worst


def _freeze() -> None:
    # The generated input (a list of 1 M strings) is bench scaffolding a live stream does not hold;
    # left in the GC's young generations, full collections walk it and add ~100 ms spikes to one chunk.
    gc.collect()
    gc.freeze()


def bench_plain(n: int) -> tuple[LogStore, list[str]]:
    lines = plain_lines(n)
    _freeze()
    store = LogStore()
    total, worst = ingest(store, lines, Source.LOGREAD, year=2026)
    print(f"plain ingest   {n:>10,} lines  {n / total:>10,.0f} lines/s (goal 200,000)  "
          f"slowest {CHUNK:,}-line chunk {worst * 1e3:.1f} ms (goal: UI stall < 50 ms)")
    return store, lines


def bench_journal(n: int) -> None:
    lines = journal_lines(n)
    _freeze()
    bare, _ = timed(lambda: [json.loads(line) for line in lines])
    total, worst = ingest(LogStore(), lines, Source.JOURNAL)
    print(f"journal ingest {n:>10,} lines  {n / total:>10,.0f} lines/s; bare json.loads loop {n / bare:,.0f}/s; "
          f"ratio {bare / total:.2f} (>= 1 meets the goal)  slowest {CHUNK:,}-line chunk {worst * 1e3:.1f} ms")
    import orjson

    fast, _ = timed(lambda: [orjson.loads(line) for line in lines])
    print(f"  (a bare orjson.loads loop: {n / fast:,.0f}/s: the decoder's own ceiling)")


def bench_search(store: LogStore, label: str) -> None:
    n = len(store)
    t_mid = store[n // 2].time or 0.0
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("priority <= warning", lambda: store.filter(max_priority=4)),
        ("unit in {rauc, sshd}", lambda: store.filter(units=["rauc", "sshd"])),
        ("time range (10 %)", lambda: store.filter(since=t_mid, until=t_mid + n / 500)),
        ("regex 'error \\d+' (1 %)", lambda: store.filter(regex=r"error \d+")),
        ("regex 'wwan0' (~30 %)", lambda: store.filter(regex="wwan0")),
        ("regex -i 'TIMEOUT.*RETRY'", lambda: store.filter(regex="TIMEOUT.*RETRY", ignore_case=True)),
        ("prio+unit+regex 'lease'", lambda: store.filter(max_priority=6, units=["udhcpc"], regex="lease")),
        ("find next 'error' from 0", lambda: store.find(r"error \d+", 0)),
        ("find previous from the end", lambda: store.find(r"error \d+", n - 1, backward=True)),
        ("find next, none left", lambda: store.find("no-such-text", 0)),
        ("time jump (middle)", lambda: store.first_at_or_after(t_mid)),
    ]
    for name, fn in cases:
        took, result = timed(fn)
        count = len(result) if hasattr(result, "__len__") else result
        print(f"  {label} {name:<28} {took * 1e3:>8.1f} ms  -> {count}")


def bench_memory(store: LogStore, lines: list[str]) -> None:
    per_line = store.nbytes() / len(store)
    msg = sum(len(store.message(i)) + 1 for i in range(0, len(store), 100)) / len(range(0, len(store), 100))
    tracemalloc.start()
    objects = [store[i] for i in range(100_000)]
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"memory         {per_line:.1f} bytes/line stored (of which ~{msg:.0f} message text); "
          f"a list of LogRecord objects: ~{size / len(objects) + 8:.0f} bytes/line; raw line ~{len(lines[0]) + 1} B")


def bench_ten_million(store: LogStore) -> None:
    rows = fields_chunk(plain_lines(100_000, seed=3), Source.LOGREAD, year=2026)
    big = LogStore()
    took, _ = timed(lambda: [big.extend_fields(rows, Source.LOGREAD) for _ in range(100)])
    print(f"10 M store     100 copies of 100 k parsed rows (so times repeat: the time rows are not meaningful) "
          f"built in {took:.1f} s; {big.nbytes() / len(big):.1f} bytes/line, "
          f"{big.nbytes() / 2**20:,.0f} MiB")
    bench_search(big, "10M")


def bench_file(lines: list[str], gb: float, keep: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="siteline-logs-"))
    path = tmp / "big.log"
    blob = ("\n".join(lines) + "\n").encode()
    took, _ = timed(lambda: _write(path, blob, int(gb * 2**30)))
    size = path.stat().st_size
    print(f"1 GB file      {size / 2**30:.2f} GiB written in {took:.1f} s (in the page cache, as after a download)")
    start = time.perf_counter()
    log = LogFile(path, Source.LOGREAD, year=2026)
    log.index_more(max_bytes=1 << 20)
    screen = log.records(0, 60)
    first = time.perf_counter() - start
    took, _ = timed(lambda: _index_all(log))
    mid = len(log) // 2
    jump, _ = timed(lambda: log.records(mid, 60))
    print(f"  first screen {first * 1e3:.1f} ms ({len(screen)} records; goal < 1000 ms); whole index {took:.2f} s "
          f"({len(log):,} lines, {len(log._offsets):,} blocks); jump to the middle {jump * 1e3:.2f} ms")
    log.close()
    small = tmp / "1m.log"
    small.write_bytes(blob)
    _external(small)
    if keep:
        print(f"  kept {path}")
    else:
        shutil.rmtree(tmp)


def _write(path: Path, blob: bytes, size: int) -> None:
    with path.open("wb") as fh:
        written = 0
        while written < size:
            fh.write(blob)
            written += len(blob)


def _index_all(log: LogFile) -> None:
    while not log.index_more():
        pass


def _external(path: Path) -> None:
    for tool, argv in (("grep", ["grep", "-cE", r"error [0-9]+", str(path)]),
                       ("lnav", ["lnav", "-n", "-c", ":filter-in error [0-9]+", str(path)])):
        if shutil.which(tool) is None:
            print(f"  {tool}: not installed (not tried)")
            continue
        took, proc = timed(lambda argv=argv: subprocess.run(argv, capture_output=True, check=False))
        print(f"  {tool} over the same lines (from disk, regex 'error [0-9]+'): {took * 1e3:.0f} ms "
              f"-> {proc.stdout.decode().strip()[:40]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--journal-lines", type=int, default=200_000)
    parser.add_argument("--no-10m", action="store_true", help="skip the 10 M-line rows")
    parser.add_argument("--file-gb", type=float, default=1.0)
    parser.add_argument("--keep-file", action="store_true")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, pure Python store (array/bytearray), {args.lines:,} lines")
    store, lines = bench_plain(args.lines)
    bench_journal(args.journal_lines)
    bench_search(store, f"{len(store) / 1e6:g}M")
    bench_memory(store, lines)
    if not args.no_10m:
        del store
        bench_ten_million(LogStore())
    if args.file_gb > 0:
        bench_file(lines, args.file_gb, args.keep_file)


if __name__ == "__main__":
    main()
