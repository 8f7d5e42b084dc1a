"""Suite-wide set-up: offscreen Qt, a private SITELINE_HOME, and a guard that the host is unchanged."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    # One private SITELINE_HOME per run: the technician's own settings and device list are never touched.
    home = tempfile.mkdtemp(prefix="siteline-test-home-")
    config.stash[_HOME_KEY] = home
    os.environ["SITELINE_HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_HOME_KEY, None)
    if home:
        shutil.rmtree(home, ignore_errors=True)


_HOME_KEY = pytest.StashKey[str]()
_BLIND_KEY = pytest.StashKey[list[str]]()
# Always checked: a run as root in CI that cannot read one of these fails. The firewall dumps need
# CAP_NET_ADMIN, which a CI container may lack: then they are "not checkable" and the summary says so.
_ESSENTIAL = ("hostname", "/etc/hostname", "/etc/shadow", "/etc/passwd", "/etc/hosts")

pytest_plugins = ["tests.peers.fixtures"]


def _host_fingerprint() -> dict[str, str]:
    """What a simulated device must never change on the machine running the tests."""
    found: dict[str, str] = {"hostname": socket.gethostname()}
    for path in ("/etc/hostname", "/etc/shadow", "/etc/passwd", "/etc/hosts"):
        try:
            found[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except FileNotFoundError:
            found[path] = "absent"
        except OSError as exc:
            found[path] = f"unreadable: {type(exc).__name__}"
    found["system tools"] = _tools_fingerprint()
    # A device command that wrote outside its state (mkdir -p /data/x, /etc/siteline) adds a name here.
    for folder in ("/", "/etc", "/var", "/usr", "/usr/local", "/opt"):
        try:
            found[f"{folder} names"] = ",".join(sorted(os.listdir(folder)))
        except OSError as exc:
            found[f"{folder} names"] = f"unreadable: {type(exc).__name__}"
    # A stray `dd of=/dev/...` from a device command makes a regular file here (the whole listing would
    # change with the loop devices the real RAUC tests attach, so only plain files count).
    found["/dev files"] = ",".join(sorted(e.name for e in os.scandir("/dev") if e.is_file(follow_symlinks=False)))
    for tool, args in (("iptables-save", []), ("nft", ["list", "ruleset"])):
        exe = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if exe:
            out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, check=False)
            if out.returncode != 0:
                found[tool] = f"unreadable: exit {out.returncode}"
                continue
            lines = [line for line in out.stdout.splitlines() if not line.startswith("#")]
            found[tool] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return found


def _tools_fingerprint() -> str:
    """Name, size, mtime and inode of every program in the system's bin folders: a test that writes a stand-in
    tool through a link to a real one (it happened once, to /usr/bin/cat) changes this. Stats only: cheap."""
    digest = hashlib.sha256()
    for folder in sorted({os.path.realpath(d) for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin")}):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            digest.update(f"{folder}/{entry.name} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n".encode())
    return digest.hexdigest()


@pytest.fixture(scope="session", autouse=True)
def host_unchanged(request: pytest.FixtureRequest):
    before = _host_fingerprint()
    blind = sorted(k for k, v in before.items() if v.startswith("unreadable"))
    essential = [k for k in blind if k in _ESSENTIAL]
    if essential and _IN_CI and os.geteuid() == 0:
        pytest.fail(f"CI runs as root but cannot read {essential}: the host-unchanged guard would prove nothing")
    request.config.stash[_BLIND_KEY] = [f"{k} ({before[k]})" for k in blind]
    yield
    after = _host_fingerprint()
    changed = {k: (before[k], after.get(k)) for k in before if k not in blind and before[k] != after.get(k)}
    assert not changed, f"the test suite changed the host it ran on: {changed}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    blind = config.stash.get(_BLIND_KEY, [])
    if blind:
        terminalreporter.write_line(f"host-unchanged guard: not checkable here: {', '.join(blind)} "
                                    "(compared: everything else)", yellow=True)
