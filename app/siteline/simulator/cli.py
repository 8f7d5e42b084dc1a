"""Arguments and entry points for `siteline sim` and `siteline demo`."""

from __future__ import annotations

import argparse
from typing import Any


def add_sim_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("sim", help="run one simulated device until interrupted")
    p.add_argument("--state", required=True, help="the device's state directory (created when new)")
    p.add_argument("--ssh-port", type=int, help="serve SSH on 127.0.0.1:P (0 picks a free port)")
    p.add_argument("--serial-link", help="create a pty serial console and link it at PATH")
    p.add_argument("--at-modem", metavar="LINK", help="create the modem's AT-command port (a pty, 115200 baud) and "
                   "link it at LINK")
    p.add_argument("--at-only", action="store_true", help="no ModemManager on the device (no mmcli): its modem answers "
                   "only on the AT port (LINK, default <state>/dev/ttyUSB2)")
    p.add_argument("--mqtt", help="broker URL, e.g. mqtt://127.0.0.1:1883, or mqtt://USER@127.0.0.1:1883 to log in "
                   "with the password from SITELINE_SIM_MQTT_PASSWORD (kept 0600 in the state directory)")
    p.add_argument("--family", choices=("gateway", "openwrt"), help="what the device is: the Yocto gateway "
                   "(default for a new device) or an OpenWrt cellular router (ubus, uqmi, logread; no NetworkManager, "
                   "ModemManager or RAUC); given for an existing device, turns it into that family")
    p.add_argument("--site", default="demo-site")
    p.add_argument("--name", default="gw-01")
    p.add_argument("--user", default="root")
    p.add_argument("--password", help="login password (default: SITELINE_SIM_PASSWORD, which keeps it out of "
                   "`ps`; else generated and printed)")
    p.add_argument("--ssh-keys-only", action="store_true", help="the SSH server accepts public keys only")
    p.add_argument("--authorized-key", action="append", metavar="FILE",
                   help="an OpenSSH public key allowed to log in as --user (repeatable)")
    p.add_argument("--boot-delay", type=float, help="seconds the device stays dark during a reboot")
    p.add_argument("--serial-baud", type=int, help="the console's own baud rate (a client at another rate sees noise)")
    p.add_argument("--kernel-log-interval", type=float, help="mean seconds between kernel lines on the console")
    p.add_argument("--telemetry-interval", type=float, help="seconds between MQTT telemetry messages")
    p.set_defaults(handler=_run_sim)


def add_demo_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("demo", help="start a simulated site and open Siteline on it")
    p.add_argument("--headless", action="store_true", help="no GUI: print the devices' target URLs and keep running")
    p.add_argument("--dir", help="keep the site's state here (default: a fresh temporary folder)")
    p.set_defaults(handler=_run_demo)


def _run_sim(args: argparse.Namespace) -> int:
    from siteline.simulator.runner import run_sim

    return run_sim(args)


def _run_demo(args: argparse.Namespace) -> int:
    from siteline.simulator.demo import run_demo

    return run_demo(args)
