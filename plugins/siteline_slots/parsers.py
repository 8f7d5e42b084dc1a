"""Parsers for A/B slots: `rauc status --output-format=json`, and the bootloader envs (see bootenv.py).

Each takes the tool's text and returns a typed snapshot, or raises ParseError in words. ``merge`` joins
RAUC's view with the bootloader's raw counters into one Slots snapshot, and says where they disagree.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from siteline.api import BootEnv, Health, ParseError, Slot, Slots
from siteline_slots.bootenv import (
    clip,
    env_health,
    env_primary,
    parse_barebox_state,
    parse_fw_printenv,
    parse_grub_editenv,
    to_int,
)

__all__ = ["merge", "parse_barebox_state", "parse_fw_printenv", "parse_grub_editenv", "parse_rauc_status"]

MAX_INPUT = 1024 * 1024  # a status is a few KiB; more is not RAUC talking
_HINT_RAUC = "Run `rauc status --output-format=json` on the device and check that RAUC is installed and running."


def _str(value: Any) -> str | None:
    """A JSON string field; anything else (null, numbers, objects) is unknown."""
    return value if isinstance(value, str) and value != "" else None


# --- RAUC ------------------------------------------------------------------------------------------


def _load_json(text: str) -> dict[str, Any]:
    if len(text) > MAX_INPUT:
        raise ParseError(f"rauc status printed {len(text)} characters, far more than a status has.", _HINT_RAUC)
    start = text.find("{")
    if start < 0:
        raise ParseError(f"rauc status printed no JSON object: {clip(text) or '(nothing)'}", _HINT_RAUC)
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"rauc status printed JSON that does not parse ({exc}).", _HINT_RAUC) from None
    if not isinstance(doc, dict):
        raise ParseError("rauc status printed JSON that is not an object.", _HINT_RAUC)
    return doc


def _slot_items(doc: dict[str, Any], problems: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """RAUC prints ``"slots": [{"rootfs.0": {...}}, ...]``; a plain object of slots is taken too."""
    raw = doc.get("slots")
    items: list[tuple[str, Any]] = []
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                items += list(entry.items())
            else:
                problems.append("rauc status listed a slot that is not an object; it was skipped.")
    elif isinstance(raw, dict):
        items = list(raw.items())
    else:
        problems.append("rauc status listed no slots.")
    good = [(str(n), v) for n, v in items if isinstance(v, dict)]
    if len(good) < len(items):
        problems.append("rauc status described a slot with something that is not an object; it was skipped.")
    return good


def _rauc_slot(name: str, e: dict[str, Any]) -> Slot:
    st = e.get("slot_status") if isinstance(e.get("slot_status"), dict) else {}
    assert isinstance(st, dict)

    def sub(key: str) -> dict[str, Any]:
        value = st.get(key)
        return value if isinstance(value, dict) else {}

    bundle, checksum, installed, activated = sub("bundle"), sub("checksum"), sub("installed"), sub("activated")
    return Slot(
        name=name,
        bootname=_str(e.get("bootname")),
        slot_class=_str(e.get("class")),
        device=_str(e.get("device")),
        fs_type=_str(e.get("type")),
        parent=_str(e.get("parent")),
        mountpoint=_str(e.get("mountpoint")),
        rauc_state=_str(e.get("state")),
        rauc_boot_status=_str(e.get("boot_status")),
        bundle_compatible=_str(bundle.get("compatible")),
        bundle_version=_str(bundle.get("version")),
        bundle_description=_str(bundle.get("description")),
        bundle_build=_str(bundle.get("build")),
        sha256=_str(checksum.get("sha256")),
        size=to_int(checksum.get("size")),
        installed_at=_str(installed.get("timestamp")),
        installed_count=to_int(installed.get("count")),
        activated_at=_str(activated.get("timestamp")),
        activated_count=to_int(activated.get("count")),
        install_status=_str(st.get("status")),
    )


def _find_booted(slots: list[Slot], booted: str | None) -> Slot | None:
    """RAUC's "booted" is what the kernel command line named: a bootname, a slot name or a device path."""
    by_state = next((s for s in slots if s.rauc_state == "booted"), None)
    if by_state is not None:
        return by_state
    return next((s for s in slots if booted is not None and booted in (s.bootname, s.name, s.device)), None)


def _health_from_rauc(status: str | None) -> Health | None:
    if status == "good":
        return "good"
    return "bad" if status == "bad" else None  # RAUC prints null for slots without a bootname


