"""The System snapshot: who the device is, how long it has been up, its mounts and its cluster node."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OsRelease:
    id: str = ""
    name: str = ""
    pretty_name: str = ""
    version_id: str = ""
    version: str = ""
    build_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mount:
    """One mounted filesystem as ``df -P -k`` and /proc/mounts tell it; sizes in bytes, None when unknown."""

    mountpoint: str
    fs_type: str | None
    size: int | None
    used: int | None
    available: int | None
    use_percent: float | None  # df's Capacity: used / (used + available), rounded up
    read_only: bool | None
    source: str | None


@dataclass(frozen=True)
class K8sNode:
    """This device's node in a k3s / MicroK8s cluster, when it runs one."""

    distribution: str  # "k3s", "microk8s" or "kubernetes" (a plain kubectl)
    node: str | None = None  # the node's name
    ready: bool | None = None  # the Ready condition; None when it could not be read
    reason: str | None = None  # why not ready (the condition's reason and message), or why unknown
    version: str | None = None  # the kubelet's version, "v1.28.5+k3s1"


@dataclass(frozen=True)
class System:
    hostname: str | None
    os: OsRelease
    kernel: str | None  # `uname -r`
    machine: str | None  # `uname -m`
    uname: str | None  # the whole `uname -a` line
    uptime_seconds: float | None
    load: tuple[float, float, float] | None
    problems: tuple[str, ...] = ()  # what could not be read, in words
    # The real filesystems, pseudo ones (proc, sysfs, cgroup...) left out; None: not reported (unknown, not "none").
    mounts: tuple[Mount, ...] | None = None
    root_read_only: bool | None = None
    k8s: K8sNode | None = None  # None: no k3s / MicroK8s / kubectl on the device
