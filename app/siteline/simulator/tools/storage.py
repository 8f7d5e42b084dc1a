"""lsblk and cryptsetup, /proc/mounts, and the device's security-relevant files, all from its state dir.

The device's storage is an eMMC as a Yocto image with RAUC lays it out: a boot partition, two root
slots (the booted one mounted read-only at /) and a data partition, by default a LUKS2 volume opened
as /dev/mapper/data and mounted at /data, with /etc writable through an overlay whose upper layer is
on /data. What differs from that default is kept in ``admin/security.json`` (see :func:`profile`);
``mount -o remount,rw /`` (recorded by the mount tool in ``admin/mounts.json``) shows up here too.

:func:`provision` writes the files the posture commands read (``/proc/mounts``, ``/dev/mapper``,
``/etc/ssh/sshd_config``, ``/etc/ssl/device.crt``). A device made before these tools existed gets
them at the first call of any of them (``date`` included, which a probe runs first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.store import read_json, update_json
from siteline.simulator.tools.common import fail, out

SECURITY_FILE = "security.json"  # in <state>/admin
MAPPER = "data"
DATA_PART = "mmcblk0p4"
CRYPT_VERSION = "cryptsetup 2.4.3"
LSBLK_VERSION = "lsblk from util-linux 2.37.4"


@dataclass(frozen=True)
class Profile:
    """What this device's storage looks like (defaults: the demo device's)."""

    data_encryption: str = "LUKS2"  # "LUKS2", "LUKS1", "PLAIN" (dm-crypt without LUKS) or "none"
    root_read_only: bool = True
    cert_days_left: float = 20.0  # when the device certificate is made: days until it expires


def profile(state: DeviceState) -> Profile:
    doc = read_json(state.root / "admin" / SECURITY_FILE)
    base = Profile()
    enc = doc.get("data_encryption", base.data_encryption)
    days = doc.get("cert_days_left", base.cert_days_left)
    return Profile(
        data_encryption=enc if enc in ("LUKS2", "LUKS1", "PLAIN", "none") else base.data_encryption,
        root_read_only=bool(doc.get("root_read_only", base.root_read_only)),
        cert_days_left=float(days) if isinstance(days, int | float) else base.cert_days_left,
    )


def set_profile(state: DeviceState, **changes: Any) -> None:
    """Change the device's security profile (tests, demo scenarios); :func:`provision` follows it."""
    (state.root / "admin").mkdir(exist_ok=True)
    update_json(state.root, state.root / "admin" / SECURITY_FILE, lambda d: d.update(changes))
    provision(state)


