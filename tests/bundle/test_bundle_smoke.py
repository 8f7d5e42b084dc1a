"""Smoke test of the built Linux bundle: every Siteline process here is the bundle's, never the venv's.

    SITELINE_BUNDLE=dist/siteline .venv/bin/python -m pytest tests/bundle -q

Skipped unless SITELINE_BUNDLE names the one-folder bundle (installers/linux/build.sh makes it). The .deb
next to it (dist/siteline_*_amd64.deb) is unpacked with `dpkg -x` into a temporary folder, never installed.
Each process runs with PATH stripped of the venv, no PYTHON* variables and SITELINE_HOME in a temporary folder;
each starts in its own session so that the whole tree it made is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BUNDLE_ENV = os.environ.get("SITELINE_BUNDLE", "")
pytestmark = pytest.mark.skipif(not BUNDLE_ENV, reason="SITELINE_BUNDLE is not set (path to dist/siteline)")
PASSWORD = "bundle-smoke-pw"
READY = "SITELINE-SIM-READY"


@pytest.fixture(scope="module")
def bundle() -> Path:
    folder = Path(BUNDLE_ENV).resolve()
    exe = folder / "siteline"
    assert os.access(exe, os.X_OK), f"{exe} is not an executable: build it with installers/linux/build.sh"
    return folder


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine that never saw the venv: no venv on PATH, no PYTHONPATH, a fresh home."""
    venv = os.environ.get("VIRTUAL_ENV", "")
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":")
            if p and ".venv" not in p and not (venv and p.startswith(venv))]
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SITELINE_", "QT_"))}
    home = tmp_path / "home"
    home.mkdir()
    return {**keep, "PATH": ":".join(path), "SITELINE_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}


def run(exe: Path, *args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False, start_new_session=True)
    return done


class Proc:
    """A long-running bundle process; its whole process group is killed on exit."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                         bufsize=0, start_new_session=True)
        self.lines: list[str] = []
        self._buf = b""

    def wait_for(self, pattern: str, timeout: float) -> str:
        """Read stdout until a line matches ``pattern`` (a regex); returns that line."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout.fileno(), selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    raw, self._buf = self._buf.split(b"\n", 1)
                    line = raw.decode(errors="replace")
                    self.lines.append(line)
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {pattern!r} in {timeout} s: {self.lines}\n{self.log.read_text()[-3000:]}")
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        raise RuntimeError(f"exited {self.proc.wait()} before {pattern!r}: {self.lines}\n"
                                           f"{self.log.read_text()[-3000:]}")
                    self._buf += chunk

    def stop(self) -> int:
        """Ctrl-C as a user would, then the whole group is killed: nothing the bundle started survives."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[Proc]:
    proc = Proc(argv, env, log)
    try:
        yield proc
    finally:
        proc.stop()


def test_version_from_the_bundle(bundle: Path, env: dict[str, str]) -> None:
    done = run(bundle / "siteline", "--version", env=env)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"siteline \d+\.\d+\.\d+\S*", done.stdout.strip())


def test_bundle_stands_in_for_python(bundle: Path, env: dict[str, str]) -> None:
    """The children Siteline starts as `sys.executable -m/-c` get this program: it must act as the interpreter."""
    code = "import sys, siteline; print(sys.frozen, sys.argv[1:], siteline.__version__)"
    done = run(bundle / "siteline", "-P", "-c", code, "x", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True ['x'] ")
    done = run(bundle / "siteline", "-m", "siteline.simulator.shim", "uname", "-s", env=env)
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(240)
def test_gui_draws_offscreen(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    env = {**env, "SITELINE_SCREENSHOT": str(shot), "SITELINE_QUIT_AFTER_SCREENSHOT": "1",
           "SITELINE_SCREENSHOT_WHEN": "shown"}  # no devices in a fresh home: nothing to wait for
    done = run(bundle / "siteline", "-v", "gui", env=env, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "window shown" in done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 5000, "the window grab looks empty"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker", ["auto", "embedded"])
def test_demo_headless_prints_its_devices(bundle: Path, env: dict[str, str], tmp_path: Path, broker: str) -> None:
    """`embedded` is what a desktop without Mosquitto gets: amqtt run as `siteline -m amqtt...` from the bundle."""
    env = {**env, "SITELINE_BROKER": broker}
    with started([str(bundle / "siteline"), "demo", "--headless", "--dir", str(tmp_path / "site")], env,
                 tmp_path / "demo.log") as demo:
        demo.wait_for("Press Ctrl-C to stop the site", 120)
    text = "\n".join(demo.lines)
    if broker == "embedded":
        assert "broker     embedded" in text, text
        assert "mqtt://" in text, text
    assert "ssh://" in text, text
    assert "serial://" in text, text


@pytest.mark.timeout(240)
def test_serial_and_ssh_work_from_the_bundle(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    state = tmp_path / "dev"
    link = tmp_path / "ttyDEV"
    sim_env = {**env, "SITELINE_SIM_PASSWORD": PASSWORD}
    argv = [str(bundle / "siteline"), "sim", "--state", str(state), "--ssh-port", "0", "--serial-link", str(link),
            "--boot-delay", "0.05", "--kernel-log-interval", "3600"]
    with started(argv, sim_env, tmp_path / "sim.log") as sim:
        urls = json.loads(sim.wait_for(READY, 90).split(READY, 1)[1])
        client_env = {**env, "SITELINE_PASSWORD": PASSWORD}
        serial = run(bundle / "siteline", "run", urls["serial"], "--user", "root", "--timeout", "40", "--",
                     "uname", "-a", env=client_env, timeout=90)
        assert serial.returncode == 0, serial.stdout + serial.stderr
        assert serial.stdout.startswith("Linux gw-01 "), serial.stdout  # the device's name, not this host's
        ssh = run(bundle / "siteline", "run", urls["ssh"], "--accept-new-host-key", "--timeout", "40", "--",
                  "cat", "/etc/os-release", env=client_env, timeout=90)
        assert ssh.returncode == 0, ssh.stdout + ssh.stderr
        assert "ID=" in ssh.stdout
        assert sim.proc.poll() is None, "the simulated device died while serving"


@pytest.fixture(scope="module")
def deb_root(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    debs = sorted(bundle.parent.glob("siteline_*_amd64.deb"))
    if not debs:
        pytest.skip(f"no siteline_*_amd64.deb next to {bundle}")
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed")
    root = tmp_path_factory.mktemp("debroot")
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(root)], check=True, timeout=120)  # unpack only: -i never
    yield root
    shutil.rmtree(root, ignore_errors=True)  # 200 MB: pytest would keep it with its last three runs


def test_deb_unpacks_to_a_working_program(deb_root: Path, env: dict[str, str]) -> None:
    link = deb_root / "usr/bin/siteline"
    assert os.readlink(link) == "/opt/siteline/siteline"
    done = run(deb_root / "opt/siteline/siteline", "--version", env=env)
    assert done.returncode == 0, done.stderr
    desktop = (deb_root / "usr/share/applications/siteline.desktop").read_text()
    assert "Exec=siteline" in desktop
    assert "Icon=siteline" in desktop
    assert (deb_root / "usr/share/icons/hicolor/scalable/apps/siteline.svg").is_file()
    png = deb_root / "usr/share/icons/hicolor/256x256/apps/siteline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "io.siteline.Siteline" in (deb_root / "usr/share/metainfo/io.siteline.Siteline.metainfo.xml").read_text()


def test_bundle_carries_every_entry_point_plugin(bundle: Path, env: dict[str, str]) -> None:
    """The spec collects what the build venv declares in `siteline.plugins` (this venv, in CI)."""
    from importlib.metadata import entry_points

    done = run(bundle / "siteline", "plugins", "list", env=env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:] if line.strip() and "  " in line}
    for ep in entry_points(group="siteline.plugins"):
        assert ep.name in rows, done.stdout
        assert "enabled" in rows[ep.name], rows[ep.name]


def test_tarball_unpacks_to_a_working_program(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The one downloaded file on any distribution: unpack, run."""
    import tarfile

    tarballs = sorted(bundle.parent.glob("siteline-*-linux-x86_64.tar.gz"))
    if not tarballs:
        pytest.skip(f"no siteline-*-linux-x86_64.tar.gz next to {bundle}")
    with tarfile.open(tarballs[-1]) as tar:
        tops = {name.split("/", 1)[0] for name in tar.getnames()}
        assert len(tops) == 1, tops
        tar.extractall(tmp_path, filter="tar")
    top = tmp_path / tops.pop()
    try:
        done = run(top / "siteline", "--version", env=env)
        assert done.returncode == 0, done.stderr
        assert top.name == "siteline-" + done.stdout.split()[1]
        assert (top / "share/applications/siteline.desktop").is_file()
        assert (top / "share/metainfo/io.siteline.Siteline.metainfo.xml").is_file()
    finally:
        shutil.rmtree(top, ignore_errors=True)


LIBRARIES_CODE = """
import numpy, orjson, zstandard, pyte, asyncssh, qasync, keyring, serial.tools.list_ports
from cryptography.hazmat.primitives.asymmetric import ed25519
from paho.mqtt.client import Client, CallbackAPIVersion
from PySide6.QtWidgets import QApplication
import pyqtgraph
app = QApplication([])
plot = pyqtgraph.PlotWidget()
plot.plot(numpy.arange(100.0), numpy.sin(numpy.arange(100.0)))
assert float(numpy.linalg.norm(numpy.ones(4) @ numpy.eye(4))) == 2.0  # numpy's (stripped) OpenBLAS
assert orjson.loads(orjson.dumps({"a": 1})) == {"a": 1}
assert zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor().compress(b"x" * 99)) == b"x" * 99
key = ed25519.Ed25519PrivateKey.generate()
key.public_key().verify(key.sign(b"m"), b"m")
screen = pyte.Screen(20, 2); pyte.Stream(screen).feed("ok")
assert screen.display[0].startswith("ok")
Client(CallbackAPIVersion.VERSION2)
serial.tools.list_ports.comports()
print("backends", len(keyring.backend.get_all_keyring()))
# Every Siteline module imports from the bundle (a trimmed module that one of them needs fails here).
import importlib, pkgutil, siteline
names = [m.name for m in pkgutil.walk_packages(siteline.__path__, "siteline.") if ".__main__" not in m.name]
failed = []
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
assert len(names) > 100 and not failed, (len(names), failed)
print("modules", len(names))
"""


def test_bundled_libraries_work(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    """What the smoke paths above may not touch: numpy/pyqtgraph, orjson, zstandard, cryptography, pyte, paho,
    pyserial's port listing, keyring's backends (found through entry points)."""
    done = run(bundle / "siteline", "-c", LIBRARIES_CODE, env=env, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split("backends", 1)[1].split()[0]) >= 2, done.stdout  # at least chainer and fail


def test_device_commands_cannot_write_to_the_host(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The simulator started from the bundle still confines its device (namespaces as root, permissions else)."""
    probe = Path("/etc/siteline-bundle-smoke-probe")
    assert not probe.exists()
    sim_env = {**env, "SITELINE_SIM_PASSWORD": PASSWORD}
    argv = [str(bundle / "siteline"), "sim", "--state", str(tmp_path / "dev"), "--ssh-port", "0"]
    with started(argv, sim_env, tmp_path / "sim.log") as sim:
        urls = json.loads(sim.wait_for(READY, 90).split(READY, 1)[1])
        run(bundle / "siteline", "run", urls["ssh"], "--accept-new-host-key", "--timeout", "40", "--", "sh", "-c",
            f"echo x > {probe}", env={**env, "SITELINE_PASSWORD": PASSWORD}, timeout=90)
    assert not probe.exists(), "a device command wrote to the host's /etc"
