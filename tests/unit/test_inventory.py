from __future__ import annotations

import json
from pathlib import Path

import pytest

from siteline.core.errors import SitelineError
from siteline.core.inventory import DeviceEntry, Inventory, InventoryError


def test_round_trip_and_canonical_targets(tmp_path: Path) -> None:
    inv = Inventory(tmp_path / "devices.json")
    inv.upsert(DeviceEntry("gw-01", "SSH://root@10.0.0.5:22", site="Tower 7"))
    inv.upsert(DeviceEntry("cab-2", "serial:///dev/ttyUSB0?baud=115200", username="root"))
    again = Inventory(tmp_path / "devices.json")
    assert again.load() == []
    assert again.get("gw-01") == DeviceEntry("gw-01", "ssh://root@10.0.0.5:22", site="Tower 7")
    assert again.get("cab-2").username == "root"  # type: ignore[union-attr]
    assert (tmp_path / "devices.json").stat().st_mode & 0o777 == 0o600


def test_rename_and_remove(tmp_path: Path) -> None:
    inv = Inventory(tmp_path / "devices.json")
    inv.upsert(DeviceEntry("a", "ssh://h"))
    inv.upsert(DeviceEntry("b", "ssh://h"), replacing="a")
    assert [d.name for d in inv.devices] == ["b"]
    inv.remove("b")
    assert inv.devices == []
    reread = Inventory(tmp_path / "devices.json")
    reread.load()
    assert reread.devices == []


@pytest.mark.parametrize("bad", [DeviceEntry("", "ssh://h"), DeviceEntry("x", "ftp://h"), DeviceEntry("x/../y", "ssh://h")])
def test_bad_entries_are_refused(tmp_path: Path, bad: DeviceEntry) -> None:
    with pytest.raises(SitelineError, match=r".+"):
        Inventory(tmp_path / "d.json").upsert(bad)


def test_damaged_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_bytes(b'{"version": 1, "devices": [tru')
    inv = Inventory(path)
    warnings = inv.load()
    assert "kept as devices.damaged.json" in warnings[0]
    assert (tmp_path / "devices.damaged.json").read_bytes().startswith(b'{"version"')


def test_bad_entry_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    doc = {"version": 1, "devices": [{"name": "ok", "target": "ssh://h"}, {"name": "bad", "target": "nope"}, 7]}
    path.write_text(json.dumps(doc))
    inv = Inventory(path)
    warnings = inv.load()
    assert [d.name for d in inv.devices] == ["ok"]
    assert len(warnings) == 2


def test_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"version": 99, "devices": []}))
    with pytest.raises(InventoryError, match="newer Siteline"):
        Inventory(path).load()
    assert json.loads(path.read_text())["version"] == 99


def test_fallbacks_round_trip_in_order_as_a_list(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    entry = DeviceEntry("gw", "ssh://root@10.0.0.5?jump=ops@bastion:2222",
                        fallbacks=("serial:///dev/ttyUSB0", "mqtts://broker/edge/site-a/gw"))
    saved = Inventory(path).upsert(entry)
    assert saved.targets[0] == saved.target
    assert saved.fallbacks == ("serial:///dev/ttyUSB0", "mqtts://broker/edge/site-a/gw")
    assert json.loads(path.read_text())["devices"][0]["fallbacks"] == list(saved.fallbacks)
    again = Inventory(path)
    assert again.load() == []
    assert again.get("gw") == saved


def test_a_path_listed_twice_is_refused_even_spelled_differently(tmp_path: Path) -> None:
    entry = DeviceEntry("gw", "ssh://root@10.0.0.5", fallbacks=("serial:///dev/ttyUSB0", "SSH://root@10.0.0.5"))
    with pytest.raises(InventoryError, match=r"lists the path ssh://root@10.0.0.5 twice"):
        Inventory(tmp_path / "d.json").upsert(entry)


def test_a_bad_fallback_is_refused_like_a_bad_target(tmp_path: Path) -> None:
    with pytest.raises(SitelineError, match=r".+"):
        Inventory(tmp_path / "d.json").upsert(DeviceEntry("gw", "ssh://h", fallbacks=("ftp://h",)))
    too_many = tuple(f"ssh://h{i}" for i in range(8))
    with pytest.raises(InventoryError, match="at most 8"):
        Inventory(tmp_path / "d.json").upsert(DeviceEntry("gw", "ssh://h", fallbacks=too_many))


def test_file_without_fallbacks_loads_and_a_wrong_type_skips_only_that_entry(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    doc = {"version": 1, "devices": [
        {"name": "old", "target": "ssh://h"},
        {"name": "odd", "target": "ssh://h", "fallbacks": "serial:///dev/ttyUSB0"},
        {"name": "nums", "target": "ssh://h", "fallbacks": [7]},
    ]}
    path.write_text(json.dumps(doc))
    inv = Inventory(path)
    warnings = inv.load()
    assert [d.name for d in inv.devices] == ["old"]
    assert inv.get("old") == DeviceEntry("old", "ssh://h")
    assert len(warnings) == 2
    assert "not a list of target URLs" in warnings[0]
