"""The System probe's parsers against recorded real files, and against garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siteline_system.parsers import parse_loadavg, parse_os_release, parse_proc_uptime, parse_uname
from siteline_system.probe import COMMAND, system_from_output

DATA = Path(__file__).parent.parent / "data" / "os-release"


@pytest.mark.parametrize(
    ("name", "os_id", "pretty", "version_id"),
    [
        ("poky-kirkstone", "poky", "Poky (Yocto Project Reference Distro) 4.0.17 (kirkstone)", "4.0.17"),
        ("buildroot", "buildroot", "Buildroot 2023.02.9", "2023.02.9"),
        ("openwrt", "openwrt", "OpenWrt 23.05.2", "23.05.2"),
        ("debian-12", "debian", "Debian GNU/Linux 12 (bookworm)", "12"),
        ("alpine-3.19", "alpine", "Alpine Linux v3.19", "3.19.1"),
    ],
)
def test_os_release_from_real_files(name: str, os_id: str, pretty: str, version_id: str) -> None:
    parsed = parse_os_release((DATA / name).read_text())
    assert (parsed.id, parsed.pretty_name, parsed.version_id) == (os_id, pretty, version_id)


def test_os_release_keeps_vendor_keys() -> None:
    parsed = parse_os_release((DATA / "openwrt").read_text())
    assert parsed.build_id == "r23630-842932a63d"
    assert parsed.extra["OPENWRT_BOARD"] == "ramips/mt7621"


def test_os_release_with_unbalanced_quote_keeps_the_text() -> None:
    assert parse_os_release('PRETTY_NAME="Half quoted\n').pretty_name == "Half quoted"


def test_uname_proc_files() -> None:
    line = "Linux gw-01 5.15.92-yocto-standard #1 SMP PREEMPT Tue Feb 7 09:00:00 UTC 2023 aarch64 GNU/Linux"
    assert parse_uname(line) == ("5.15.92-yocto-standard", "aarch64")
    assert parse_uname("Darwin mac 23.1.0") == (None, None)
    assert parse_proc_uptime("12345.67 40000.00\n") == 12345.67
    assert parse_proc_uptime("-1 0") is None
    assert parse_loadavg("0.52 0.58 0.59 1/467 12345\n") == (0.52, 0.58, 0.59)
    assert parse_loadavg("garbage") is None


def test_system_from_sectioned_output_and_missing_parts() -> None:
    text = "\n".join(
        [
            "@@siteline-section@@os-release",
            (DATA / "buildroot").read_text(),
            "@@siteline-section@@hostname",
            "gw-07",
            "@@siteline-section@@uname",
            "Linux gw-07 6.1.44 #1 SMP armv7l GNU/Linux",
            "@@siteline-section@@uptime",
            "@@siteline-section@@loadavg",
            "0.10 0.20 0.30 1/80 999",
        ]
    )
    system = system_from_output(text)
    assert system.hostname == "gw-07"
    assert system.os.id == "buildroot"
    assert system.kernel == "6.1.44"
    assert system.machine == "armv7l"
    assert system.uptime_seconds is None
    assert system.problems == ("could not read uptime",)


def test_probe_command_is_one_round_trip() -> None:
    assert "\n" not in COMMAND


@given(st.text(max_size=2000))
def test_parsers_never_raise_on_garbage(text: str) -> None:
    parse_os_release(text)
    parse_proc_uptime(text)
    parse_loadavg(text)
    parse_uname(text)
    system_from_output(text)
