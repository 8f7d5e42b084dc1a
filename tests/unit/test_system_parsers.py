"""The System probe's parsers against recorded real files, and against garbage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siteline.core.device.health import assess_disk
from siteline.core.device.system import K8sNode, Mount, System
from siteline_system.mounts import merge_mounts, parse_df, parse_proc_mounts
from siteline_system.parsers import (
    parse_k8s,
    parse_loadavg,
    parse_microk8s_status,
    parse_os_release,
    parse_proc_uptime,
    parse_uname,
)
from siteline_system.probe import COMMAND, system_from_output

DATA = Path(__file__).parent.parent / "data" / "os-release"
DF = Path(__file__).parent.parent / "data" / "df"
K3S = Path(__file__).parent.parent / "data" / "k3s"
MARK = "@@siteline-section@@"


@pytest.mark.parametrize(
    ("name", "os_id", "pretty", "version_id"),
    [
        ("poky-kirkstone", "poky", "Poky (Yocto Project Reference Distro) 4.0.17 (kirkstone)", "4.0.17"),
        ("buildroot", "buildroot", "Buildroot 2023.02.9", "2023.02.9"),
        ("openwrt", "openwrt", "OpenWrt 23.05.2", "23.05.2"),
        ("debian-12", "debian", "Debian GNU/Linux 12 (bookworm)", "12"),
        ("alpine-3.19", "alpine", "Alpine Linux v3.19", "3.19.1"),
    ],
)
def test_os_release_from_real_files(name: str, os_id: str, pretty: str, version_id: str) -> None:
    parsed = parse_os_release((DATA / name).read_text())
    assert (parsed.id, parsed.pretty_name, parsed.version_id) == (os_id, pretty, version_id)


def test_os_release_keeps_vendor_keys() -> None:
    parsed = parse_os_release((DATA / "openwrt").read_text())
    assert parsed.build_id == "r23630-842932a63d"
    assert parsed.extra["OPENWRT_BOARD"] == "ramips/mt7621"


def test_os_release_with_unbalanced_quote_keeps_the_text() -> None:
    assert parse_os_release('PRETTY_NAME="Half quoted\n').pretty_name == "Half quoted"


def test_uname_proc_files() -> None:
    line = "Linux gw-01 5.15.92-yocto-standard #1 SMP PREEMPT Tue Feb 7 09:00:00 UTC 2023 aarch64 GNU/Linux"
    assert parse_uname(line) == ("5.15.92-yocto-standard", "aarch64")
    assert parse_uname("Darwin mac 23.1.0") == (None, None)
    assert parse_proc_uptime("12345.67 40000.00\n") == 12345.67
    assert parse_proc_uptime("-1 0") is None
    assert parse_loadavg("0.52 0.58 0.59 1/467 12345\n") == (0.52, 0.58, 0.59)
    assert parse_loadavg("garbage") is None


def test_system_from_sectioned_output_and_missing_parts() -> None:
    text = "\n".join(
        [
            "@@siteline-section@@os-release",
            (DATA / "buildroot").read_text(),
            "@@siteline-section@@hostname",
            "gw-07",
            "@@siteline-section@@uname",
            "Linux gw-07 6.1.44 #1 SMP armv7l GNU/Linux",
            "@@siteline-section@@uptime",
            "@@siteline-section@@loadavg",
            "0.10 0.20 0.30 1/80 999",
        ]
    )
    system = system_from_output(text)
    assert system.hostname == "gw-07"
    assert system.os.id == "buildroot"
    assert system.kernel == "6.1.44"
    assert system.machine == "armv7l"
    assert system.uptime_seconds is None
    assert system.problems == ("could not read uptime", "could not read df", "could not read mounts")


def test_probe_command_is_one_round_trip() -> None:
    assert "\n" not in COMMAND
    assert len(COMMAND) <= 800  # a serial console line (BusyBox ash cuts at 1023, the transport frames 1000)


@given(st.text(max_size=2000))
def test_parsers_never_raise_on_garbage(text: str) -> None:
    parse_os_release(text)
    parse_proc_uptime(text)
    parse_loadavg(text)
    parse_uname(text)
    system_from_output(text)
    merge_mounts(parse_df(text), parse_proc_mounts(text))
    parse_microk8s_status(text)
    for tool in ("k3s", "microk8s", ""):
        node = parse_k8s(tool, text, text, "gw-01")
        assert node is None or isinstance(node, K8sNode)


def _mounts(name: str) -> dict[str, Mount]:
    df, proc = (DF / f"{name}.df").read_text(), (DF / f"{name}.mounts").read_text()
    return {m.mountpoint: m for m in merge_mounts(parse_df(df), parse_proc_mounts(proc))}


def test_gnu_df_with_types_in_bytes_and_yocto_mounts() -> None:
    mounts = _mounts("gnu-yocto-PTB1")
    assert list(mounts) == ["/", "/run", "/var/volatile", "/boot", "/data", "/etc"]  # no proc, sysfs, devtmpfs
    root, data = mounts["/"], mounts["/data"]
    assert (root.fs_type, root.read_only, root.source, root.size) == ("ext4", True, "/dev/root", 1035952128)
    assert (data.used, data.available, data.use_percent, data.read_only) == (10453491712, 453353472, 96.0, False)
    assert mounts["/etc"].fs_type == "overlay"  # its lower layer is /etc itself: the overlay stays


def test_gnu_df_pk_on_a_k3s_node_hides_containers_and_runtime_tmpfs() -> None:
    mounts = _mounts("debian-k3s-Pk")
    assert list(mounts) == ["/run", "/", "/boot/firmware", "/mnt/usb disk"]  # \040 in /proc/mounts is a space
    root = mounts["/"]
    assert (root.size, root.used, root.available) == (29303932 * 1024, 26114224 * 1024, 1972140 * 1024)
    assert (root.use_percent, root.read_only) == (93.0, False)
    line = assess_disk(system_from_output(f"{MARK}df\n" + (DF / "debian-k3s-Pk.df").read_text()))
    assert (line.tone, line.headline) == ("warn", "disk / 93 % full")


def test_busybox_df_openwrt_overlay_squashfs_and_wrapped_source() -> None:
    mounts = _mounts("busybox-openwrt-P")
    assert list(mounts) == ["/rom", "/tmp", "/overlay", "/", "/srv/logs"]
    assert mounts["/rom"].read_only is True
    assert mounts["/rom"].fs_type == "squashfs"
    assert mounts["/"].fs_type == "overlay"
    assert mounts["/"].read_only is False
    logs = mounts["/srv/logs"]
    assert (logs.source, logs.size, logs.use_percent) == ("/dev/mapper/very-long-volume-group-name-logs",
                                                          507904 * 1024, 93.0)


def test_df_without_proc_mounts_and_unknowns_stay_none() -> None:
    only_df = merge_mounts(parse_df((DF / "busybox-openwrt-P.df").read_text()), [])
    assert {m.mountpoint for m in only_df} == {"/rom", "/overlay", "/", "/srv/logs", "/tmp"}
    assert all(m.read_only is None and m.fs_type is None for m in only_df)
    only_mounts = merge_mounts([], parse_proc_mounts((DF / "gnu-yocto-PTB1.mounts").read_text()))
    assert all(m.size is None and m.use_percent is None for m in only_mounts)
    assert only_mounts[0].read_only is True


def test_system_output_carries_mounts_root_ro_and_k8s() -> None:
    text = "\n".join([
        f"{MARK}hostname", "gw-01",
        f"{MARK}df", (DF / "gnu-yocto-PTB1.df").read_text(),
        f"{MARK}mounts", (DF / "gnu-yocto-PTB1.mounts").read_text(),
        f"{MARK}k8s", "k3s", (K3S / "nodes-ready.json").read_text(),
        f"{MARK}k8s-status",
    ])
    system = system_from_output(text)
    assert system.root_read_only is True
    assert len(system.mounts or ()) == 6
    assert system.k8s == K8sNode("k3s", "gw-01", True, None, "v1.28.5+k3s1")
    bare = system_from_output(f"{MARK}hostname\ngw-01\n{MARK}k8s\n\n")
    assert (bare.k8s, bare.root_read_only, bare.mounts) == (None, None, None)
    assert "could not read df" in bare.problems


def test_k3s_node_states() -> None:
    lost = parse_k8s("k3s", (K3S / "nodes-notready.json").read_text(), "", "gw-01.site.example")
    assert lost == K8sNode("k3s", "gw-01", False, "NodeStatusUnknown: Kubelet stopped posting node status.",
                           "v1.28.5+k3s1")
    stranger = parse_k8s("/usr/local/bin/k3s", (K3S / "nodes-notready.json").read_text(), "", "gw-09")
    assert stranger is not None
    assert stranger.ready is None
    assert "none is named gw-09" in (stranger.reason or "")
    table = parse_k8s("k3s", (K3S / "get-node.txt").read_text(), "", "gw-01")
    assert table == K8sNode("k3s", "gw-01", True, "cordoned: no new pods are scheduled here (SchedulingDisabled)",
                            "v1.28.5+k3s1")
    denied = parse_k8s("k3s", (K3S / "k3s-permission-denied.txt").read_text(), "", "gw-01")
    assert denied is not None
    assert denied.ready is None
    assert "permission denied" in (denied.reason or "")
    assert parse_k8s("", "", "", "gw-01") is None


def test_microk8s_status() -> None:
    assert parse_microk8s_status((K3S / "microk8s-status-running.yaml").read_text()) == (True, None)
    stopped = parse_k8s("microk8s", "", (K3S / "microk8s-status-stopped.yaml").read_text(), "edge-3")
    assert stopped is not None
    assert stopped.ready is False
    assert stopped.reason == "microk8s is not running. Use microk8s inspect for a deeper inspection."
    running = parse_k8s("microk8s", (K3S / "nodes-ready.json").read_text(),
                        (K3S / "microk8s-status-running.yaml").read_text(), "gw-01")
    assert running is not None
    assert running.distribution == "microk8s"
    assert running.ready is True


@given(st.lists(st.tuples(st.text(max_size=30), st.integers(-5, 2**70), st.integers(-5, 2**70),
                          st.sampled_from(["5%", "-", "x", "100%"]), st.text(max_size=30)), max_size=8))
def test_df_rows_of_any_shape(rows: list[tuple[str, int, int, str, str]]) -> None:
    text = "Filesystem 1024-blocks Used Available Capacity Mounted on\n" + "\n".join(
        f"{a} {b} {c} {c} {d} /{e}" for a, b, c, d, e in rows)
    for row in parse_df(text):
        assert row.size >= 0
        assert row.available >= 0


def test_probe_command_on_the_simulated_device(tmp_path: Path) -> None:
    """The one round trip through the simulator's real /bin/sh: df agrees with /proc/mounts, k3s only on demand."""
    from siteline.simulator.shell import run_command
    from siteline.simulator.state import DeviceState
    from siteline.simulator.tools.system import set_disk_fill, set_k3s

    device = DeviceState.open(tmp_path / "dev", name="gw-sys", password="pw")

    def probe() -> System:
        _code, out, _ = asyncio.run(run_command(device, COMMAND, timeout=30))
        return system_from_output(out.decode())

    system = probe()
    mounts = {m.mountpoint: m for m in system.mounts or ()}
    assert list(mounts) == ["/", "/run", "/var/volatile", "/tmp", "/boot", "/data", "/etc"]
    assert system.root_read_only is True
    assert mounts["/"].fs_type == "ext4"
    assert (mounts["/data"].source, mounts["/data"].read_only) == ("/dev/mapper/data", False)
    assert all(m.size and m.use_percent is not None for m in mounts.values())
    assert system.k8s is None
    assert system.problems == ()
    set_k3s(device, True, ready=False)
    set_disk_fill(device, 95)
    system = probe()
    assert system.k8s == K8sNode("k3s", "gw-sys", False, "NodeStatusUnknown: Kubelet stopped posting node status.",
                                 "v1.28.5+k3s1")
    assert assess_disk(system).headline == "disk /data 95 % full"
    set_k3s(device, False)
    assert probe().k8s is None


def test_k8s_errors_say_the_telling_line() -> None:
    denied = parse_k8s("microk8s", (K3S / "microk8s-no-permission.txt").read_text(), "", "gw-01")
    assert denied is not None
    assert denied.reason == "the node state could not be read: Insufficient permissions to access MicroK8s."
    agent = parse_k8s("k3s", (K3S / "kubectl-no-server.txt").read_text(), "", "gw-01")
    assert agent is not None
    assert agent.reason is not None
    assert "no cluster configuration on this device" in agent.reason


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.sampled_from(["Ready", "True", "List"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["kind", "items", "metadata", "name", "status", "conditions", "type", "spec", "nodeInfo",
                         "kubeletVersion", "reason", "message", "unschedulable"]), inner, max_size=5),
    max_leaves=30,
)


@given(_JSON, st.text(max_size=20))
def test_node_json_of_any_shape(doc: object, hostname: str) -> None:
    node = parse_k8s("k3s", json.dumps(doc), "", hostname)
    assert isinstance(node, K8sNode)
    assert node.ready in (True, False, None)
