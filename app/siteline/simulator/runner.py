"""`siteline sim`: run one simulated device until SIGINT/SIGTERM and say how to reach it.

The last line it prints on stdout is machine-readable, for the demo and the tests:

    SITELINE-SIM-READY {"ssh": "ssh://root@127.0.0.1:PORT", "serial": "serial:///path?baud=115200",
                        "mqtt": "mqtt://127.0.0.1:PORT/edge/site/name", "state": "/path"}

plus "at_modem": "serial:///link?baud=115200" when --at-modem asked for the modem's AT-command port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import asyncssh

from siteline.core.atomic import write_atomic
from siteline.simulator import hostguard, rootfs
from siteline.simulator.at_modem import ATModem
from siteline.simulator.device import SimulatedDevice
from siteline.simulator.mqtt_agent import broker_user, load_broker_password, parse_broker_url, save_broker_password
from siteline.simulator.state import DeviceState

log = logging.getLogger(__name__)
READY = "SITELINE-SIM-READY"
OVERRIDES = ("boot_delay", "serial_baud", "kernel_log_interval", "telemetry_interval")
MQTT_PASSWORD_ENV = "SITELINE_SIM_MQTT_PASSWORD"
PASSWORD_ENV = "SITELINE_SIM_PASSWORD"  # the login password, kept out of argv (and so out of `ps`)


class SimSetupError(Exception):
    """The device could not be set up as asked; the message says what to change."""


def open_state(args: argparse.Namespace) -> DeviceState:
    """Create or open the state dir and apply the command line's settings to it."""
    root = Path(args.state).expanduser()
    from_env = os.environ.pop(PASSWORD_ENV, None) or None  # popped: the device's shells never inherit it
    if args.password is None:
        args.password = from_env
    state = DeviceState.open(root, name=args.name, site=args.site, user=args.user, password=args.password,
                             family=getattr(args, "family", None))
    changed = False
    for key in OVERRIDES:
        value = getattr(args, key, None)
        if value is not None and getattr(state.config, key) != value:
            setattr(state.config, key, value)
            changed = True
    if changed:
        state.save_config()
    for key_file in getattr(args, "authorized_key", None) or []:
        add_authorized_key(state, Path(key_file))
    _store_mqtt_password(state, getattr(args, "mqtt", None))
    return state


def _store_mqtt_password(state: DeviceState, url: str | None) -> None:
    """Move the broker password from the environment into the state dir (0600).

    It leaves the environment so that the commands the device runs in its shell never see it.
    """
    password = os.environ.pop(MQTT_PASSWORD_ENV, None)
    if url is None or broker_user(url) is None:
        return
    if password:
        save_broker_password(state.root, password)
    elif load_broker_password(state.root) is None:
        raise SimSetupError(f"--mqtt names the broker user '{broker_user(url)}' but no password is known: "
                            f"set {MQTT_PASSWORD_ENV} (it is kept in the state directory after the first run)")


def add_authorized_key(state: DeviceState, key_file: Path) -> None:
    try:
        key = asyncssh.import_public_key(key_file.read_bytes())
    except (OSError, asyncssh.KeyImportError, ValueError) as exc:
        raise SimSetupError(f"--authorized-key {key_file}: not a readable OpenSSH public key ({exc})") from exc
    line = key.export_public_key().decode().strip()
    path = state.authorized_keys_path(state.config.user)
    existing = path.read_text(encoding="utf-8").splitlines()
    if line not in existing:
        write_atomic(path, ("\n".join([*existing, line]) + "\n").lstrip("\n").encode(), mode=0o600)


def _describe(device: SimulatedDevice, state: DeviceState, password: str | None) -> list[str]:
    urls = device.urls()
    lines = [f"Simulated device '{state.config.name}' (site '{state.config.site}'), state in {state.root}"]
    if urls["ssh"]:
        lines.append(f"  SSH:    {urls['ssh']}    e.g. ssh -p {device.ssh_port} {state.config.user}@127.0.0.1")
    if urls["serial"] and device.console is not None:
        link = device.console.line.link
        lines.append(f"  Serial: {urls['serial']}    e.g. picocom -b {state.config.serial_baud} {link}")
    if urls["mqtt"]:
        lines.append(f"  MQTT:   {urls['mqtt']}")
    if state.initial_password:
        lines.append(f"  Login:  {state.config.user} / {state.initial_password}  (generated for this new device)")
    elif password:
        lines.append(f"  Login:  {state.config.user} / {password}")
    else:
        lines.append(f"  Login:  {state.config.user} with the password set when the device was created "
                     "(--password changes it)")
    lines.append("Press Ctrl-C to stop the device.")
    return lines


def _write_sshd_drop_in(state: DeviceState, keys_only: bool) -> None:
    """The device's own sshd_config says keys-only too, so that its posture check agrees with its server."""
    drop_in = rootfs.rootfs(state.root) / "etc/ssh/sshd_config.d/50-keys-only.conf"
    if not hostguard.confined(drop_in.parent, state.root):  # device commands can plant links in their rootfs
        raise SimSetupError(f"{drop_in.parent} leads out of the state directory (to "
                            f"{os.path.realpath(drop_in.parent)}), so the simulator will not write there: "
                            "remove that link on the device (or use a new --state folder)")
    if keys_only:
        drop_in.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(drop_in, b"PasswordAuthentication no\nKbdInteractiveAuthentication no\n")
    else:
        drop_in.unlink(missing_ok=True)


async def serve(args: argparse.Namespace) -> int:
    state = open_state(args)
    ssh_port = args.ssh_port
    if ssh_port is None and args.serial_link is None and args.mqtt is None:
        ssh_port = 0  # nothing asked for: SSH on a free port is the most useful default
    keys_only = bool(getattr(args, "ssh_keys_only", False))
    _write_sshd_drop_in(state, keys_only)
    device = SimulatedDevice(state, ssh_port=ssh_port, serial_link=args.serial_link, mqtt_url=args.mqtt,
                             ssh_password_login=not keys_only)
    at_link = getattr(args, "at_modem", None)
    at_only = bool(getattr(args, "at_only", False))
    at_modem = None
    if at_link or at_only:
        at_modem = ATModem(state, Path(at_link) if at_link else None, modemmanager=not at_only)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(device.start(), 5.0)
        urls = device.urls()
        if at_modem is not None:
            await at_modem.start()
            urls["at_modem"] = at_modem.url
        for line in _describe(device, state, args.password):
            print(line, flush=True)
        if at_modem is not None:
            print(f"  AT:     {at_modem.url}    e.g. picocom -b {at_modem.line.device_baud} {at_modem.line.link}",
                  flush=True)
        print(f"{READY} {json.dumps(urls)}", flush=True)
        await stop.wait()
        log.info("stopping the device")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if at_modem is not None:
            await at_modem.stop()
        await device.stop()
    return 0


def run_sim(args: argparse.Namespace) -> int:
    try:
        if args.mqtt is not None:
            parse_broker_url(args.mqtt)
        if args.serial_baud is not None and args.serial_baud <= 0:
            raise SimSetupError("--serial-baud must be a positive rate such as 115200")
        return asyncio.run(serve(args))
    except (SimSetupError, hostguard.HostGuardError) as exc:
        print(f"siteline sim: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"siteline sim: {exc}", file=sys.stderr)
        return 2
    except (TimeoutError, OSError) as exc:
        print(f"siteline sim: the device could not start: {exc}. Is the port free and the folder writable?",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        return 130
