"""kill -9 of a sync process at random moments, 50 rounds: nothing committed is lost, nothing is marked
sent that the broker did not take."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.integration.test_outbox_sync_support import Consumer, fill, open_outbox

from siteline.core.outbox.model import State
from siteline.simulator.broker import BrokerHandle

pytestmark = pytest.mark.peer("mosquitto")
WORKER = Path(__file__).with_name("sync_worker.py")
ROUNDS = 50


def _spawn(db: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(db), str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    return proc


def _go(proc: subprocess.Popen[bytes]) -> None:
    """Wait until the worker has imported everything, then let it sync."""
    assert proc.stdout is not None
    assert proc.stdin is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


def test_kill_9_during_sync_loses_nothing(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    rng = random.Random(4)
    consumer = Consumer(mosquitto.port)
    db = tmp_path / "outbox.sqlite3"
    committed: list[str] = []
    killed = 0
    start = time.monotonic()
    try:
        with open_outbox(tmp_path) as outbox:
            committed += fill(outbox, 2000)
            upcoming = _spawn(db, mosquitto.port)
            for _round in range(ROUNDS):
                committed += fill(outbox, 400)
                proc = upcoming
                _go(proc)
                upcoming = _spawn(db, mosquitto.port)  # imports while this round's worker syncs
                time.sleep(rng.uniform(0.0, 0.1))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed += 1
                _out, err = proc.communicate(timeout=30)
                assert proc.returncode in (0, -signal.SIGKILL), err.decode()
            _go(upcoming)
            _out, err = upcoming.communicate(timeout=60)
            assert upcoming.returncode == 0, err.decode()
            missing = consumer.wait_for(committed, 20)
            assert missing == set(), f"{len(missing)} committed items never reached the broker"
            sent = {i.id for i in outbox.items(State.SENT, limit=100_000)}
            assert sent == set(committed)
            assert sent <= consumer.ids()  # 'sent' only for what the broker took
            assert outbox.status().pending == 0
    finally:
        consumer.close()
    print(f"{ROUNDS} rounds, {killed} kills, {len(committed)} items, {len(consumer.received)} received "
          f"({len(consumer.received) - len(committed)} duplicates) in {time.monotonic() - start:.1f} s")
    assert killed >= ROUNDS // 2
    assert not consumer.bad
