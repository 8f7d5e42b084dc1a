"""The flash gate: each refusal in order, overrides only with the exact phrase, downgrade rules.

Real openssl RSA keys and signatures; tiny .img.gz and .swu images built with gzip and cpio.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest

from siteline.core.images.gate import DeviceFacts, GateResult, Overrides, bootloader_phrase, check_before_flash
from siteline.core.images.trusted_keys import TrustedKeys
from tests.peers import find_tool, require_tool

DEVICE = DeviceFacts(compatible="board-x", installed_version="1.9", name="edge-7")


def _openssl(*args: str | Path) -> None:
    done = subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def _sign(key: Path, image: Path) -> Path:
    sig = image.with_name(image.name + ".sig")
    _openssl("dgst", "-sha256", "-sign", key, "-out", sig, image)
    return sig


def _swu(d: Path, name: str, version: str, hw: str = "board-x", kind: str = "raw") -> Path:
    src = d / f"src-{name}"
    src.mkdir()
    (src / "payload.bin").write_bytes(os.urandom(3000))
    (src / "sw-description").write_text(
        f'software = {{ version = "{version}"; hardware-compatibility: [ "{hw}" ]; '
        f'images: ( {{ filename = "payload.bin"; device = "/dev/mmcblk0p3"; type = "{kind}"; }} ); }};')
    cpio = find_tool("cpio")
    cmd = [cpio, "-o", "-H", "crc"] if cpio else [require_tool("busybox"), "cpio", "-o", "-H", "newc"]
    out = d / name
    with out.open("wb") as f:
        subprocess.run(cmd, input=b"sw-description\npayload.bin\n", cwd=src, stdout=f, check=True,
                       stderr=subprocess.DEVNULL, timeout=30)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gate")
    for name in ("good", "other"):
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", d / f"{name}.key")
        _openssl("pkey", "-in", d / f"{name}.key", "-pubout", "-out", d / f"{name}.pub")
    store = d / "keys"
    TrustedKeys(store).add((d / "good.pub").read_bytes(), "ops-2026")
    raw = d / "disk.img.gz"
    raw.write_bytes(gzip.compress(os.urandom(4096) + bytes(8192)))
    files = {"dir": d, "store": store, "raw": raw, "new": _swu(d, "new.swu", "1.10"),
             "old": _swu(d, "old.swu", "1.8"), "wrong": _swu(d, "wrong.swu", "2.0", hw="board-y"),
             "boot": _swu(d, "boot.swu", "2.0", kind="bootloader")}
    for key in ("raw", "new", "old", "wrong", "boot"):
        _sign(d / "good.key", files[key])
    return files


def _check(env: dict[str, Path], image: str, device: DeviceFacts = DEVICE, overrides: Overrides | None = None,
           sig: Path | None = None) -> GateResult:
    return check_before_flash(env[image], sig, device, overrides or Overrides(), TrustedKeys(env["store"]))


def test_good_image_passes_with_audit_detail(env: dict[str, Path]) -> None:
    result = _check(env, "new")  # 1.10 > 1.9: numbers compare as numbers
    assert result.ok, result.reasons
    assert result.verdict is not None
    assert result.verdict.key_name == "ops-2026"
    assert result.info is not None
    assert result.info.version == "1.10"
    detail = result.audit_detail
    assert detail["sha256"] == result.info.sha256
    assert detail["key_fingerprint"].startswith("SHA256:")
    assert detail["overrides"] == []
    assert not any(".key" in str(v) for v in detail.values())


def test_unsigned_is_the_first_reason(env: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "copy.swu"
    image.write_bytes(env["wrong"].read_bytes())
    result = check_before_flash(image, None, DEVICE, Overrides(), TrustedKeys(env["store"]))
    assert not result.ok
    assert result.reasons[0].startswith("unsigned: no .sig next to the image")
    assert "openssl dgst -sha256 -sign" in result.reasons[0]
    assert any("not for this device" in r for r in result.reasons[1:])


def test_bad_signature_and_unknown_key(env: dict[str, Path], tmp_path: Path) -> None:
    tampered = tmp_path / "t.swu"
    tampered.write_bytes(env["new"].read_bytes() + b"x")
    result = check_before_flash(tampered, env["new"].with_name("new.swu.sig"), DEVICE, Overrides(),
                                TrustedKeys(env["store"]))
    assert not result.ok
    assert result.reasons[0].startswith("signature refused")
    assert "does not match" in result.reasons[0]
    stranger = tmp_path / "s.swu"
    stranger.write_bytes(env["new"].read_bytes())
    sig = _sign(env["dir"] / "other.key", stranger)
    result = check_before_flash(stranger, sig, DEVICE, Overrides(), TrustedKeys(env["store"]))
    assert not result.ok
    assert "signed by no trusted key" in result.reasons[0]
    assert result.audit_detail["key_fingerprint"] == ""


def test_unreadable_image(env: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    sig = tmp_path / "empty.img.sig"
    sig.write_bytes(b"\0" * 256)
    result = check_before_flash(empty, None, DEVICE, Overrides(), TrustedKeys(env["store"]))
    assert not result.ok
    assert result.reasons[0].startswith("signature refused")
    assert result.reasons[1].startswith("unreadable image")
    assert result.info is None


def test_compatible_mismatch_and_unknown_device(env: dict[str, Path]) -> None:
    result = _check(env, "wrong")
    assert not result.ok
    assert result.reasons[0].startswith("not for this device")
    unknown = _check(env, "new", DeviceFacts(compatible=None, installed_version="1.0"))
    assert not unknown.ok
    assert "read the device's slots first" in unknown.reasons[0]
    raw = _check(env, "raw")  # a raw image states no compatible: it cannot be matched
    assert not raw.ok
    assert "no compatible" in raw.reasons[0]


def test_a_raw_image_needs_the_device_compatible_typed(env: dict[str, Path]) -> None:
    wrong = _check(env, "raw", overrides=Overrides(raw_compatible="board-y"))
    assert not wrong.ok
    assert "does not match" in wrong.reasons[0]
    confirmed = _check(env, "raw", overrides=Overrides(raw_compatible=" board-x "))
    assert confirmed.ok, confirmed.reasons
    assert {"raw_compatible": " board-x "} in confirmed.audit_detail["overrides"]
    typed_for_bundle = _check(env, "wrong", overrides=Overrides(raw_compatible="board-x"))
    assert not typed_for_bundle.ok  # only an image that declares nothing can be confirmed by typing


def test_bootloader_needs_the_exact_phrase(env: dict[str, Path]) -> None:
    result = _check(env, "boot")
    assert not result.ok
    assert "rewrites the bootloader" in result.reasons[0]
    assert bootloader_phrase(DEVICE) == "I understand this rewrites the bootloader of edge-7"
    assert bootloader_phrase(DEVICE) in result.reasons[0]
    for typed in ("yes", "i understand this rewrites the bootloader of edge-7",
                  "I understand this rewrites the bootloader of edge-7 "):
        wrong = _check(env, "boot", overrides=Overrides(bootloader=typed))
        assert not wrong.ok
        assert "does not match" in wrong.reasons[0]
    ok = _check(env, "boot", overrides=Overrides(bootloader=bootloader_phrase(DEVICE)))
    assert ok.ok, ok.reasons
    assert ok.audit_detail["overrides"] == [{"bootloader": bootloader_phrase(DEVICE)}]


def test_downgrade_rules(env: dict[str, Path]) -> None:
    result = _check(env, "old")  # 1.8 < 1.9
    assert not result.ok
    assert result.reasons[0].startswith("downgrade")
    allowed = _check(env, "old", overrides=Overrides(downgrade=True))
    assert allowed.ok
    assert allowed.audit_detail["overrides"] == [{"downgrade": True}]
    assert any("downgrade allowed" in n for n in allowed.notes)
    same = _check(env, "new", DeviceFacts("board-x", "1.10"))
    assert same.ok
    newer_installed = _check(env, "new", DeviceFacts("board-x", "1.11"))
    assert not newer_installed.ok
    assert newer_installed.reasons[0].startswith("downgrade")
    unknown = _check(env, "old", DeviceFacts("board-x", None))
    assert unknown.ok
    assert "installed version unknown" in unknown.notes[0]


def test_all_refusals_listed_in_order(env: dict[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "b.swu"
    image.write_bytes(env["boot"].read_bytes())
    result = check_before_flash(image, None, DeviceFacts("board-z", "3.0"), Overrides(), TrustedKeys(env["store"]))
    kinds = [r.split(":")[0] for r in result.reasons]
    assert kinds == ["unsigned", "not for this device", "it rewrites the bootloader", "downgrade"]
