"""`siteline demo`: a simulated site (a broker, three devices and a new one to provision) and Siteline opened on it.

Each device is a `siteline sim` subprocess: a device is another machine, and this keeps the
GUI's event loop free of the devices' work. One is reached over a serial console (password
login), one over SSH (key login), one over MQTT. Everything lives in one demo folder, including a
private SITELINE_HOME, so the technician's own device list is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from siteline.core.inventory import DeviceEntry
from siteline.core.outbox.settings import ControlPlaneSettings, save_settings
from siteline.core.targets import parse_target
from siteline.core.transports.base import Credentials
from siteline.simulator.broker import (
    BrokerHandle,
    BrokerUnavailableError,
    Grant,
    control_plane_acl,
    device_acl,
    siteline_acl,
    start_broker,
)
from siteline.simulator.demo_images import install_demo_images, make_demo_images
from siteline.simulator.lifetime import die_with_parent
from siteline.simulator.private import write_private
from siteline.simulator.runner import MQTT_PASSWORD_ENV, PASSWORD_ENV, READY
from siteline.simulator.ssh_server import HOST_KEY_NAME

log = logging.getLogger(__name__)
READY_TIMEOUT = 20.0
SITE = "demo-site"
USER = "root"
SITELINE_MQTT_USER = "siteline"  # the broker login Siteline uses; each device gets its own
# The demo broker is also the control plane: the outbox (audit records, notes) is sent there.
CONTROL_PLANE_USER = "siteline-control"
CONTROL_PLANE_SECRET = "control-plane/password"
TECHNICIAN = "demo-technician"
NEW_DEVICE = "gw-new"
FACTORY_PASSWORD = "root"  # resources/profiles/nwedge-gw-imx8mm.toml's published factory login


@dataclass
class DemoDevice:
    name: str
    transport: str
    proc: subprocess.Popen[bytes]
    urls: dict[str, Any] = field(default_factory=dict)
    buffer: bytes = b""


@dataclass
class DemoSite:
    folder: Path
    password: str
    client_key: Path
    broker: BrokerHandle | None = None
    devices: list[DemoDevice] = field(default_factory=list)
    # Broker logins made fresh for each run: user -> password (Siteline's and one per MQTT device).
    broker_users: dict[str, str] = field(default_factory=dict, repr=False)

    def control_plane(self) -> tuple[ControlPlaneSettings, str] | None:
        """Siteline's control plane on the demo broker (its outbox goes there) and the login's password."""
        password = self.broker_users.get(CONTROL_PLANE_USER)
        if self.broker is None or password is None:
            return None
        settings = ControlPlaneSettings(
            url=f"mqtt://{self.broker.host}:{self.broker.port}", technician=TECHNICIAN, allow_plain=True,
            username=CONTROL_PLANE_USER, password_ref=CONTROL_PLANE_SECRET,
            # MQTT 5 where the broker has it: on 3.1.1 Mosquitto acknowledges a publish its ACL denies.
            protocol="5" if self.broker.kind == "mosquitto" else "3.1.1")
        return settings, password

    def mqtt_target(self, name: str) -> str | None:
        """The MQTT device's target as Siteline uses it: Siteline's broker user in the URL."""
        if self.broker is None:
            return None
        return f"mqtt://{SITELINE_MQTT_USER}@{self.broker.host}:{self.broker.port}/edge/{SITE}/{name}"

    def entries(self) -> list[tuple[DeviceEntry, Credentials]]:
        """The devices as the GUI's device list takes them, with the credentials each one needs."""
        found: list[tuple[DeviceEntry, Credentials]] = []
        for dev in self.devices:
            target = dev.urls.get(dev.transport)
            if not target:
                continue
            if dev.transport == "serial":
                found.append((DeviceEntry(dev.name, target, SITE, username=USER),
                              Credentials(username=USER, password=self.password, use_agent=False)))
            elif dev.transport == "ssh":
                # SSH preferred, the serial cable as the way in when the network is down.
                cable = dev.urls.get("serial")
                found.append((DeviceEntry(dev.name, target, SITE, username=USER,
                                          fallbacks=(cable,) if cable else ()),
                              Credentials(username=USER, key_path=str(self.client_key),
                                          password=self.password if cable else None, use_agent=False)))
            else:
                mqtt_target = self.mqtt_target(dev.name) or target
                secret = self.broker_users.get(SITELINE_MQTT_USER)
                found.append((DeviceEntry(dev.name, mqtt_target, SITE, username=SITELINE_MQTT_USER),
                              Credentials(username=SITELINE_MQTT_USER, password=secret, use_agent=False)))
        return found

    def pin_host_keys(self, known_hosts: Path) -> None:
        """Trust the demo's own SSH devices: the demo made their keys, so there is nothing to compare."""
        from siteline.core.transports.known_hosts import KnownHosts

        store = KnownHosts(known_hosts)
        for dev in self.devices:
            ssh, state = dev.urls.get("ssh"), dev.urls.get("state")
            if not ssh or not state:
                continue
            target = parse_target(ssh)
            key = (Path(state) / f"{HOST_KEY_NAME}.pub").read_text(encoding="utf-8")
            # A re-run reuses the folder but the port changes; replace keeps one line per host and port.
            store.replace(target.host, target.effective_port, key)

    def stop(self) -> None:
        for dev in self.devices:
            if dev.proc.poll() is None:
                dev.proc.send_signal(signal.SIGTERM)
        for dev in self.devices:
            try:
                dev.proc.wait(10)
            except subprocess.TimeoutExpired:
                dev.proc.kill()
                dev.proc.wait(5)
            if dev.proc.stdout is not None:
                dev.proc.stdout.close()
        self.devices.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


