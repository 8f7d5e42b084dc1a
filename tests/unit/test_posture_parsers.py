"""The Posture parsers and checks against real-tool samples and garbage.

The same commands answered by the simulated device: tests/integration/test_posture_sim.py.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siteline_posture
from siteline.api import Unavailable, sections_command
from siteline.core.device.posture import WHY, Clock, Posture, PostureCheck
from siteline.core.errors import ParseError
from siteline_posture.checks import (
    Section,
    check_certificate,
    check_clock_sync,
    check_firewall,
    check_luks,
    check_root_readonly,
    check_ssh,
)
from siteline_posture.parsers import (
    parse_cryptsetup_status,
    parse_dropbear,
    parse_epoch,
    parse_iptables_s,
    parse_lsblk_json,
    parse_mounts,
    parse_nft_json,
    parse_nft_text,
    parse_ntp_sync,
    parse_openssl_enddate,
    parse_sshd_config,
    parse_sshd_t,
)
from siteline_posture.probe import clock_from, commands, posture_from_output
from tests.peers import require_tool

DATA = Path(__file__).resolve().parents[1] / "data" / "posture"


def sample(name: str, status: int = 0) -> Section:
    return Section((DATA / name).read_text(), status)


NONE = Section("", 0)
MISSING = Section("", 127)


# -- parsers against the goldens ---------------------------------------------------------------------
def test_mounts_in_both_formats() -> None:
    proc = parse_mounts(sample("proc-mounts-debian-rw.txt").text)
    assert proc[5].point == "/"
    assert proc[5].source == "/dev/mmcblk0p2"
    assert not proc[5].read_only
    assert proc[-1].point == "/media/usb stick"  # \040 decoded
    busybox = parse_mounts(sample("mount-busybox-squashfs.txt").text)
    assert (busybox[0].point, busybox[0].fstype, busybox[0].read_only) == ("/rom", "squashfs", True)
    assert busybox[5].source == "overlayfs:/overlay"


def test_lsblk_both_mountpoint_forms() -> None:
    luks = {d.name: d for d in parse_lsblk_json(sample("lsblk-luks.json").text)}
    assert luks["data"].type == "crypt"
    assert luks["data"].mountpoints == ("/data",)
    assert luks["data"].ancestors[0].fstype == "crypto_LUKS"
    plain = {d.name: d for d in parse_lsblk_json(sample("lsblk-mountpoints-plain.json").text)}
    assert plain["sda1"].mountpoints == ("/media/usb stick", "/data")
    assert plain["sda"].mountpoints == ()


def test_cryptsetup_firewall_sshd_openssl_date_ntp() -> None:
    assert parse_cryptsetup_status(sample("cryptsetup-status-luks2.txt").text) == {"data": "LUKS2"}
    drop = parse_iptables_s(sample("iptables-S-output-drop.txt").text)
    assert (drop.policy, drop.accepts, drop.drops_by_default) == ("DROP", 5, True)
    reject = parse_iptables_s(sample("iptables-S-output-accept-final-reject.txt").text)
    assert (reject.policy, reject.ends_in_drop) == ("ACCEPT", True)
    assert not parse_iptables_s(sample("iptables-S-output-accept.txt").text).drops_by_default
    (nft,) = parse_nft_json(sample("nft-j-output-drop.json").text)
    assert (nft.name, nft.policy, nft.accepts) == ("inet filter output", "DROP", 3)
    assert parse_nft_json(sample("nft-j-empty.json").text) == ()
    (text,) = parse_nft_text(sample("nft-output-drop.txt").text)
    assert (text.name, text.policy, text.accepts) == ("output", "DROP", 4)
    assert parse_sshd_t(sample("sshd-T-hardened.txt").text)["passwordauthentication"] == "no"
    config = parse_sshd_config(sample("sshd_config-debian.txt").text)
    assert "passwordauthentication" not in config  # only in the Match block
    assert config["usepam"] == "yes"
    assert parse_openssl_enddate(sample("openssl-enddate.txt").text) == 1804241521.0  # 2027-03-05 10:12:01Z
    assert parse_epoch(sample("date-gnu.txt").text) == pytest.approx(1795778879.634781262)
    assert parse_epoch(sample("date-busybox-1970.txt").text) == 192.0
    assert parse_ntp_sync(sample("timedatectl-show.txt").text) == (True, "timedatectl")
    assert parse_ntp_sync(sample("timedatectl-status-unsynced.txt").text) == (False, "timedatectl")
    assert parse_ntp_sync(sample("chronyc-tracking.txt").text) == (True, "chronyc")
    assert parse_ntp_sync(sample("chronyc-tracking-unsynced.txt").text) == (False, "chronyc")


# -- verdicts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mounts", "lsblk", "crypt", "status", "words"),
    [
        ("proc-mounts-yocto-ro-luks.txt", "lsblk-luks.json", "", "pass", "LUKS volume data"),
        ("proc-mounts-yocto-ro-luks.txt", "", "cryptsetup-status-luks2.txt", "pass", "LUKS2 volume data"),
        ("proc-mounts-yocto-ro-luks.txt", "", "", "unknown", "/dev/mapper/data"),
        ("proc-mounts-debian-rw.txt", "lsblk-mountpoints-plain.json", "", "fail", "no encryption layer"),
        ("proc-mounts-debian-rw.txt", "", "", "fail", "not through dm-crypt"),
        ("mount-busybox-squashfs.txt", "", "", "unknown", "no data partition"),
    ],
)
def test_luks(mounts: str, lsblk: str, crypt: str, status: str, words: str) -> None:
    check = check_luks(sample(mounts), sample(lsblk) if lsblk else MISSING, sample(crypt) if crypt else MISSING)
    assert check.status == status
    assert words in check.reason
    assert check.why == WHY["luks"]


@pytest.mark.parametrize(
    ("mounts", "status", "words"),
    [
        ("proc-mounts-yocto-ro-luks.txt", "pass", "writable parts through overlayfs: /etc"),
        ("proc-mounts-debian-rw.txt", "fail", "read-write (/dev/mmcblk0p2, ext4)"),
        ("proc-mounts-overlayroot.txt", "pass", "stay in RAM"),
        ("mount-busybox-squashfs.txt", "fail", "persist on /overlay (ubifs)"),
    ],
)
def test_root_readonly(mounts: str, status: str, words: str) -> None:
    check = check_root_readonly(sample(mounts))
    assert (check.status, words in check.reason) == (status, True), check.reason


def test_firewall_takes_any_dropping_output_chain() -> None:
    assert check_firewall(sample("iptables-S-output-drop.txt"), MISSING).status == "pass"
    assert check_firewall(sample("iptables-S-output-accept-final-reject.txt"), MISSING).status == "pass"
    nft_only = check_firewall(sample("iptables-S-output-accept.txt"), sample("nft-j-output-drop.json"))
    assert (nft_only.status, "nft inet filter output" in nft_only.reason) == ("pass", True)
    assert check_firewall(sample("iptables-S-output-accept.txt"), sample("nft-j-empty.json")).status == "fail"
    assert check_firewall(MISSING, sample("nft-output-drop.txt")).status == "pass"
    empty = check_firewall(MISSING, Section("", 0))
    assert (empty.status, "nft (empty ruleset)" in empty.reason) == ("fail", True)
    as_user = check_firewall(Section("", 4), Section("", 1))
    assert (as_user.status, "exit status 4; listing rules needs root" in as_user.reason) == ("unknown", True)
    unknown = check_firewall(MISSING, MISSING)
    assert (unknown.status, unknown.reason) == ("unknown", "iptables is not installed; nft is not installed")


def test_ssh() -> None:
    assert check_ssh(sample("sshd-T-hardened.txt"), NONE).status == "pass"
    pam = check_ssh(sample("sshd-T-pam-kbd.txt"), NONE)
    assert (pam.status, "PAM" in pam.reason) == ("fail", True)
    default = check_ssh(Section("", 255), sample("sshd_config-debian.txt", 0))
    assert (default.status, "OpenSSH's default" in default.reason) == ("fail", True)
    assert check_ssh(Section("authenticationmethods publickey\n", 0), NONE).status == "pass"
    assert check_ssh(MISSING, Section("", 1)).status == "unknown"


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [("dropbear-cmdline-s.txt", "pass", "dropbear command line"),
     ("dropbear-default-yocto.txt", "fail", "/etc/default/dropbear"),  # -w only keeps root out
     ("dropbear-uci-openwrt.txt", "fail", "/etc/config/dropbear")],
)
def test_ssh_with_dropbear(name: str, status: str, words: str) -> None:
    check = check_ssh(MISSING, Section("", 1), sample(name))
    assert (check.status, words in check.reason) == (status, True), check.reason
    assert parse_dropbear("cmdline: dropbear -p22 -sg\n") == (True, "dropbear command line")
    assert parse_dropbear("cmdline: dropbear -b/etc/sbanner -r k\n")[0] is False  # the "s" is in a value


def _clock(device: float | None, laptop: float = 1_795_778_879.0) -> Clock:
    return Clock(laptop_time=laptop, uncertainty_seconds=0.1, device_time=device)


def test_certificate_judged_by_the_laptops_clock() -> None:
    end = sample("openssl-enddate.txt")
    now = 1_804_241_521.0 - 100 * 86400
    assert check_certificate(end, "/etc/ssl/device.crt", _clock(0.0, now), 30).status == "pass"
    ahead = check_certificate(end, "/etc/ssl/device.crt", _clock(now + 200 * 86400, now), 30)
    assert (ahead.status, "already sees it expired" in ahead.reason) == ("pass", True)
    near = check_certificate(end, "/etc/ssl/device.crt", _clock(None, now + 80 * 86400), 30)
    assert (near.status, "in 20 days" in near.reason) == ("fail", True)
    assert "expired" in check_certificate(end, "/x", _clock(None, now + 101 * 86400), 30).reason
    assert check_certificate(NONE, None, None, 30).status == "unknown"
    assert "no certificate at /x" in check_certificate(Section("siteline: no such file\n", 0), "/x", None, 30).reason
    assert check_certificate(MISSING, "/x", None, 30).status == "unknown"


def test_clock_offset_midpoint_and_1970() -> None:
    clock = clock_from(Section("1000.5\n", 0), 990.0, 992.0)
    assert (clock.laptop_time, clock.uncertainty_seconds, clock.offset_seconds) == (991.0, 1.0, 9.5)
    assert clock_from(Section("x", 0), 5.0, 4.0).device_time is None
    in_1970 = _clock(192.0)
    assert in_1970.unset
    check = check_clock_sync(sample("timedatectl-show.txt"), in_1970)
    assert (check.status, "1970-01-01" in check.reason) == ("fail", True)
    busybox = check_clock_sync(MISSING, _clock(1_795_778_880.0))
    assert (busybox.status, "busybox ntpd" in busybox.reason, "1.0 s ahead" in busybox.reason) == ("unknown", True,
                                                                                                   True)


def _sectioned(**parts: tuple[str, int | None]) -> str:
    """Output in run_sections' framing: a marker line, the output, then "rc NAME N" (left out: cut off)."""
    lines = []
    for name, (text, status) in parts.items():
        lines.append(f"@@siteline-section@@{name}\n{text}")
        if status is not None:
            lines.append(f"@@siteline-section@@rc {name} {status}\n")
    return "".join(lines)


