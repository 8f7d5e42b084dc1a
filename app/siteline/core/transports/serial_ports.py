"""Which serial ports this laptop has, by names a technician recognises, and when that changes.

pyserial lists the ports; this module adds what a person needs at a cabinet: the chip or modem
behind a USB VID:PID, the stable ``/dev/serial/by-id`` name (ttyUSB numbers move when cables are
replugged), the role of each port of a multi-port cellular modem, and a watcher that notices a
cable being plugged or pulled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from siteline.core.tasks import cancel_and_wait

BY_ID = Path("/dev/serial/by-id")

# USB VID:PID -> what is on the other end. Chips first (USB-serial cables), then cellular modems.
KNOWN_USB: dict[tuple[int, int], str] = {
    (0x0403, 0x6001): "FTDI FT232R USB-serial",
    (0x0403, 0x6010): "FTDI FT2232 dual USB-serial",
    (0x0403, 0x6011): "FTDI FT4232 quad USB-serial",
    (0x0403, 0x6014): "FTDI FT232H USB-serial",
    (0x0403, 0x6015): "FTDI FT230X USB-serial",
    (0x10C4, 0xEA60): "Silicon Labs CP210x USB-serial",
    (0x10C4, 0xEA70): "Silicon Labs CP2105 dual USB-serial",
    (0x10C4, 0xEA71): "Silicon Labs CP2108 quad USB-serial",
    (0x1A86, 0x7523): "WCH CH340 USB-serial",
    (0x1A86, 0x5523): "WCH CH341 USB-serial",
    (0x1A86, 0x55D4): "WCH CH9102 USB-serial",
    (0x067B, 0x2303): "Prolific PL2303 USB-serial",
    (0x067B, 0x23A3): "Prolific PL2303GC USB-serial",
    (0x2C7C, 0x0125): "Quectel EC25 LTE modem",
    (0x2C7C, 0x0121): "Quectel EC21 LTE modem",
    (0x2C7C, 0x0306): "Quectel EP06 LTE modem",
    (0x2C7C, 0x0296): "Quectel BG96 LTE-M/NB-IoT modem",
    (0x2C7C, 0x0800): "Quectel RM500Q 5G modem",
    (0x1199, 0x9071): "Sierra Wireless EM7455/MC7455 LTE modem",
    (0x1199, 0x9091): "Sierra Wireless EM7511 LTE modem",
    (0x1BC7, 0x1201): "Telit LE910 LTE modem",
    (0x1BC7, 0x1070): "Telit LN940 LTE modem",
    (0x1BC7, 0x0036): "Telit LE910Cx LTE modem",
}
KNOWN_VENDORS: dict[int, str] = {
    0x0403: "FTDI",
    0x10C4: "Silicon Labs",
    0x1A86: "WCH",
    0x067B: "Prolific",
    0x2C7C: "Quectel",
    0x1199: "Sierra Wireless",
    0x1BC7: "Telit",
    0x1546: "u-blox",
    0x12D1: "Huawei",
}
MODEM_VENDORS = {0x2C7C, 0x1199, 0x1BC7, 0x1546, 0x12D1}
# Quectel's USB interfaces (its Linux USB driver user guide): which ttyUSB is which.
QUECTEL_ROLES = {0: "diagnostics (DM)", 1: "GNSS (NMEA)", 2: "AT commands", 3: "modem (PPP/AT)"}
_BY_ID_INTERFACE = re.compile(r"-if(\d\d)(?:-port\d+)?$")
# pyserial's USB location ends in ":<configuration>.<interface>" ("1-1.2:1.3"; Windows writes "x" for the
# configuration): the only place the interface number shows on Windows, which has no by-id links.
_LOCATION_INTERFACE = re.compile(r":[0-9x]+\.(\d+)$")
# Windows' friendly names end in the port name ("Silicon Labs CP210x USB to UART Bridge (COM3)"): said once.
_COM_SUFFIX = re.compile(r"\s*\(COM\d+\)$", re.IGNORECASE)


class PortInfo(Protocol):
    """What pyserial's ListPortInfo gives us (a Protocol so tests can hand in recorded ports)."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    manufacturer: str | None
    product: str | None
    description: str
    interface: str | None


@dataclass(frozen=True)
class SerialPort:
    device: str  # what the OS calls it now: /dev/ttyUSB0, COM3, /dev/cu.usbserial-1410
    stable: str  # the name to save in a target: /dev/serial/by-id/... where it exists, else device
    name: str  # for a person: "FTDI FT232R USB-serial", "Quectel EC25 LTE modem — AT commands"
    usb_id: str | None  # "0403:6001"
    serial_number: str | None
    is_modem: bool

    @property
    def target(self) -> str:
        return f"serial://{self.stable}?baud=115200" if self.stable.startswith("/") else f"serial://{self.stable}"


