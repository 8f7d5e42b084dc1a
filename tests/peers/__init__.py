"""Real peers for the tests, each started on a loopback port under a temporary directory.

With ``CI=true`` a missing peer fails the test; on a developer machine it skips with the
package to install.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

# Which Debian package gives each tool: the skip message tells the developer what to install.
PACKAGE_OF = {
    "appstreamcli": "appstream",
    "mosquitto": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "mosquitto_sub": "mosquitto-clients",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "socat": "socat",
    "busybox": "busybox",
    "fw_printenv": "libubootenv-tool",
    "fw_setenv": "libubootenv-tool",
    "mkenvimage": "u-boot-tools",
    "openssl": "openssl",
    "xvfb-run": "xvfb",
    "rauc": "rauc",
    "unsquashfs": "squashfs-tools",
    "mksquashfs": "squashfs-tools",
    "cpio": "cpio",
    "gzip": "gzip",
    "xz": "xz-utils",
    "zstd": "zstd",
    "bmaptool": "bmap-tools",
    "dbus-daemon": "dbus-daemon",
    "scp": "openssh-client",
}
SBIN = ("/usr/sbin", "/sbin")


def find_tool(name: str) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str) -> str:
    """Return the tool's path, or fail (CI) / skip (elsewhere) naming the package to install."""
    path = find_tool(name)
    if path:
        return path
    package = PACKAGE_OF.get(name, name)
    message = f"{name} not found: install the Debian package '{package}' (./run.sh setup does, as root)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout} s")