def _posture(result: Posture | Unavailable) -> Posture:
    assert isinstance(result, Posture), result
    return result


def test_posture_from_output_and_a_cut_off_round_trip() -> None:
    text = _sectioned(clock=("1795778880.0\n", 0), mounts=(sample("proc-mounts-yocto-ro-luks.txt").text, 0),
                      lsblk=(sample("lsblk-luks.json").text, 0),
                      iptables=(sample("iptables-S-output-drop.txt").text, 0),
                      nft=("", 127), sshd=(sample("sshd-T-hardened.txt").text, 0),
                      ntp=("NTPSynchronized=yes", 0),  # no final newline: the rc marker ends its line
                      certificate=("notAfter=Mar  5 10:12:01 2027 GMT\n", None))  # no status: cut off
    posture = _posture(posture_from_output(text, 1_795_778_879.0, 1_795_778_879.2))
    assert posture.passed
    assert posture.counts() == {"pass": 6, "fail": 0, "unknown": 0}
    assert posture.clock is not None
    assert posture.clock.offset_seconds == pytest.approx(0.9)
    assert posture.raw == text
    empty = posture_from_output("sh: syntax error", 1.0, 2.0)
    assert isinstance(empty, Unavailable)
    assert "none of the posture sections" in empty.reason
    unknown = _posture(posture_from_output(_sectioned(clock=("", 127)), 1.0, 2.0))
    assert not unknown.passed
    assert unknown.counts() == {"pass": 0, "fail": 0, "unknown": 6}


