"""Hand-carry export/import: a round trip keeps ids, a tampered or cut file imports nothing it should not."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from siteline.core.outbox.handcarry import HandCarryError
from siteline.core.outbox.model import NewItem, State
from siteline.core.outbox.store import Outbox


@pytest.fixture
def source(tmp_path: Path):
    with Outbox.open(tmp_path / "a.sqlite3") as ob:
        ob.put_many([
            NewItem("audit", "site-a", "gw1", {"action": "flash", "ok": True}),
            NewItem("note", "site-a", "gw1", {"text": "Mast läuft wieder"}, vault_refs=("device/site-a/gw1/password",)),
            NewItem("telemetry", "site-b", "gw2", {"rssi": -71}),
        ])
        yield ob


@pytest.fixture
def target(tmp_path: Path):
    with Outbox.open(tmp_path / "b.sqlite3") as ob:
        yield ob


def lines(path: Path) -> list[dict[str, object]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write(path: Path, rows: list[dict[str, object]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)


def test_round_trip_keeps_ids_and_is_idempotent(source: Outbox, target: Outbox, tmp_path: Path) -> None:
    sent = source.pending()[0]
    source.mark_sent([sent.id], 10)
    failed = source.pending()[0]
    source.record_failure([failed.id], "refused", permanent=True)
    out = tmp_path / "carry.jsonl.gz"
    assert source.export(out) == 2  # pending + failed; the sent one stays home
    assert out.stat().st_mode & 0o777 == 0o600
    header, *rows = lines(out)
    assert header["format"] == "siteline-outbox"
    assert header["version"] == 1
    assert header["count"] == 2
    assert str(header["exported"]).endswith("Z")
    assert str(rows[0]["created"]).endswith("Z")
    result = target.import_file(out)
    assert (result.added, result.duplicates, result.rejected) == (2, 0, [])
    again = target.import_file(out)
    assert (again.added, again.duplicates, again.rejected) == (0, 2, [])
    for original in (failed, *source.pending()):
        copy = target.get(original.id)
        assert copy is not None
        assert (copy.kind, copy.site, copy.device, copy.payload, copy.payload_sha256, copy.priority,
                copy.vault_refs) == (original.kind, original.site, original.device, original.payload,
                                     original.payload_sha256, original.priority, original.vault_refs)
        assert abs(copy.created - original.created) < 1e-5
        assert copy.state is State.PENDING
        assert copy.attempts == 0
    assert source.export(tmp_path / "all.gz", states=list(State)) == 3


def test_a_tampered_line_is_rejected_the_others_imported(source: Outbox, target: Outbox, tmp_path: Path) -> None:
    out = tmp_path / "carry.gz"
    source.export(out)
    header, first, second, third = lines(out)
    second["payload"] = str(second["payload"]).replace("wieder", "nicht")
    third["kind"] = "a/b"
    write(out, [header, first, second, third])
    result = target.import_file(out)
    assert result.added == 1
    assert result.rejected[0].startswith("line 3: payload does not match its SHA-256")
    assert result.rejected[1].startswith("line 4: ")
    assert "kind" in result.rejected[1]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: r.update(payload='{"password":"x"}', payload_sha256=None), "secret"),
        (lambda r: r.update(payload='{"b":1, "a":2}', payload_sha256=None), "canonical"),
        (lambda r: r.update(payload="[1]", payload_sha256=None), "JSON object"),
        (lambda r: r.pop("device"), "missing device"),
        (lambda r: r.update(id="not-an-id"), "UUIDv7"),
        (lambda r: r.update(created=12.5), "ISO 8601"),
        (lambda r: r.update(priority="high"), "priority"),
        (lambda r: r.update(site=""), "site"),
        (lambda r: r.update(vault_refs="x"), "vault_refs"),
    ],
)
def test_every_field_is_checked(source: Outbox, target: Outbox, tmp_path: Path, change: object, why: str) -> None:
    out = tmp_path / "carry.gz"
    source.export(out)
    header, first, *rest = lines(out)
    change(first)  # type: ignore[operator]
    if "payload_sha256" in first and first["payload_sha256"] is None:
        first["payload_sha256"] = hashlib.sha256(str(first["payload"]).encode()).hexdigest()
    write(out, [header, first, *rest])
    result = target.import_file(out)
    assert result.added == 2
    assert len(result.rejected) == 1
    assert why in result.rejected[0]


def test_a_truncated_file_imports_nothing_and_names_the_line(source: Outbox, target: Outbox, tmp_path: Path) -> None:
    out = tmp_path / "carry.gz"
    source.export(out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 20])
    with pytest.raises(HandCarryError, match=r"cut short or damaged .*line \d+.* Nothing was imported"):
        target.import_file(out)
    assert target.status().pending == 0


def test_missing_lines_are_caught_by_the_count(source: Outbox, target: Outbox, tmp_path: Path) -> None:
    out = tmp_path / "carry.gz"
    source.export(out)
    header, first, _second, _third = lines(out)
    write(out, [header, first])  # a whole gzip stream, but lines are missing
    with pytest.raises(HandCarryError, match="announces 3 items but the file holds 1"):
        target.import_file(out)
    assert target.status().pending == 0


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ({"format": "siteline-outbox", "version": 2, "count": 0}, "newer Siteline"),
        ({"format": "other", "version": 1, "count": 0}, "not a Siteline outbox export"),
        ({"format": "siteline-outbox", "version": "1", "count": 0}, "format version"),
        ({"format": "siteline-outbox", "version": 1, "count": -1}, "item count"),
    ],
)
def test_foreign_or_newer_files_are_refused(target: Outbox, tmp_path: Path, header: dict[str, object],
                                             why: str) -> None:
    out = tmp_path / "carry.gz"
    write(out, [header])
    with pytest.raises(HandCarryError, match=why):
        target.import_file(out)


@pytest.mark.parametrize("data", [b"", b"not gzip at all", gzip.compress(b"\xff\xfe garbage\n", mtime=0),
                                  gzip.compress(b"x" * 100, mtime=0)])
def test_garbage_files_are_refused(target: Outbox, tmp_path: Path, data: bytes) -> None:
    out = tmp_path / "carry.gz"
    out.write_bytes(data)
    with pytest.raises(HandCarryError, match="Nothing was imported"):
        target.import_file(out)


def test_a_missing_file_says_so(target: Outbox, tmp_path: Path) -> None:
    with pytest.raises(HandCarryError, match="cannot be read"):
        target.import_file(tmp_path / "nope.gz")


def test_same_id_with_other_content_keeps_ours(source: Outbox, target: Outbox, tmp_path: Path) -> None:
    out = tmp_path / "carry.gz"
    source.export(out)
    target.import_file(out)
    header, first, *rest = lines(out)
    first["payload"] = '{"changed":true}'
    first["payload_sha256"] = hashlib.sha256(b'{"changed":true}').hexdigest()
    write(out, [header, first, *rest])
    result = target.import_file(out)
    assert result.duplicates == 2
    assert "already here with a different payload" in result.rejected[0]
