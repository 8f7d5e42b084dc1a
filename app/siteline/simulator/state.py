"""A simulated edge device's state: everything lives in one directory, written atomically.

Layout of the state directory::

    sim.json            SimConfig (name, site, timings)
    device.json         boot id, boot time, booted slot, pending reboot
    slots.json          what each A/B slot holds (RAUC's slot status)
    modem.json          the modem's signal (random walk) and identity
    network.json        link scenario (wired failure ...)
    shadow.json         password hashes (scrypt)
    uboot.env           the real binary U-Boot env; fw_env.config points Debian's fw_printenv at it
    journal/            the journal (JSON lines)
    rootfs/             the device's files as `cat` shows them (/etc/os-release, /root/.ssh ...)
    admin/              what state-changing commands recorded (firewall rules, units, mounts)
    bin/                the shims, first on the device shell's PATH
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from siteline.core.atomic import write_atomic
from siteline.simulator import dynamics, journal, rootfs, slots, ubootenv
from siteline.simulator import family as family_of
from siteline.simulator.boot import BootOutcome, attempts_left, mark_good, select
from siteline.simulator.store import JsonDict, locked, read_json, update_json, write_json

__all__ = ["BootOutcome", "DeviceState", "SimConfig", "iso_time"]

CONFIG_FILE = "sim.json"
DEVICE_FILE = "device.json"
SHADOW_FILE = "shadow.json"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass
class SimConfig:
    name: str
    site: str
    user: str = "root"
    boot_delay: float = 3.0  # seconds the device is unreachable during reboot (tests use 0.05)
    mark_good_delay: float = 5.0  # seconds after a boot until rauc-mark-good.service marks the slot good
    kernel_log_interval: float = 20.0  # mean seconds between kernel log lines on the console
    telemetry_interval: float = 10.0
    serial_baud: int = 115200
    seed: int = 0  # seeds the modem's random walk; fixed when the device is created
    family: str = family_of.GATEWAY  # what the device is: the Yocto gateway or an OpenWrt router (family.py)

    @classmethod
    def from_json(cls, data: JsonDict) -> SimConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("name", "gw-01")
        kwargs.setdefault("site", "demo-site")
        if not rootfs.valid_username(str(kwargs.get("user", "root"))):
            raise ValueError(f"sim.json: user {str(kwargs.get('user'))[:64]!r} is not a valid user name")
        family_of.check(str(kwargs.get("family", family_of.GATEWAY)))
        return cls(**kwargs)


def default_env() -> dict[str, str]:
    """The U-Boot variables RAUC's U-Boot integration uses, plus U-Boot's own boot counting."""
    return {
        "BOOT_ORDER": "A B",
        "BOOT_A_LEFT": str(slots.BOOT_ATTEMPTS),
        "BOOT_B_LEFT": str(slots.BOOT_ATTEMPTS),
        "upgrade_available": "0",
        "bootcount": "0",
        "bootlimit": str(slots.BOOT_ATTEMPTS),
        "bootdelay": "0",
        "baudrate": "115200",
        "console": "ttymxc1,115200",
    }


def _hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def _verify_password(stored: str, password: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=salt, dklen=len(digest), **_SCRYPT)
    return hmac.compare_digest(candidate, digest)


class DeviceState:
    """One simulated device, backed by its state directory. Cheap to open: tools open it per call."""

    def __init__(self, root: Path, config: SimConfig) -> None:
        self.root = root
        self.config = config
        self.initial_password: str | None = None  # set when open() generated a password for a new device

    # -- creation -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, *, name: str = "gw-01", site: str = "demo-site", user: str = "root",
             password: str | None = None, create: bool = True, family: str | None = None) -> DeviceState:
        """Open (or create) the device; ``family`` (family.FAMILIES) makes a new device that kind, or turns an
        existing one into it; None keeps what it is (a new one is a gateway)."""
        root = Path(root).absolute()
        if family is not None:
            family_of.check(family)
        if not rootfs.valid_username(user):
            raise ValueError(f"--user {user[:64]!r}: a user name is a-z, 0-9, '_' or '-' (at most 32, not starting "
                             "with a digit or '-')")
        with locked(root) if root.exists() or create else _NoLock(root):
            data = read_json(root / CONFIG_FILE)
            if data:
                state = cls(root, SimConfig.from_json(data))
            elif not create:
                raise FileNotFoundError(f"{root}: no simulated device here (sim.json missing); create it first")
            else:
                state = cls(root, SimConfig(name=name, site=site, user=user, seed=secrets.randbits(31),
                                            family=family or family_of.GATEWAY))
                state._create()
                if password is None:
                    password = state.initial_password = secrets.token_urlsafe(9)
            if family is not None and state.config.family != family:
                state.config.family = family
                state.save_config()
                if family == family_of.GATEWAY:  # back from OpenWrt: the booted image's own os-release again
                    version = slots.load(root).get(state.booted_slot(), {}).get("version", slots.FIRST_VERSION)
                    rootfs.write_os_release(root, str(version))
                    (rootfs.rootfs(root) / "etc/openwrt_release").unlink(missing_ok=True)
            state._refresh_shims_and_config()
            if password is not None:
                state.set_password(state.config.user, password)
        return state

    @classmethod
    def attach(cls, root: Path) -> DeviceState:
        """Open an existing device without refreshing anything (what each shim call does: fast)."""
        data = read_json(Path(root) / CONFIG_FILE)
        if not data:
            raise FileNotFoundError(f"{root}: no simulated device here (sim.json missing)")
        return cls(Path(root).absolute(), SimConfig.from_json(data))

    def _create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        now = time.time()
        when = iso_time(now)
        rootfs.populate(self.root, self.config.name, slots.FIRST_VERSION, self.config.user)
        slots.save(self.root, slots.initial(when))
        write_json(self.root / dynamics.MODEM_FILE, dynamics.initial_modem(self.config.seed, now))
        write_json(self.root / dynamics.NETWORK_FILE, dynamics.initial_network())
        ubootenv.create(self.root, default_env())
        # First power-on: the device is up on slot A (no boot selection needed for a factory image).
        write_json(self.root / DEVICE_FILE, {"boot_id": uuid.uuid4().hex, "booted_at": now, "booted_slot": "A",
                                             "reboot_requested": False, "boots": 1})
        from siteline.simulator.tools.storage import provision  # the tools import this module

        provision(self)  # what lsblk, cryptsetup, sshd -T and openssl read: LUKS data, sshd_config, a certificate
        write_json(self.root / CONFIG_FILE, asdict(self.config))  # last: its presence means "created"
        self.log("Booting Linux on physical CPU 0x0000000000 [0x410fd034]", "kernel")
        self.log("Startup finished in 2.114s (kernel) + 4.902s (userspace) = 7.016s.", "systemd")

    def _refresh_shims_and_config(self) -> None:
        rootfs.write_shims(self.root, self.config.family)
        rootfs.ensure_dev(self.root)  # a device made before it had a /dev of its own (slot files)
        family_of.apply(self.root, self.config.family, rootfs.rootfs(self.root))
        if not (rootfs.rootfs(self.root) / "etc/passwd").exists():  # a device made by an older simulator
            rootfs.write_accounts(self.root, self.users())
        _remove_stale_temp_files(self.root)
        config = self.root / ubootenv.CONFIG_NAME
        wanted = f"{self.root / ubootenv.ENV_NAME} 0x0000 0x{ubootenv.ENV_SIZE:04x}"
        if not (self.root / ubootenv.ENV_NAME).exists():
            ubootenv.create(self.root, default_env())  # lost (or never made): U-Boot would use its defaults
        elif not config.exists() or wanted not in config.read_text(encoding="utf-8"):
            write_atomic(config, f"# device offset size\n{wanted}\n".encode())  # the directory was moved

    def save_config(self) -> None:
        write_json(self.root / CONFIG_FILE, asdict(self.config))

    # -- accounts -------------------------------------------------------------------------------------
    def known_user(self, user: str) -> bool:
        """A well-formed name that the device has an account for (nothing else may name a path)."""
        return rootfs.valid_username(user) and user in self.users()

    def check_password(self, user: str, password: str) -> bool:
        if not self.known_user(user):
            return False
        stored = read_json(self.root / SHADOW_FILE).get(user)
        return isinstance(stored, str) and _verify_password(stored, password)

    def set_password(self, user: str, password: str) -> None:
        hashed = _hash_password(password)
        update_json(self.root, self.root / SHADOW_FILE, lambda shadow: shadow.__setitem__(user, hashed))

    def users(self) -> list[str]:
        return sorted(read_json(self.root / SHADOW_FILE)) or [self.config.user]

    def set_users(self, change: Callable[[JsonDict], None]) -> None:
        """Change shadow.json (name -> hash, or "!" for a locked account) under the state lock."""
        update_json(self.root, self.root / SHADOW_FILE, change)

    def find_authorized_keys(self, user: str) -> Path | None:
        """The user's authorized_keys for a login: None for an unknown user or a path that leaves the
        rootfs (a symlink). Creates nothing, so a login attempt cannot touch the disk."""
        if not self.known_user(user):
            return None
        path = rootfs.home_of(self.root, user) / ".ssh" / "authorized_keys"
        return path if rootfs.inside(self.root, path) else None

    def authorized_keys_path(self, user: str) -> Path:
        """The user's authorized_keys, made (empty) when missing; for tools adding keys to a known account."""
        path = self.find_authorized_keys(user)
        if path is None:
            raise ValueError(f"user {user[:64]!r} has no account on device {self.config.name} "
                             "(or its home leaves the device's files); add the user first")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            write_atomic(path, b"", mode=0o600)
        return path

    # -- the device shell ------------------------------------------------------------------------------
    def shell_env(self) -> dict[str, str]:
        user = self.config.user
        home = rootfs.home_of(self.root, user)
        home.mkdir(parents=True, exist_ok=True)
        path = os.pathsep.join([str(self.root / "bin"), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                                "/sbin", "/bin"])
        path = family_of.shell_path(self.root, self.config.family, path)
        prompt = "# " if user == "root" else "$ "
        return {
            "PATH": path, "HOME": str(home), "USER": user, "LOGNAME": user, "SHELL": "/bin/sh",
            "SITELINE_SIM_STATE": str(self.root), "PS1": f"{user}@{self.hostname()}:~{prompt}",
            "LANG": "C.UTF-8", "TERM": os.environ.get("TERM", "vt100"), "HOSTNAME": self.hostname(),
        }

    def hostname(self) -> str:
        try:
            text = (rootfs.rootfs(self.root) / "etc/hostname").read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        return text.splitlines()[0] if text else self.config.name

    def set_hostname(self, name: str) -> None:
        write_atomic(rootfs.rootfs(self.root) / "etc/hostname", f"{name}\n".encode())

    # -- boot -----------------------------------------------------------------------------------------
    def device(self) -> JsonDict:
        return read_json(self.root / DEVICE_FILE, {"boot_id": "0" * 32, "booted_at": time.time(), "booted_slot": "A"})

    def booted_slot(self) -> str:
        return str(self.device().get("booted_slot", "A"))

    def uptime(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return max(0.0, now - float(self.device().get("booted_at", now)))

    def request_reboot(self, action: str = "reboot") -> None:
        """Leave a power request ("reboot" or "poweroff") for the running device to act on."""
        self.log("System is rebooting." if action == "reboot" else "System is powering down.", "systemd")

        def change(d: JsonDict) -> None:
            d["reboot_requested"] = True
            d["power_action"] = action

        update_json(self.root, self.root / DEVICE_FILE, change)

    def take_power_request(self) -> str | None:
        """The pending power request ("reboot" or "poweroff"), cleared; None when there is none."""
        taken: list[str] = []

        def change(d: JsonDict) -> None:
            taken.append(str(d.get("power_action") or "reboot"))
            d["reboot_requested"] = False
            d.pop("power_action", None)

        with locked(self.root):
            if not read_json(self.root / DEVICE_FILE).get("reboot_requested"):
                return None  # the common case: no write
            update_json(self.root, self.root / DEVICE_FILE, change)
        return taken[0] if taken else None

    def take_reboot_request(self) -> bool:
        return self.take_power_request() is not None

    def mark_booted_good(self, boot_id: str) -> str | None:
        """What rauc-mark-good.service does once a boot is healthy: the booted slot's counter back to the
        limit. Nothing if the device has booted again since (``boot_id`` is stale); returns the slot."""
        with locked(self.root):
            device = self.device()
            if device.get("boot_id") != boot_id:
                return None
            slot = str(device.get("booted_slot", "A"))
            env = self.read_env_or_default()
            if attempts_left(env, slot) == slots.BOOT_ATTEMPTS:
                return slot  # already good: no write
            mark_good(env, slot)
            self.write_env(env)
        info = slots.by_bootname(slot)
        self.log(f"marked slot {info.rauc_name if info else slot} as good", "rauc-mark-good")
        return slot

    def env_location(self) -> ubootenv.EnvLocation:
        return ubootenv.EnvLocation(self.root / ubootenv.ENV_NAME)

    def read_env(self) -> dict[str, str]:
        return ubootenv.load(self.env_location())

    def read_env_or_default(self) -> dict[str, str]:
        try:
            return self.read_env()
        except ubootenv.EnvError:
            return default_env()  # as U-Boot does with a bad CRC: "Warning - bad CRC, using default environment"

    def write_env(self, env: dict[str, str]) -> None:
        ubootenv.store(self.env_location(), env)

    def boot(self) -> BootOutcome:
        with locked(self.root):
            env = self.read_env_or_default()
            table = slots.load(self.root)
            outcome = select(env, table, self.write_env)
            now = time.time()
            device = self.device()
            device.update({"boot_id": uuid.uuid4().hex, "booted_at": now, "booted_slot": outcome.slot,
                           "reboot_requested": False, "boots": int(device.get("boots", 0)) + 1})
            write_json(self.root / DEVICE_FILE, device)
            version = str(table.get(outcome.slot, {}).get("version", slots.FIRST_VERSION))
            rootfs.write_os_release(self.root, version)
            family_of.apply(self.root, self.config.family, rootfs.rootfs(self.root))  # OpenWrt keeps its own
        for line in outcome.console_lines:
            if line.startswith("[") and "]" in line:
                self.log(line.split("]", 1)[1].strip(), "kernel")
        if outcome.reset_counters:
            self.log("U-Boot: no valid slot found, boot counters were reset", "kernel", priority=3)
        if outcome.rolled_back:
            self.log(f"booted slot {outcome.slot} after failed attempts on {outcome.attempts}", "rauc", priority=4)
        self.log("Startup finished in 2.114s (kernel) + 4.902s (userspace) = 7.016s.", "systemd")
        return outcome

    # -- dynamics ---------------------------------------------------------------------------------------
    def tick(self) -> None:
        dynamics.advance(self.root)

    def fail_wired(self, failed: bool = True) -> None:
        dynamics.set_wired_failed(self.root, failed)
        self.log("fec 30be0000.ethernet eth0: Link is Down" if failed else
                 "fec 30be0000.ethernet eth0: Link is Up - 1Gbps/Full - flow control rx/tx", "kernel",
                 priority=4 if failed else 6)
        # What NetworkManager logs when the carrier goes and the backup takes the default route.
        change = "activated -> unavailable" if failed else "unavailable -> activated"
        self.log(f"<info>  device (eth0): state change: {change} (reason 'carrier-changed', "
                 "sys-iface-state: 'managed')", "NetworkManager")
        uplink = ("'cellular' (wwan0)" if failed else "'Wired connection 1' (eth0)")
        self.log(f"<info>  policy: set {uplink} as default for IPv4 routing and DNS", "NetworkManager")

    def degrade_signal(self, degraded: bool = True) -> None:
        dynamics.set_degraded(self.root, degraded)

    def modem(self) -> JsonDict:
        return dynamics.advance(self.root)

    def network(self) -> JsonDict:
        return dynamics.network(self.root)

    def telemetry(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        modem = dynamics.advance(self.root, now)
        net = self.network()
        load = dynamics.cpu_load(self.config.seed, now)
        uplink = dynamics.active_uplink(net, modem)
        return {
            "cpu": {"load1": load[0], "load5": load[1], "load15": load[2], "uptime": round(self.uptime(now), 1)},
            "signal": dynamics.telemetry_signal(modem),
            "link": {"primary": "eth0", "active": uplink, "wired_up": not net.get("wired_failed"),
                     "cellular_up": bool(modem.get("enabled", True))},
        }

    def log(self, message: str, unit: str = "kernel", priority: int = 6) -> None:
        device = self.device()
        journal.append(self.root, message=message, unit=unit, priority=priority, hostname=self.hostname(),
                       boot_id=str(device.get("boot_id", "0" * 32)), booted_at=float(device.get("booted_at", 0.0)))


def _remove_stale_temp_files(root: Path, min_age: float = 60.0) -> None:
    """Temp files left by a write that a power cut interrupted; never read, so only clutter.

    Only old ones go: a young one may belong to a writer that is still running.
    """
    cutoff = time.time() - min_age
    for tmp in root.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def iso_time(ts: float | None = None) -> str:
    """A UTC timestamp as RAUC prints them (slot status installed/activated)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


class _NoLock:
    """Context for open(create=False) on a missing directory: nothing to lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
