"""The simulated modem's AT port on its own pty, driven through pyserial, read by the AT probe's parsers."""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.simulator import dynamics
from siteline.simulator.at_modem import ATModem, ATSession, execute
from siteline.simulator.state import DeviceState
from siteline.simulator.store import update_json
from siteline.simulator.tools import mmcli
from siteline_atmodem.parsers import merge, parse_cesq, parse_cops, parse_creg, parse_csq
from siteline_modemmanager.parsers import parse_modem, parse_signal

FINALS = (b"\r\nOK\r\n", b"\r\nERROR\r\n", b"0\r", b"4\r")


@pytest.fixture
def state(tmp_path: Path) -> DeviceState:
    state = DeviceState.open(tmp_path / "dev", name="gw-at", password="pw")
    # Hold the signal walk still (its next step is an hour away) so AT and mmcli read the same figures.
    update_json(state.root, state.root / dynamics.MODEM_FILE,
                lambda m: m.__setitem__("last_step_at", time.time() + 3600))
    return state


@contextlib.asynccontextmanager
async def at_port(state: DeviceState, link: Path) -> AsyncIterator[ATModem]:
    modem = ATModem(state, link)
    await modem.start()
    try:
        yield modem
    finally:
        await modem.stop()


def _final_seen(buf: bytes) -> bool:
    return buf.endswith(FINALS) or (b"+CME ERROR:" in buf and buf.endswith(b"\r\n"))


def talk(link: Path, *commands: bytes, timeout: float = 5.0) -> list[bytes]:
    """Send each command with CR through pyserial; return what came back up to its final result code."""
    answers: list[bytes] = []
    with serial.Serial(str(link), 115200, timeout=0.05) as port:
        for command in commands:
            port.write(command + b"\r")
            buf = b""
            deadline = time.monotonic() + timeout
            while not _final_seen(buf):
                assert time.monotonic() < deadline, f"no final result for {command!r}: {buf!r}"
                buf += port.read(4096)
            answers.append(buf)
    return answers


