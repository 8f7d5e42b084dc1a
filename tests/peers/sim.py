"""Simulated devices for the tests: in-process (async context manager) or as `siteline sim` subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siteline.simulator.device import SimulatedDevice
from siteline.simulator.lifetime import die_with_parent
from siteline.simulator.state import DeviceState

PASSWORD = "s1te-line-test"
FAST = {"boot_delay": 0.05, "kernel_log_interval": 3600.0, "telemetry_interval": 0.2, "mark_good_delay": 0.05}
READY = "SITELINE-SIM-READY"


def make_state(root: Path, *, name: str = "gw-01", site: str = "test-site", password: str = PASSWORD,
               **config: Any) -> DeviceState:
    """A device in ``root`` with millisecond timings (override any SimConfig field by keyword)."""
    state = DeviceState.open(root, name=name, site=site, password=password)
    for key, value in {**FAST, **config}.items():
        setattr(state.config, key, value)
    state.save_config()
    return state


@contextlib.asynccontextmanager
async def running_device(state: DeviceState, *, ssh: bool = True, serial_link: Path | None = None,
                         mqtt_url: str | None = None) -> AsyncIterator[SimulatedDevice]:
    device = SimulatedDevice(state, ssh_port=0 if ssh else None, serial_link=serial_link, mqtt_url=mqtt_url)
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


@dataclass
class SimProcess:
    """A `siteline sim` (or `siteline demo`) subprocess and what it printed before it was ready."""

    proc: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)
    ready: dict[str, Any] = field(default_factory=dict)
    _buf: bytes = b""

    def wait_for(self, marker: str, timeout: float) -> str:
        """Read stdout lines until one contains ``marker``; returns it (raises TimeoutError/RuntimeError)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    raw, self._buf = self._buf.split(b"\n", 1)
                    line = raw.decode(errors="replace")
                    self.lines.append(line)
                    if marker in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no '{marker}' within {timeout} s; got {self.lines}")
                if sel.select(left):
                    chunk = os.read(fd, 65536)  # unbuffered: select() must see every byte not yet read
                    if not chunk:
                        raise RuntimeError(f"process exited ({self.proc.wait()}) before '{marker}': {self.lines}")
                    self._buf += chunk

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_siteline(args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> SimProcess:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "siteline", *args], stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            bufsize=0, env={**os.environ, **(env or {})}, preexec_fn=die_with_parent(),
        )
    return SimProcess(proc)


def start_sim_process(state_dir: Path, *extra: str, timeout: float = 15.0) -> SimProcess:
    """`siteline sim --state DIR ...` as another machine would be; returns once it printed READY."""
    handle = start_siteline(["sim", "--state", str(state_dir), "--password", PASSWORD, *extra],
                            state_dir.with_name(state_dir.name + ".log"))
    try:
        line = handle.wait_for(READY, timeout)
    except BaseException:
        handle.stop(signal.SIGKILL)
        raise
    handle.ready = json.loads(line.split(READY, 1)[1])
    return handle
