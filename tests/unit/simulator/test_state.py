"""DeviceState: creation, passwords, journal, dynamics, telemetry; damaged files never crash it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siteline.simulator import dynamics, journal
from siteline.simulator.state import DeviceState


@pytest.fixture
def state(tmp_path: Path) -> DeviceState:
    return DeviceState.open(tmp_path / "dev", name="gw-07", site="north", password="s3cret")


def test_new_device_has_its_files(state: DeviceState) -> None:
    root = state.root
    for rel in ("sim.json", "uboot.env", "fw_env.config", "slots.json", "modem.json", "rootfs/etc/os-release",
                "bin/mmcli", "bin/cat", "journal/journal.jsonl"):
        assert (root / rel).exists(), rel
    assert state.hostname() == "gw-07"
    assert (root / "rootfs/etc/os-release").read_text().startswith("ID=nwedge")
    assert state.read_env()["BOOT_ORDER"] == "A B"


def test_reopen_keeps_identity_and_password(state: DeviceState) -> None:
    again = DeviceState.open(state.root, name="other")
    assert again.config.name == "gw-07"
    assert again.config.seed == state.config.seed
    assert again.check_password("root", "s3cret")
    assert again.initial_password is None


def test_new_device_without_password_gets_a_generated_one(tmp_path: Path) -> None:
    s = DeviceState.open(tmp_path / "d")
    assert s.initial_password
    assert s.check_password("root", s.initial_password)


def test_passwords_are_hashed_at_rest(state: DeviceState) -> None:
    assert "s3cret" not in (state.root / "shadow.json").read_text()
    assert not state.check_password("root", "wrong")
    assert not state.check_password("nobody", "s3cret")
    state.set_password("root", "n3w")
    assert state.check_password("root", "n3w")


def test_open_missing_without_create_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no simulated device"):
        DeviceState.open(tmp_path / "nothing", create=False)


def test_shell_env_puts_shims_first(state: DeviceState) -> None:
    env = state.shell_env()
    assert env["PATH"].split(":")[0] == str(state.root / "bin")
    assert env["SITELINE_SIM_STATE"] == str(state.root)
    assert env["HOME"] == str(state.root / "rootfs" / "root")


def test_reboot_request_is_taken_once(state: DeviceState) -> None:
    assert not state.take_reboot_request()
    state.request_reboot()
    assert state.take_reboot_request()
    assert not state.take_reboot_request()


def test_journal_skips_torn_lines_and_is_bounded(state: DeviceState, monkeypatch: pytest.MonkeyPatch) -> None:
    path = journal.path_of(state.root)
    with path.open("ab") as fh:
        fh.write(b'{"MESSAGE": "half wri')  # a power cut mid-line
    state.log("after the cut", "demo")
    messages = [e["MESSAGE"] for e in journal.entries(state.root)]
    assert messages[-1] == "after the cut"
    monkeypatch.setattr(journal, "MAX_BYTES", 4000)
    for n in range(40):
        state.log(f"line {n} " + "x" * 100, "demo")
    assert path.stat().st_size <= 4000 + 1000
    seqs = [int(e["__SEQNUM"]) for e in journal.entries(state.root)]
    assert seqs == sorted(seqs)
    assert seqs[-1] > 40


def test_journal_entry_fields_are_journald_strings(state: DeviceState) -> None:
    state.log("Started thing.", "thing", priority=5)
    entry = list(journal.entries(state.root))[-1]
    assert entry["_SYSTEMD_UNIT"] == "thing.service"
    assert entry["PRIORITY"] == "5"
    assert entry["SYSLOG_IDENTIFIER"] == "thing"
    assert all(isinstance(v, str) for v in entry.values())
    assert entry["__REALTIME_TIMESTAMP"].isdigit()
    assert len(entry["__REALTIME_TIMESTAMP"]) >= 16


def test_signal_walk_is_bounded_reproducible_and_degrades(tmp_path: Path) -> None:
    a = DeviceState.open(tmp_path / "a", password="x")
    b = DeviceState.open(tmp_path / "b", password="x")
    for s in (a, b):  # same seed, same start: the same walk
        s.config.seed = 42
        (s.root / dynamics.MODEM_FILE).write_text(json.dumps(dynamics.initial_modem(42, 1000.0)))
    ma = dynamics.advance(a.root, now=1000.0 + 50 * dynamics.STEP_SECONDS)
    mb = dynamics.advance(b.root, now=1000.0 + 50 * dynamics.STEP_SECONDS)
    assert ma["rsrp"] == mb["rsrp"]
    assert ma["step"] == 50
    assert -140 <= ma["rsrp"] <= -60
    a.degrade_signal(True)
    later = dynamics.advance(a.root, now=1000.0 + 150 * dynamics.STEP_SECONDS)
    assert later["rsrp"] < -105


def test_telemetry_and_wired_failover(state: DeviceState) -> None:
    t = state.telemetry()
    assert set(t) == {"cpu", "signal", "link"}
    assert t["link"]["active"] == "eth0"
    state.fail_wired(True)
    assert state.telemetry()["link"]["active"] == "wwan0"
    json.dumps(t)  # MQTT payloads must be JSON


def test_damaged_state_files_do_not_crash(state: DeviceState) -> None:
    (state.root / "modem.json").write_text("{not json")
    (state.root / "device.json").write_bytes(b"\x00\xff")
    (state.root / "uboot.env").write_bytes(b"garbage")
    assert isinstance(state.telemetry(), dict)
    assert state.boot().slot in ("A", "B")
