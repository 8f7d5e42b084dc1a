"""U-Boot-style A/B boot selection, as the boot script of RAUC's U-Boot integration does it.

For each slot in BOOT_ORDER with BOOT_<slot>_LEFT > 0: decrement the counter and save the env
(before trying: a hang or panic must still cost an attempt), then boot it. An image that fails
(a panic, then the watchdog resets the board) loops back to U-Boot. When no slot has attempts
left, the script resets every counter and boots the first slot in BOOT_ORDER.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from siteline.simulator.slots import BOOT_ATTEMPTS, BOOTNAMES

UBOOT_BANNER = "U-Boot 2022.04-nwedge+g3f8a2c1 (Mar 05 2024 - 10:12:01 +0000)"
MAX_ATTEMPTS = 16  # a guard: never loop forever on a corrupt env


@dataclass
class BootOutcome:
    slot: str  # the bootname that came up ("A" or "B")
    attempts: list[str] = field(default_factory=list)  # every slot tried, in order, including failures
    console_lines: list[str] = field(default_factory=list)
    rolled_back: bool = False  # came up on another slot than the one BOOT_ORDER put first
    reset_counters: bool = False  # no slot had attempts left: counters were reset (logged)


def attempts_left(env: dict[str, str], slot: str) -> int:
    """BOOT_<slot>_LEFT; a missing or garbled counter counts as none left, as the boot script's test does."""
    try:
        return int(env.get(f"BOOT_{slot}_LEFT", "0"))
    except ValueError:
        return 0


def boot_order(env: dict[str, str]) -> list[str]:
    """The known bootnames in BOOT_ORDER; the script's default order when it names none."""
    order = [s for s in env.get("BOOT_ORDER", "").split() if s in BOOTNAMES]
    return order or list(BOOTNAMES)


def primary(env: dict[str, str]) -> str | None:
    """The slot the next boot will try first (RAUC's "activated"), or None when every slot is used up."""
    return next((s for s in boot_order(env) if attempts_left(env, s) > 0), None)


def activate(env: dict[str, str], bootname: str) -> None:
    """What RAUC's U-Boot backend does for set-primary: the slot first in BOOT_ORDER, its attempts reset."""
    rest = [s for s in boot_order(env) if s != bootname]
    rest += [s for s in BOOTNAMES if s not in rest and s != bootname]
    env["BOOT_ORDER"] = " ".join([bootname, *rest])
    env[f"BOOT_{bootname}_LEFT"] = str(BOOT_ATTEMPTS)


def mark_good(env: dict[str, str], bootname: str) -> None:
    """RAUC's U-Boot backend for a good slot: its counter back to the limit."""
    env[f"BOOT_{bootname}_LEFT"] = str(BOOT_ATTEMPTS)


def _banner() -> list[str]:
    return [
        "",
        UBOOT_BANNER,
        "",
        "CPU:   i.MX8MMQ rev1.0 1800 MHz (running at 1200 MHz)",
        "DRAM:  2 GiB",
        "MMC:   FSL_SDHC: 1, FSL_SDHC: 2",
        "Loading Environment from MMC... OK",
        "Hit any key to stop autoboot:  0",
    ]


def _kernel_ok(slot: str, version: str) -> list[str]:
    return [
        f"Loading kernel from slot {slot} ...",
        "## Flattened Device Tree blob at 43000000",
        "Starting kernel ...",
        "",
        "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd034]",
        "[    0.000000] Linux version 5.15.71-nwedge (oe-user@oe-host) (aarch64-poky-linux-gcc (GCC) 11.4.0) "
        "#1 SMP PREEMPT Tue Mar 5 10:12:01 UTC 2024",
        f"[    2.114210] EXT4-fs (mmcblk0p{2 if slot == 'A' else 3}): mounted filesystem with ordered data mode.",
        f"[    3.398012] systemd[1]: systemd 250.5+ running in system mode (Northwind Edge OS {version})",
        "[    3.402118] systemd[1]: Detected architecture arm64.",
    ]


def _kernel_panic(slot: str) -> list[str]:
    part = 2 if slot == "A" else 3
    return [
        f"Loading kernel from slot {slot} ...",
        "Starting kernel ...",
        "",
        "[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd034]",
        f"[    2.301764] VFS: Cannot open root device \"mmcblk0p{part}\" or unknown-block(179,{part}): error -22",
        f"[    2.309480] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,{part})",
        f"[    2.317211] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on "
        f"unknown-block(179,{part}) ]---",
        "[   12.320004] imx2-wdt 30280000.watchdog: watchdog expired, resetting board",
    ]


def select(env: dict[str, str], slots: dict[str, Any], save_env: Callable[[dict[str, str]], None]) -> BootOutcome:
    """Run the boot script until a slot comes up. ``env`` is changed in place and saved at each step."""
    first = boot_order(env)[0]
    outcome = BootOutcome(slot=first)
    for _ in range(MAX_ATTEMPTS):
        outcome.console_lines += _banner()
        slot = next((s for s in boot_order(env) if attempts_left(env, s) > 0), None)
        if slot is None:
            # The script resets every counter and resets the board, which then boots BOOT_ORDER's first slot.
            outcome.console_lines.append(f"No valid slot found, resetting tries to {BOOT_ATTEMPTS}")
            for name in BOOTNAMES:
                env[f"BOOT_{name}_LEFT"] = str(BOOT_ATTEMPTS)
            save_env(env)
            outcome.reset_counters = True
            continue
        left = attempts_left(env, slot)
        outcome.console_lines.append(f"Found valid slot {slot}, {left} attempts remaining")
        env[f"BOOT_{slot}_LEFT"] = str(left - 1)
        save_env(env)  # persisted before the kernel runs, as the real script's saveenv
        outcome.attempts.append(slot)
        record = slots.get(slot, {})
        if record.get("boots", True):
            outcome.console_lines += _kernel_ok(slot, str(record.get("version", "")))
            outcome.slot = slot
            break
        outcome.console_lines += _kernel_panic(slot)
    else:
        outcome.slot = first  # every image panicked MAX_ATTEMPTS times: report the board on its first slot
    outcome.rolled_back = outcome.slot != first
    return outcome
