"""The last check before a byte is sent: refuse, with a clear reason, an image that must not be flashed.

Order (the first refusal is the main one, all are listed): no signature, a signature that does not hold or
comes from an unknown key, an unreadable image, a compatible string not matching the device (an unknown
device compatible is a refusal too), a bootloader write without the exact typed override, a downgrade without
the override. Pure apart from reading the files; the caller records ``audit_detail`` in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siteline.core.images.formats import ImageError, ImageInfo, compatible_problem, describe, downgrade_problem
from siteline.core.images.signature import Verdict
from siteline.core.images.trusted_keys import TrustedKeys

UNSIGNED = ("unsigned: no .sig next to the image (sign it with openssl dgst -sha256 -sign KEY.pem "
            "-out IMAGE.sig IMAGE)")


@dataclass(frozen=True)
class DeviceFacts:
    """What the Slots snapshot says about the device; None = not known (not read yet)."""

    compatible: str | None
    installed_version: str | None
    name: str = ""  # the device's name as shown to the technician; used in the bootloader phrase


@dataclass(frozen=True)
class Overrides:
    bootloader: str | None = None  # the text the technician typed; must equal bootloader_phrase(device)
    downgrade: bool = False
    # A raw image declares no compatible string: the technician types the device's compatible to say the
    # image was built for it (the signature says who built it; this says for what).
    raw_compatible: str | None = None


@dataclass
class GateResult:
    ok: bool
    reasons: list[str] = field(default_factory=list)  # every refusal found; the first is the main one
    notes: list[str] = field(default_factory=list)  # not refusals, but worth saying
    verdict: Verdict | None = None
    info: ImageInfo | None = None
    audit_detail: dict[str, Any] = field(default_factory=dict)


def bootloader_phrase(device: DeviceFacts) -> str:
    """The exact sentence to type to flash an image that rewrites the bootloader."""
    return f"I understand this rewrites the bootloader of {device.name or device.compatible or 'this device'}"


def signature_path(image: Path) -> Path:
    return image.with_name(image.name + ".sig")


def check_before_flash(image: Path, signature: Path | None, device: DeviceFacts, overrides: Overrides,
                       keys: TrustedKeys) -> GateResult:
    """Every reason to refuse flashing ``image`` onto ``device``; ok only when there is none."""
    result = GateResult(ok=False)
    sig = signature if signature is not None else signature_path(image)
    if not sig.is_file():
        result.reasons.append(UNSIGNED if signature is None else f"unsigned: the signature {sig} does not exist")
    else:
        result.verdict = keys.verify_trusted(image, sig)
        if not result.verdict.ok:
            result.reasons.append(f"signature refused: {result.verdict.reason}")
    try:
        result.info = describe(image)
    except ImageError as exc:
        result.reasons.append(f"unreadable image: {exc}")
    if result.info is not None:
        _check_info(result, result.info, device, overrides)
    result.ok = not result.reasons
    result.audit_detail = _audit_detail(result, overrides)
    return result


def _check_info(result: GateResult, info: ImageInfo, device: DeviceFacts, overrides: Overrides) -> None:
    if device.compatible is None or not device.compatible.strip():
        result.reasons.append("device compatible unknown: read the device's slots first (its Slots tab, or "
                              "siteline probe TARGET --only slots)")
    else:
        problem = compatible_problem(info, device.compatible)
        if problem and not info.compatibles and info.format == "raw":
            if overrides.raw_compatible is None or overrides.raw_compatible.strip() != device.compatible.strip():
                typed = "" if overrides.raw_compatible is None else " (the text typed does not match)"
                result.reasons.append(f"not matched to this device: {info.path.name} is a raw image and declares no "
                                      f"compatible string; if it was built for this device, type its compatible "
                                      f"\"{device.compatible.strip()}\" to confirm{typed}")
            else:
                result.notes.append(f"raw image confirmed by the technician for '{device.compatible.strip()}'")
        elif problem:
            result.reasons.append(f"not for this device: {problem}")
    if info.writes_bootloader:
        phrase = bootloader_phrase(device)
        if overrides.bootloader != phrase:
            typed = "" if overrides.bootloader is None else " (the text typed does not match)"
            result.reasons.append(f"it rewrites the bootloader: to flash it anyway type exactly \"{phrase}\"{typed}")
    if device.installed_version is None or not device.installed_version.strip():
        result.notes.append("installed version unknown: cannot tell whether this is a downgrade")
        return
    downgrade = downgrade_problem(info, device.installed_version)
    if downgrade and not overrides.downgrade:
        result.reasons.append(f"downgrade: {downgrade}")
    elif downgrade:
        result.notes.append(f"downgrade allowed by override: {downgrade}")


def _audit_detail(result: GateResult, overrides: Overrides) -> dict[str, Any]:
    """What the caller records: hashes, fingerprints, overrides; never a private key's path."""
    verdict, info = result.verdict, result.info
    used: list[dict[str, Any]] = []
    if info is not None and info.writes_bootloader and overrides.bootloader is not None:
        used.append({"bootloader": overrides.bootloader})
    if overrides.downgrade:
        used.append({"downgrade": True})
    if info is not None and info.format == "raw" and overrides.raw_compatible is not None:
        used.append({"raw_compatible": overrides.raw_compatible})
    return {
        "image": info.path.name if info is not None else "",
        "sha256": (info.sha256 if info is not None else "") or (verdict.sha256 if verdict is not None else ""),
        "version": info.version if info is not None else "",
        "key_fingerprint": verdict.fingerprint if verdict is not None and verdict.ok else "",
        "key_name": verdict.key_name if verdict is not None and verdict.ok else "",
        "overrides": used,
        "ok": result.ok,
        "refusals": list(result.reasons),
    }