def sim_mmcli(state: DeviceState, *argv: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert mmcli.main("mmcli", list(argv), state) == 0
    return buf.getvalue()


@pytest.mark.asyncio
async def test_27007_answers_with_echo(state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyAT"
    async with at_port(state, link):
        at, csq, cpin, imei, info = await asyncio.to_thread(talk, link, b"AT", b"AT+CSQ", b"AT+CPIN?", b"AT+CGSN",
                                                            b"ATI")
    assert at == b"AT\r\r\nOK\r\n"  # echoed as typed (ATE1), then the result framed by CRLF
    assert csq.startswith(b"AT+CSQ\r\r\n+CSQ: ")
    assert csq.endswith(b",99\r\n\r\nOK\r\n")
    assert cpin == b"AT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n"
    assert imei == f"AT+CGSN\r\r\n{state.modem()['imei']}\r\n\r\nOK\r\n".encode()
    assert b"\r\nQuectel\r\n\r\nEC25\r\n\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n" in info


@pytest.mark.asyncio
async def test_echo_off_errors_and_cme(state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyAT"
    async with at_port(state, link):
        answers = await asyncio.to_thread(
            talk, link, b"ATE0", b"AT+CEREG?", b"AT+CEREG=2;+CEREG?", b"AT+CEREG=9", b"AT+CMEE=2;+CREG=5",
            b"AT+CMEE=0;+CREG=5", b"AT+NOPE", b"hello", b"AT+COPS=3,2;+COPS?",
        )
    echo_off, cereg, cereg2, bad, worded, plain, unknown, garbage, numeric = answers
    assert echo_off == b"ATE0\r\r\nOK\r\n"  # the line that turns echo off is still echoed
    assert cereg == b"\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    assert cereg2 == b'\r\n+CEREG: 2,1,"1A2B","01C3D4E5",7\r\n\r\nOK\r\n'
    assert bad == b"\r\n+CME ERROR: 50\r\n"
    assert worded == b"\r\n+CME ERROR: Incorrect parameters\r\n"
    assert plain == b"\r\nERROR\r\n"
    assert unknown == garbage == b"\r\nERROR\r\n"
    assert numeric == b'\r\n+COPS: 0,2,"23415",7\r\n\r\nOK\r\n'


@pytest.mark.asyncio
async def test_parsers_read_the_same_figures_as_mmcli(state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyAT"
    async with at_port(state, link):
        csq, cesq, cops, creg, cereg = await asyncio.to_thread(
            talk, link, b"AT+CSQ", b"AT+CESQ", b"AT+COPS?", b"AT+CREG?", b"AT+CEREG?")
    sim_mmcli(state, "-m", "0", "--signal-setup=5")
    mm_signal = parse_signal(sim_mmcli(state, "-m", "0", "--signal-get", "--output-json"))
    mm_modem = parse_modem(sim_mmcli(state, "-m", "0", "--output-json"))
    assert mm_signal.lte is not None
    lte = parse_cesq(cesq.decode()).lte
    assert lte is not None
    assert lte.rsrp is not None
    assert mm_signal.lte.rsrp is not None
    assert lte.rsrq is not None
    assert mm_signal.lte.rsrq is not None
    # 27.007 steps: RSRP 1 dB, RSRQ 0.5 dB, RSSI 2 dB; the AT figure is mmcli's rounded to the step.
    assert abs(lte.rsrp - mm_signal.lte.rsrp) <= 0.5
    assert abs(lte.rsrq - mm_signal.lte.rsrq) <= 0.25
    at_csq = parse_csq(csq.decode(), technology="lte").lte
    assert at_csq is not None
    assert at_csq.rssi is not None
    assert mm_signal.lte.rssi is not None
    assert abs(at_csq.rssi - mm_signal.lte.rssi) <= 1.0
    modem = merge(parse_cops(cops.decode()), parse_creg(creg.decode()), parse_creg(cereg.decode(), "+CEREG"))
    assert modem.problems == ()
    assert (modem.operator_name, modem.registration, modem.roaming) == (mm_modem.operator_name, "home", False)
    assert modem.registration == mm_modem.registration
    assert modem.access_technologies == mm_modem.access_technologies == ("lte",)


@pytest.mark.asyncio
async def test_disabled_modem_reports_no_signal(state: DeviceState, tmp_path: Path) -> None:
    sim_mmcli(state, "-m", "0", "--disable")
    link = tmp_path / "ttyAT"
    async with at_port(state, link):
        csq, cesq, cops, creg = await asyncio.to_thread(talk, link, b"AT+CSQ", b"AT+CESQ", b"AT+COPS?", b"AT+CREG?")
    assert parse_csq(csq.decode()).rssi is None  # 99: unknown, never 0
    assert parse_cesq(cesq.decode()).technologies() == {}
    assert parse_cops(cops.decode()).operator_name is None
    assert parse_creg(creg.decode()).registration == "idle"


@pytest.mark.asyncio
async def test_garbage_never_stops_the_port(state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyAT"
    rng = random.Random(5)
    noise = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))).replace(b"\r", b"") for _ in range(20)]
    noise += [b"A" * 5000, b"AT" + b"\x00" * 10, b"AT+CSQ;;;;", b'AT+COPS="', b"AT+CREG=", b"AT\x08\x08\x7f", b"ATE9"]

    def hammer() -> list[bytes]:
        with serial.Serial(str(link), 115200, timeout=0.05) as port:
            for chunk in noise:
                port.write(chunk + b"\r")
                time.sleep(0.01)
            time.sleep(0.3)
            port.reset_input_buffer()
        return talk(link, b"ATE1", b"AT")

    async with at_port(state, link) as modem:
        _, at = await asyncio.to_thread(hammer)
        assert at == b"AT\r\r\nOK\r\n"
        assert modem.session.verbose


def test_siteline_sim_serves_the_at_port(tmp_path: Path) -> None:
    from tests.peers.sim import start_sim_process

    link = tmp_path / "ttyAT"
    sim = start_sim_process(tmp_path / "dev", "--ssh-port", "0", "--at-modem", str(link))
    try:
        assert sim.ready["at_modem"] == f"serial://{link}?baud=115200"
        (answer,) = talk(link, b"AT+CEREG?")
        assert answer == b"AT+CEREG?\r\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    finally:
        assert sim.stop() == 0
    assert not link.exists()  # the link goes with the device


_PIECES = st.sampled_from(["AT", "at", "+CSQ", "+CESQ", "+COPS", "+CREG", "+CEREG", "+CMEE", "?", "=", "=?", ";", ",",
                           "E", "V", "Z", "I", "&F", "0", "1", "2", "3", "9", " ", '"', "\x00", "\xff", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=12).map("".join))
def test_any_line_gets_one_final_result(line: str) -> None:
    session = ATSession()
    state = {"enabled": True, "rssi": -70.0, "rsrp": -95.5, "rsrq": -11.0, "imei": "350000000000001"}
    answer = execute(session, line, lambda: state)
    assert _final_seen(answer)
