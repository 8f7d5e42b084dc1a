"""Sites → devices, with each device's connection state in its own column.

Index identity: a site row has internalId 0; a device row carries its site's stable id (>= 1), so
persistent indexes stay valid while sites come and go.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from siteline.core.errors import TargetError
from siteline.core.inventory import DeviceEntry
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnectionState, ConnState
from siteline.ui.icons import icon, state_icon, transport_icon
from siteline.ui.path_view import active_path, describe_target, paths_tooltip, transport_word

if TYPE_CHECKING:
    from siteline.ui.sessions import SessionManager

NAME_COLUMN, STATE_COLUMN = 0, 1
HEADERS = ("Device", "State")
NameRole = Qt.ItemDataRole.UserRole + 1  # device name, or None on a site row
StateRole = Qt.ItemDataRole.UserRole + 2  # ConnState value ("up", "retrying" ...)
TargetRole = Qt.ItemDataRole.UserRole + 3
SiteRole = Qt.ItemDataRole.UserRole + 4
PathRole = Qt.ItemDataRole.UserRole + 5  # the target in use now ("" when no path is up)
AnyIndex = QModelIndex | QPersistentModelIndex


@dataclass
class _Device:
    entry: DeviceEntry
    state: ConnectionState = field(default_factory=lambda: ConnectionState(ConnState.CONNECTING))
    paths: list[Any] = field(default_factory=list)  # PathStatus items, in order of preference
    active: str | None = None  # the session's active target
    host_key: str = ""  # "unknown" / "changed" while an SSH host key waits for the person

    def in_use(self) -> str:
        """The target in use now: the active path of a several-path device, else its one target when up."""
        found = active_path(self.paths, self.active) if self.paths else None
        if found is not None:
            return str(found[1].target)
        return self.entry.target if self.state.state is ConnState.UP and not self.paths else ""

    def via(self) -> str:
        """" via serial" for a device with several paths that is up; "" otherwise."""
        used = self.in_use()
        several_up = len(self.paths) > 1 and self.state.state is ConnState.UP
        return f" via {transport_word(used)}" if several_up and used else ""


@dataclass
class _Site:
    id: int
    name: str
    devices: list[_Device] = field(default_factory=list)


class DeviceTreeModel(QAbstractItemModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._sites: list[_Site] = []
        self._ids = itertools.count(1)
        self._sessions: SessionManager | None = None

    # -- Qt model interface ------------------------------------------------------------------

    def index(self, row: int, column: int, parent: AnyIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, 0)
        site = self._sites[parent.row()]
        return self.createIndex(row, column, site.id)

    def parent(self, child: AnyIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        if not child.isValid() or child.internalId() == 0:
            return QModelIndex()
        row = self._site_row_by_id(child.internalId())
        return self.createIndex(row, 0, 0) if row is not None else QModelIndex()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        if not parent.isValid():
            return len(self._sites)
        if parent.internalId() == 0 and parent.column() == 0:
            return len(self._sites[parent.row()].devices)
        return 0

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < 2:
            return HEADERS[section]
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if index.internalId() == 0:
            return self._site_data(self._sites[index.row()], index.column(), role)
        device = self._device_at(index)
        return self._device_data(device, index.column(), role) if device else None

    # -- what the window calls ---------------------------------------------------------------

    def device_names(self) -> list[str]:
        return [d.entry.name for s in self._sites for d in s.devices]

    def index_of(self, name: str, column: int = NAME_COLUMN) -> QModelIndex:
        for site in self._sites:
            for drow, device in enumerate(site.devices):
                if device.entry.name == name:
                    return self.createIndex(drow, column, site.id)
        return QModelIndex()

    def entry(self, name: str) -> DeviceEntry | None:
        found = self._find(name)
        return found[1].entry if found else None

    def state(self, name: str) -> ConnectionState | None:
        found = self._find(name)
        return found[1].state if found else None

    def set_devices(self, entries: list[DeviceEntry]) -> None:
        self.beginResetModel()
        self._sites.clear()
        for entry in entries:
            self._place(entry, signal=False)
        self.endResetModel()

    def add_device(self, entry: DeviceEntry, state: ConnectionState | None = None) -> None:
        self.remove_device(entry.name)
        self._place(entry, state=state, signal=True)

    def update_device(self, old_name: str, entry: DeviceEntry) -> None:
        """A renamed or edited device: moves to its new site if needed, keeps its state."""
        found = self._find(old_name)
        state = found[1].state if found else None
        if found and found[0].name == (entry.site or "Unsorted"):
            device = found[1]
            device.entry = entry
            row = self.index_of(entry.name)
            self.dataChanged.emit(row, row.siblingAtColumn(STATE_COLUMN))
            return
        self.remove_device(old_name)
        self._place(entry, state=state, signal=True)

    def follow(self, sessions: SessionManager) -> None:
        """Show each device's path in use, and a host key waiting for the person, as ``sessions`` reports them."""
        self._sessions = sessions
        sessions.sig_paths_changed.connect(
            lambda name: self.set_paths(name, sessions.paths(name), sessions.active_target(name))
        )
        sessions.sig_host_key_problem.connect(lambda name, _problem: self._on_sessions_host_key(name))

    def _on_sessions_host_key(self, name: str) -> None:
        found = self._find(name)
        if found is None or self._sessions is None:
            return
        problem = self._sessions.host_key_problem(name)
        found[1].host_key = problem.kind if problem is not None else ""
        first = self.index_of(name, NAME_COLUMN)
        self.dataChanged.emit(first, first.siblingAtColumn(STATE_COLUMN))

    def set_paths(self, name: str, paths: list[Any], active_target: Any = None) -> None:
        """A device's paths changed (one dropped, a fallback took over): its row says which one is in use."""
        found = self._find(name)
        if found is None:
            return
        found[1].paths = list(paths)
        found[1].active = str(active_target) if active_target else None
        first = self.index_of(name, NAME_COLUMN)
        self.dataChanged.emit(first, first.siblingAtColumn(STATE_COLUMN))

    def remove_device(self, name: str) -> bool:
        found = self._find(name)
        if found is None:
            return False
        site, device = found
        srow = self._sites.index(site)
        drow = site.devices.index(device)
        self.beginRemoveRows(self.createIndex(srow, 0, 0), drow, drow)
        site.devices.pop(drow)
        self.endRemoveRows()
        if not site.devices:  # an empty site is noise in the tree
            self.beginRemoveRows(QModelIndex(), srow, srow)
            self._sites.pop(srow)
            self.endRemoveRows()
        return True

    def set_state(self, name: str, state: ConnectionState) -> None:
        found = self._find(name)
        if found is None:
            return
        found[1].state = state
        if self._sessions is not None:  # a trusted key (or a removed question) ends with a state change
            problem = self._sessions.host_key_problem(name)
            found[1].host_key = problem.kind if problem is not None else ""
        first = self.index_of(name, NAME_COLUMN)
        self.dataChanged.emit(first, first.siblingAtColumn(STATE_COLUMN))
        site_index = self.createIndex(self._sites.index(found[0]), STATE_COLUMN, 0)
        self.dataChanged.emit(site_index, site_index)  # the site's "2/3 up" summary

    # -- internals ---------------------------------------------------------------------------

    def _place(self, entry: DeviceEntry, state: ConnectionState | None = None, signal: bool = True) -> None:
        site_name = entry.site or "Unsorted"
        site = next((s for s in self._sites if s.name == site_name), None)
        if site is None:
            srow = _sorted_position([s.name.lower() for s in self._sites], site_name.lower())
            if signal:
                self.beginInsertRows(QModelIndex(), srow, srow)
            site = _Site(next(self._ids), site_name)
            self._sites.insert(srow, site)
            if signal:
                self.endInsertRows()
        drow = _sorted_position([d.entry.name.lower() for d in site.devices], entry.name.lower())
        if signal:
            self.beginInsertRows(self.createIndex(self._sites.index(site), 0, 0), drow, drow)
        site.devices.insert(drow, _Device(entry, state or ConnectionState(ConnState.CONNECTING)))
        if signal:
            self.endInsertRows()

    def _find(self, name: str) -> tuple[_Site, _Device] | None:
        for site in self._sites:
            for device in site.devices:
                if device.entry.name == name:
                    return site, device
        return None

    def _site_row_by_id(self, site_id: int) -> int | None:
        return next((row for row, s in enumerate(self._sites) if s.id == site_id), None)

    def _device_at(self, index: AnyIndex) -> _Device | None:
        row = self._site_row_by_id(index.internalId())
        if row is None or not 0 <= index.row() < len(self._sites[row].devices):
            return None
        return self._sites[row].devices[index.row()]

    def _site_data(self, site: _Site, column: int, role: int) -> Any:
        up = sum(1 for d in site.devices if d.state.state is ConnState.UP)
        if role == Qt.ItemDataRole.DisplayRole:
            return site.name if column == NAME_COLUMN else f"{up}/{len(site.devices)} up"
        if role == Qt.ItemDataRole.DecorationRole and column == NAME_COLUMN:
            return icon("site")
        if role == SiteRole:
            return site.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"Site {site.name}: {len(site.devices)} device(s), {up} up"
        return None

    def _device_data(self, device: _Device, column: int, role: int) -> Any:
        entry, state = device.entry, device.state
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.name if column == NAME_COLUMN else _row_text(device)
        if role == Qt.ItemDataRole.DecorationRole:
            shown = device.in_use() or entry.target
            return _transport_icon(shown) if column == NAME_COLUMN else state_icon(state.state)
        if role == Qt.ItemDataRole.ToolTipRole:
            return _tooltip(device)
        if role == PathRole:
            return device.in_use()
        if role == NameRole:
            return entry.name
        if role == StateRole:
            return str(state.state.value)
        if role == TargetRole:
            return entry.target
        if role == SiteRole:
            return entry.site
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{entry.name}, {state.describe()}{device.via()}"
        return None