def test_the_plugin_offers_the_posture_probe() -> None:
    (probe,) = siteline_posture.siteline_probes()
    assert (probe.name, probe.kind) == ("posture", "posture")
    assert "device.crt" in dict(commands("/etc/ssl/device.crt"))["certificate"]
    assert "certificate" not in dict(commands(None))
    assert "'/tmp/a b'" in dict(commands("/tmp/a b"))["certificate"]  # quoted for the device's shell


# -- the real tools -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("days", "status"), [(10, "fail"), (400, "pass")])
def test_real_openssl_enddate(tmp_path: Path, days: int, status: str) -> None:
    openssl = require_tool("openssl")
    cert = tmp_path / "device.crt"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", str(days), "-subj", "/CN=gw-01", "-keyout", str(tmp_path / "k.pem"), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    out = subprocess.run([openssl, "x509", "-enddate", "-noout", "-in", str(cert)], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    assert abs(parse_openssl_enddate(out) - time.time() - days * 86400) < 120
    assert check_certificate(Section(out, 0), str(cert), None, 30).status == status


# sshd -T insists on /run/sshd: run it in a private mount namespace with a tmpfs over /run (no trace on the host).
_PRIVATE_RUN = 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec "$@"'


@pytest.mark.parametrize(
    ("config", "status"),
    [("PasswordAuthentication no\nKbdInteractiveAuthentication no\n", "pass"),
     ("PasswordAuthentication no\nUsePAM yes\n", "fail"),  # keyboard-interactive through PAM still asks
     ("UsePAM no\n", "fail")],  # OpenSSH's default: passwords allowed
)
def test_real_sshd_t(tmp_path: Path, config: str, status: str) -> None:
    sshd, keygen = require_tool("sshd"), require_tool("ssh-keygen")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")], check=True, timeout=30)
    (tmp_path / "cfg").write_text(config)
    argv = [sshd, "-T", "-f", str(tmp_path / "cfg"), "-h", str(tmp_path / "hk")]
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_RUN, "sshd", *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"sshd -T could not run in a private mount namespace here: {done.stderr.strip()[:200]}")
    check = check_ssh(Section(done.stdout, 0), NONE)
    assert check.status == status, check.reason


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_probe_command_is_posix_sh(shell: str) -> None:
    exe = require_tool(shell)
    argv = [exe, "sh"] if shell == "busybox" else [exe]
    for path in ("/etc/ssl/device.crt", None):
        done = subprocess.run([*argv, "-n", "-c", sections_command(commands(path))], capture_output=True, text=True,
                              timeout=30, check=False)
        assert (done.returncode, done.stderr) == (0, "")


