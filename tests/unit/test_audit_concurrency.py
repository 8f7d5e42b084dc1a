"""Two Siteline processes appending at once keep ONE chain: BEGIN IMMEDIATE serialises the writers."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from siteline.core.audit_verify import read_records, verify_file

WRITER = """
import sys
import time
from pathlib import Path
from siteline.core.audit import AuditTrail
from siteline.core.outbox.store import Outbox

with Outbox.open(Path(sys.argv[1])) as outbox:
    trail = AuditTrail(outbox, sys.argv[2])
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.readline()  # both start appending at the same moment
    for n in range(int(sys.argv[3])):
        trail.record("console-command", site="north", device="gw-01", detail={"n": n})
        time.sleep(0.002)  # a person's pace, compressed: the other writer gets the lock in between
"""


def test_two_processes_append_to_one_chain(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite3"
    count = 100
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name, str(count)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for name in ("tech-a", "tech-b")]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.close()
        for proc in procs:
            assert proc.wait(timeout=50) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    result = verify_file(db)
    assert result.ok, result.reason
    assert result.count == 2 * count
    records = read_records(db, limit=10_000)
    assert [r.seq for r in records] == list(range(2 * count, 0, -1))
    technicians = [r.technician for r in records]
    assert technicians.count("tech-a") == technicians.count("tech-b") == count
    # interleaved, not one after the other: the two really raced
    switches = sum(1 for a, b in itertools.pairwise(technicians) if a != b)
    assert switches > 1


APPENDER = """
import sys
import time
from pathlib import Path
from siteline.core.audit import AuditTrail
from siteline.core.outbox.store import Outbox

sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:  # until killed; opening and closing often: with no connection left the -wal file goes away
    with Outbox.open(Path(sys.argv[1])) as outbox:
        trail = AuditTrail(outbox, "tech-a")
        for n in range(3):
            trail.record("console-command", site="north", device="gw-01", detail={"line": "x" * 500})
            time.sleep(0.003)
"""


def test_verify_while_another_process_appends_never_reports_a_false_break(tmp_path: Path) -> None:
    """The rows and the head mark are read in one snapshot, and an idle-looking file is read under a lock:
    a trail growing meanwhile is never mistaken for a shortened one."""
    db = tmp_path / "outbox.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", APPENDER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "ready\n"
        results = []
        while len(results) < 30 or results[-1].count < 10:
            results.append(verify_file(db))
            assert read_records(db, limit=5) is not None
            assert writer.poll() is None
    finally:
        writer.kill()  # the one this test started
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()
    broken = [r for r in results if not r.ok]
    assert broken == [], f"{len(broken)} of {len(results)} verifies broken, first: {broken[0].reason}"
    assert results[-1].count > results[0].count  # it really grew while being checked
    final = verify_file(db)
    assert final.ok, final.reason
