"""The posture commands answered by the simulated device from its state dir (never by the host)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from tests.peers.sim import make_state, running_device
from tests.peers.sshd import SshdHandle

from siteline.api import Posture, PostureCheck, Result, Unavailable
from siteline.core.device.factory_login import (
    DEFAULT_LOGINS,
    MAX_TRIES,
    Attempt,
    FactoryLogin,
    check_factory_logins,
    plan,
)
from siteline.core.plugin_api import make_context
from siteline.core.targets import parse_target
from siteline.core.transports.known_hosts import KnownHosts
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState
from siteline.simulator.tools import storage
from siteline_posture.parsers import parse_cryptsetup_status, parse_lsblk_json, parse_sshd_t
from siteline_posture.probe import PostureProbe


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    state = make_state(tmp_path / "dev", name="gw-posture")
    storage.provision(state)  # what creating a device does (else the first posture command does it)
    return state


def sh(state: DeviceState, command: str) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(state, command, timeout=30))
    return code, out.decode(), err.decode()


def probe(state: DeviceState, certificate_path: str | None = "/etc/ssl/device.crt") -> Posture:
    async def run(command: str, timeout: float) -> Result:
        code, out, err = await run_command(state, command, timeout=timeout)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"))

    ctx = make_context("gw", "sim://gw", run, logging.getLogger("test"))
    result = asyncio.run(PostureProbe(certificate_path=certificate_path).collect(ctx))
    assert not isinstance(result, Unavailable), result
    return result


def verdicts(posture: Posture) -> dict[str, str]:
    return {c.key: c.status for c in posture.checks}


def test_the_demo_device_passes_some_checks_and_fails_others(device: DeviceState) -> None:
    posture = probe(device)
    assert verdicts(posture) == {"luks": "pass", "root_readonly": "pass", "firewall_output": "fail",
                                 "ssh_passwords": "fail", "certificate": "fail", "clock_sync": "pass"}
    reasons = {c.key: c.reason for c in posture.checks}
    assert reasons["luks"] == "/data is on LUKS volume data"
    assert "overlayfs: /etc" in reasons["root_readonly"]
    assert "PasswordAuthentication yes (sshd -T)" in reasons["ssh_passwords"]
    assert "in 20 days" in reasons["certificate"]  # a real certificate, read by the host's real openssl
    assert posture.clock is not None
    assert abs(posture.clock.offset_seconds or 99) < 2


def test_changes_made_on_the_device_change_the_verdicts(device: DeviceState) -> None:
    assert sh(device, "iptables -P OUTPUT DROP && iptables -A OUTPUT -o lo -j ACCEPT")[0] == 0
    fs = device.root / "rootfs"
    (fs / "etc/ssh/sshd_config.d/10-hardening.conf").write_text("PasswordAuthentication no\n")
    (fs / "etc/ssl/device.crt").unlink()
    storage.set_profile(device, cert_days_left=300)  # a renewed certificate
    hardened = verdicts(probe(device))
    assert hardened == dict.fromkeys(hardened, "pass")

    storage.set_profile(device, data_encryption="none")
    assert sh(device, "mount -o remount,rw / && timedatectl set-ntp false && date -s @192")[0] == 0
    broken = probe(device)
    assert verdicts(broken) | {"certificate": "-"} == {
        "luks": "fail", "root_readonly": "fail", "firewall_output": "pass", "ssh_passwords": "pass",
        "certificate": "-", "clock_sync": "fail"}
    assert broken.clock is not None
    assert broken.clock.unset
    assert "1970" in (broken.check("clock_sync") or broken.checks[0]).reason


def test_plain_dm_crypt_is_not_luks(device: DeviceState) -> None:
    storage.set_profile(device, data_encryption="PLAIN")
    check = probe(device, certificate_path=None).check("luks")
    assert check is not None
    assert (check.status, check.reason) == ("fail", "/data is on dm-crypt (not LUKS) volume data")


def test_lsblk_and_cryptsetup_in_the_real_formats(device: DeviceState) -> None:
    code, out, _ = sh(device, "lsblk")
    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "MAJ:MIN", "RM", "SIZE", "RO", "TYPE", "MOUNTPOINTS"]
    assert "\u2514\u2500data" in out
    for columns in ("NAME,TYPE,FSTYPE,MOUNTPOINT", "NAME,TYPE,FSTYPE,MOUNTPOINTS"):
        devices = {d.name: d for d in parse_lsblk_json(sh(device, f"lsblk -J -o {columns}")[1])}
        assert devices["data"].mountpoints == ("/data",)
        assert devices["data"].ancestors[0].fstype == "crypto_LUKS"
    assert parse_cryptsetup_status(sh(device, "cryptsetup status data")[1]) == {"data": "LUKS2"}
    assert sh(device, "cryptsetup status other")[:2] == (4, "")
    assert sh(device, "cryptsetup isLuks /dev/mmcblk0p4")[0] == 0
    assert sh(device, "cryptsetup luksFormat /dev/mmcblk0p4")[0] == 5  # the device's data is never wiped
    assert sh(device, "lsblk --bogus")[0] == 1
    assert sh(device, "lsblk /dev/sdz")[0] == 32


def test_sshd_t_follows_the_devices_config(device: DeviceState, tmp_path: Path) -> None:
    code, out, _ = sh(device, "sshd -T")
    assert code == 0
    settings = parse_sshd_t(out)
    assert (settings["passwordauthentication"], settings["permitrootlogin"]) == ("yes", "yes")
    assert sh(device, "sshd")[0] == 255  # the device's sshd is already listening
    bad = device.root / "rootfs/etc/ssh/sshd_config.d/99-typo.conf"
    bad.write_text("PasswordAuthentcation no\n")
    code, _, err = sh(device, "sshd -t")
    assert code == 255
    assert "Bad configuration option: PasswordAuthentcation" in err
    user = make_state(tmp_path / "user-dev", name="gw-user", user="edge")
    assert sh(user, "sshd -T")[:2] == (1, "")  # not root: the host keys cannot be read


def test_timedatectl_show_and_a_device_made_before_the_posture_tools(device: DeviceState) -> None:
    for rel in ("proc/mounts", "etc/ssl/device.crt", "etc/ssh/sshd_config"):
        (device.root / "rootfs" / rel).unlink(missing_ok=True)
    assert sh(device, "timedatectl show -p NTPSynchronized") == (0, "NTPSynchronized=yes\n", "")
    assert (device.root / "rootfs/proc/mounts").is_file()  # made at the first call
    assert (device.root / "rootfs/etc/ssl/device.crt").is_file()
    assert sh(device, "timedatectl show -p NTP --value")[1] == "yes\n"


# -- factory passwords, tried over SSH against the simulator's server ---------------------------------------
def factory(state: DeviceState, known_hosts: Path, *, pin: bool = True,
            logins: tuple[FactoryLogin, ...] = DEFAULT_LOGINS,
            max_tries: int = MAX_TRIES) -> tuple[PostureCheck, list[Attempt]]:
    seen: list[Attempt] = []

    async def go() -> PostureCheck:
        async with running_device(state) as device:
            assert device.ssh_port is not None
            if pin:
                key = (state.root / "ssh_host_ed25519_key.pub").read_text()
                KnownHosts(known_hosts).pin("127.0.0.1", device.ssh_port, key)
            target = parse_target(f"ssh://root@127.0.0.1:{device.ssh_port}")
            return await check_factory_logins(target, known_hosts, logins=logins, max_tries=max_tries, pause=0.01,
                                              timeout=10, on_attempt=seen.append)

    return asyncio.run(go()), seen


def test_factory_passwords_refused(device: DeviceState, tmp_path: Path) -> None:
    check, seen = factory(device, tmp_path / "kh")
    assert (check.key, check.status) == ("factory_credentials", "pass")
    assert [a.outcome for a in seen] == ["refused"] * 5
    assert "none of 5 factory logins was accepted (root/root, admin/admin" in check.reason
    assert check.title == "Factory passwords refused"


def test_a_factory_password_still_accepted_stops_the_tries(device: DeviceState, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    device.set_password("admin", "admin")  # a leftover vendor account
    caplog.set_level(logging.DEBUG)
    check, seen = factory(device, tmp_path / "kh")
    assert check.status == "fail"
    assert check.reason.startswith("admin/admin is still accepted on ")
    assert [a.outcome for a in seen] == ["refused", "accepted"]  # root/root refused, then admin/admin: stop
    secret = FactoryLogin("root", "Zq-factory-7731", "the Acme factory password of root")
    device.set_password("root", secret.password)
    check, seen = factory(device, tmp_path / "kh", logins=(secret,))
    assert (check.status, check.reason.split(" is still")[0]) == ("fail", "the Acme factory password of root")
    assert secret.password not in caplog.text + check.reason + check.raw + repr(secret)
    device.set_password("root", "")
    check, _ = factory(device, tmp_path / "kh", logins=DEFAULT_LOGINS[2:3])
    assert check.reason.startswith("root with an empty password is still accepted")


def test_an_unpinned_host_gets_no_password(device: DeviceState, tmp_path: Path) -> None:
    check, seen = factory(device, tmp_path / "kh", pin=False)
    assert check.status == "unknown"
    assert len(seen) == 1
    assert "is not known yet" in check.reason
    assert not (tmp_path / "kh").exists()  # nothing pinned on the way


def test_the_plan_says_what_will_happen() -> None:
    assert plan("gw-01") == ("This tries 5 factory passwords on gw-01 over SSH; a device with fail2ban may block "
                             "this laptop for a while.")
    assert plan("gw-01", max_tries=1).startswith("This tries 1 factory password on gw-01")
    check = asyncio.run(check_factory_logins(parse_target("ssh://root@10.0.0.5?jump=ops@bastion"), Path("kh")))
    assert (check.status, check.reason.split(":")[0]) == ("unknown", "not tried")


def test_real_sshd_without_passwords_refuses_and_sees_no_key(sshd: SshdHandle, tmp_path: Path) -> None:
    known_hosts = tmp_path / "kh"
    KnownHosts(known_hosts).pin(sshd.host, sshd.port, sshd.host_key.with_name("host_key.pub").read_text())
    offset = len(sshd.log_text())
    target = parse_target(f"ssh://{sshd.user}@{sshd.host}:{sshd.port}")
    check = asyncio.run(check_factory_logins(target, known_hosts, max_tries=2, pause=0.01, timeout=10))
    assert (check.status, check.raw) == ("pass", "root/root: refused\nadmin/admin: refused")
    log = sshd.log_text(offset)
    assert "Connection closed by authenticating user" in log or "Disconnected from authenticating user" in log, log
    assert "publickey" not in log  # only passwords were offered: never the laptop's keys