def parse_rauc_status(text: str) -> Slots:
    """`rauc status --output-format=json|json-pretty [--detailed]` (RAUC 1.x)."""
    doc = _load_json(text)
    problems: list[str] = []
    if "slots" not in doc and "compatible" not in doc:
        raise ParseError("rauc status printed JSON without slots or compatible: not a RAUC status.", _HINT_RAUC)
    parsed = [_rauc_slot(n, e) for n, e in _slot_items(doc, problems)]
    booted_word, primary = _str(doc.get("booted")), _str(doc.get("boot_primary"))
    booted = _find_booted(parsed, booted_word)
    if booted_word and booted is None:
        problems.append(f"RAUC says it booted from {booted_word!r}, which is none of its slots.")
    if primary is not None and not any(s.name == primary for s in parsed):
        problems.append(f"RAUC's primary slot {primary!r} is none of its slots.")
    out = tuple(
        replace(s, booted=s is booted, primary=s.name == primary, health=_health_from_rauc(s.rauc_boot_status))
        for s in parsed
    )
    bootable = [s for s in out if s.bootname]
    if bootable and all(s.rauc_boot_status == "bad" for s in bootable):
        problems.append(
            "RAUC reports every slot bad: it usually means RAUC could not read the bootloader "
            "environment (check fw_printenv / grub-editenv and fw_env.config)."
        )
    return Slots(
        source="rauc",
        compatible=_str(doc.get("compatible")),
        variant=_str(doc.get("variant")),
        booted=(booted.bootname or booted.name) if booted else booted_word,
        primary=primary,
        slots=out,
        raw=text[:MAX_INPUT],
        problems=tuple(problems),
    )


# --- one snapshot ------------------------------------------------------------------------------------


def merge(rauc: Slots | None, env: BootEnv | None, booted: str | None = None) -> Slots:
    """One Slots snapshot from RAUC's view and/or the bootloader's counters (kept raw in ``env``).

    ``booted`` (a bootname, e.g. from ``rauc.slot=`` on /proc/cmdline) is used when RAUC is absent.
    Health follows the counters when they are known, since RAUC's word can come from a misread env.
    """
    if rauc is None and env is None:
        raise ParseError(
            "Neither RAUC nor the bootloader environment could be read.",
            "Check that `rauc status` or `fw_printenv` / `grub-editenv list` work on the device.",
        )
    if rauc is None:
        assert env is not None
        rauc = _slots_from_env(env, booted)
        return replace(rauc, env=env, problems=env.problems + rauc.problems)
    if env is None:
        return rauc
    problems = list(rauc.problems) + list(env.problems)
    merged = tuple(_merge_slot(s, env, problems) for s in rauc.slots)
    want = env_primary(env)
    have = next((s for s in merged if s.primary), None)
    if want is not None and have is not None and have.bootname and have.bootname != want:
        problems.append(f"RAUC says {have.name} boots next, but the counters say slot {want} will.")
    primary = rauc.primary
    if have is None and want is not None:  # RAUC could not tell (no env read): the counters can
        merged = tuple(replace(s, primary=s.bootname == want) for s in merged)
        primary = next((s.name for s in merged if s.primary), None)
    if any(s.health != _health_from_rauc(s.rauc_boot_status) for s in merged if s.bootname):
        problems = [p for p in problems if not p.startswith("RAUC reports every slot bad")]
    return replace(rauc, source=f"rauc+{env.kind}", primary=primary, slots=merged, env=env, problems=tuple(problems))


def _merge_slot(slot: Slot, env: BootEnv, problems: list[str]) -> Slot:
    if not slot.bootname:
        return slot
    health = env_health(env, slot.bootname)
    if health is None:
        return slot
    said = _health_from_rauc(slot.rauc_boot_status)
    if said is not None and said != health:
        counters = _counter_words(env, slot.bootname)
        problems.append(
            f"RAUC reports slot {slot.name} ({slot.bootname}) {said}, but {counters} say {health}: "
            "RAUC may not have read the bootloader environment."
        )
    return replace(slot, health=health, attempts_left=env.attempts_left.get(slot.bootname))


def _counter_words(env: BootEnv, name: str) -> str:
    keys = {
        "grub": [f"{name}_OK", f"{name}_TRY"],
        "uboot": [f"BOOT_{name}_LEFT"],
        "barebox": [f"bootstate.{name}.remaining_attempts", f"bootstate.{name}.priority"],
    }[env.kind]
    return ", ".join(f"{k}={env.variables.get(k, '?')}" for k in keys)


def _slots_from_env(env: BootEnv, booted: str | None) -> Slots:
    primary = env_primary(env)
    names = list(env.attempts_left)
    slots = tuple(
        Slot(
            name=n,
            bootname=n,
            booted=n == booted,
            primary=n == primary,
            health=env_health(env, n),
            attempts_left=env.attempts_left.get(n),
        )
        for n in names
    )
    problems: tuple[str, ...] = ()
    if not slots:
        problems = ("The environment names no A/B slots: no A/B scheme found.",)
    elif booted is not None and booted not in names:
        problems = (f"The device booted slot {booted!r}, which the environment does not name.",)
    return Slots(source=env.kind, booted=booted, primary=primary, slots=slots, problems=problems)
