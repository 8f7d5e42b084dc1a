"""A sync process for the kill -9 test: ``python sync_worker.py OUTBOX PORT`` drains the outbox to the broker on
127.0.0.1:PORT (plain MQTT 3.1.1) and exits 0 once everything is acknowledged, 1 on a sync error.

It prints "ready" once imported and starts when a line arrives on stdin: the test starts the next worker
while the current one runs, so that 50 rounds do not pay 50 interpreter start-ups in a row."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.outbox.store import Outbox
from siteline.core.outbox.sync import Syncer, SyncError


async def main(db: Path, port: int) -> int:
    settings = ControlPlaneSettings(url=f"mqtt://127.0.0.1:{port}", technician="tech1", allow_plain=True,
                                    protocol="3.1.1")
    with Outbox.open(db) as outbox:
        syncer = Syncer(outbox, settings, window=16)
        try:
            result = await syncer.drain(timeout=30)
        except SyncError as exc:
            print(f"sync failed: {exc}", file=sys.stderr)
            return 1
        print(f"sent {result.sent}", flush=True)
    return 0


if __name__ == "__main__":
    print("ready", flush=True)
    if not sys.stdin.readline():
        sys.exit(0)  # the test ended without starting this one
    sys.exit(asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]))))
