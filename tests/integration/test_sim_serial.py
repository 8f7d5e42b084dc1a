"""The simulated serial console through a real pyserial open of its pty."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from tests.peers.sim import PASSWORD, make_state, running_device
from tests.peers.sim_clients import Console

from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.asyncio
KERNEL_LINE = re.compile(rb"\[\s*\d+\.\d{6}\] \S")


async def test_login_command_and_logout(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyGW"
    async with running_device(sim_state, ssh=False, serial_link=link):
        console = Console(link)
        try:
            await console.send("\r")
            await console.expect(rb"gw-01 login: ")
            await console.send("root\r")
            echoed = await console.expect(rb"Password: ")
            assert b"root" in echoed  # the user name is echoed
            await console.send(PASSWORD + "\r")
            after = await console.expect(rb"root@gw-01:~# ")
            assert PASSWORD.encode() not in after  # the password is not
            await console.send("echo serial-$((40+2)); cat /etc/hostname\r")
            out = await console.expect(rb"root@gw-01:~# ")
            assert b"serial-42\r\n" in out
            assert b"gw-01\r\n" in out
            await console.send("exit\r")
            await console.expect(rb"gw-01 login: ")
        finally:
            console.close()


async def test_wrong_password_is_refused(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyGW"
    async with running_device(sim_state, ssh=False, serial_link=link):
        console = Console(link)
        try:
            await console.login("not-the-password")
            await console.expect(rb"Login incorrect\r\n")
            await console.expect(rb"login: ")
        finally:
            console.close()


async def test_wrong_baud_gives_garbage(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyGW"
    async with running_device(sim_state, ssh=False, serial_link=link):
        console = Console(link, baud=9600)
        try:
            await console.send("\r")
            noise = await console.collect(1.0)
            assert noise, "a mismatched rate still carries bytes"
            assert b"login" not in noise
            assert all(b >= 0x80 for b in noise)
            console.port.baudrate = 115200  # the technician fixes the setting
            await console.send("\r")
            # The noise typed at the wrong rate may have been taken as a user name, as on hardware.
            await console.expect(rb"(login|Password): ")
        finally:
            console.close()


async def test_output_is_paced_at_the_baud_rate(tmp_path: Path) -> None:
    state = make_state(tmp_path / "slow", serial_baud=9600)
    link = tmp_path / "ttySLOW"
    async with running_device(state, ssh=False, serial_link=link):
        console = Console(link, baud=9600)
        try:
            await console.login()
            await console.expect(rb"# ")
            started = time.monotonic()
            await console.send("printf '%0960d' 0 | tr 0 x; echo; echo done\r")
            await console.expect(rb"x\r\ndone\r\n")
            # ~1000 bytes at 960 bytes/s take about a second (a pty alone would take microseconds).
            assert time.monotonic() - started > 0.8
        finally:
            console.close()


async def test_kernel_lines_interleave(tmp_path: Path) -> None:
    state = make_state(tmp_path / "chatty", kernel_log_interval=0.05)
    link = tmp_path / "ttyK"
    async with running_device(state, ssh=False, serial_link=link):
        console = Console(link)
        try:
            await console.login()
            await console.expect(rb"# ")
            await console.send("echo still-works\r")
            await console.expect(rb"still-works\r\n")
            assert KERNEL_LINE.search(console.seen + await console.collect(0.5))
        finally:
            console.close()


async def test_garbage_at_the_login_prompt(sim_state: DeviceState, tmp_path: Path) -> None:
    link = tmp_path / "ttyGW"
    async with running_device(sim_state, ssh=False, serial_link=link):
        console = Console(link)
        try:
            noise = bytes(range(256)) * 40  # control bytes, high bytes, NULs, a line far too long
            await asyncio.to_thread(console.port.write, noise)
            await console.send("\r\r\r")
            await console.expect(rb"login: ")
            await console.collect(0.5)  # let the getty settle after the noise (it may have asked a password)
            await console.login()
            await console.expect(rb"root@gw-01:~# ")
        finally:
            console.close()


async def test_reboot_typed_on_the_console(tmp_path: Path) -> None:
    state = make_state(tmp_path / "device", boot_delay=0.1)
    link = tmp_path / "ttyGW"
    async with running_device(state, ssh=False, serial_link=link) as device:
        console = Console(link)
        try:
            await console.login()
            await console.expect(rb"# ")
            await console.send("reboot\r")
            seen = await console.expect(rb"login: ", timeout=15)
            assert b"reboot: Restarting system" in seen
            assert b"U-Boot" in seen
            assert device.boots == 1
            await console.login()
            await console.expect(rb"root@gw-01:~# ")
        finally:
            console.close()