# -- the device's block devices ------------------------------------------------------------------------
def _node(name: str, majmin: str, size: int, kind: str, fstype: str | None, points: list[str],
          children: list[dict[str, Any]] | None = None, ro: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {"name": name, "maj:min": majmin, "rm": False, "size": size, "ro": ro, "type": kind,
                            "fstype": fstype, "mountpoints": points or [None]}
    if children:
        node["children"] = children
    return node


def block_devices(state: DeviceState) -> list[dict[str, Any]]:
    """The device's block devices as a tree (lsblk's view), sizes in bytes."""
    prof = profile(state)
    booted = state.booted_slot()
    root_part = "mmcblk0p2" if booted == "A" else "mmcblk0p3"
    gib = 1 << 30
    data_size = 11_523_047_424
    if prof.data_encryption == "none":
        data = _node(DATA_PART, "179:4", data_size, "part", "ext4", ["/data"])
    else:
        fstype = "crypto_LUKS" if prof.data_encryption.startswith("LUKS") else None
        crypt = _node(MAPPER, "253:0", data_size - (16 << 20), "crypt", "ext4", ["/data"])
        data = _node(DATA_PART, "179:4", data_size, "part", fstype, [], [crypt])
    parts = [
        _node("mmcblk0p1", "179:1", 64 << 20, "part", "vfat", ["/boot"]),
        _node("mmcblk0p2", "179:2", 1 * gib, "part", "ext4", ["/"] if root_part == "mmcblk0p2" else []),
        _node("mmcblk0p3", "179:3", 1 * gib, "part", "ext4", ["/"] if root_part == "mmcblk0p3" else []),
        data,
    ]
    return [
        _node("mmcblk0", "179:0", 14_910_750_720, "disk", None, [], parts),
        _node("mmcblk0boot0", "179:32", 4 << 20, "disk", None, [], ro=True),
        _node("mmcblk0boot1", "179:64", 4 << 20, "disk", None, [], ro=True),
    ]


# -- /proc/mounts --------------------------------------------------------------------------------------
def proc_mounts(state: DeviceState) -> str:
    """/proc/mounts as the kernel writes it: ``source point type options 0 0``."""
    prof = profile(state)
    recorded = read_json(state.root / "admin" / "mounts.json")  # what `mount` / `mount -o remount` recorded
    root_opts = "ro,relatime" if prof.root_read_only else "rw,relatime"
    remount = recorded.get("/", {}).get("options") if isinstance(recorded.get("/"), dict) else None
    if isinstance(remount, str) and remount.split(",")[0] in ("ro", "rw"):
        root_opts = remount.split(",")[0] + ",relatime"
    data_src = f"/dev/{DATA_PART}" if prof.data_encryption == "none" else f"/dev/mapper/{MAPPER}"
    lines = [
        f"/dev/root / ext4 {root_opts} 0 0",
        "devtmpfs /dev devtmpfs rw,relatime,size=867196k,nr_inodes=216799,mode=755 0 0",
        "proc /proc proc rw,relatime 0 0",
        "sysfs /sys sysfs rw,relatime 0 0",
        "tmpfs /run tmpfs rw,nosuid,nodev,mode=755 0 0",
        "tmpfs /var/volatile tmpfs rw,relatime 0 0",
        "devpts /dev/pts devpts rw,relatime,gid=5,mode=620,ptmxmode=000 0 0",
        "tmpfs /tmp tmpfs rw,nosuid,nodev 0 0",
        "/dev/mmcblk0p1 /boot vfat rw,relatime,fmask=0022,dmask=0022,codepage=437,iocharset=iso8859-1,"
        "shortname=mixed,errors=remount-ro 0 0",
        f"{data_src} /data ext4 rw,relatime 0 0",
    ]
    if prof.root_read_only:
        lines.append("overlay /etc overlay rw,relatime,lowerdir=/etc,upperdir=/data/overlay/etc/upper,"
                     "workdir=/data/overlay/etc/work 0 0")
    known = {line.split()[1] for line in lines}
    for point, m in recorded.items():
        if point not in known and isinstance(m, dict) and point.startswith("/") and " " not in point:
            lines.append(f"{m.get('source', 'none')} {point} {m.get('type', 'auto')} {m.get('options', 'rw')} 0 0")
    return "\n".join(lines) + "\n"


def provision(state: DeviceState) -> None:
    """Make (or bring up to date) the files the posture commands read; cheap when nothing changed."""
    fs = rootfs.rootfs(state.root)
    _write_if_changed(fs / "proc/mounts", proc_mounts(state))
    mapper = fs / "dev/mapper"
    mapper.mkdir(parents=True, exist_ok=True)
    _write_if_changed(mapper / "control", "")
    if profile(state).data_encryption == "none":
        (mapper / MAPPER).unlink(missing_ok=True)
    else:
        _write_if_changed(mapper / MAPPER, "")
    from siteline.simulator.tools import openssl, sshd  # here: they import this module

    sshd.ensure_config(state)
    openssl.ensure_certificate(state, profile(state).cert_days_left)


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


# -- lsblk ---------------------------------------------------------------------------------------------
COLUMNS = ("NAME", "KNAME", "PATH", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE", "FSTYPE", "MOUNTPOINT", "MOUNTPOINTS")
DEFAULT_COLUMNS = ("NAME", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE", "MOUNTPOINTS")
FS_COLUMNS = ("NAME", "FSTYPE", "MOUNTPOINTS")


@dataclass
class _LsblkArgs:
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    json: bool = False
    list: bool = False
    headings: bool = True
    paths: bool = False
    bytes: bool = False
    devices: tuple[str, ...] = ()


def _lsblk_args(argv: list[str]) -> _LsblkArgs | str:
    args, i, devices = _LsblkArgs(), 0, []
    flags = {"J": "json", "l": "list", "n": "headings", "p": "paths", "b": "bytes"}
    longs = {"--json": "J", "--list": "l", "--noheadings": "n", "--paths": "p", "--bytes": "b", "--fs": "f"}
    while i < len(argv):
        arg = longs.get(argv[i], argv[i])
        i += 1
        if arg in ("-o", "--output") or arg.startswith("--output="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i] if i < len(argv) else "")
            i += 0 if "=" in arg else 1
            cols = tuple(c.strip().upper() for c in value.split(",") if c.strip())
            bad = [c for c in cols if c not in COLUMNS]
            if bad or not cols:
                return f"lsblk: unknown column: {bad[0] if bad else value}"
            args.columns = cols
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            for letter in arg[1:]:
                if letter == "f":
                    args.columns = FS_COLUMNS
                elif letter in flags:
                    setattr(args, flags[letter], flags[letter] != "headings")
                else:
                    return f"lsblk: invalid option -- '{letter}'"
        elif arg.startswith("--"):
            return f"lsblk: unrecognized option '{arg}'"
        else:
            devices.append(arg)
    args.devices = tuple(devices)
    return args


def _value(node: dict[str, Any], column: str, args: _LsblkArgs) -> Any:
    points = [p for p in node["mountpoints"] if p]
    values: dict[str, Any] = {
        "NAME": f"/dev/{node['name']}" if args.paths else node["name"], "KNAME": node["name"],
        "PATH": f"/dev/{'mapper/' if node['type'] == 'crypt' else ''}{node['name']}",
        "MAJ:MIN": node["maj:min"], "RM": node["rm"], "RO": node["ro"], "TYPE": node["type"],
        "SIZE": node["size"] if args.bytes else _size(node["size"]), "FSTYPE": node["fstype"],
        "MOUNTPOINT": points[0] if points else None, "MOUNTPOINTS": points or [None],
    }
    if node["type"] == "crypt" and args.paths:
        values["NAME"] = values["PATH"]
    return values[column]


def _size(n: int) -> str:
    value, units = float(n), ["B", "K", "M", "G", "T"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    text = f"{value:.0f}" if units[0] == "B" else f"{value:.1f}".removesuffix(".0")
    return text + units[0]


def _select(nodes: list[dict[str, Any]], devices: tuple[str, ...]) -> list[dict[str, Any]] | str:
    if not devices:
        return nodes
    found: list[dict[str, Any]] = []
    flat = list(_flatten(nodes))
    for dev in devices:
        name = dev.removeprefix("/dev/mapper/").removeprefix("/dev/")
        match = next((n for n, _depth in flat if n["name"] == name), None)
        if match is None:
            return f"lsblk: {dev}: not a block device"
        found.append(match)
    return found


def _flatten(nodes: list[dict[str, Any]], depth: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    for node in nodes:
        yield node, depth
        yield from _flatten(node.get("children", []), depth + 1)


def lsblk(argv: list[str], state: DeviceState) -> int:
    if argv in (["-V"], ["--version"]):
        out(LSBLK_VERSION + "\n")
        return 0
    args = _lsblk_args(argv)
    if isinstance(args, str):
        return fail(args + "\nTry 'lsblk --help' for more information.", 1)
    nodes = _select(block_devices(state), args.devices)
    if isinstance(nodes, str):
        return fail(nodes, 32)
    out(_json(nodes, args) if args.json else _table(nodes, args))
    return 0


def _json_obj(node: dict[str, Any], args: _LsblkArgs) -> dict[str, Any]:
    obj = {c.lower(): _value(node, c, args) for c in args.columns}
    if node.get("children") and not args.list:
        obj["children"] = [_json_obj(child, args) for child in node["children"]]
    return obj


def _json(nodes: list[dict[str, Any]], args: _LsblkArgs) -> str:
    # util-linux indents by three and glues siblings as "},{"; any JSON reader takes it either way.
    items = [n for n, _d in _flatten(nodes)] if args.list else nodes
    text = json.dumps({"blockdevices": [_json_obj(n, args) for n in items]}, indent=3)
    return re.sub(r"\},\n\s*\{", "},{", text) + "\n"


def _table(nodes: list[dict[str, Any]], args: _LsblkArgs) -> str:
    rows: list[list[str]] = [list(args.columns)] if args.headings else []
    for node, prefix in _tree_rows(nodes, args.list):
        cells = []
        for c in args.columns:
            v = _value(node, c, args)
            if isinstance(v, list):
                v = "\n".join(p for p in v if p) if c == "MOUNTPOINTS" else ""
            text = "" if v is None else str(int(v)) if isinstance(v, bool) else str(v)
            cells.append(prefix + text if c == "NAME" else text.split("\n")[0])
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(args.columns))]
    right = {"SIZE", "RM", "RO", "MAJ:MIN"}
    lines = [" ".join(cell.rjust(w) if col in right and col != "MAJ:MIN" else cell.ljust(w)
                      for cell, w, col in zip(r, widths, args.columns, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def _tree_rows(nodes: list[dict[str, Any]], flat: bool) -> Iterator[tuple[dict[str, Any], str]]:
    """Each node with the tree drawing before its name ("├─", "└─", "│ ")."""
    if flat:
        for node, _depth in _flatten(nodes):
            yield node, ""
        return

    def walk(children: list[dict[str, Any]], lead: str) -> Iterator[tuple[dict[str, Any], str]]:
        for n, child in enumerate(children):
            last = n == len(children) - 1
            yield child, lead + ("\u2514\u2500" if last else "\u251c\u2500")
            yield from walk(child.get("children", []), lead + ("  " if last else "\u2502 "))

    for node in nodes:
        yield node, ""
        yield from walk(node.get("children", []), "")


# -- cryptsetup ----------------------------------------------------------------------------------------
def main(tool: str, argv: list[str], state: DeviceState) -> int:
    provision(state)
    return lsblk(argv, state) if tool == "lsblk" else cryptsetup(argv, state)


def cryptsetup(argv: list[str], state: DeviceState) -> int:
    if "--version" in argv or "-V" in argv:
        out(CRYPT_VERSION + "\n")
        return 0
    words = [a for a in argv if not a.startswith("-")]  # -v, --debug, -q ...: no effect on what is shown
    if not words:
        return fail("Usage: cryptsetup [OPTION...] <action> <action-specific>\nArgument <action> missing.", 1)
    action, rest = words[0], words[1:]
    prof = profile(state)
    encrypted = prof.data_encryption != "none"
    luks = prof.data_encryption.startswith("LUKS")
    if action in ("status", "isLuks", "luksDump", "luksUUID") and not rest:
        return fail(f"Command {action} requires device as argument.", 1)
    if action == "status":
        name = rest[0].removeprefix("/dev/mapper/")
        if not encrypted or name != MAPPER:
            return fail(f"/dev/mapper/{name} is inactive.", 4) if "/" not in name else fail(
                f"Device {rest[0]} not found", 4)
        out(_status_text(prof))
        return 0
    is_data = rest[0] in (f"/dev/{DATA_PART}", DATA_PART) if rest else False
    if action == "isLuks":
        if is_data and luks:
            return 0
        return fail(f"Device {rest[0]} is not a valid LUKS device.", 1) if "-v" in argv else 1
    if action in ("luksDump", "luksUUID"):
        if not (is_data and luks):
            return fail(f"Device {rest[0]} is not a valid LUKS device.", 1)
        out(_luks_uuid(state) + "\n" if action == "luksUUID" else _dump_text(state, prof))
        return 0
    if action in ("open", "luksOpen", "close", "luksClose", "remove", "luksFormat", "reencrypt", "erase",
                  "luksErase", "resize"):
        # Changing the data volume under a running device would lose its data: refused as when in use.
        return fail(f"Device {MAPPER if encrypted else DATA_PART} is still in use.", 5)
    return fail(f"Unknown action {action}.", 1)


def _status_text(prof: Profile) -> str:
    luks = prof.data_encryption.startswith("LUKS")
    return (f"/dev/mapper/{MAPPER} is active and is in use.\n"
            f"  type:    {prof.data_encryption}\n"
            f"  cipher:  {'aes-xts-plain64' if luks else 'aes-cbc-essiv:sha256'}\n"
            f"  keysize: {512 if luks else 256} bits\n"
            f"  key location: {'keyring' if prof.data_encryption == 'LUKS2' else 'dm-crypt'}\n"
            f"  device:  /dev/{DATA_PART}\n"
            "  sector size:  512\n"
            f"  offset:  {32768 if luks else 0} sectors\n"
            f"  size:    {(11_523_047_424 - (16 << 20)) // 512} sectors\n"
            "  mode:    read/write\n")


def _luks_uuid(state: DeviceState) -> str:
    import uuid

    return str(uuid.UUID(int=(state.config.seed * 2654435761) % (1 << 128), version=4))


def _dump_text(state: DeviceState, prof: Profile) -> str:
    version = prof.data_encryption[-1]
    return (f"LUKS header information\nVersion:       \t{version}\nEpoch:         \t3\n"
            "Metadata area: \t16384 [bytes]\nKeyslots area: \t16744448 [bytes]\n"
            f"UUID:          \t{_luks_uuid(state)}\nLabel:         \tdata\nSubsystem:     \t(no subsystem)\n"
            "Flags:       \t(no flags)\n\nData segments:\n  0: crypt\n\toffset: 16777216 [bytes]\n"
            "\tlength: (whole device)\n\tcipher: aes-xts-plain64\n\tsector: 512 [bytes]\n\n"
            "Keyslots:\n  0: luks2\n\tKey:        512 bits\n\tPriority:   normal\n\tCipher:     aes-xts-plain64\n"
            "\tCipher key: 512 bits\n\tPBKDF:      argon2id\n\tAF stripes: 4000\n\tArea offset:32768 [bytes]\n"
            "\tDigest ID:  0\nTokens:\nDigests:\n  0: pbkdf2\n\tHash:       sha256\n\tIterations: 102400\n")
