"""`siteline logs` and the log follower against a simulated device over SSH, and a file over real OpenSSH."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.sim import PASSWORD, SimProcess, make_state, running_device, start_sim_process
from tests.peers.sshd import SshdHandle

from siteline.core.logs.follow import FollowEvent, FollowStatus, LogBatch, follow
from siteline.core.logs.parsers import parse_chunk
from siteline.core.logs.record import Source
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials, Result
from siteline.core.transports.factory import open_transport
from siteline.core.transports.ssh import SshTransport
from siteline.logs_cli import add_logs_arguments, logs_on, record_filter
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.timeout(60)
FOLLOWER_TOOLS = ("journalctl", "logread", "dmesg", "tail ", "cat")


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimProcess, DeviceState]]:
    """One simulated device for the module (as `siteline sim` in a subprocess), with a few known entries."""
    root = tmp_path_factory.mktemp("logs") / "device"
    state = make_state(root)
    handle = start_sim_process(root)
    state.log("pump started", "pumpd", 6)
    state.log("pump pressure low: 0.8 bar", "pumpd", 3)
    state.log("cache warm", "otherd", 6)
    try:
        yield handle, state
    finally:
        handle.stop()
        assert _followers(root, within=5.0) == [], "a log follower outlived the test module"


def _followers(root: Path, within: float = 0.0) -> list[str]:
    """Commands of the device still running a log tool (its processes carry SITELINE_SIM_STATE=root)."""
    marker = f"SITELINE_SIM_STATE={root}".encode()
    deadline = time.monotonic() + within
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in env and any(tool in cmd for tool in FOLLOWER_TOOLS):
                found.append(cmd)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _cli(*args: str, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "SITELINE_PASSWORD": PASSWORD}
    return subprocess.Popen([sys.executable, "-m", "siteline", "logs", *args, "--accept-new-host-key"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def _run(*args: str) -> tuple[int, str, str]:
    proc = _cli(*args)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def test_prints_and_filters(device: tuple[SimProcess, DeviceState]) -> None:
    ssh = device[0].ready["ssh"]
    code, out, err = _run(ssh, "-n", "50")
    assert code == 0, err
    assert any(re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d gw-01 pumpd\.service\[\d+\]: pump started", line)
               for line in out.splitlines()), out
    code, out, err = _run(ssh, "-u", "pumpd", "-p", "err")
    assert code == 0, err
    assert [line.split(": ", 1)[1] for line in out.splitlines()] == ["pump pressure low: 0.8 bar"]
    code, out, err = _run(ssh, "--source", "dmesg", "-n", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(re.match(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d - kernel: ", line) for line in lines), out  # boot time known
    code, out, err = _run(ssh, "--grep", r"cache|pressure \w+", "--json")
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(d["unit"], d["priority_name"], d["message"]) for d in docs] == [
        ("pumpd.service", "err", "pump pressure low: 0.8 bar"), ("otherd.service", "info", "cache warm")]


def test_bad_regex_is_a_usage_error_before_connecting() -> None:
    code, out, err = _run("ssh://root@127.0.0.1:1", "--grep", "pump(")
    assert code == 2
    assert "--grep 'pump(' is not a regular expression" in err
    assert out == ""


class Lines:
    """Lines of a pipe as they come, read by a thread (select() cannot see what a buffered reader holds)."""

    def __init__(self, pipe: Any) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self.thread.start()

    def _pump(self, pipe: Any) -> None:
        for line in iter(pipe.readline, ""):
            self.queue.put(line)
        self.queue.put("")

    def until(self, text: str, timeout: float = 15.0) -> str:
        seen = ""
        deadline = time.monotonic() + timeout
        while text not in seen:
            try:
                line = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} within {timeout} s; got {seen!r}") from None
            assert line, f"the command ended before {text!r}: {seen!r}"
            seen += line
        return seen


def test_follow_prints_new_entries_until_ctrl_c(device: tuple[SimProcess, DeviceState]) -> None:
    handle, state = device
    proc = _cli(handle.ready["ssh"], "-f", "-n", "1", "-u", "pumpd")
    try:
        out_lines, err_lines = Lines(proc.stdout), Lines(proc.stderr)
        err_lines.until("following journalctl")
        out_lines.until("pump")  # the newest entry first (-n 1): journalctl is running on the device
        state.log("pump restarted by watchdog", "pumpd", 4)
        state.log("not for us", "otherd", 4)
        state.log("pump running", "pumpd", 6)
        out = out_lines.until("pump running")
        assert "pump restarted by watchdog" in out
        assert "not for us" not in out
        assert len(_followers(state.root)) >= 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert _followers(state.root, within=5.0) == []


# -- in-process: the follower itself ----------------------------------------------------------------


class HiddenTools:
    """The simulated device as one without some tools: `command -v` answers for them are dropped."""

    def __init__(self, transport: SshTransport, hidden: set[str]) -> None:
        self.transport, self.hidden = transport, hidden

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        result = await self.transport.run(command, timeout)
        if "command -v" not in command:
            return result
        kept = [line for line in result.stdout.splitlines() if line.removeprefix("have ") not in self.hidden]
        return Result(result.exit_code, "\n".join(kept) + "\n", result.stderr)

    def stream(self, command: str) -> Any:
        return self.transport.stream(command)

    async def connect(self) -> None:
        await self.transport.connect()


@contextlib.asynccontextmanager
async def _transport(url: str, tmp_path: Path) -> AsyncIterator[SshTransport]:
    target = parse_target(url)
    transport = SshTransport(target, Credentials(username="root", password=PASSWORD), tmp_path / "known_hosts",
                             accept_new_host_key=True, connect_timeout=10)
    await transport.connect()
    try:
        yield transport
    finally:
        await transport.close()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_logs_arguments(parser)
    return parser.parse_args(["unused", *argv])


async def _logs(transport: HiddenTools, *argv: str) -> int:
    """What `siteline logs` does once connected (the CLI connects by itself; here the transport is wrapped)."""
    args = _args(*argv)
    wanted = record_filter(args)
    assert not isinstance(wanted, str)
    return await logs_on(args, transport, wanted)  # type: ignore[arg-type]


async def _messages_until(events: AsyncIterator[FollowEvent], last: str | None, statuses: list[str],
                          timeout: float = 15.0) -> list[str]:
    messages: list[str] = []
    async with asyncio.timeout(timeout):
        async for event in events:
            if isinstance(event, FollowStatus):
                statuses.append(event.event)
                continue
            assert isinstance(event, LogBatch)
            messages += [r.message for r in parse_chunk(event.lines, event.source)]
            if last is None or last in messages:  # None: the first batch
                return messages
    return messages


@pytest.mark.asyncio
async def test_without_journalctl_logread_is_followed_and_without_any_tool_it_says_so(
        device: tuple[SimProcess, DeviceState], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    handle, state = device
    async with _transport(handle.ready["ssh"], tmp_path) as transport:
        no_journal = HiddenTools(transport, {"journalctl"})
        assert await _logs(no_journal, "-n", "20", "-u", "pumpd") == 0
        out = capsys.readouterr().out
        assert " gw-01 pumpd[" in out  # logread's tag, not journald's unit
        assert "pump pressure low: 0.8 bar" in out
        assert "cache warm" not in out

        statuses: list[str] = []
        events = follow(no_journal, lines=1, window=0.02)
        async with contextlib.aclosing(events):
            first = await anext(events)
            assert isinstance(first, FollowStatus)
            assert first.text == "following logread (live)"
            await _messages_until(events, None, statuses)  # the newest line (-n 1): logread is running
            state.log("valve opened", "valved", 5)
            messages = await _messages_until(events, "valve opened", statuses)
        assert messages[-1] == "valve opened"
        assert _followers(state.root, within=5.0) == []

        nothing = HiddenTools(transport, {"journalctl", "logread", "dmesg"})
        assert await _logs(nothing) == 127
        err = capsys.readouterr().err
        assert "The device has no log tool: journalctl, logread or dmesg not found" in err
        assert "--file PATH" in err


@pytest.mark.asyncio
async def test_a_cut_link_resumes_from_the_cursor_with_nothing_lost_or_repeated(
        device: tuple[SimProcess, DeviceState], tmp_path: Path) -> None:
    handle, state = device
    port = int(handle.ready["ssh"].rsplit(":", 1)[1])
    with FaultProxy(port) as proxy:
        async with _transport(f"ssh://root@127.0.0.1:{proxy.port}", tmp_path) as transport:
            statuses: list[str] = []
            state.log("start", "cutd", 6)
            events = follow(transport, lines=1, window=0.02, poll_interval=0.2, reconnect=transport.connect)
            async with contextlib.aclosing(events):
                assert await _messages_until(events, "start", statuses) == ["start"]  # journalctl is running
                state.log("before 1", "cutd", 6)
                state.log("before 2", "cutd", 6)
                seen = await _messages_until(events, "before 2", statuses)
                proxy.cut()
                state.log("during 1", "cutd", 6)  # logged while the link is down
                state.log("during 2", "cutd", 6)
                seen += await _messages_until(events, "during 2", statuses)
                state.log("after", "cutd", 6)
                seen += await _messages_until(events, "after", statuses)
    assert seen == ["before 1", "before 2", "during 1", "during 2", "after"]
    assert "link-lost" in statuses
    assert "resumed" in statuses
    assert _followers(state.root, within=5.0) == []


@pytest.mark.asyncio
async def test_polling_mode_over_a_link_without_streams(device: tuple[SimProcess, DeviceState],
                                                         tmp_path: Path) -> None:
    handle, state = device
    async with _transport(handle.ready["ssh"], tmp_path) as transport:
        statuses: list[str] = []
        state.log("polled 0", "polld", 6)
        events = follow(transport, lines=1, prefer_poll=True, poll_interval=0.2, window=0.02)
        async with contextlib.aclosing(events):
            first = await anext(events)
            assert isinstance(first, FollowStatus)
            assert first.text == "polling journalctl every 0.2 s (this link cannot stream)"
            assert await _messages_until(events, "polled 0", statuses) == ["polled 0"]
            state.log("polled 1", "polld", 6)
            state.log("polled 2", "polld", 6)
            seen = await _messages_until(events, "polled 2", statuses)
    assert seen == ["polled 1", "polled 2"]


@pytest.mark.asyncio
async def test_a_file_over_real_openssh_is_followed_and_stopped(sshd: SshdHandle, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("Nov 27 10:00:00 box app[1]: old 1\nNov 27 10:00:01 box app[1]: old 2\n")
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}")
    transport = SshTransport(target, Credentials(key_path=str(sshd.client_key), use_agent=False),
                             tmp_path / "known_hosts", accept_new_host_key=True, connect_timeout=10)
    await transport.connect()
    try:
        statuses: list[str] = []
        events = follow(transport, file=str(log), lines=1, window=0.02)
        async with contextlib.aclosing(events):
            seen = await _messages_until(events, "old 2", statuses)
            with log.open("a") as fh:
                fh.write("Nov 27 10:00:02 box app[1]: new 1\n")
            seen += await _messages_until(events, "new 1", statuses)
        assert seen == ["old 2", "new 1"]
        assert statuses == ["following"]
    finally:
        await transport.close()
    # OpenSSH here runs without privilege separation and ignores the client's signal: the channel's close
    # still ends the follower, at the latest when it next writes (one more line).
    with log.open("a") as fh:
        fh.write("Nov 27 10:00:03 box app[1]: nobody reads this\n")
    assert await asyncio.to_thread(_tails_of, log, 5.0) == []


def _tails_of(path: Path, within: float) -> list[int]:
    """The `tail` processes still reading ``path``, waiting up to ``within`` seconds for them to go."""
    deadline = time.monotonic() + within
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"tail" in cmd and str(path).encode() in cmd:
                    found.append(int(pid))
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


@pytest.mark.asyncio
async def test_the_serial_console_is_polled_with_the_journal_cursor(tmp_path: Path) -> None:
    state = make_state(tmp_path / "serial-device")
    link = tmp_path / "ttySIM0"
    async with running_device(state, ssh=False, serial_link=link):
        transport = open_transport(parse_target(f"serial://{link}?baud=115200"),
                                   Credentials(username="root", password=PASSWORD), tmp_path / "known_hosts")
        await transport.connect()
        try:
            statuses: list[str] = []
            state.log("console 0", "consoled", 6)
            events = follow(transport, lines=1, poll_interval=0.2)
            async with contextlib.aclosing(events):
                assert await _messages_until(events, "console 0", statuses) == ["console 0"]
                state.log("console 1", "consoled", 6)
                state.log("console 2", "consoled", 3)
                seen = await _messages_until(events, "console 2", statuses)
        finally:
            await transport.close()
    assert seen == ["console 1", "console 2"]
    assert statuses == ["polling"]


def _shim(state: DeviceState, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_SIM_STATE": str(state.root)}
    return subprocess.run([sys.executable, "-m", "siteline.simulator.shim", *argv], capture_output=True, text=True,
                          env=env, timeout=30, check=False)


def test_simulated_log_tools_print_the_real_formats(tmp_path: Path) -> None:
    state = make_state(tmp_path / "tools-device")
    state.log("usb 1-1: new high-speed USB device number 3", "kernel", 6)
    state.log("udhcpc: no lease, failing", "udhcpc", 3)
    dmesg = _shim(state, "dmesg", "-x")
    records = parse_chunk(dmesg.stdout.splitlines(), Source.DMESG, boot_time=1_700_000_000.0)
    assert records[-1].message == "usb 1-1: new high-speed USB device number 3"
    assert records[-1].priority == 6
    assert all(r.problem is None for r in records)
    assert "udhcpc" not in dmesg.stdout  # the kernel's messages only
    assert _shim(state, "dmesg", "-T").stdout.splitlines()[-1].endswith("] usb 1-1: new high-speed USB device number 3")
    logread = parse_chunk(_shim(state, "logread").stdout.splitlines(), Source.LOGREAD)
    assert (logread[-1].unit, logread[-1].priority, logread[-1].message) == ("udhcpc", 3, "udhcpc: no lease, failing")
    assert all(r.problem is None for r in logread)
    entries = [json.loads(line) for line in _shim(state, "journalctl", "-o", "json", "-n", "2").stdout.splitlines()]
    after = _shim(state, "journalctl", "-o", "json", f"--after-cursor={entries[0]['__CURSOR']}")
    assert [json.loads(line)["MESSAGE"] for line in after.stdout.splitlines()] == ["udhcpc: no lease, failing"]
    assert _shim(state, "journalctl", "--after-cursor=s=bogus;i=1").returncode == 1
    assert _shim(state, "journalctl", "--since", "tomorrow").stdout == "-- No entries --\n"
    bad = _shim(state, "dmesg", "--clear-all")
    assert (bad.returncode, bad.stderr.splitlines()[0]) == (1, "dmesg: unrecognized option '--clear-all'")
