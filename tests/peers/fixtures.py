"""pytest fixtures that start real peers. Registered from tests/conftest.py.

Every peer runs on a random loopback port under the test's temporary directory and is stopped
when the test ends, also when it fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.simulator.broker import BrokerHandle
from tests.peers import require_tool
from tests.peers.socat_shell import SocatShell, start_busybox_shell, start_socat_shell
from tests.peers.sshd import SshdHandle, start_sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdHandle]:
    """OpenSSH's sshd on 127.0.0.1:<random>; the handle has host, port, user, client_key, host_fingerprint."""
    require_tool("sshd")
    require_tool("ssh-keygen")
    handle = start_sshd(tmp_path / "sshd")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def sshd_bastion(tmp_path: Path) -> Iterator[SshdHandle]:
    """A second sshd to jump through; logs at DEBUG1 so a test can see the forwarded channel."""
    require_tool("sshd")
    require_tool("ssh-keygen")
    handle = start_sshd(tmp_path / "bastion", log_level="DEBUG1")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[BrokerHandle]:
    """Mosquitto on 127.0.0.1:<random> (a :class:`siteline.simulator.broker.BrokerHandle`)."""
    require_tool("mosquitto")
    from siteline.simulator.broker import start_mosquitto

    handle = start_mosquitto(tmp_path / "mosquitto", 0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def socat_shell(tmp_path: Path) -> Iterator[SocatShell]:
    """A real bash on a pty (socat), reachable as a serial device at ``handle.path``."""
    require_tool("socat")
    handle = start_socat_shell(tmp_path / "socat")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def busybox_shell(tmp_path: Path) -> Iterator[SocatShell]:
    """BusyBox's ash on a pty (socat), already at a prompt with no login, PATH holding BusyBox applets only."""
    require_tool("socat")
    handle = start_busybox_shell(tmp_path / "busybox", require_tool("busybox"))
    try:
        yield handle
    finally:
        handle.stop()
