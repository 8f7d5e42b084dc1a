"""Entry point of every shim: ``python -m siteline.simulator.shim TOOL ARGS...``.

Kept light: only the requested tool's module is imported, because each device command starts a
fresh interpreter. A tool never shows a Python traceback: an unexpected error becomes one line on
stderr and exit status 1, as a C tool's failure would.
"""

from __future__ import annotations

import importlib
import os
import sys

# tool name -> module under siteline.simulator.tools (each has main(argv, state) -> int)
TOOLS = {
    "cat": "files", "uname": "system", "hostname": "system", "uptime": "system", "df": "system",
    "free": "system", "reboot": "power", "poweroff": "power", "halt": "power", "shutdown": "power", "init": "power",
    "telinit": "power", "hostnamectl": "hostctl", "timedatectl": "hostctl", "date": "hostctl",
    "sysctl": "kernel", "modprobe": "kernel", "rmmod": "kernel", "lsmod": "kernel",
    "ifconfig": "netlegacy", "route": "netlegacy", "umount": "mount",
    "useradd": "accounts", "usermod": "accounts", "userdel": "accounts", "groupadd": "accounts",
    "ip6tables": "firewall", "ip6tables-save": "firewall", "ip6tables-restore": "firewall",
    "head": "files", "tail": "files", "grep": "files", "sed": "files", "ls": "files", "stat": "files",
    "test": "files",
    "fw_printenv": "fwenv", "fw_setenv": "fwenv",
    "mmcli": "mmcli", "nmcli": "nmcli", "ip": "iproute",
    "rauc": "rauc", "swupdate": "swupdate", "journalctl": "journalctl",
    "passwd": "accounts", "chpasswd": "accounts",
    "iptables": "firewall", "iptables-save": "firewall", "iptables-restore": "firewall", "nft": "firewall",
    "systemctl": "systemctl", "mount": "mount", "sim-scenario": "scenario",
    "lsblk": "storage", "cryptsetup": "storage", "sshd": "sshd", "openssl": "openssl",
    "logread": "logread", "dmesg": "dmesg", "systemd-run": "systemd_run",
    "ubus": "ubus", "uci": "ubus", "uqmi": "uqmi",  # the OpenWrt family's (simulator/family.py)
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in TOOLS:
        sys.stderr.write(f"siteline shim: unknown tool {args[0] if args else '(none)'!r}\n")
        return 127
    tool, rest = args[0], args[1:]
    root = os.environ.get("SITELINE_SIM_STATE")
    if not root:
        sys.stderr.write(f"{tool}: SITELINE_SIM_STATE is not set: run this shim from a simulated device's shell\n")
        return 1
    try:
        from pathlib import Path

        from siteline.simulator.state import DeviceState

        state = DeviceState.attach(Path(root))
        module = importlib.import_module(f"siteline.simulator.tools.{TOOLS[tool]}")
        return int(module.main(tool, rest, state))
    except BrokenPipeError:
        _silence_stdout()
        return 141  # as a C tool killed by SIGPIPE, seen through the shell
    except KeyboardInterrupt:
        return 130
    except FileNotFoundError as exc:
        sys.stderr.write(f"{tool}: {exc}\n")
        return 1
    except Exception as exc:
        sys.stderr.write(f"{tool}: internal error in the simulated device: {type(exc).__name__}: {exc}\n")
        return 1


def _silence_stdout() -> None:
    # Python would complain again when flushing stdout at exit; point it at /dev/null instead.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
