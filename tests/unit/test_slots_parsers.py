"""The Slots parsers against real-tool samples, the simulator's own output, the real fw_printenv, and garbage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.core.device.slots import BootEnv, Slots
from siteline.core.errors import ParseError
from siteline.simulator import ubootenv
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline_slots.parsers import (
    merge,
    parse_barebox_state,
    parse_fw_printenv,
    parse_grub_editenv,
    parse_rauc_status,
)
from tests.peers import require_tool

DATA = Path(__file__).resolve().parents[1] / "data"


def rauc(name: str) -> Slots:
    return parse_rauc_status((DATA / "rauc" / name).read_text())


def uboot(name: str) -> BootEnv:
    return parse_fw_printenv((DATA / "fw_printenv" / name).read_text())


def grub(name: str) -> BootEnv:
    return parse_grub_editenv((DATA / "grub-editenv" / name).read_text())


# --- goldens ---------------------------------------------------------------------------------------------


def test_rauc_detailed_golden() -> None:
    s = rauc("status-1.8.json")
    assert (s.compatible, s.variant, s.booted, s.primary, s.problems) == ("acme-gw", None, "A", "rootfs.0", ())
    a, b = s.slot("A"), s.slot("rootfs.1")
    assert a is not None
    assert b is not None
    assert (a.name, a.booted, a.primary, a.health, a.bundle_version) == ("rootfs.0", True, True, "good", "1.1.0")
    assert (b.bootname, b.device, b.rauc_state) == ("B", "/dev/mmcblk0p3", "inactive")
    assert (b.booted, b.primary) == (False, False)
    assert (b.bundle_version, b.bundle_build, b.size) == ("1.2.0", "20240301120000", 268435456)
    assert (b.installed_at, b.installed_count, b.activated_at, b.install_status) == (
        "2024-03-01T12:00:00Z",
        1,
        "2024-03-01T12:00:05Z",
        "ok",
    )
    assert a.attempts_left is None  # RAUC alone does not know the counters: unknown, never 0
    assert s.booted_slot is a
    assert '"rootfs.1"' in s.raw


def test_rauc_pretty_with_device_path_and_child_slots() -> None:
    s = rauc("status-1.8-pretty-devpath.json")
    assert (s.variant, s.booted, s.primary) == ("rev-c", "B", "rootfs.1")
    assert [x.name for x in s.slots] == ["rootfs.0", "appfs.0", "rootfs.1", "appfs.1"]
    app = s.slot("appfs.1")
    assert app is not None
    assert (app.parent, app.bootname, app.health, app.mountpoint) == ("rootfs.1", None, None, "/app")
    a = s.slot("A")
    assert a is not None
    assert a.health == "bad"
    assert a.bundle_version is None
    assert s.problems == ()


def test_rauc_every_slot_bad_is_flagged_and_the_counters_correct_it() -> None:
    s = rauc("status-1.8-env-unreadable.json")
    assert s.primary is None
    assert s.variant is None
    assert any("could not read the bootloader" in p for p in s.problems)
    both = merge(s, uboot("rauc-factory-a.txt"))
    assert both.source == "rauc+uboot"
    assert [(x.name, x.health, x.rauc_boot_status, x.attempts_left) for x in both.slots] == [
        ("rootfs.0", "good", "bad", 3),
        ("rootfs.1", "good", "bad", 3),
    ]
    assert any("BOOT_A_LEFT=3" in p and "may not have read" in p for p in both.problems)
    assert both.primary == "rootfs.0"
    assert [x.primary for x in both.slots] == [True, False]
    assert not any(p.startswith("RAUC reports every slot bad") for p in both.problems)
    assert both.env is not None
    assert both.env.variables["bootlimit"] == "3"


def test_fw_printenv_goldens() -> None:
    f = uboot("rauc-factory-a.txt")
    assert (f.kind, f.order, f.attempts_left, f.upgrade_available, f.bootcount, f.bootlimit, f.problems) == (
        "uboot",
        ("A", "B"),
        {"A": 3, "B": 3},
        False,
        0,
        3,
        (),
    )
    t = uboot("rauc-booted-b-trial.txt")
    assert (t.order, t.attempts_left, t.upgrade_available, t.bootcount) == (("B", "A"), {"B": 2, "A": 3}, True, 1)
    assert t.variables["bootcmd"] == "run distro_bootcmd; echo x=y"  # values keep their own '='
    x = uboot("rauc-b-exhausted-rolled-back.txt")
    assert x.attempts_left == {"B": 0, "A": 2}
    assert any("bootcount 4 is over bootlimit 3" in p for p in x.problems)
    assert uboot("selected-vars.txt").attempts_left == x.attempts_left


def test_env_alone_gives_the_ab_picture() -> None:
    s = merge(None, uboot("rauc-b-exhausted-rolled-back.txt"), booted="A")
    assert (s.source, s.booted, s.primary) == ("uboot", "A", "A")
    assert [(x.name, x.booted, x.primary, x.health, x.attempts_left) for x in s.slots] == [
        ("B", False, False, "bad", 0),
        ("A", True, True, "good", 2),
    ]
    with pytest.raises(ParseError):
        merge(None, None)


def test_grub_goldens() -> None:
    t = grub("rauc-trying-b.txt")
    assert (t.kind, t.order, t.good, t.trying, t.attempts_left) == (
        "grub",
        ("B", "A"),
        {"B": True, "A": True},
        {"B": True, "A": False},
        {"B": 0, "A": 1},
    )
    s = merge(None, t, booted="B")
    assert [(x.name, x.health, x.primary, x.booted) for x in s.slots] == [
        ("B", "good", False, True),
        ("A", "good", True, False),
    ]
    bad = merge(None, grub("rauc-b-bad.txt"))
    assert [(x.name, x.health, x.attempts_left) for x in bad.slots] == [("A", "good", 1), ("B", "bad", 0)]
    empty = merge(None, grub("empty-env.txt"))
    assert empty.slots == ()
    assert any("no ORDER" in p for p in empty.problems)


def test_barebox_goldens() -> None:
    two = parse_barebox_state((DATA / "barebox-state" / "rauc-two-targets.txt").read_text())
    assert (two.kind, two.order, two.priority, two.attempts_left, two.last_chosen, two.problems) == (
        "barebox",
        ("system1", "system0"),
        {"system0": 10, "system1": 20},
        {"system0": 3, "system1": 3},
        "2",
        (),
    )
    bad = merge(None, parse_barebox_state((DATA / "barebox-state" / "system1-marked-bad.txt").read_text()))
    assert [(x.name, x.health, x.primary, x.attempts_left) for x in bad.slots] == [
        ("system0", "good", True, 3),
        ("system1", "bad", False, 0),
    ]
    off = parse_barebox_state("bootstate.system0.priority=0\nbootstate.system0.remaining_attempts=3\n")
    assert any("priority 0" in p for p in off.problems)


def test_swupdate_ustate() -> None:
    env = uboot("swupdate-testing.txt")
    assert (env.update_state, env.upgrade_available, env.bootcount, env.bootlimit) == ("testing", True, 1, 3)
    assert env.variables["altbootcmd"] == "setenv rootpart 3; run bootcmd"
    failed = parse_fw_printenv("ustate=3\nBOOT_ORDER=A\nBOOT_A_LEFT=1\n")
    assert failed.update_state == "failed"
    assert any("last update failed" in p for p in failed.problems)
    assert parse_fw_printenv("ustate=9\nBOOT_ORDER=A\n").update_state is None


def test_rauc_and_counters_disagreeing_on_the_next_slot() -> None:
    s = merge(rauc("status-1.8.json"), uboot("rauc-booted-b-trial.txt"))
    assert any("counters say slot B will" in p for p in s.problems)


# --- the simulator's output of the same commands ----------------------------------------------------------


def sim(device: DeviceState, command: str) -> str:
    code, out, err = asyncio.run(run_command(device, command, timeout=20))
    assert code == 0, err
    return out.decode()


def test_simulator_output_parses(tmp_path: Path) -> None:
    device = DeviceState.open(tmp_path / "dev", name="gw-slots", password="pw")
    env = device.read_env()
    env.update({"BOOT_ORDER": "B A", "BOOT_B_LEFT": "0"})
    device.write_env(env)
    for command in ("rauc status --output-format=json --detailed", "rauc status --output-format=json-pretty"):
        s = parse_rauc_status(sim(device, command))
        assert (s.compatible, s.booted, s.primary) == ("nwedge-gw-imx8mm", "A", "rootfs.0")
        assert [(x.name, x.bootname, x.health, x.booted) for x in s.slots] == [
            ("rootfs.0", "A", "good", True),
            ("rootfs.1", "B", "bad", False),
        ]
    detailed = parse_rauc_status(sim(device, "rauc status --output-format=json --detailed"))
    assert detailed.slots[0].bundle_version == "2024.03.0"
    assert detailed.slots[0].installed_count == 1
    both = merge(detailed, parse_fw_printenv(sim(device, "fw_printenv")))
    assert [(x.health, x.attempts_left) for x in both.slots] == [("good", 3), ("bad", 0)]
    assert both.problems == ()
    picked = parse_fw_printenv(sim(device, "fw_printenv BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT bootcount"))
    assert (picked.order, picked.attempts_left, picked.bootcount) == (("B", "A"), {"B": 0, "A": 3}, 0)


def test_real_fw_printenv_output_parses(tmp_path: Path) -> None:
    printenv, setenv = require_tool("fw_printenv"), require_tool("fw_setenv")
    ubootenv.create(tmp_path, {"bootdelay": "0"})
    config = str(tmp_path / ubootenv.CONFIG_NAME)
    for name, value in (("BOOT_ORDER", "B A"), ("BOOT_A_LEFT", "3"), ("BOOT_B_LEFT", "1"), ("bootlimit", "3")):
        subprocess.run([setenv, "-c", config, name, value], check=True, timeout=10)
    out = subprocess.run([printenv, "-c", config], check=True, timeout=10, capture_output=True, text=True).stdout
    env = parse_fw_printenv(out)
    assert (env.order, env.attempts_left, env.bootlimit, env.bootcount) == (("B", "A"), {"B": 1, "A": 3}, 3, None)


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "rauc: command not found",
        "[1, 2]",
        "{",
        '{"foo": 1}',
        "[" * 100000,
        '{"a":' * 100000,
        "Failed to get bootloader state\n",
    ],
)
def test_rauc_bad_input_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="rauc status printed"):
        parse_rauc_status(text)


def test_rauc_slots_of_the_wrong_type_are_problems() -> None:
    assert parse_rauc_status('{"compatible": "x", "slots": "x"}').problems == ("rauc status listed no slots.",)
    assert parse_rauc_status('{"compatible": "x", "slots": [1, {"a": 2}]}').problems


def test_rauc_other_shapes() -> None:
    doc = {
        "compatible": "x",
        "booted": "A",
        "slots": {"rootfs.0": {"bootname": "A", "state": "booted", "boot_status": 7}},
    }
    s = parse_rauc_status("rauc-Message: noise\n" + json.dumps(doc))
    assert s.booted == "A"
    assert s.slots[0].booted
    assert s.slots[0].health is None


@pytest.mark.parametrize("parser", [parse_fw_printenv, parse_grub_editenv, parse_barebox_state])
def test_env_errors_and_garbage(parser: object) -> None:
    assert callable(parser)
    with pytest.raises(ParseError, match="Cannot read environment"):
        parser("Cannot read environment, using default\nCannot read default environment from file\n")
    with pytest.raises(ParseError):
        parser("\x00\x01garbage\n")
    env = parser("BOOT_ORDER=A B\nBOOT_A_LEFT=x\nA_OK=maybe\nnot a line\n")
    assert isinstance(env, BootEnv)
    assert env.problems


def _check_never_crashes(text: str) -> None:
    for parse in (parse_rauc_status, parse_fw_printenv, parse_grub_editenv, parse_barebox_state):
        try:
            result = parse(text)
        except ParseError:
            continue
        if isinstance(result, BootEnv):
            merge(None, result)
            merge(parse_rauc_status((DATA / "rauc" / "status-1.8.json").read_text()), result)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_garbage_never_crashes(text: str) -> None:
    _check_never_crashes(text)


GOLDENS = sorted(
    p
    for d in ("rauc", "fw_printenv", "grub-editenv", "barebox-state")
    for p in (DATA / d).iterdir()
    if p.suffix != ".md"
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(GOLDENS), st.integers(min_value=0, max_value=4000), st.text(max_size=20))
def test_truncated_and_spliced_goldens_never_crash(path: Path, cut: int, junk: str) -> None:
    text = path.read_text()
    _check_never_crashes(text[:cut])
    _check_never_crashes(text[:cut] + junk + text[cut:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
slot_keys = st.sampled_from(["class", "device", "bootname", "state", "boot_status", "slot_status", "parent"])


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["compatible", "variant", "booted", "boot_primary", "slots"]), json_values),
    st.lists(st.dictionaries(st.text(max_size=8), st.dictionaries(slot_keys, json_values)), max_size=3),
)
def test_other_version_rauc_json_never_crashes(doc: dict[str, object], slots: list[object]) -> None:
    for candidate in (doc, {**doc, "slots": slots}):
        with contextlib.suppress(ParseError):
            parse_rauc_status(json.dumps(candidate))
