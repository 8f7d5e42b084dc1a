"""The AT-command modem probe against the simulated modem's AT port on its own pty, through the device's shell.

The device runs its commands in a real /bin/sh (in its namespaces); the probe's chat script opens the pty,
sets it raw at 115200 and talks 27.007 to the simulator's modem, which answers from the same state mmcli
reports. Over SSH for the full path; through the device shell directly where only the port's behaviour matters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.peers.sim import PASSWORD, running_device

import siteline_atmodem
import siteline_modemmanager
from siteline.api import DeviceContext, Unavailable
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.console import MAX_TYPED_LINE, CommandFrame
from siteline.core.transports.factory import open_transport
from siteline.probe_cli import add_probe_arguments, probe_command
from siteline.simulator import dynamics
from siteline.simulator.at_modem import ATModem
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.simulator.store import update_json
from siteline.simulator.tools import mmcli
from siteline_atmodem import chat
from siteline_atmodem.probe import COMMANDS, ATModemProbe, ATModemReport, port_of, read_answers
from siteline_modemmanager.parsers import parse_modem, parse_signal

log = logging.getLogger(__name__)


@pytest.fixture
def state(sim_state: DeviceState) -> DeviceState:
    # Hold the signal walk still (its next step is an hour away) so AT and mmcli read the same figures.
    update_json(sim_state.root, sim_state.root / dynamics.MODEM_FILE,
                lambda m: m.__setitem__("last_step_at", time.time() + 3600))
    return sim_state


@contextlib.asynccontextmanager
async def at_port(state: DeviceState, link: Path | None = None, *, modemmanager: bool = False,
                  baud: int = 115200) -> AsyncIterator[ATModem]:
    modem = ATModem(state, link, baud, modemmanager=modemmanager)
    await modem.start()
    try:
        yield modem
    finally:
        await modem.stop()


def shell_context(state: DeviceState) -> DeviceContext:
    """The device's own shell (what the SSH server runs), without the SSH hop."""
    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(state, command, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))
    return make_context(state.config.name, "sim", run, log)