def _by_id_links(by_id: Path) -> dict[str, str]:
    """realpath of each /dev/serial/by-id link -> the link (stable across replugging)."""
    links: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for entry in sorted(by_id.iterdir()):
            with contextlib.suppress(OSError):
                links[os.path.realpath(entry)] = str(entry)
    return links


def _interface_number(port: PortInfo, stable: str) -> int | None:
    m = _BY_ID_INTERFACE.search(stable)
    if m:
        return int(m.group(1))
    m = re.search(r"(\d+)$", port.interface or "")
    if m:
        return int(m.group(1))
    m = _LOCATION_INTERFACE.search(getattr(port, "location", None) or "")
    return int(m.group(1)) if m else None


def _friendly(description: str) -> str:
    """The OS's own name for a port, without the " (COM3)" Windows appends; "" when there is none."""
    text = _COM_SUFFIX.sub("", description or "").strip()
    return "" if text == "n/a" else text


def _port_order(port: SerialPort) -> tuple[bool, str, int, str]:
    """USB first, then by name with the number compared as a number: COM3 before COM10, ttyUSB2 before ttyUSB10."""
    m = re.match(r"^(.*?)(\d+)$", port.device)
    stem, number = (m.group(1), int(m.group(2))) if m else (port.device, -1)
    return (port.usb_id is None, stem, number, port.device)


def describe(port: PortInfo, stable: str) -> str:
    """The human name: known chip or modem, else the vendor and product the device reports."""
    vid, pid = port.vid, port.pid
    if vid is not None and pid is not None and (vid, pid) in KNOWN_USB:
        name = KNOWN_USB[(vid, pid)]
    elif vid is not None and not port.product and _COM_SUFFIX.search(port.description or ""):
        # Windows: no product string, and the manufacturer is often the driver's ("Microsoft" for usbser.sys),
        # but the friendly name is the device's own ("Arduino Uno (COM5)", "Quectel USB AT Port (COM7)").
        name = _friendly(port.description)
    elif vid is not None:
        vendor = KNOWN_VENDORS.get(vid) or port.manufacturer or f"USB vendor {vid:04x}"
        name = f"{vendor} {port.product or 'USB-serial'}".strip()
    elif _friendly(port.description):
        name = _friendly(port.description)
    else:
        name = "built-in serial port"
    if vid == 0x2C7C:
        number = _interface_number(port, stable)
        role = QUECTEL_ROLES.get(number) if number is not None else None
        if role:
            name = f"{name} — {role}"
    return name


def list_ports(source: Callable[[], Iterable[PortInfo]] | None = None, by_id: Path = BY_ID) -> list[SerialPort]:
    """Every serial port, USB ones first (a cable the technician just plugged in), then built-in ones."""
    if source is None:
        from serial.tools import list_ports as pyserial_ports

        def source() -> Iterable[Any]:
            found: list[Any] = pyserial_ports.comports()
            return found

    links = _by_id_links(by_id)
    ports = []
    for info in source():
        stable = links.get(os.path.realpath(info.device), info.device) if info.device.startswith("/") else info.device
        usb_id = f"{info.vid:04x}:{info.pid:04x}" if info.vid is not None and info.pid is not None else None
        ports.append(
            SerialPort(
                device=info.device,
                stable=stable,
                name=describe(info, stable),
                usb_id=usb_id,
                serial_number=info.serial_number,
                is_modem=info.vid in MODEM_VENDORS,
            )
        )
    return sorted(ports, key=_port_order)


PortsListener = Callable[[list[SerialPort], list[SerialPort]], None]  # (added, removed)


class PortWatcher:
    """Polls the port list (1 s): plugging and pulling cables is rare, and polling works on every OS."""

    def __init__(self, on_change: PortsListener, interval: float = 1.0,
                 lister: Callable[[], list[SerialPort]] = list_ports) -> None:
        self._on_change = on_change
        self._interval = interval
        self._lister = lister
        self._known: dict[str, SerialPort] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def ports(self) -> list[SerialPort]:
        return list(self._known.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="serial port watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    async def poll_once(self) -> None:
        # comports() walks sysfs (or the registry): off the loop, so a slow bus never stalls the UI.
        now = {p.device: p for p in await asyncio.to_thread(self._lister)}
        added = [p for d, p in now.items() if d not in self._known]
        removed = [p for d, p in self._known.items() if d not in now]
        self._known = now
        if added or removed:
            self._on_change(added, removed)

    async def _watch(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self._interval)