# -- garbage ---------------------------------------------------------------------------------------------
PARSERS = (parse_dropbear, parse_mounts, parse_lsblk_json, parse_cryptsetup_status, parse_iptables_s, parse_nft_json,
           parse_nft_text, parse_sshd_t, parse_sshd_config, parse_openssl_enddate, parse_epoch, parse_ntp_sync)
GOLDEN = [p.read_text() for p in sorted(DATA.glob("*")) if p.suffix in (".txt", ".json")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(), st.sampled_from(GOLDEN).flatmap(
    lambda g: st.integers(0, len(g)).map(lambda n: g[:n]))))
def test_parsers_return_or_raise_parse_error(text: str) -> None:
    for parser in PARSERS:
        with contextlib.suppress(ParseError):
            parser(text)  # a typed value, or ParseError: anything else fails the test


SECTION_NAMES = ("clock", "mounts", "lsblk", "cryptsetup", "iptables", "nft", "sshd", "sshd_config", "dropbear", "ntp",
                 "certificate", "other")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.tuples(st.sampled_from(SECTION_NAMES), st.one_of(st.text(), st.sampled_from(GOLDEN)),
                                st.one_of(st.none(), st.integers(0, 255))), max_size=12),
       before=st.floats(-1e10, 1e10), span=st.floats(-5, 5))
def test_any_output_gives_a_posture(parts: list[tuple[str, str, int | None]], before: float, span: float) -> None:
    text = "".join(f"@@siteline-section@@{n}\n{t}\n" + ("" if s is None else f"@@siteline-section@@rc {n} {s}\n")
                   for n, t, s in parts)
    posture = posture_from_output(text, before, before + span)
    if isinstance(posture, Unavailable):
        assert posture.reason
        return
    assert len(posture.checks) == 6
    for check in posture.checks:
        assert check.status in ("pass", "fail", "unknown")
        assert check.reason
    if posture.clock is not None:
        posture.clock.describe()



def test_the_factory_check_joins_a_snapshot() -> None:
    base = Posture(checks=(PostureCheck("luks", "pass", "ok"),), clock=None)
    tried = base.with_check(PostureCheck("factory_credentials", "fail", "root/root is still accepted"))
    assert [c.key for c in tried.checks] == ["luks", "factory_credentials"]
    again = tried.with_check(PostureCheck("factory_credentials", "pass", "none accepted"))
    assert [c.status for c in again.checks] == ["pass", "pass"]
    assert again.check("factory_credentials") is not None
    assert WHY["factory_credentials"].startswith("Factory passwords")
