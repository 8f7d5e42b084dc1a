"""The site/device tree model keeps Qt's model contract through adds, renames, moves, removals and states."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt

from siteline.core.inventory import DeviceEntry
from siteline.core.transports.base import ConnectionState, ConnState
from siteline.ui.device_tree_model import NAME_COLUMN, STATE_COLUMN, DeviceTreeModel, NameRole, StateRole


def _entry(name: str, site: str = "Tower 7", target: str = "ssh://root@127.0.0.1:2222") -> DeviceEntry:
    return DeviceEntry(name=name, target=target, site=site)


def test_model_contract_through_changes(qtmodeltester) -> None:
    model = DeviceTreeModel()
    model.set_devices([_entry("gw-02"), _entry("gw-01"), _entry("rtu-1", site="Pump house")])
    qtmodeltester.check(model, force_py=True)

    model.add_device(_entry("cam-1", site="A site", target="serial:///dev/ttyUSB0"))
    model.update_device("gw-01", _entry("gw-01b"))  # rename in place
    model.update_device("gw-02", _entry("gw-02", site="Pump house"))  # move to another site
    model.set_state("rtu-1", ConnectionState(ConnState.UP))
    model.set_state("gw-01b", ConnectionState(ConnState.DOWN, "wrong password"))
    model.remove_device("cam-1")  # its site goes with it
    qtmodeltester.check(model, force_py=True)

    sites = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert sites == ["Pump house", "Tower 7"]
    pump = model.index(0, 0)
    assert [model.index(r, 0, pump).data(NameRole) for r in range(model.rowCount(pump))] == ["gw-02", "rtu-1"]
    assert model.index(0, STATE_COLUMN).data() == "1/2 up"
    assert model.index_of("gw-01b", STATE_COLUMN).data() == "down: wrong password"
    assert model.index_of("rtu-1").data(StateRole) == "up"
    assert model.remove_device("nope") is False


def test_retrying_counts_down_and_tooltip_has_reason() -> None:
    model = DeviceTreeModel()
    model.add_device(_entry("gw-01"))
    state = ConnectionState(ConnState.RETRYING, "Connection refused by 127.0.0.1:9", retry_at=time.monotonic() + 5.2)
    model.set_state("gw-01", state)
    index = model.index_of("gw-01", STATE_COLUMN)
    assert index.data() in ("retrying in 5 s", "retrying in 4 s")
    assert "Connection refused" in index.data(Qt.ItemDataRole.ToolTipRole)
    assert model.index_of("gw-01", NAME_COLUMN).data(Qt.ItemDataRole.DecorationRole) is not None


def test_model_tester_with_signals(qtmodeltester) -> None:
    model = DeviceTreeModel()
    qtmodeltester.check(model, force_py=True)
    for i in range(5):
        model.add_device(_entry(f"dev-{i}", site=f"site-{i % 2}"))
    model.remove_device("dev-0")
    model.remove_device("dev-2")
    model.remove_device("dev-4")  # site-0 disappears
    qtmodeltester.check(model, force_py=True)
    assert model.rowCount() == 1