def _client_key(folder: Path) -> Path:
    """An ed25519 key for the SSH device, made once per demo folder (the private half 0600 from the start)."""
    path = folder / "id_ed25519"
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="siteline-demo")
        write_private(path, key.export_private_key())
        key.write_public_key(str(path) + ".pub")
    return path


def _password(folder: Path) -> str:
    """One password for the demo's serial login, kept in the folder so a re-run reuses it."""
    path = folder / "password.txt"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    password = secrets.token_urlsafe(9)
    write_private(path, password + "\n")
    return password


def _device_broker_user(name: str) -> str:
    return f"dev-{name}"


def _broker_logins(names: list[str]) -> tuple[dict[str, str], dict[str, list[Grant]]]:
    """Random logins for this run: Siteline's and one per MQTT device, each limited by its ACL."""
    users = {SITELINE_MQTT_USER: secrets.token_urlsafe(18), CONTROL_PLANE_USER: secrets.token_urlsafe(18)}
    acl: dict[str, list[Grant]] = {SITELINE_MQTT_USER: list(siteline_acl()),
                                   CONTROL_PLANE_USER: control_plane_acl(TECHNICIAN)}
    for name in names:
        users[_device_broker_user(name)] = secrets.token_urlsafe(18)
        acl[_device_broker_user(name)] = list(device_acl(SITE, name))
    return users, acl


def _spawn(site: DemoSite, name: str, transport: str, extra: list[str],
           env: dict[str, str] | None = None) -> DemoDevice:
    logs = site.folder / "logs"
    logs.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "siteline", "sim", "--state", str(site.folder / "devices" / name),
            "--site", SITE, "--name", name, "--user", USER, *extra]
    with (logs / f"{name}.log").open("ab") as errlog:
        # stdout is read until the READY line; the device prints nothing after it (logs go to stderr).
        # Secrets go through the environment (readable by the owner only), never through argv.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errlog, stdin=subprocess.DEVNULL, bufsize=0,
                                start_new_session=True, preexec_fn=die_with_parent(), env={**os.environ, **(env or {})})
    return DemoDevice(name, transport, proc)


def _wait_ready(devices: list[DemoDevice], timeout: float, logs: Path) -> None:
    """Read each device's stdout until its READY line; raise with its log's tail if one fails."""
    deadline = time.monotonic() + timeout
    waiting = {d.proc.stdout.fileno(): d for d in devices if d.proc.stdout is not None}
    with selectors.DefaultSelector() as sel:
        for fd in waiting:
            sel.register(fd, selectors.EVENT_READ)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                names = ", ".join(d.name for d in waiting.values())
                raise TimeoutError(f"{names} did not start within {timeout:.0f} s; the logs are in {logs}")
            for key, _ in sel.select(left):
                dev = waiting[int(key.fd)]
                chunk = os.read(int(key.fd), 65536)
                if not chunk:
                    raise RuntimeError(f"{dev.name} stopped while starting (exit {dev.proc.wait()}); "
                                       f"see {logs / (dev.name + '.log')}")
                dev.buffer += chunk
                for line in dev.buffer.decode(errors="replace").splitlines():
                    if line.startswith(READY):
                        dev.urls = json.loads(line[len(READY):])
                        sel.unregister(key.fd)
                        del waiting[int(key.fd)]
                        break


