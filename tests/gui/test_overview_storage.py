"""The Overview's Storage section: root read-only or not, each mount with a use bar, its words, free space, mode."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QLabel, QProgressBar

from siteline.core.device.system import K8sNode, Mount, OsRelease, System
from siteline.ui.overview_tab import UNKNOWN, OverviewTab, cluster_text, storage_row
from siteline.ui.theme import STATE_COLOURS, build_palette

GIB = 1 << 30


def _system(*mounts: Mount, root_ro: bool | None = True, k8s: K8sNode | None = None) -> System:
    return System("gw-01", OsRelease(pretty_name="Poky 4.0"), "6.1.55", "aarch64", None, 60.0, None,
                  mounts=mounts, root_read_only=root_ro, k8s=k8s)


ROOT = Mount("/", "ext4", 1 * GIB, GIB * 6 // 10, GIB * 3 // 10, 64.0, True, "/dev/root")
DATA = Mount("/data", "ext4", 10 * GIB, GIB * 93 // 10, GIB * 4 // 10, 96.0, False, "/dev/mapper/data")
IMAGE = Mount("/rom", "squashfs", 4 << 20, 4 << 20, 0, 100.0, True, "/dev/root")
BLANK = Mount("/mnt/x", None, None, None, None, None, None, None)


@pytest.fixture
def tab(qtbot: Any) -> OverviewTab:
    QApplication.instance().setPalette(build_palette("light"))  # type: ignore[union-attr]
    widget = OverviewTab()
    qtbot.addWidget(widget)
    widget.resize(1000, 900)
    widget.show()
    return widget


def test_rows_say_use_in_words_and_mark_nearly_full() -> None:
    assert storage_row(ROOT).used == "64 %"
    assert storage_row(ROOT).mode == "read-only"
    full = storage_row(DATA)
    assert (full.used, full.tone, full.free, full.size) == ("96 % \u25b2 nearly full", "warn", "409.6 MiB", "10.0 GiB")
    assert storage_row(Mount("/d", "ext4", GIB, GIB, 0, 100.0, False, "x")).used == "100 % \u2716 full"
    assert storage_row(IMAGE).used == "100 % (image)"  # squashfs is full by design: not a warning
    assert storage_row(IMAGE).tone == "good"
    blank = storage_row(BLANK)
    assert (blank.used, blank.size, blank.free, blank.mode, blank.fs_type) == (UNKNOWN,) * 5  # unknown is not 0


def test_storage_section_shows_each_mount(tab: OverviewTab) -> None:
    tab.show_system(_system(ROOT, DATA, IMAGE, BLANK))
    box = tab.storage
    assert box.root_mode.text() == "Root filesystem is mounted read-only"
    assert box.empty.isHidden()
    bars = box.findChildren(QProgressBar)
    assert [b.value() for b in bars] == [64, 96, 100, 0]
    words = {lbl.objectName(): lbl.text() for lbl in box.findChildren(QLabel) if lbl.objectName().startswith("stor")}
    assert words["storage_2_0"] == "/data"
    assert words["storage_2_4"] == "96 % \u25b2 nearly full"  # the mark and words, not only the colour
    assert words["storage_2_6"] == "read-write"
    warn = STATE_COLOURS["light"]["retrying"]
    assert warn in bars[1].styleSheet()
    assert warn not in bars[0].styleSheet()
    assert "/data" in bars[1].accessibleName()
    assert "409.6 MiB free" in bars[1].accessibleName()


def test_root_mode_unknown_and_no_mounts_then_clear(tab: OverviewTab) -> None:
    tab.show_system(_system(root_ro=None))
    assert tab.storage.root_mode.text() == "Root filesystem: read-only or read-write not known"
    assert not tab.storage.empty.isHidden()
    tab.show_system(System("gw-01", OsRelease(), None, None, None, None, None))  # an older probe: no mounts at all
    assert "did not report its mounts" in tab.storage.empty.text()
    tab.show_system(_system(DATA, root_ro=False))
    assert tab.storage.root_mode.text() == "Root filesystem is mounted read-write"
    tab.clear()
    QApplication.processEvents()
    assert tab.storage.root_mode.text() == "Root filesystem: not read yet"
    assert tab.storage.rows == []


def test_cluster_node_line(tab: OverviewTab) -> None:
    lost = K8sNode("k3s", "gw-01", False, "NodeStatusUnknown: Kubelet stopped posting node status.", "v1.28.5+k3s1")
    tab.show_system(_system(ROOT, k8s=lost))
    assert tab.value("cluster") == ("k3s node gw-01: \u2716 NOT ready (v1.28.5+k3s1) — NodeStatusUnknown: "
                                    "Kubelet stopped posting node status.")
    assert cluster_text(_system(ROOT, k8s=K8sNode("microk8s", "edge", True, None, "v1.28.3"))) == \
        "microk8s node edge: \u2714 Ready (v1.28.3)"
    assert cluster_text(_system(ROOT)) == "none (no k3s or MicroK8s)"
    assert cluster_text(System("gw", OsRelease(), None, None, None, None, None)) == UNKNOWN
    assert "state not known" in cluster_text(_system(ROOT, k8s=K8sNode("k3s", None, None, "permission denied")))


def test_disk_health_line_follows_the_mounts(tab: OverviewTab) -> None:
    system = _system(ROOT, DATA)
    tab.show_health({"system": system})
    disk = next(line for line in tab.health_lines() if line.area == "disk")
    assert (disk.tone, disk.headline) == ("warn", "disk /data 96 % full")
