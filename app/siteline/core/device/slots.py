"""The Slots snapshot: an A/B picture — which slot booted, which boots next, good/bad, versions, attempts left.

RAUC's own view (``rauc status``) and the bootloader's raw counters (U-Boot ``fw_printenv``, GRUB
``grub-editenv list``) are kept side by side: ``rauc status`` reports every slot "bad" when it could not
read the bootloader environment, so a technician must be able to see the counters themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Health = Literal["good", "bad"]
EnvKind = Literal["uboot", "grub", "barebox"]


@dataclass(frozen=True)
class BootEnv:
    """A bootloader environment as printed by ``fw_printenv``, ``grub-editenv list`` or ``barebox-state -d``.

    ``variables`` holds every variable exactly as printed (the raw counters); the fields beside it are
    what the A/B scheme reads from them. A counter that is missing or not a number is None, never 0.
    """

    kind: EnvKind
    variables: dict[str, str] = field(default_factory=dict)
    order: tuple[str, ...] | None = None  # BOOT_ORDER / ORDER / barebox priorities: first = tried first
    attempts_left: dict[str, int | None] = field(default_factory=dict)  # per bootname
    good: dict[str, bool | None] = field(default_factory=dict)  # GRUB's <slot>_OK
    trying: dict[str, bool | None] = field(default_factory=dict)  # GRUB's <slot>_TRY
    priority: dict[str, int | None] = field(default_factory=dict)  # barebox bootchooser's, 0 = disabled
    last_chosen: str | None = None  # barebox's bootstate.last_chosen, as printed
    upgrade_available: bool | None = None  # U-Boot's bootcount scheme (SWUpdate uses it)
    bootcount: int | None = None
    bootlimit: int | None = None
    update_state: str | None = None  # SWUpdate's `ustate` in words: installed, testing, failed ...
    raw: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    """One slot. ``name`` is RAUC's name (``rootfs.0``) or, without RAUC, the bootname (``A``)."""

    name: str
    bootname: str | None = None
    slot_class: str | None = None  # RAUC's class: rootfs, appfs, bootloader ...
    device: str | None = None
    fs_type: str | None = None
    parent: str | None = None
    mountpoint: str | None = None
    rauc_state: str | None = None  # booted / active / inactive, as RAUC says
    rauc_boot_status: str | None = None  # good / bad, as RAUC says (may be wrong when it misread the env)
    booted: bool = False
    primary: bool = False  # the bootloader tries this slot first on the next boot
    health: Health | None = None  # derived: counters first, RAUC's word when there are none
    attempts_left: int | None = None
    bundle_compatible: str | None = None
    bundle_version: str | None = None
    bundle_description: str | None = None
    bundle_build: str | None = None
    sha256: str | None = None
    size: int | None = None
    installed_at: str | None = None  # as RAUC prints it (ISO 8601, usually UTC)
    installed_count: int | None = None
    activated_at: str | None = None
    activated_count: int | None = None
    install_status: str | None = None  # RAUC's slot status: ok / failed / ...


@dataclass(frozen=True)
class Slots:
    """The whole A/B picture of one device."""

    source: str  # what it was read from: "rauc", "rauc+uboot", "uboot", "grub" ...
    compatible: str | None = None
    variant: str | None = None
    booted: str | None = None  # the bootname (or slot name) of the running slot
    primary: str | None = None  # the slot name the next boot tries first
    slots: tuple[Slot, ...] = ()
    env: BootEnv | None = None  # the raw counters, when the bootloader env was read
    raw: str = ""  # the RAUC output as printed (the env's own raw text is in env.raw)
    problems: tuple[str, ...] = ()

    def slot(self, name: str) -> Slot | None:
        """The slot by RAUC name or bootname."""
        return next((s for s in self.slots if name in (s.name, s.bootname)), None)

    @property
    def booted_slot(self) -> Slot | None:
        return next((s for s in self.slots if s.booted), None)
