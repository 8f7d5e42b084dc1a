"""Mounts: ``df -P`` (GNU coreutils or BusyBox) for the figures, /proc/mounts for the type and ro/rw.

Both parsers take garbage and never raise. :func:`merge_mounts` joins the two by mount point and leaves
out what a technician does not mean by "the disk": kernel pseudo filesystems, small runtime tmpfs, the
lower layer hidden under an overlay, and the hundreds of container and snap mounts a k3s node or Ubuntu
Core device carries.
"""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from siteline.api import Mount

MAX_INPUT = 256 * 1024

# Kernel interfaces and helpers, never storage.
PSEUDO_TYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "pstore", "debugfs", "tracefs",
    "configfs", "bpf", "mqueue", "hugetlbfs", "fusectl", "autofs", "binfmt_misc", "efivarfs", "rpc_pipefs",
    "nsfs", "selinuxfs", "rootfs", "ramfs", "nfsd", "fuse.gvfsd-fuse", "fuse.portal", "fuse.lxcfs", "usbfs",
})
# Filesystem images: read-only whatever the options say, and always "100 % full".
IMAGE_TYPES = frozenset({"squashfs", "erofs", "iso9660", "cramfs", "romfs"})
# tmpfs worth watching: a full /run or /var/volatile (Yocto's log tmpfs) stops services.
KEPT_TMPFS = frozenset({"/", "/run", "/tmp", "/var/volatile", "/var/log", "/var/tmp"})
# Containers, snaps and kernel trees mount here by the hundred.
HIDDEN_PREFIXES = (
    "/proc/", "/sys/", "/dev/", "/run/user/", "/run/k3s/", "/run/containerd/", "/run/docker/", "/run/netns/",
    "/run/snapd/", "/var/lib/kubelet/", "/var/lib/rancher/k3s/agent/containerd/", "/var/lib/docker/",
    "/var/lib/containerd/", "/var/snap/microk8s/common/", "/var/lib/snapd/", "/snap/",
)
_TMPFS_SOURCES = frozenset({"tmpfs", "devtmpfs", "udev", "none", "shm", "run", "cgroup", "cgroup2"})

_HEADER_BLOCKS = re.compile(r"(\d+)([kKMG]?)B?-blocks")
_UNITS = {"": 1, "k": 1024, "K": 1024, "M": 1024**2, "G": 1024**3}
_NUMBERS = re.compile(r"^(?P<size>\d+)\s+(?P<used>\d+)\s+(?P<avail>-?\d+)\s+(?P<cap>\d+%|-)\s+(?P<point>/.*)$")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class DfRow:
    source: str
    fs_type: str | None  # only with `df -T` (GNU)
    size: int  # bytes
    used: int
    available: int
    use_percent: float | None
    mountpoint: str


@dataclass(frozen=True)
class MountEntry:
    source: str
    mountpoint: str
    fs_type: str
    options: tuple[str, ...]

    @property
    def read_only(self) -> bool | None:
        if self.fs_type in IMAGE_TYPES or "ro" in self.options:
            return True
        return False if "rw" in self.options else None


def _block_size(header: str) -> int:
    m = _HEADER_BLOCKS.search(header)
    if not m:
        return 1024  # df -k, and BusyBox's default
    return int(m.group(1)) * _UNITS.get(m.group(2), 1) if len(m.group(1)) < 10 else 1024


def _row(source: str, rest: str, typed: bool, block: int) -> DfRow | None:
    fs_type = None
    if typed:
        fs_type, _, rest = rest.partition(" ")
        rest = rest.strip()
    m = _NUMBERS.match(rest)
    if not m or not source:
        return None
    size, used, avail = (int(m.group(k)) * block for k in ("size", "used", "avail"))
    cap = m.group("cap")
    pct = float(cap[:-1]) if cap != "-" and size > 0 else None
    return DfRow(source, fs_type or None, size, used, max(0, avail), pct, m.group("point"))


def parse_df(text: str) -> list[DfRow]:
    """``df -P -k`` (or ``-P -T -B1``): one row per filesystem; BusyBox may put a long source on its own line."""
    lines = text[:MAX_INPUT].splitlines()
    header = next((ln for ln in lines if ln.startswith("Filesystem")), "")
    typed = " Type " in header
    block = _block_size(header)
    rows: list[DfRow] = []
    pending = ""
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("Filesystem") or line.startswith("df:"):
            pending = ""
            continue
        parts = line.split(None, 1)
        if len(parts) == 1:
            pending = parts[0]  # wrapped: the figures follow on the next line
            continue
        row = _row(pending, line, typed, block) if pending else None
        if row is None:
            row = _row(parts[0], parts[1].strip(), typed, block)
        pending = ""
        if row is not None:
            rows.append(row)
    return rows


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)  # the kernel writes a space as \040


def parse_proc_mounts(text: str) -> list[MountEntry]:
    """/proc/mounts: ``source mountpoint type options 0 0`` per line; malformed lines are skipped."""
    entries: list[MountEntry] = []
    for line in text[:MAX_INPUT].splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[1].startswith("/"):
            continue
        entries.append(MountEntry(_unescape(fields[0]), _unescape(fields[1]), fields[2],
                                  tuple(fields[3].split(","))))
    return entries


def _lower_dirs(entries: list[MountEntry]) -> set[str]:
    lowers: set[str] = set()
    for e in entries:
        if e.fs_type == "overlay":
            for opt in e.options:
                if opt.startswith("lowerdir="):
                    lowers.update(p.rstrip("/") or "/" for p in opt[len("lowerdir="):].split(":") if p)
    return lowers


def is_hidden(point: str, fs_type: str | None, source: str | None, lowers: AbstractSet[str] = frozenset()) -> bool:
    """Not storage a technician means: pseudo filesystems, runtime tmpfs, container mounts, overlay lower layers."""
    if point == "/":
        return False
    if fs_type in PSEUDO_TYPES or point in lowers or point.startswith(HIDDEN_PREFIXES) or point in ("/dev", "/proc"):
        return True
    tmp_like = fs_type == "tmpfs" or (fs_type is None and source in _TMPFS_SOURCES)
    return tmp_like and point not in KEPT_TMPFS


def merge_mounts(df_rows: list[DfRow], entries: list[MountEntry]) -> tuple[Mount, ...]:
    """One Mount per visible mount point: /proc/mounts' order and kind, df's figures; the last mount on a point
    wins, as it is the one a process sees."""
    by_point: dict[str, MountEntry] = {}
    for e in entries:
        by_point[e.mountpoint] = e
    figures = {r.mountpoint: r for r in df_rows}
    lowers = _lower_dirs(list(by_point.values()))
    points = list(by_point) + [p for p in figures if p not in by_point]
    found: list[Mount] = []
    for point in points:
        entry, row = by_point.get(point), figures.get(point)
        fs_type = entry.fs_type if entry else row.fs_type if row else None
        source = entry.source if entry else row.source if row else None
        if is_hidden(point, fs_type, source, lowers if entry is None or entry.fs_type != "overlay" else set()):
            continue
        read_only = entry.read_only if entry else (True if fs_type in IMAGE_TYPES else None)
        found.append(Mount(
            mountpoint=point, fs_type=fs_type,
            size=row.size if row else None, used=row.used if row else None,
            available=row.available if row else None, use_percent=row.use_percent if row else None,
            read_only=read_only, source=source,
        ))
    return tuple(found)


def root_read_only(mounts: tuple[Mount, ...]) -> bool | None:
    return next((m.read_only for m in mounts if m.mountpoint == "/"), None)
