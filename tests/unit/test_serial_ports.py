"""Serial port names a technician recognises, stable by-id paths, and plug/pull notices."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from siteline.core.transports.serial_ports import PortWatcher, SerialPort, list_ports


@dataclass
class Recorded:
    """The fields pyserial's ListPortInfo had for real devices (values as seen on Linux)."""

    device: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    description: str = "n/a"
    interface: str | None = None


FTDI = Recorded("/dev/ttyUSB0", 0x0403, 0x6001, "A10KZP2X", "FTDI", "FT232R USB UART", "FT232R USB UART")
QUECTEL_AT = Recorded("/dev/ttyUSB3", 0x2C7C, 0x0125, None, "Quectel", "EC25-E", "EC25-E", None)
UNKNOWN_VENDOR = Recorded("/dev/ttyACM0", 0x2341, 0x0043, "7573", "Arduino (www.arduino.cc)", "Uno", "ttyACM0")
BUILT_IN = Recorded("/dev/ttyS0")
WINDOWS = Recorded("COM3", 0x10C4, 0xEA60, "0001", "Silicon Labs", None, "Silicon Labs CP210x (COM3)")


def test_names_stable_paths_and_order(tmp_path: Path) -> None:
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("ttyUSB0", "ttyUSB3"):
        (dev / name).touch()
    (by_id / "usb-FTDI_FT232R_USB_UART_A10KZP2X-if00-port0").symlink_to(dev / "ttyUSB0")
    (by_id / "usb-Quectel_EC25-E-if02-port0").symlink_to(dev / "ttyUSB3")
    recorded = [BUILT_IN, Recorded(str(dev / "ttyUSB3"), 0x2C7C, 0x0125), Recorded(str(dev / "ttyUSB0"), 0x0403, 0x6001,
                "A10KZP2X")]
    ports = list_ports(lambda: recorded, by_id=by_id)
    assert [p.name for p in ports] == [
        "FTDI FT232R USB-serial",
        "Quectel EC25 LTE modem — AT commands",
        "built-in serial port",
    ]
    ftdi = ports[0]
    assert ftdi.stable == str(by_id / "usb-FTDI_FT232R_USB_UART_A10KZP2X-if00-port0")
    assert ftdi.target == f"serial://{ftdi.stable}?baud=115200"
    assert ftdi.usb_id == "0403:6001"
    assert (ports[1].is_modem, ftdi.is_modem) == (True, False)


@pytest.mark.parametrize(
    ("port", "name"),
    [
        (UNKNOWN_VENDOR, "Arduino (www.arduino.cc) Uno"),
        (WINDOWS, "Silicon Labs CP210x USB-serial"),
        (Recorded("/dev/ttyUSB9", 0x2C7C, 0x9999, interface="Quectel Interface 1"), "Quectel USB-serial"),
    ],
)
def test_names_without_by_id(port: Recorded, name: str, tmp_path: Path) -> None:
    (found,) = list_ports(lambda: [port], by_id=tmp_path / "missing")
    assert found.name.startswith(name)
    assert found.stable == port.device


def test_windows_port_target() -> None:
    (found,) = list_ports(lambda: [WINDOWS])
    assert found.target == "serial://COM3"


def test_this_machines_ports_are_listed_without_error() -> None:
    assert all(isinstance(p, SerialPort) for p in list_ports())


@pytest.mark.asyncio
async def test_watcher_reports_plugged_and_pulled_cables() -> None:
    plugged: list[Recorded] = [BUILT_IN]
    changes: list[tuple[list[str], list[str]]] = []
    watcher = PortWatcher(
        lambda added, removed: changes.append(([p.device for p in added], [p.device for p in removed])),
        lister=lambda: list_ports(lambda: list(plugged)),
    )
    await watcher.poll_once()
    plugged.append(FTDI)
    await watcher.poll_once()
    await watcher.poll_once()  # nothing changed: no notice
    plugged.remove(FTDI)
    await watcher.poll_once()
    assert changes == [(["/dev/ttyS0"], []), (["/dev/ttyUSB0"], []), ([], ["/dev/ttyUSB0"])]
    assert [p.device for p in watcher.ports] == ["/dev/ttyS0"]


@pytest.mark.asyncio
async def test_watcher_runs_and_stops_cleanly() -> None:
    seen = asyncio.Event()
    watcher = PortWatcher(lambda added, removed: seen.set(), interval=0.01, lister=lambda: list_ports(lambda: [FTDI]))
    watcher.start()
    try:
        await asyncio.wait_for(seen.wait(), 10)
    finally:
        await watcher.stop()