def _row_text(device: _Device) -> str:
    """The state column: the connection state, the path in use, or the host key that stops the device."""
    key = {"changed": "⚠ HOST KEY CHANGED", "unknown": "host key to check"}.get(device.host_key, "")
    if key and device.state.state is not ConnState.UP:
        return key
    return _state_text(device.state) + device.via() + (f" · {key}" if key else "")


def _tooltip(device: _Device) -> str:
    entry, state = device.entry, device.state
    if len(device.paths) > 1:
        used = device.in_use()
        now = f"in use: {describe_target(used)}" if used else "no path in use"
        return f"{entry.name} — {now}\n{state.describe()}\n\nPaths:\n{paths_tooltip(device.paths, device.active)}"
    return f"{entry.name} — {entry.target}\n{state.describe()}"


def _state_text(state: ConnectionState, now: float | None = None) -> str:
    """The short text in the tree; the full reason and hint go to the tooltip."""
    if state.state is ConnState.RETRYING:
        left = round(state.retry_in(time.monotonic() if now is None else now) or 0.0)
        return f"retrying in {int(left)} s"
    if state.state is ConnState.DOWN and state.reason:
        return f"down: {state.reason}" if len(state.reason) <= 40 else f"down: {state.reason[:37]}..."
    return str(state.state.value)


def _transport_icon(target: str) -> Any:
    try:
        return transport_icon(parse_target(target))
    except TargetError:
        return None


def _sorted_position(keys: list[str], key: str) -> int:
    return next((i for i, k in enumerate(keys) if k > key), len(keys))
