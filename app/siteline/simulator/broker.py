"""Start an MQTT broker for the demo and the tests: Mosquitto when installed.

Mosquitto runs with its own config in a private folder, bound to loopback only, and is
stopped with the handle. The broker is a separate process so that it behaves like the
control plane's broker would: it can be killed and restarted under a running client.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerUnavailableError(RuntimeError):
    """No broker could be started; the message says which package to install."""


@dataclass
class BrokerHandle:
    host: str
    port: int
    kind: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart(self) -> None:
        """Start the same broker again on the same port (after stop() or a crash)."""
        self.stop()
        started = start_mosquitto(self.workdir, self.port)
        self.process = started.process


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], logfile: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = logfile.read_text(errors="replace") if logfile.exists() else ""
            raise BrokerUnavailableError(f"mosquitto exited with code {proc.returncode}: {err.strip()[-400:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerUnavailableError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s")


def start_mosquitto(workdir: Path, port: int = 0, *, timeout: float = 10.0) -> BrokerHandle:
    """Run Mosquitto on 127.0.0.1:port (0 = a free port) with a config written under ``workdir``."""
    exe = find_mosquitto()
    if exe is None:
        raise BrokerUnavailableError("Mosquitto is not installed: install the Debian package 'mosquitto'.")
    workdir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        chosen = port or _free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {chosen} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            "max_queued_messages 10000\n"
        )
        logfile = workdir / "mosquitto.log"
        # A file, not a pipe: a pipe nobody reads fills up and stalls the broker.
        with logfile.open("ab") as logfh:
            proc = subprocess.Popen(
                [exe, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=logfh,
                stderr=logfh,
                start_new_session=True,  # Ctrl-C in a terminal is the demo's to handle, in order
            )
        try:
            _wait_listening(chosen, proc, logfile, timeout)
        except BrokerUnavailableError as exc:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if port or "Address already in use" not in str(exc):
                raise
            continue  # the free port was taken in the meantime: pick another
        log.info("mosquitto listening on 127.0.0.1:%d", chosen)
        return BrokerHandle("127.0.0.1", chosen, "mosquitto", workdir, proc)
    raise BrokerUnavailableError("could not find a free port for mosquitto")


def start_broker(workdir: Path, port: int = 0) -> BrokerHandle:
    """The demo's broker: Mosquitto. (An embedded fallback is a later step; see the README.)"""
    return start_mosquitto(workdir, port)
