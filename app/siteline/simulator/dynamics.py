"""What moves over time on the device: the modem's signal and the links.

Tools and the runner both call ``advance``; time since the last step decides how many random-walk
steps to take, so the signal moves the same way whether or not a runner ticks it. Each step's
randomness is seeded by (device seed, step number): the walk is reproducible per device.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

from siteline.simulator.store import JsonDict, read_json, update_json

MODEM_FILE = "modem.json"
NETWORK_FILE = "network.json"
STEP_SECONDS = 5.0
MAX_STEPS = 200  # after a long pause the walk catches up this far, not forever
GOOD_RSRP = -92.0
DEGRADED_RSRP = -117.0


def initial_modem(seed: int, now: float) -> JsonDict:
    return {
        "seed": seed,
        "step": 0,
        "last_step_at": now,
        "rsrp": GOOD_RSRP,
        "rsrq": -9.0,
        "snr": 13.0,
        "rssi": -63.0,
        "degraded": False,
        "signal_rate": 0,  # --signal-setup=N; 0 means extended signal info is disabled
        "enabled": True,
        "imei": f"35{seed % 10**13:013d}",
        "iccid": f"8944{seed % 10**15:015d}",
        "imsi": f"23415{seed % 10**10:010d}",
    }


def initial_network() -> JsonDict:
    return {"wired_failed": False, "cellular_enabled": True}


def _step(modem: JsonDict, step: int) -> None:
    rng = random.Random(f"{modem['seed']}:{step}")
    target = DEGRADED_RSRP if modem.get("degraded") else GOOD_RSRP
    rsrp = float(modem["rsrp"])
    rsrp += 0.15 * (target - rsrp) + rng.gauss(0.0, 1.6)  # mean-reverting walk toward the scenario's level
    modem["rsrp"] = round(min(-60.0, max(-140.0, rsrp)), 1)
    quality = (modem["rsrp"] + 140.0) / 80.0  # 0 at -140 dBm, 1 at -60 dBm
    modem["rsrq"] = round(min(-3.0, max(-20.0, -19.5 + 15.0 * quality + rng.gauss(0.0, 0.8))), 1)
    modem["snr"] = round(min(30.0, max(-10.0, -8.0 + 32.0 * quality + rng.gauss(0.0, 1.0))), 1)
    modem["rssi"] = round(min(-40.0, max(-113.0, modem["rsrp"] + 29.0 + rng.gauss(0.0, 1.0))), 1)


def advance(root: Path, now: float | None = None) -> JsonDict:
    """Take the steps that elapsed since the last one; returns the modem document."""
    now = time.time() if now is None else now

    def change(modem: JsonDict) -> None:
        last = float(modem.get("last_step_at", now))
        steps = min(MAX_STEPS, max(0, int((now - last) // STEP_SECONDS)))
        for _ in range(steps):
            modem["step"] = int(modem.get("step", 0)) + 1
            _step(modem, modem["step"])
        if steps or now < last:
            modem["last_step_at"] = now if steps == MAX_STEPS or now < last else last + steps * STEP_SECONDS

    modem = read_json(root / MODEM_FILE)
    if not modem:
        return modem
    if now - float(modem.get("last_step_at", now)) < STEP_SECONDS:
        return modem  # nothing to do: avoid a write on every read
    return update_json(root, root / MODEM_FILE, change)


def signal_quality(rsrp: float) -> int:
    """ModemManager's 0-100 % signal quality, approximated from RSRP."""
    return int(min(100, max(0, round((rsrp + 120.0) * 100.0 / 50.0))))


def set_degraded(root: Path, degraded: bool) -> None:
    def change(modem: JsonDict) -> None:
        modem["degraded"] = degraded
        if degraded:
            modem["rsrp"] = min(float(modem["rsrp"]), DEGRADED_RSRP + 3.0)  # a step change, as when a mast drops

    update_json(root, root / MODEM_FILE, change)


def set_wired_failed(root: Path, failed: bool) -> None:
    def change(net: JsonDict) -> None:
        if bool(net.get("wired_failed")) != failed:
            net["wired_changed_at"] = time.time()  # NetworkManager stamps the wired profile's TIMESTAMP now
        net["wired_failed"] = failed

    update_json(root, root / NETWORK_FILE, change)


def network(root: Path) -> JsonDict:
    return read_json(root / NETWORK_FILE, initial_network())


def cpu_load(seed: int, now: float) -> tuple[float, float, float]:
    """A believable load average: slow waves plus a seeded wobble (no state needed)."""
    base = 0.35 + 0.2 * math.sin(now / 600.0 + seed % 7)
    wobble = random.Random(f"{seed}:{int(now // 10)}").uniform(-0.05, 0.15)
    return (round(max(0.0, base + wobble), 2), round(max(0.0, base + 0.03), 2), round(max(0.0, base), 2))


def active_uplink(net: JsonDict, modem: JsonDict) -> str | None:
    """Which interface holds the default route: eth0 unless it failed, then wwan0 when registered."""
    if not net.get("wired_failed"):
        return "eth0"
    if net.get("cellular_enabled", True) and modem.get("enabled", True):
        return "wwan0"
    return None


def telemetry_signal(modem: dict[str, Any]) -> JsonDict:
    return {
        "rsrp": modem.get("rsrp"), "rsrq": modem.get("rsrq"), "snr": modem.get("snr"), "rssi": modem.get("rssi"),
        "quality": signal_quality(float(modem.get("rsrp", -140.0))), "access_technology": "lte",
        "degraded": bool(modem.get("degraded")),
    }
