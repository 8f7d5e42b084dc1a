"""Durable outbox writes: batched items/s, and single commits/s against a bare sqlite3 loop, same run, same disk.

    .venv/bin/python bench/outbox_write.py [--dir DIR] [--batches N] [--singles N] [--repeat N] [--check-items N]

Prints:
- batched: ``Outbox.put_many`` of 500-item batches, each batch one durable commit (goal >= 5,000 items/s);
- single: ``Outbox.put`` one item per commit vs a bare ``sqlite3`` loop with the same pragmas (WAL,
  synchronous=FULL) inserting the same rows into the same table on the same disk; the two run interleaved
  in chunks of 50 commits (the fsync cost of a shared disk swings from second to second), and the ratio
  (goal >= 0.8) is the median of ``--repeat`` runs;
- the start-up check on a ``--check-items`` outbox: quick_check (what Outbox.open runs) vs integrity_check.

fsync policy: journal_mode=WAL, synchronous=FULL. Every commit fsyncs the WAL before it returns, so an item
is on disk when put()/put_many() returns and survives power loss; the database file is fsync'd at checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siteline.core.outbox.ids import uuid7
from siteline.core.outbox.model import NewItem, canonical_json, sha256_text
from siteline.core.outbox.schema import migrate
from siteline.core.outbox.store import Outbox

BATCH = 500
PAYLOAD = {"rssi": -71, "rsrq": -11, "sinr": 13.5, "band": "B20", "note": "x" * 120}


def item(n: int) -> NewItem:
    return NewItem("telemetry", "site-a", "gw1", {**PAYLOAD, "n": n})


def batched(folder: Path, batches: int) -> float:
    with Outbox.open(folder / "batched.sqlite3") as outbox:
        began = time.perf_counter()
        for b in range(batches):
            outbox.put_many(item(b * BATCH + k) for k in range(BATCH))
        return batches * BATCH / (time.perf_counter() - began)


class Bare:
    """The floor: the same rows into the same schema, straight sqlite3, same pragmas, one commit per row."""

    SQL = ("INSERT INTO items (id, kind, site, device, created, priority, payload, payload_sha256, state) "
           "VALUES (?,?,?,?,?,?,?,?,?)")

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        migrate(self.conn)

    def put(self, n: int) -> None:
        payload = canonical_json({**PAYLOAD, "n": n})
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(self.SQL, (uuid7(now), "telemetry", "site-a", "gw1", now, 2, payload, sha256_text(payload),
                                     "pending"))
        self.conn.execute("COMMIT")


def single_run(folder: Path, run: int, count: int, chunk: int = 50) -> tuple[float, float]:
    """Commits/s of Outbox.put and of the bare loop, interleaved in chunks so both meet the same disk weather."""
    spent = [0.0, 0.0]
    bare = Bare(folder / f"bare-{run}.sqlite3")
    with Outbox.open(folder / f"single-{run}.sqlite3") as outbox:
        writers = (lambda n: outbox.put(item(n)), bare.put)
        for start in range(0, count, chunk):
            for which in ((0, 1) if (start // chunk + run) % 2 else (1, 0)):
                began = time.perf_counter()
                for n in range(start, min(count, start + chunk)):
                    writers[which](n)
                spent[which] += time.perf_counter() - began
    bare.conn.close()
    return count / spent[0], count / spent[1]


def check_cost(folder: Path, count: int) -> tuple[float, float]:
    path = folder / "check.sqlite3"
    with Outbox.open(path) as outbox:
        for b in range(0, count, 5000):
            outbox.put_many(item(n) for n in range(b, min(count, b + 5000)))
    conn = sqlite3.connect(path)
    times = []
    for pragma in ("quick_check", "integrity_check"):
        began = time.perf_counter()
        conn.execute(f"PRAGMA {pragma}").fetchall()
        times.append(time.perf_counter() - began)
    conn.close()
    return times[0], times[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure (default: the temp dir)")
    ap.add_argument("--batches", type=int, default=40, help=f"batches of {BATCH} items (default 40)")
    ap.add_argument("--singles", type=int, default=1000, help="single commits per run (default 1000)")
    ap.add_argument("--repeat", type=int, default=7, help="single-commit runs, median reported (default 7)")
    ap.add_argument("--check-items", type=int, default=100_000, help="outbox size for the check cost (0: skip)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="siteline-bench-outbox-", dir=args.dir) as tmp:
        folder = Path(tmp)
        print("fsync policy: WAL, synchronous=FULL (the WAL is fsync'd at every commit; durable on return)")
        print(f"folder: {folder}")
        rate = batched(folder, args.batches)
        print(f"  batched: {rate:9,.0f} items/s  (put_many of {BATCH}, {args.batches * BATCH:,} items; goal >= 5,000)")
        runs = [single_run(folder, i, args.singles) for i in range(max(1, args.repeat))]
        mine, theirs = [r[0] for r in runs], [r[1] for r in runs]
        a, b = statistics.median(mine), statistics.median(theirs)
        each = ", ".join(f"{m / t:.2f}" for m, t in zip(mine, theirs, strict=True))
        print(f"   single: siteline {a:7,.0f} commits/s  bare sqlite3 {b:7,.0f} commits/s  ratio {a / b:.3f}"
              f"  (goal >= 0.8; median of {len(mine)}; each run: {each})")
        if args.check_items:
            quick, full = check_cost(folder, args.check_items)
            print(f"    check: {args.check_items:,} items: quick_check {quick * 1000:.0f} ms (run at open), "
                  f"integrity_check {full * 1000:.0f} ms")
        print(json.dumps({"batched_items_per_s": round(rate), "single_commits_per_s": round(a),
                          "bare_commits_per_s": round(b), "single_ratio": round(a / b, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
