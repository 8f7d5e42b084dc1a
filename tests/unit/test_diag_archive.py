"""The bundle's zip: manifest, members, atomic writing, a full disk, and when it goes to the outbox."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from siteline.core.device.unavailable import Unavailable
from siteline.core.diag import archive
from siteline.core.diag.archive import Bundle, BundleWriteError, build_bundle, own_log_tail, summary, write_bundle
from siteline.core.diag.collect import Collected, CommandCost
from siteline.core.diag.outbox import KIND, MAX_QUEUED_BYTES, fits, queue_bundle
from siteline.core.outbox.model import Priority
from siteline.core.outbox.store import Outbox


@dataclass(frozen=True)
class FakeSystem:
    hostname: str
    kernel: str


def collected(*, partial: str = "") -> Collected:
    out = Collected(target="ssh://jane@10.0.0.5:2222", device="gw-01", started=1_764_000_000.0,
                    finished=1_764_000_003.5, partial=partial)
    out.snapshots["system"] = FakeSystem("gw-01", "5.15")
    out.snapshots["modem"] = Unavailable("modem", "mmcli not found")
    out.missing["modem"] = "mmcli not found"
    out.texts["logs"] = "2026-11-27T10:00:00Z gw kernel: hello\n"
    out.commands.append(CommandCost("system", "uname -a", 0, 0.25, 120))
    out.commands.append(CommandCost("logs", "journalctl -n 5", None, 1.0, 0, "timed out"))
    return out


def members(bundle: Bundle) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def test_manifest_says_what_is_inside() -> None:
    bundle = build_bundle(collected(), site="roof", own_log="line one\nline two\n")
    files = members(bundle)
    manifest = json.loads(files["manifest.json"])
    assert manifest["schema"] == "siteline-diag/1"
    assert (manifest["device"], manifest["site"]) == ("gw-01", "roof")
    assert manifest["target"] == "ssh://10.0.0.5:2222"  # no login name
    assert manifest["partial"] is False
    assert manifest["areas"] == {"system": "collected", "modem": "not collected: mmcli not found",
                                 "logs": "collected"}
    assert manifest["collection"]["bytes_received"] == 120
    assert manifest["collection"]["seconds"] == 3.5
    assert [c["command"] for c in manifest["commands"]] == ["uname -a", "journalctl -n 5"]
    listed = {f["name"]: f["bytes"] for f in manifest["files"]}
    assert set(listed) | {"manifest.json"} == set(files)
    assert all(len(files[name]) == size for name, size in listed.items())
    assert manifest["identity"]["hostname"] == "gw-01"
    assert json.loads(files["areas/system.json"]) == {"available": True, "hostname": "gw-01", "kernel": "5.15"}
    assert files["siteline/siteline.log"] == b"line one\nline two\n"
    assert b"modem: mmcli not found" in files["README.txt"]
    assert b"timed out" in files["commands.txt"]
    assert summary(collected())[:2] == ["system: collected", "modem: not collected: mmcli not found"]


def test_partial_bundle_is_marked() -> None:
    bundle = build_bundle(collected(partial="the link dropped while collecting logs"))
    assert bundle.manifest["partial"] is True
    assert b"PARTIAL: the link dropped" in members(bundle)["README.txt"]


def test_written_atomically_and_private(tmp_path: Path) -> None:
    bundle = build_bundle(collected())
    path = write_bundle(bundle, tmp_path / "d.zip")
    assert path.read_bytes() == bundle.data
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["d.zip"]


def test_existing_file_refused_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    path.write_bytes(b"old")
    bundle = build_bundle(collected())
    with pytest.raises(BundleWriteError, match="already exists"):
        write_bundle(bundle, path)
    assert path.read_bytes() == b"old"
    write_bundle(bundle, path, force=True)
    assert path.read_bytes() == bundle.data


def test_a_failure_mid_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "d.zip"
    path.write_bytes(b"old")

    def power_cut(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(BundleWriteError, match="Cannot write"):
        write_bundle(build_bundle(collected()), path, force=True)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["d.zip"]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleWriteError, match="does not exist"):
        write_bundle(build_bundle(collected()), tmp_path / "nope" / "d.zip")


FULL_DISK = """
import os, resource, signal, sys
from siteline.core.diag.archive import Bundle, BundleWriteError, write_bundle
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing the write
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_bundle(Bundle(os.urandom(64 * 1024), {}), sys.argv[1])
except BundleWriteError as exc:
    print(exc)
    sys.exit(3)
"""


def test_full_disk_is_a_clear_message_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out" / "d.zip"
    target.parent.mkdir()
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 3, done.stderr
    assert "is full" in done.stdout
    assert "was not saved" in done.stdout
    assert os.listdir(target.parent) == []


def test_own_log_tail_is_bounded_and_starts_on_a_line(tmp_path: Path) -> None:
    log = tmp_path / "siteline.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)))
    tail = own_log_tail(log, limit=1000)
    assert tail.startswith("line ")
    assert tail.endswith("line 9999\n")
    assert len(tail) <= 1000
    assert "could not be read" in own_log_tail(tmp_path / "missing.log")
    assert "not kept" in own_log_tail(None)


def test_queued_when_small_with_normal_priority(tmp_path: Path) -> None:
    bundle = build_bundle(collected())
    with Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        decision = queue_bundle(outbox, bundle, site="roof", device="gw-01", file_name="d.zip", budget=None)
        assert decision.queued, decision.message
        [item] = outbox.pending()
    assert (item.kind, item.priority, item.id) == (KIND, Priority.NORMAL, decision.item_id)
    payload = item.payload_obj()
    assert payload["sha256"] == bundle.sha256
    assert payload["bytes"] == bundle.size
    assert payload["areas"]["modem"].startswith("not collected")


def test_not_queued_when_too_big_or_over_budget(tmp_path: Path) -> None:
    small = build_bundle(collected())
    big = Bundle(b"x" * (MAX_QUEUED_BYTES + 1), {})
    assert "hand the file over" in fits(big, 0, None)
    assert fits(small, 0, None) == ""
    assert "hand the file over" in fits(small, 100_000, 100_000 + small.size)  # base64 needs more than is left
    with Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        decision = queue_bundle(outbox, small, site="roof", device="gw-01", file_name="d.zip", budget=1000)
        assert not decision.queued
        assert "too big for the data budget" in decision.message
        assert outbox.pending() == []


def test_module_doc_lists_every_member() -> None:
    names = members(build_bundle(collected(), own_log="x")).keys()
    doc = archive.__doc__ or ""
    assert all(name.split("/")[0] in doc for name in names)


def test_cli_refuses_before_connecting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from siteline import diag_cli

    parser = argparse.ArgumentParser()
    diag_cli.add_parsers(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    existing = tmp_path / "d.zip"
    existing.write_bytes(b"old")
    for argv, said in ((["diag", "ssh://10.255.255.1", "-o", str(existing)], "already exists"),
                       (["diag", "ssh://10.255.255.1", "-o", str(tmp_path)], "is a folder"),
                       (["diag", "ssh://10.255.255.1", "-o", "x.zip", "--logs", "-1"], "--logs must be 0 or more")):
        args = parser.parse_args(argv)
        assert args.handler(args) == 2
        assert said in capsys.readouterr().err
    assert existing.read_bytes() == b"old"