def start_site(folder: Path) -> DemoSite:
    """Broker, three devices and a factory-fresh one, each answering; stops what it started when something fails."""
    folder.mkdir(parents=True, exist_ok=True)
    site = DemoSite(folder, _password(folder), _client_key(folder))
    try:
        users, acl = _broker_logins(["gw-mqtt"])
        try:
            site.broker = start_broker(folder / "broker", users=users, acl=acl)
            site.broker_users = users
        except BrokerUnavailableError as exc:
            print(f"Note: {exc} The MQTT device is left out of the demo.", flush=True)
        login = {PASSWORD_ENV: site.password}
        site.devices.append(_spawn(site, "gw-serial", "serial", ["--serial-link", str(folder / "ttyGW0")], env=login))
        site.devices.append(_spawn(site, "gw-ssh", "ssh", ["--ssh-port", "0", "--ssh-keys-only",
                                                           "--authorized-key", str(site.client_key) + ".pub",
                                                           "--serial-link", str(folder / "ttyGW1")], env=login))
        if site.broker is not None:
            user = _device_broker_user("gw-mqtt")
            url = f"mqtt://{user}@{site.broker.host}:{site.broker.port}"
            site.devices.append(_spawn(site, "gw-mqtt", "mqtt", ["--mqtt", url],
                                       env={**login, MQTT_PASSWORD_ENV: users[user]}))
        # A box fresh from the factory on the bench: on a serial cable, the manual's root/root login, not yet
        # in the device list. Provision it (File > Provision new device) with the nwedge-gw-imx8mm profile.
        site.devices.append(_spawn(site, NEW_DEVICE, "new", ["--serial-link", str(folder / "ttyGW2")],
                                   env={PASSWORD_ENV: FACTORY_PASSWORD}))
        _wait_ready(site.devices, READY_TIMEOUT, folder / "logs")
    except BaseException:
        site.stop()
        raise
    return site


def _print_site(site: DemoSite, images: str) -> None:
    print(f"Siteline demo site in {site.folder}", flush=True)
    if site.broker is not None:
        print(f"  broker     {site.broker.kind} on {site.broker.host}:{site.broker.port} "
              "(logins and ACLs required)", flush=True)
    control = site.control_plane()
    if control is not None:
        settings, password = control
        print(f"  control    {settings.url} (login {settings.username} / {password}); Siteline sends its outbox "
              f"to siteline/v1/{settings.technician}/outbox/#", flush=True)
    for entry, creds in site.entries():
        broker = "broker " if entry.target.startswith("mqtt") else ""
        how = (f"key {creds.key_path}" if creds.key_path
               else f"{broker}login {creds.username} / {creds.password}" if creds.password else "no login")
        print(f"  {entry.name:<10} {entry.target}    ({how})", flush=True)
        for fallback in entry.fallbacks:
            print(f"  {'':<10} then {fallback}    (login {creds.username} / {creds.password})", flush=True)
    for dev in site.devices:
        if dev.transport == "new" and dev.urls.get("serial"):
            print(f"  {dev.name:<10} {dev.urls['serial']}    (new from the factory: login {USER} / {FACTORY_PASSWORD}; "
                  "not in the list: File > Provision new device, profile nwedge-gw-imx8mm)", flush=True)
    print(f"  {images}", flush=True)
    print("Press Ctrl-C to stop the site.", flush=True)


def _wait_forever(site: DemoSite) -> None:
    while True:
        for dev in site.devices:
            if dev.proc.poll() is not None:
                print(f"{dev.name} stopped unexpectedly (exit {dev.proc.returncode}); see "
                      f"{site.folder / 'logs' / (dev.name + '.log')}", flush=True)
                return
        time.sleep(0.5)


def _as_sigint(_signum: int, _frame: object) -> None:
    os.kill(os.getpid(), signal.SIGINT)


def run_demo(args: argparse.Namespace) -> int:
    made_folder = args.dir is None
    folder = Path(args.dir).expanduser().absolute() if args.dir else Path(tempfile.mkdtemp(prefix="siteline-demo-"))
    # SIGTERM ends the demo the same way Ctrl-C does, so the devices and the broker are stopped. Under the
    # GUI a KeyboardInterrupt raised inside Qt would be swallowed, so it is passed on as a SIGINT, which
    # the GUI answers by closing its window.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler if args.headless else _as_sigint)
    # A shell starts background jobs with SIGINT ignored; the demo must still stop on it.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    site: DemoSite | None = None
    try:
        site = start_site(folder)
        if args.headless:
            made = make_demo_images(folder / "images")  # the technician's own keys are not touched here
            _print_site(site, f"images     {folder / 'images'} (flash them after `siteline keys add "
                        f"{folder / 'images' / 'demo-pub.pem'} --name demo-ops`)" if not isinstance(made, str)
                        else made)
            _wait_forever(site)
            return 0
        home = folder / "siteline-home"
        home.mkdir(exist_ok=True)
        os.environ["SITELINE_HOME"] = str(home)  # the technician's own device list stays untouched
        from siteline import paths
        from siteline.ui.app import run_gui

        site.pin_host_keys(paths.data_dir() / "known_hosts")
        print(install_demo_images(folder / "images", paths.config_dir()), flush=True)
        given: dict[str, str] = {}
        control = site.control_plane()
        if control is not None:
            save_settings(control[0])
            given[CONTROL_PLANE_SECRET] = control[1]

        result: int = run_gui(devices=site.entries(), title="Siteline — demo site", secrets=given)
        return result
    except KeyboardInterrupt:
        return 0
    except (TimeoutError, RuntimeError, OSError) as exc:
        print(f"siteline demo: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave devices running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if site is not None:
            site.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if made_folder:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)
