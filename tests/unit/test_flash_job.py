"""Flash jobs on disk and the pure parts of the state machine: round trips, resume points, recovery words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siteline.core.device.slots import BootEnv, Slot, Slots
from siteline.core.flash.boot import recovery
from siteline.core.flash.job import FINAL, FlashJob, FlashOptions, HealthCheck
from siteline.core.flash.machine import prepare_flash, prepare_rollback
from siteline.core.flash.reading import other_slot, rebooted_since
from siteline.core.flash.store import JobStore


def _job(**changes: object) -> FlashJob:
    options = FlashOptions(reboot=False, allow_metered=True, boot_timeout=12.5, remote_dir="/data",
                           health=HealthCheck(units=("edge-agent.service", "sshd.service"), command="true", settle=1))
    fields: dict[str, object] = {"device": "gw-01", "site": "north", "target": "ssh://root@10.0.0.5",
                                 "image": "/i.raucb", "signature": "/i.raucb.sig", "image_sha256": "ab" * 32,
                                 "image_format": "raucb", "image_version": "2025.01.0", "image_size": 1234,
                                 "options": options}
    return FlashJob.new(**{**fields, **changes})


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    job = _job()
    job.step("transfer").state = "running"
    job.step("transfer").done = 600
    job.evidence.append("booted B, 2 attempts left")
    job.boot_id, job.key_fingerprint = "start:1700000000.0", "SHA256:abc"
    store = JobStore(tmp_path / "jobs")
    store.save(job)
    again = store.load(job.id)
    assert again == job
    assert again.options.health.units == ("edge-agent.service", "sshd.service")
    assert store.unfinished("gw-01") == [again]
    assert store.unfinished("other") == []


def test_a_record_from_before_boot_id_and_fingerprint_still_loads() -> None:
    data = json.loads(_job().to_json())
    del data["boot_id"], data["key_fingerprint"]
    job = FlashJob.from_json(json.dumps(data).encode())
    assert job.boot_id is None
    assert job.key_fingerprint == ""


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"format": 1}', b"\xff\xfe", b'{"format": 99, "id": "x"}'])
def test_garbage_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="job record"):
        FlashJob.from_json(raw)


def test_store_skips_unreadable_files(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.save(_job())
    (tmp_path / "broken.json").write_text("{not json")
    assert len(store.jobs()) == 1


def test_cancellable_only_before_the_device_changes() -> None:
    job = _job()
    assert job.cancellable
    job.step("preflight").state = "done"
    job.step("transfer").state = "running"
    assert job.cancellable
    job.step("transfer").state = "done"
    assert not job.cancellable  # install is next: stopping now would leave a half-written slot
    job.status = "failed"
    assert not job.cancellable
    assert job.finished
    assert "running" not in FINAL


def test_resume_point_is_the_rollback_after_a_failed_health_check() -> None:
    job = _job()
    for step in job.steps:
        step.state = "done"
    job.step("health").state = "failed"
    job.step("mark-good").state = "skipped"
    assert job.current is not None
    assert job.current.name == "health"  # final view: the step that failed
    job.step("rollback")
    assert job.current.name == "rollback"


def test_rollback_job_steps() -> None:
    job = prepare_rollback(device="gw", site="s", target="t", options=FlashOptions())
    assert job.kind == "rollback"
    assert [s.name for s in job.steps] == ["preflight", "rollback", "reboot", "health", "mark-good"]


def test_prepare_flash_of_an_unreadable_file_leaves_the_refusal_to_preflight(tmp_path: Path) -> None:
    image = tmp_path / "empty.raucb"
    image.write_bytes(b"")
    job = prepare_flash(image, None, device="gw", site="s", target="t", options=FlashOptions())
    assert (job.image_format, job.image_size, job.signature) == ("", 0, "")
    assert job.status == "running"


def test_prepare_flash_reads_the_image(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(4096))
    (tmp_path / "disk.img.sig").write_bytes(b"sig")
    job = prepare_flash(image, None, device="gw", site="s", target="t", options=FlashOptions())
    assert (job.image_format, job.image_size, job.signature) == ("raw", 4096, str(tmp_path / "disk.img.sig"))
    assert len(job.image_sha256) == 64


@pytest.mark.parametrize(("before", "now", "expected"), [
    ("id:aaaa", "id:aaaa", False), ("id:aaaa", "id:bbbb", True), ("start:100.0", "start:100.4", False),
    ("start:100.0", "start:160.0", True), ("id:a", "start:1.0", None), (None, "id:a", None),
    ("start:x", "start:1", None),
])
def test_rebooted_since(before: str | None, now: str | None, expected: bool | None) -> None:
    assert rebooted_since(before, now) is expected


def _slots() -> Slots:
    env = BootEnv("uboot", {"BOOT_ORDER": "A B"}, order=("A", "B"), attempts_left={"A": 0, "B": 0})
    return Slots("rauc+uboot", slots=(Slot("rootfs.0", "A", "rootfs", booted=True, attempts_left=0),
                                      Slot("rootfs.1", "B", "rootfs", attempts_left=0)), env=env)


def test_recovery_names_the_exact_lines() -> None:
    text = recovery(_slots(), "B")
    assert "fw_setenv BOOT_A_LEFT 3 && fw_setenv BOOT_B_LEFT 3 && fw_setenv BOOT_ORDER 'B A'" in text
    assert "setenv BOOT_A_LEFT 3; setenv BOOT_B_LEFT 3; setenv BOOT_ORDER 'B A'; saveenv; reset" in text
    assert "fw_setenv BOOT_ORDER 'A B'" in recovery(None, None)


def test_other_slot() -> None:
    slots = _slots()
    booted = slots.booted_slot
    assert booted is not None
    other = other_slot(slots, booted)
    assert other is not None
    assert other.bootname == "B"


def test_recovery_for_grub_uses_grub_editenv() -> None:
    env = BootEnv("grub", {"ORDER": "A B"}, order=("A", "B"))
    slots = Slots("grub", slots=(Slot("A", "A", booted=True), Slot("B", "B")), env=env)
    assert "grub-editenv /boot/grub/grubenv set ORDER='A B' A_OK=1 A_TRY=0 B_OK=1 B_TRY=0" in recovery(slots, "A")
