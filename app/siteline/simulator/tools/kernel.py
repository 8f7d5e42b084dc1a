"""sysctl, modprobe, rmmod, lsmod: kernel settings and modules of the device, kept in its state dir."""

from __future__ import annotations

import re

from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools.common import fail, out

# What a freshly booted gateway image reports; writes land in admin/sysctl.json, never /proc/sys.
SYSCTL_DEFAULTS = {
    "kernel.hostname": "", "kernel.ostype": "Linux", "kernel.osrelease": "5.15.71-nwedge", "kernel.panic": "5",
    "kernel.printk": "7\t4\t1\t7", "net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0",
    "net.ipv4.tcp_keepalive_time": "7200", "net.core.rmem_max": "212992", "vm.swappiness": "60",
    "net.ipv4.conf.all.rp_filter": "1", "fs.file-max": "200924", "vm.overcommit_memory": "0",
}
MODULES = {"cdc_mbim": 45056, "cdc_wdm": 28672, "option": 57344, "usb_wwan": 20480, "fec": 98304,
           "flexcan": 36864, "imx2_wdt": 16384}
_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,128}")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    return {"sysctl": sysctl, "modprobe": modprobe, "rmmod": rmmod, "lsmod": lsmod}[tool](argv, state)


def _values(state: DeviceState) -> dict[str, str]:
    stored = read_json(state.root / "admin" / "sysctl.json")
    values = {**SYSCTL_DEFAULTS, "kernel.hostname": state.hostname()}
    values.update({k: str(v) for k, v in stored.items()})
    return values


def sysctl(argv: list[str], state: DeviceState) -> int:
    names_only = any(a in ("-n", "--values") for a in argv)
    quiet = any(a in ("-q", "--quiet") for a in argv)
    args = [a for a in argv if not a.startswith("-")]
    if any(a in ("-a", "-A", "-X", "--all") for a in argv) or not args:
        if not args and not any(a in ("-a", "-A", "-X", "--all", "-p", "--load", "--system") for a in argv):
            return fail("sysctl: no variables specified\nTry `sysctl -h' for more information.", 255)
        for key, value in sorted(_values(state).items()):
            out(f"{key} = {value}\n")
        return 0
    values, changes, code = _values(state), {}, 0
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip().replace("/", ".")
        if not _KEY.fullmatch(key):
            code = fail(f"sysctl: cannot stat /proc/sys/{key}: No such file or directory", 255)
            continue
        if sep:
            changes[key] = value.strip()
            if not quiet:
                out(f"{key} = {value.strip()}\n")
        elif key in values:
            out(f"{values[key]}\n" if names_only else f"{key} = {values[key]}\n")
        else:
            code = fail(f"sysctl: cannot stat /proc/sys/{key.replace('.', '/')}: No such file or directory", 255)
    if changes:
        (state.root / "admin").mkdir(exist_ok=True)
        update_json(state.root, state.root / "admin" / "sysctl.json", lambda d: d.update(changes))
    return code


def _loaded(state: DeviceState) -> dict[str, int]:
    stored = read_json(state.root / "admin" / "modules.json")
    loaded = stored.get("loaded")
    return {str(k): int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else dict(MODULES)


def _save(state: DeviceState, loaded: dict[str, int]) -> None:
    (state.root / "admin").mkdir(exist_ok=True)
    update_json(state.root, state.root / "admin" / "modules.json", lambda d: d.__setitem__("loaded", loaded))


def modprobe(argv: list[str], state: DeviceState) -> int:
    remove = any(a in ("-r", "--remove") for a in argv)
    names = [a.replace("-", "_") for a in argv if not a.startswith("-")]
    if not names:
        return fail("modprobe: ERROR: missing parameters. See -h.")
    loaded = _loaded(state)
    if remove:
        return rmmod(names, state)
    loaded.setdefault(names[0], 16384)  # a module with parameters: only the name matters here
    _save(state, loaded)
    return 0


def rmmod(argv: list[str], state: DeviceState) -> int:
    loaded = _loaded(state)
    for name in (a.replace("-", "_") for a in argv if not a.startswith("-")):
        if name not in loaded:
            return fail(f"rmmod: ERROR: Module {name} is not currently loaded")
        del loaded[name]
    _save(state, loaded)
    return 0


def lsmod(argv: list[str], state: DeviceState) -> int:
    out("Module                  Size  Used by\n")
    for name, size in sorted(_loaded(state).items()):
        out(f"{name:<19} {size:>8}  0\n")
    return 0
