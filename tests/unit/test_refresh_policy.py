"""The refresh policy: how often each area of a device is read, and why, in words."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from siteline.core.device.network import DefaultRoute, NetConnection, NetDevice, Network, derive_network
from siteline.core.refresh_policy import (
    DeviceView,
    RefreshSettings,
    describe,
    duration,
    load_settings,
    metered,
    plan,
    save_settings,
    settings_path,
)

WIRED = NetDevice("eth0", "ethernet", "connected", "Wired connection 1")
MODEM = NetDevice("cdc-wdm0", "gsm", "connected", "cellular", ip_iface="wwan0")
CONNS = (NetConnection("Wired connection 1", None, "802-3-ethernet", None, True, 10),
         NetConnection("cellular", None, "gsm", None, True, 5))


def network(via: str) -> Network:
    down = NetDevice("eth0", "ethernet", "unavailable", None)
    devices = (WIRED, MODEM) if via == "eth0" else (down, MODEM)
    return derive_network(devices, CONNS, (DefaultRoute(via, "10.0.0.1", 100),), None, (), "")


CELLULAR, ON_WIRE = network("wwan0"), network("eth0")
DEFAULTS = RefreshSettings()


def view(**kw: object) -> DeviceView:
    base: dict[str, object] = {"name": "gw-01", "shown": True, "target_scheme": "ssh"}
    return DeviceView(**{**base, **kw})  # type: ignore[arg-type]


# -- the table ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "kind", "seconds"),
    [
        ({"network": ON_WIRE}, "modem", 30.0),
        ({"network": ON_WIRE}, "system", 60.0),  # slow areas wait twice as long
        ({"network": CELLULAR}, "modem", 300.0),
        ({"network": CELLULAR}, "network", 600.0),
        ({"network": None}, "modem", 30.0),  # not known yet: not metered
        ({"network": ON_WIRE, "tab_kind": "modem"}, "modem", 10.0),  # the Modem tab is open
        ({"network": ON_WIRE, "tab_kind": "modem"}, "system", 60.0),
        ({"network": CELLULAR, "tab_kind": "modem"}, "modem", 60.0),
        ({"network": CELLULAR, "tab_kind": "network"}, "network", 60.0),
        ({"network": ON_WIRE, "shown": False}, "modem", None),
        ({"network": ON_WIRE, "window_visible": False}, "modem", None),
        ({"network": ON_WIRE, "connected": False}, "modem", None),
    ],
)
def test_intervals(kw: dict[str, object], kind: str, seconds: float | None) -> None:
    assert plan(view(**kw), DEFAULTS).interval(kind) == seconds


def test_what_makes_a_link_metered() -> None:
    assert metered(view(network=CELLULAR), DEFAULTS).why == "on cellular (metered)"
    assert not metered(view(network=ON_WIRE), DEFAULTS).metered
    # A serial cable goes to the laptop, whatever the device's own uplink is.
    assert not metered(view(network=CELLULAR, target_scheme="serial"), DEFAULTS).metered
    mqtt = view(target_scheme="mqtts", network=ON_WIRE, control_plane_metered=True)
    assert metered(mqtt, DEFAULTS).why == "through the control plane on a metered link"
    assert not metered(view(target_scheme="ssh", control_plane_metered=True), DEFAULTS).metered
    marked = DEFAULTS.with_link_choice("gw-01", "metered")
    assert metered(view(network=ON_WIRE), marked).why == "marked metered in the settings"
    unmarked = DEFAULTS.with_link_choice("gw-01", "unmetered")
    assert not metered(view(network=CELLULAR), unmarked).metered
    assert unmarked.with_link_choice("gw-01", "auto").devices == {}


def test_the_marked_device_only() -> None:
    marked = DEFAULTS.with_link_choice("other", "metered")
    assert plan(view(network=ON_WIRE), marked).interval("modem") == 30.0


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"network": CELLULAR}, "refreshing every 5 min: on cellular (metered)"),
        ({"network": ON_WIRE}, "refreshing every 30 s: on wired (not metered)"),
        ({"network": ON_WIRE, "tab_kind": "modem"}, "refreshing every 30 s: on wired (not metered); modem every 10 s"),
        ({"network": CELLULAR, "tab_kind": "modem"},
         "refreshing every 5 min: on cellular (metered); modem every 1 min"),
        ({"shown": False}, "paused: not shown (F5 refreshes now)"),
        ({"window_visible": False}, "paused: window hidden (F5 refreshes now)"),
        ({"connected": False, "shown": False}, "paused: not connected (F5 refreshes now)"),
    ],
)
def test_describe(kw: dict[str, object], text: str) -> None:
    assert describe(view(**kw), DEFAULTS) == text


def test_switched_off() -> None:
    off = RefreshSettings(enabled=False)
    assert plan(view(), off).interval("modem") is None
    assert describe(view(), off) == "paused: automatic refresh is off in the settings (F5 refreshes now)"


@pytest.mark.parametrize(("seconds", "words"), [(0.2, "1 s"), (30, "30 s"), (60, "1 min"), (90, "1 min 30 s"),
                                                (300, "5 min"), (3600, "1 h"), (5400, "1 h 30 min")])
def test_duration(seconds: float, words: str) -> None:
    assert duration(seconds) == words


# -- the file ---------------------------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "refresh.json"
    settings = RefreshSettings(metered_seconds=600.0, tab_seconds=5.0).with_link_choice("gw-01", "metered")
    save_settings(settings, path)
    assert load_settings(path) == (settings, [])
    assert json.loads(path.read_text())["format"] == "siteline-refresh"
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file


def test_missing_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "none.json") == (DEFAULTS, [])


def test_default_place_is_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    assert settings_path() == tmp_path / "config" / "refresh.json"
    save_settings(RefreshSettings(shown_seconds=45.0))
    assert load_settings()[0].shown_seconds == 45.0


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\xff\xfe garbage", b"[1, 2]", b'{"format": "other", "version": 1}',
     b'{"format": "siteline-refresh", "version": 99}', b"x" * 70_000],
)
def test_bad_file_gives_defaults_and_a_warning(tmp_path: Path, content: bytes,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "refresh.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        settings, warnings = load_settings(path)
    assert settings == DEFAULTS
    assert len(warnings) == 1
    assert "using the defaults" in warnings[0]
    assert str(path) in caplog.text


def test_bad_values_fall_back_one_by_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "refresh.json"
    data = {"format": "siteline-refresh", "version": 1, "shown_seconds": 0.001, "metered_seconds": 900,
            "tab_seconds": "fast", "slow_factor": float("inf"), "enabled": "yes", "tab_metered_seconds": True,
            "devices": {"gw-01": "sometimes"}, "unknown_key": 1}
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        settings, warnings = load_settings(path)
    assert settings == RefreshSettings(metered_seconds=900.0)
    assert {w.split("'")[1] for w in warnings} == {"shown_seconds", "tab_seconds", "slow_factor", "enabled",
                                                   "tab_metered_seconds", "devices"}
    assert "must be seconds between 1 and 86400" in " ".join(warnings)


def test_auto_choices_are_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "refresh.json"
    path.write_text(json.dumps({"format": "siteline-refresh", "version": 1,
                                "devices": {"a": "auto", "b": "unmetered"}}))
    assert load_settings(path)[0].devices == {"b": "unmetered"}
