"""A Siteline-like process that writes to the outbox, for the durability tests (run as a script).

    python outbox_writer.py write DB ROUND   # print "ready", wait for a line on stdin, then put items
                                             # forever, printing "<id> <seq>" only AFTER put() returned
    python outbox_writer.py fill DB FILLER   # put items until the disk is full, then check them itself

``fill`` runs inside a private mount namespace on a tiny tmpfs: the test cannot look at that file
system afterwards, so this process re-opens the outbox, checks every committed item, frees the
filler file and shows that the outbox works again. It prints one line per fact.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from siteline.core.outbox.model import NewItem, OutboxError
from siteline.core.outbox.store import Outbox, OutboxFullError


def payload(round_no: int, seq: int) -> dict[str, object]:
    """Deterministic, so the test can check every committed payload byte for byte (sizes 0-2 KB)."""
    return {"round": round_no, "seq": seq, "pad": "x" * ((seq * 37) % 2048)}


def write(db: Path, round_no: int) -> None:
    with Outbox.open(db) as outbox:
        print("ready", flush=True)
        sys.stdin.readline()
        seq = 0
        while True:
            if seq % 5 == 4:  # a batch now and then: its ids are printed only once the whole batch committed
                batch = [NewItem("telemetry", "site-k", "gw1", payload(round_no, seq + k)) for k in range(8)]
                done = outbox.put_many(batch)
                sys.stdout.write("".join(f"{item.id} {seq + k}\n" for k, item in enumerate(done)))
                sys.stdout.flush()
                seq += len(batch)
            else:
                item = outbox.put(NewItem("note", "site-k", "gw1", payload(round_no, seq)))
                print(f"{item.id} {seq}", flush=True)
                seq += 1


def fill(db: Path, filler: Path) -> int:
    filler.write_bytes(b"\0" * 128 * 1024)  # space to free afterwards
    committed: list[str] = []
    with Outbox.open(db) as outbox:
        try:
            for seq in range(100_000):
                committed.append(outbox.put(NewItem("snapshot", "site-t", "gw1", payload(0, seq))).id)
        except OutboxFullError as exc:
            print(f"FULL {exc}", flush=True)
        print(f"COMMITTED {len(committed)}", flush=True)
    try:
        outbox = Outbox.open(db)
    except OutboxError as exc:
        print(f"REOPEN-FAILED {exc}", flush=True)
        return 1
    with outbox:
        bad = [i for i in committed if not _intact(outbox, i)]
        print(f"RECOVERED {outbox.recovered_from}", flush=True)
        print(f"VERIFIED {len(committed) - len(bad)} MISSING {len(bad)}", flush=True)
        filler.unlink()
        try:
            print(f"RESUMED {outbox.put(NewItem('note', 'site-t', 'gw1', {'text': 'space freed'})).id}", flush=True)
        except OutboxError as exc:
            print(f"STILL-FULL {exc}", flush=True)
    return 0


def _intact(outbox: Outbox, item_id: str) -> bool:
    item = outbox.get(item_id)
    return item is not None and hashlib.sha256(item.payload.encode()).hexdigest() == item.payload_sha256


if __name__ == "__main__":
    mode, db_path = sys.argv[1], Path(sys.argv[2])
    if mode == "write":
        write(db_path, int(sys.argv[3]))
    else:
        sys.exit(fill(db_path, Path(sys.argv[3])))
