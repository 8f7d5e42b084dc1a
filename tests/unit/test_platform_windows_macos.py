"""The Windows and macOS code paths, run on Linux: COM port targets, what pyserial lists there, the folders.

The port records are pyserial's own ListPortInfo, filled the way its Windows and macOS listers fill them
(serial/tools/list_ports_windows.py, list_ports_osx.py), so a change in what we read from them shows here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import platformdirs
import platformdirs.macos
import platformdirs.windows
import pytest
import serial
from serial.tools.list_ports_common import ListPortInfo

from siteline import paths
from siteline.core.errors import TargetError, TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.core.transports.serial import SerialTransport
from siteline.core.transports.serial_ports import list_ports

ROOT = Path(__file__).resolve().parents[2]

# ---- targets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "device", "canonical", "baud"),
    [
        ("serial://COM3", "COM3", "serial://COM3", 115200),
        ("serial://COM12?baud=9600", "COM12", "serial://COM12?baud=9600", 9600),
        ("serial://com7?baud=auto", "COM7", "serial://COM7?baud=auto", 115200),
        (r"serial://\\.\COM12", "COM12", "serial://COM12", 115200),  # the form Windows tools print for COM10+
        (r"serial://\\.\com12?baud=9600", "COM12", "serial://COM12?baud=9600", 9600),
        ("serial://%5C%5C.%5CCOM12", "COM12", "serial://COM12", 115200),  # the same, percent-encoded
        ("serial:///dev/cu.usbserial-A10KZP2X", "/dev/cu.usbserial-A10KZP2X",
         "serial:///dev/cu.usbserial-A10KZP2X", 115200),  # macOS: the callout device pyserial lists
    ],
)
def test_windows_and_macos_port_targets(text: str, device: str, canonical: str, baud: int) -> None:
    target = parse_target(text)
    assert (target.device, str(target), target.baud) == (device, canonical, baud)
    assert parse_target(str(target)) == target  # the canonical form reads back the same
    assert target.label == device.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    "text",
    [
        "serial://COM0",
        "serial://COM",
        r"serial://\\.\COM0",
        r"serial://\\.\PhysicalDrive0",  # the device namespace reaches disks too: only COM ports pass
        r"serial://\\.\COM3\x",
        r"serial://C:\dev\ttyS0",
    ],
)
def test_windows_forms_that_are_not_ports_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    assert "COM3" in (caught.value.hint or "")


# ---- what pyserial lists on Windows and macOS -------------------------------------------------------


def windows_port(device: str, vid: int | None = None, pid: int | None = None, *, description: str,
                 manufacturer: str | None = None, serial_number: str | None = None,
                 location: str | None = None) -> ListPortInfo:
    """A port as list_ports_windows.comports() fills it: no product, the friendly name as description."""
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial_number
    info.manufacturer, info.location, info.description = manufacturer, location, description
    info.hwid = info.usb_info() if vid is not None else "ACPI\\PNP0501\\1"
    return info


WIN_FTDI = windows_port("COM3", 0x0403, 0x6001, description="USB Serial Port (COM3)", manufacturer="FTDI",
                        serial_number="A10KZP2X")
WIN_ARDUINO = windows_port("COM5", 0x2341, 0x0043, description="Arduino Uno (COM5)", manufacturer="Microsoft",
                           serial_number="7573")
WIN_QUECTEL_AT = windows_port("COM12", 0x2C7C, 0x0125, description="Quectel USB AT Port (COM12)",
                              manufacturer="Quectel", location="1-2:x.2")
WIN_QUECTEL_DM = windows_port("COM10", 0x2C7C, 0x0125, description="Quectel USB DM Port (COM10)",
                              manufacturer="Quectel", location="1-2:x.0")
WIN_BUILT_IN = windows_port("COM1", description="Communications Port (COM1)", manufacturer="(Standard port types)")


def test_windows_ports_are_named_and_ordered_for_a_person(tmp_path: Path) -> None:
    ports = list_ports(lambda: [WIN_BUILT_IN, WIN_QUECTEL_AT, WIN_ARDUINO, WIN_QUECTEL_DM, WIN_FTDI],
                       by_id=tmp_path / "no-by-id-on-windows")
    # USB first; COM3 before COM10 (by number, not as text), built-in ports last.
    assert [p.device for p in ports] == ["COM3", "COM5", "COM10", "COM12", "COM1"]
    assert [p.name for p in ports] == [
        "FTDI FT232R USB-serial",
        "Arduino Uno",  # the friendly name, not the driver's manufacturer ("Microsoft")
        "Quectel EC25 LTE modem — diagnostics (DM)",  # interface 0, from the location
        "Quectel EC25 LTE modem — AT commands",
        "Communications Port",
    ]
    assert [p.target for p in ports] == [f"serial://{p.device}" for p in ports]
    assert all(p.stable == p.device for p in ports)  # COM names are what a target keeps
    assert [p.is_modem for p in ports] == [False, False, True, True, False]
    assert ports[0].usb_id == "0403:6001"
    assert parse_target(ports[3].target).device == "COM12"


def test_macos_ports_use_the_callout_device(tmp_path: Path) -> None:
    ftdi = ListPortInfo("/dev/cu.usbserial-A10KZP2X")
    ftdi.vid, ftdi.pid, ftdi.serial_number = 0x0403, 0x6001, "A10KZP2X"
    ftdi.product, ftdi.manufacturer, ftdi.location = "FT232R USB UART", "FTDI", "20-1"
    ftdi.apply_usb_info()
    bluetooth = ListPortInfo("/dev/cu.Bluetooth-Incoming-Port")
    ports = list_ports(lambda: [bluetooth, ftdi], by_id=tmp_path / "no-by-id-on-macos")
    assert [(p.device, p.name) for p in ports] == [
        ("/dev/cu.usbserial-A10KZP2X", "FTDI FT232R USB-serial"),
        ("/dev/cu.Bluetooth-Incoming-Port", "built-in serial port"),
    ]
    assert ports[0].target == "serial:///dev/cu.usbserial-A10KZP2X?baud=115200"
    assert parse_target(ports[0].target).device == "/dev/cu.usbserial-A10KZP2X"


# ---- what a pyserial open of a COM port is given ----------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("text", "baud"), [("serial://COM3", 115200), (r"serial://\\.\COM12?baud=9600", 9600)])
async def test_a_com_port_open_gets_the_com_name(text: str, baud: int, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, dict[str, Any]]] = []

    def windows_serial(port: str, **kwargs: Any) -> Any:
        opened.append((port, kwargs))
        # What serialwin32 raises when the port is not there (CreateFile fails; no errno on the exception).
        raise serial.SerialException(f"could not open port {port!r}: FileNotFoundError(2, 'The system cannot "
                                     "find the file specified.', None, 2)")

    monkeypatch.setattr(serial, "Serial", windows_serial)
    transport = SerialTransport(parse_target(text), Credentials(username="root"), wake_timeout=0.1,
                                login_timeout=0.1)
    with pytest.raises(TransportError) as caught:
        await transport.connect()
    await transport.close()
    name = parse_target(text).device
    ((port, kwargs),) = opened
    # pyserial adds the \\.\ prefix itself above COM8; exclusive=True is the only mode win32 accepts.
    assert port == name
    assert kwargs["exclusive"] is True
    assert (kwargs["baudrate"], kwargs["bytesize"], kwargs["parity"], kwargs["stopbits"]) == (baud, 8, "N", 1)
    assert name in str(caught.value)


# ---- folders ---------------------------------------------------------------------------------------


@pytest.fixture
def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITELINE_HOME", raising=False)


def test_windows_folders(no_home: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = tmp_path / "Users" / "tech" / "AppData"
    folders = {"CSIDL_LOCAL_APPDATA": profile / "Local", "CSIDL_APPDATA": profile / "Roaming"}
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", lambda csidl: str(folders[csidl]))
    monkeypatch.setattr(paths.platformdirs, "PlatformDirs", platformdirs.windows.Windows)
    local = profile / "Local" / "siteline"  # %LOCALAPPDATA%\siteline: no "siteline\siteline" author folder
    assert (paths.config_dir(), paths.data_dir(), paths.state_dir()) == (local, local, local)
    assert paths.cache_dir() == local / "Cache"
    assert paths.data_dir() / "plugins" == local / "plugins"  # where a user drops a plugin
    assert local.is_dir()


def test_macos_folders(no_home: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(paths.platformdirs, "PlatformDirs", platformdirs.macos.MacOS)
    support = tmp_path / "Library" / "Application Support" / "siteline"
    assert (paths.config_dir(), paths.data_dir(), paths.state_dir()) == (support, support, support)
    assert paths.cache_dir() == tmp_path / "Library" / "Caches" / "siteline"


def test_siteline_home_wins_over_the_platform_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("platformdirs must not be asked when SITELINE_HOME is set")

    monkeypatch.setattr(paths.platformdirs, "PlatformDirs", refuse)
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "portable"))
    assert paths.data_dir() == tmp_path / "portable" / "data"
    assert paths.config_dir() == tmp_path / "portable" / "config"
    assert paths.cache_dir() == tmp_path / "portable" / "cache"


def test_no_name_is_used_under_two_kinds_of_folder() -> None:
    # On Windows and macOS config, data and state are ONE folder: "x" under config_dir() and a different "x" under
    # data_dir() would be the same file there. The scan sees the usual `kind_dir() / "name"` spelling.
    pattern = re.compile(r'\b(config|data|state)_dir\(\)\s*/\s*"([^"]+)"')
    kinds: dict[str, set[str]] = {}
    for source in [*(ROOT / "app").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        for kind, name in pattern.findall(source.read_text(encoding="utf-8")):
            kinds.setdefault(name, set()).add(kind)
    assert {"devices.json", "vault.siteline", "logs"} <= set(kinds)  # the scan does find the names
    assert {name: sorted(found) for name, found in kinds.items() if len(found) > 1} == {}