def sim_mmcli(state: DeviceState, *argv: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert mmcli.main("mmcli", list(argv), state) == 0
    return buf.getvalue()


def host() -> PluginHost:
    plugins = PluginHost()
    for module in (siteline_modemmanager, siteline_atmodem):
        plugins.register(module, module.__name__)
    return plugins


@contextlib.contextmanager
def silent_pty(link: Path) -> Iterator[None]:
    """A serial port with nothing behind it: the line is there, nobody answers."""
    master, slave = os.openpty()
    link.symlink_to(os.ttyname(slave))
    try:
        yield
    finally:
        link.unlink()
        os.close(slave)
        os.close(master)


@contextlib.contextmanager
def scripted_pty(link: Path, replies: list[bytes]) -> Iterator[None]:
    """A serial port whose far end answers each input with the next of ``replies`` (the last one repeats)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    link.symlink_to(os.ttyname(slave))
    loop = asyncio.get_running_loop()
    left = list(replies)

    def answer() -> None:
        with contextlib.suppress(OSError):
            os.read(master, 4096)
            os.write(master, left.pop(0) if len(left) > 1 else left[0])

    loop.add_reader(master, answer)
    try:
        yield
    finally:
        loop.remove_reader(master)
        link.unlink()
        os.close(slave)
        os.close(master)


@pytest.mark.asyncio
async def test_at_probe_over_ssh_matches_mmcli(state: DeviceState, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sim_mmcli(state, "-m", "0", "--signal-setup=5")
    mm_signal = parse_signal(sim_mmcli(state, "-m", "0", "--signal-get", "--output-json"))
    mm_modem = parse_modem(sim_mmcli(state, "-m", "0", "--output-json"))
    async with running_device(state) as device, at_port(state):  # AT-only: mmcli is gone from the device
        target = f"ssh://root@127.0.0.1:{device.ssh_port}"
        transport = open_transport(parse_target(target), Credentials(username="root", password=PASSWORD),
                                   tmp_path / "known_hosts", accept_new_host_key=True, connect_timeout=20)
        await transport.connect()
        try:
            report = await ATModemProbe(port=str(state.root / "dev/ttyUSB2")).collect(
                make_context("gw", target, transport.run, log))
            monkeypatch.setenv(siteline_atmodem.PORT_ENV, str(state.root / "dev/ttyUSB2"))  # read by the hook
            parser = argparse.ArgumentParser()
            add_probe_arguments(parser)
            assert await probe_command(parser.parse_args(["--json", "--only", "modem"]), target, transport.run,
                                       host=host()) == 0
        finally:
            await transport.close()
    assert isinstance(report, ATModemReport), report
    assert report.problems == ()
    modem, signal = report.modem, report.signal
    assert (modem.manufacturer, modem.model, modem.firmware) == (mm_modem.manufacturer, mm_modem.model,
                                                                 mm_modem.firmware)
    assert (modem.operator_name, modem.operator_code) == (mm_modem.operator_name, mm_modem.operator_code)
    assert (modem.registration, modem.roaming, modem.imei) == (mm_modem.registration, False, mm_modem.imei)
    assert modem.access_technologies == mm_modem.access_technologies == ("lte",)
    assert modem.sim_locked is False
    assert signal is not None
    assert signal.lte is not None
    assert mm_signal.lte is not None
    # 27.007 steps: RSRP 1 dB, RSRQ 0.5 dB, RSSI 2 dB; the AT figure is mmcli's rounded to the step.
    assert signal.lte.rsrp is not None
    assert mm_signal.lte.rsrp is not None
    assert abs(signal.lte.rsrp - mm_signal.lte.rsrp) <= 0.5
    assert signal.lte.rsrq is not None
    assert mm_signal.lte.rsrq is not None
    assert abs(signal.lte.rsrq - mm_signal.lte.rsrq) <= 0.25
    assert signal.lte.rssi is not None
    assert mm_signal.lte.rssi is not None
    assert abs(signal.lte.rssi - mm_signal.lte.rssi) <= 1.0
    # `siteline probe --json`: the ModemManager probe says ModemManager is absent, the AT probe answers.
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc["modem"]["available"] is True
    assert doc["modem"]["signal"]["lte"]["rsrp"] == signal.lte.rsrp
    assert doc["modem"]["signal"]["nr"] is None
    assert doc["modem"]["operator_code"] == "23415"


@pytest.mark.asyncio
async def test_at_probe_over_the_serial_console(state: DeviceState, tmp_path: Path) -> None:
    """A console types the chat as one line (at most 1000 characters) and merges stderr into stdout."""
    link = tmp_path / "ttySIM0"
    # A device's port is /dev/ttyUSB2; a long test path would eat into the typed line's 1000 characters.
    short = Path(tempfile.mkdtemp(prefix="at", dir="/tmp"))
    async with running_device(state, ssh=False, serial_link=link), at_port(state, short / "ttyAT") as modem:
        target = f"serial://{link}?baud=115200"
        transport = open_transport(parse_target(target), Credentials(username="root", password=PASSWORD),
                                   tmp_path / "known_hosts", connect_timeout=20)
        await transport.connect()
        try:
            report = await ATModemProbe(port=str(modem.line.link)).collect(make_context("gw", target, transport.run,
                                                                                        log))
            missing = await ATModemProbe(port=str(short / "ttyUSB7")).collect(make_context("gw", target,
                                                                                           transport.run, log))
        finally:
            await transport.close()
            shutil.rmtree(short, ignore_errors=True)
    assert isinstance(report, ATModemReport), report
    assert report.problems == ()
    assert report.modem.operator_code == "23415"
    assert report.signal is not None
    assert report.signal.lte is not None
    assert report.signal.lte.rsrp is not None
    assert isinstance(missing, Unavailable)
    assert "no AT port found" in missing.reason


@pytest.mark.asyncio
async def test_direct_from_the_laptops_serial_port(state: DeviceState, tmp_path: Path) -> None:
    """The laptop's cable on the modem's AT port: the same exchange through pyserial, the same report."""
    probe = ATModemProbe(wait=1.0)
    async with at_port(state, modemmanager=True) as modem:
        report = await probe.collect_direct(str(modem.line.link))
        with serial.Serial(str(modem.line.link), 115200, exclusive=True):  # another program holds the port
            busy = await probe.collect_direct(str(modem.line.link))
    assert isinstance(report, ATModemReport), report
    assert report.problems == ()
    assert (report.modem.operator_name, report.modem.registration) == ("Vodafone UK", "home")
    assert report.signal is not None
    assert report.signal.lte is not None
    assert report.signal.lte.rsrp is not None
    assert isinstance(busy, Unavailable)
    assert "busy" in busy.reason
    missing = await probe.collect_direct(str(tmp_path / "ttyUSB8"))
    assert isinstance(missing, Unavailable)
    assert "no AT port found" in missing.reason
    assert "ttyUSB8" in missing.reason
    with silent_pty(tmp_path / "ttyS9"):
        silent = await probe.collect_direct(str(tmp_path / "ttyS9"))
    assert isinstance(silent, Unavailable)
    assert "did not answer AT" in silent.reason


@pytest.mark.asyncio
async def test_modemmanager_present_means_skip(state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB2"
    async with at_port(state, link, modemmanager=True):
        assert await ATModemProbe(port=str(link)).collect(shell_context(state)) is None


@pytest.mark.asyncio
async def test_unknown_values_are_none(state: DeviceState, tmp_path: Path) -> None:
    sim_mmcli(state, "-m", "0", "--disable")  # not registered: +CSQ: 99,99 and +CESQ: 99,99,255,255,255,255
    async with at_port(state) as modem:
        report = await ATModemProbe(port=str(modem.line.link)).collect(shell_context(state))
    assert isinstance(report, ATModemReport), report
    assert report.signal is not None
    assert report.signal.technologies() == {}
    assert report.signal.rssi is None
    assert any("+CSQ: 99" in p for p in report.signal.problems)
    assert report.modem.operator_name is None
    assert report.modem.registration == "idle"


def test_answers_with_unknowns_and_errors_read_as_none() -> None:
    answers = {"csq": "\r\n+CSQ: 99,99\r\n\r\nOK\r\n", "cesq": "\r\n+CESQ: 63,99,255,255,34,255\r\n\r\nOK\r\n",
               "cops_name": "\r\n+COPS: 0,0,\"Acme\",2\r\n\r\nOK\r\n", "creg": "\r\n+CREG: 0,5\r\n\r\nOK\r\n",
               "cereg": "\r\n+CME ERROR: 4\r\n", "cpin": "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n", "cgsn": "\r\nERROR\r\n"}
    report = read_answers("/dev/ttyUSB2", answers)
    assert report.signal is not None
    assert report.signal.gsm is not None
    assert report.signal.gsm.rssi == -48.0  # rxlev 63
    assert report.signal.lte is not None
    assert (report.signal.lte.rsrp, report.signal.lte.rsrq) == (None, -3.0)  # 255: unknown, never 0
    assert report.signal.umts is None
    assert (report.modem.registration, report.modem.roaming) == ("roaming", True)
    assert (report.modem.sim_locked, report.modem.unlock_required, report.modem.state) == (True, "sim-pin", "locked")
    assert report.modem.imei is None
    assert any("+CEREG" in p and "not supported" in p for p in report.problems)


@pytest.mark.asyncio
async def test_no_port_is_unavailable_with_reason(state: DeviceState, tmp_path: Path) -> None:
    state_bin_mmcli = state.root / "bin/mmcli"
    state_bin_mmcli.unlink()
    result = await ATModemProbe(port=str(tmp_path / "ttyUSB9")).collect(shell_context(state))
    assert isinstance(result, Unavailable)
    assert "no AT port found" in result.reason
    assert "ttyUSB9" in result.reason
    default = await ATModemProbe().collect(shell_context(state))  # none of the usual paths exists here
    assert isinstance(default, Unavailable)
    assert "/dev/ttyUSB2" in default.reason


@pytest.mark.asyncio
async def test_silent_port_gives_up_within_its_time(state: DeviceState, tmp_path: Path) -> None:
    (state.root / "bin/mmcli").unlink()
    link = tmp_path / "ttyUSB2"
    with silent_pty(link):
        started = time.monotonic()
        result = await asyncio.wait_for(ATModemProbe(port=str(link), wait=1.0).collect(shell_context(state)), 20)
        took = time.monotonic() - started
    assert isinstance(result, Unavailable)
    assert "did not answer AT" in result.reason
    assert "nothing came back" in result.reason
    assert took < 5.0  # one command's wait, not one per command


@pytest.mark.asyncio
async def test_port_printing_garbage_is_unavailable(state: DeviceState, tmp_path: Path) -> None:
    (state.root / "bin/mmcli").unlink()
    link = tmp_path / "ttyUSB2"
    with scripted_pty(link, [b"\x00\xfe~%\x1b[?\r\n$$ NO DIALTONE?? \xa7\r\n"]):
        started = time.monotonic()
        result = await ATModemProbe(port=str(link), wait=1.0).collect(shell_context(state))
        took = time.monotonic() - started
    assert isinstance(result, Unavailable)
    assert "did not answer AT" in result.reason
    assert "NO DIALTONE" in result.reason  # what it printed, shown
    assert took < 5.0


@pytest.mark.asyncio
async def test_modem_that_stops_answering_ends_the_chat(state: DeviceState, tmp_path: Path) -> None:
    (state.root / "bin/mmcli").unlink()
    link = tmp_path / "ttyUSB2"
    with scripted_pty(link, [b"\r\nOK\r\n", b"\r\nOK\r\n", b"\r\nQuectel\r\n\r\nOK\r\n", b""]):
        started = time.monotonic()
        report = await ATModemProbe(port=str(link), wait=1.0).collect(shell_context(state))
        took = time.monotonic() - started
    assert isinstance(report, ATModemReport), report
    assert report.modem.manufacturer == "Quectel"
    assert any("AT+CGMM: no final result code" in p for p in report.problems)
    assert any("stopped answering" in p and "AT+CESQ" in p for p in report.problems)
    assert report.signal is None
    assert took < 5.0  # one command's wait, not one per command


def test_busy_port_says_who_may_hold_it() -> None:
    said = f"{chat.OPEN_FAILED} /dev/ttyUSB2\nsh: 1: cannot create /dev/ttyUSB2: Device or resource busy"
    result = port_of(Result(1, f"{chat.NO_PORT}\n", said), "/dev/ttyUSB2", 2.0)
    assert isinstance(result, Unavailable)
    assert "could not open the modem's AT port /dev/ttyUSB2 (busy" in result.reason
    assert "ModemManager" in result.reason
    assert "Device or resource busy" in result.reason


@pytest.mark.asyncio
async def test_garbage_at_the_wrong_baud_is_unavailable(state: DeviceState, tmp_path: Path) -> None:
    # The modem's UART runs at 9600 while the probe sets 115200: every byte arrives as noise, both ways.
    async with at_port(state, tmp_path / "ttyUSB2", baud=9600) as modem:
        started = time.monotonic()
        result = await ATModemProbe(port=str(modem.line.link), wait=1.0).collect(shell_context(state))
        took = time.monotonic() - started
    assert isinstance(result, Unavailable)
    assert "did not answer AT" in result.reason
    assert took < 5.0


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["+CSQ: 99,99\r\nOK", "+CESQ: 1,2,3\r\nOK", "+COPS: 9,9,\"x\",99", "+CREG: ,", "@@at AT+CSQ", "OK", "ERROR",
     "+CME ERROR: 10", chat.NO_FINAL, chat.PORT + "/dev/x"])


@given(answers=st.dictionaries(st.sampled_from(sorted(COMMANDS)), _TEXT), out=_TEXT, err=_TEXT,
       code=st.integers(-1, 255))
@settings(max_examples=300, deadline=None)
def test_any_output_gives_a_report_or_unavailable(answers: dict[str, str], out: str, err: str, code: int) -> None:
    """Whatever the port or the shell printed: a typed result, never an exception."""
    report = read_answers("/dev/ttyUSB2", answers)
    assert isinstance(report, ATModemReport)
    for line in (out, f"{chat.PORT}/dev/ttyUSB2\n{chat.ANSWER}AT+CSQ\n{out}", f"{chat.NO_PORT}\n{out}"):
        result = ATModemProbe().read(Result(code, line, err))
        assert result is None or isinstance(result, ATModemReport | Unavailable)


@pytest.mark.parametrize("port", [None, "/dev/serial/by-id/usb-Quectel_EC25-if02-port0" + "x" * 40])
def test_chat_fits_one_console_line(port: str | None) -> None:
    """A serial console types the chat as one line: at most 1000 characters with the console's framing."""
    script = chat.chat_script(list(COMMANDS.values()), port)
    assert len(CommandFrame.new(script).line()) + 1 <= MAX_TYPED_LINE
