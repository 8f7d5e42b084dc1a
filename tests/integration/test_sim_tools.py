"""The simulated device's tools through a real /bin/sh (run_command), in the real tools' formats."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from siteline.simulator import hostguard, journal
from siteline.simulator.shell import run_command, run_streamed
from siteline.simulator.state import DeviceState

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    return DeviceState.open(tmp_path / "dev", name="gw-tools", password="pw")


def sh(device: DeviceState, command: str, stdin: bytes | None = None, timeout: float = 20) -> tuple[int, str, str]:
    code, out, err = asyncio.run(run_command(device, command, stdin=stdin, timeout=timeout))
    return code, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("command", "code", "out"),
    [("echo hi", 0, "hi\n"), ("true", 0, ""), ("sh -c 'exit 7'", 7, ""), ("printf 'a\\nb\\n' | wc -l", 0, "2\n")],
)
def test_plain_shell_commands(device: DeviceState, command: str, code: int, out: str) -> None:
    assert sh(device, command)[:2] == (code, out)


def test_stdin_and_timeout(device: DeviceState) -> None:
    assert sh(device, "cat", stdin=b"payload")[1] == "payload"
    started = time.monotonic()
    code, out, err = sh(device, "echo before; sleep 30", timeout=0.5)
    assert code == 124
    assert out == "before\n"
    assert "timed out" in err
    assert time.monotonic() - started < 5


def test_identity_is_the_device_not_the_host(device: DeviceState) -> None:
    code, out, _ = sh(device, "cat /etc/os-release")
    assert code == 0
    assert "ID=nwedge" in out
    assert 'VERSION_CODENAME="kirkstone"' in out
    assert sh(device, "uname -a")[1].startswith("Linux gw-tools 5.15.71-nwedge ")
    assert sh(device, "uname -m")[1] == "aarch64\n"
    shadow = (device.root / "rootfs/etc/shadow").read_text()
    assert sh(device, "cat /etc/shadow")[1] == shadow  # the device's own file, never the host's


def test_hostname_changes_the_device_not_the_host(device: DeviceState) -> None:
    host_before = socket.gethostname()
    assert sh(device, "hostname edge-renamed")[0] == 0
    assert sh(device, "hostname; cat /etc/hostname")[1] == "edge-renamed\nedge-renamed\n"
    assert sh(device, "hostname 'bad name!'")[:1] == (1,)
    assert socket.gethostname() == host_before


def test_proc_files_and_resource_tools(device: DeviceState) -> None:
    up, idle = sh(device, "cat /proc/uptime")[1].split()
    assert float(up) >= 0
    assert float(idle) >= 0
    assert len(sh(device, "cat /proc/loadavg")[1].split()) == 5
    code, out, _ = sh(device, "uptime")
    assert code == 0
    assert " up " in out
    assert "load average: " in out
    df = sh(device, "df -P")[1].splitlines()
    assert df[0].split() == ["Filesystem", "1024-blocks", "Used", "Available", "Capacity", "Mounted", "on"]
    assert {line.split()[-1] for line in df[1:]} >= {"/", "/data", "/boot"}
    free = sh(device, "free")[1].splitlines()
    assert free[0].split() == ["total", "used", "free", "shared", "buff/cache", "available"]
    assert free[1].startswith("Mem:")
    assert free[2].startswith("Swap:")


def test_mmcli_json_has_modemmanager_keys(device: DeviceState) -> None:
    code, out, _ = sh(device, "mmcli -m 0 --output-json")
    assert code == 0
    modem = json.loads(out)["modem"]
    assert modem["generic"]["state"] == "connected"
    assert modem["generic"]["signal-quality"]["value"].isdigit()
    assert modem["generic"]["signal-quality"]["recent"] in ("yes", "no")
    assert modem["3gpp"]["operator-name"]
    assert modem["3gpp"]["operator-code"]
    assert modem["3gpp"]["registration-state"] == "home"
    assert modem["generic"]["access-technologies"] == ["lte"]
    assert modem["generic"]["state-failed-reason"] == "--"  # unknown values are "--"
    assert modem["generic"]["sim"].startswith("/org/freedesktop/ModemManager1/SIM/")


def _shape(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_shape(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items()))
    return {prefix}


def test_mmcli_matches_the_golden_samples(device: DeviceState) -> None:
    ours = json.loads(sh(device, "mmcli -m 0 -J")[1])
    golden = json.loads((DATA / "mmcli" / "modem-0.json").read_text())
    missing = _shape(golden) - _shape(ours)
    assert not missing, f"keys real mmcli prints that the simulator lacks: {sorted(missing)}"
    kv_keys = {line.split(" : ")[0].strip() for line in sh(device, "mmcli -m 0 --output-keyvalue")[1].splitlines()}
    golden_kv = {line.split(" : ")[0].strip() for line in (DATA / "mmcli" / "modem-0-keyvalue.txt").read_text()
                 .splitlines()}
    assert not {k for k in golden_kv - kv_keys if ".value[" not in k}


def test_mmcli_signal_setup_then_get(device: DeviceState) -> None:
    before = json.loads(sh(device, "mmcli -m 0 --signal-get --output-json")[1])["modem"]["signal"]
    assert before["lte"]["rsrp"] == "--"  # polling not set up: no values yet, as on ModemManager
    assert sh(device, "mmcli -m 0 --signal-setup=5")[0] == 0
    after = json.loads(sh(device, "mmcli -m 0 --signal-get -J")[1])["modem"]["signal"]
    assert after["refresh"]["rate"] == "5"
    assert -140 <= float(after["lte"]["rsrp"]) <= -44
    kv = sh(device, "mmcli -m 0 --signal-get --output-keyvalue")[1]
    golden = {line.split(" : ")[0].strip() for line in (DATA / "mmcli" / "signal-get-keyvalue.txt").read_text()
              .splitlines()}
    assert golden <= {line.split(" : ")[0].strip() for line in kv.splitlines()}
    human = sh(device, "mmcli -m 0 --signal-get")[1]
    assert "rsrp:" in human
    assert "dBm" in human
    assert sh(device, "mmcli -L")[1].strip().startswith("/org/freedesktop/ModemManager1/Modem/0 [Quectel]")


def test_wired_failure_moves_the_default_route_to_cellular(device: DeviceState) -> None:
    status = "nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device status"
    assert "eth0:ethernet:connected:Wired connection 1" in sh(device, status)[1].splitlines()
    assert sh(device, "ip route")[1].splitlines()[0].startswith("default via 192.168.10.1 dev eth0")
    device.fail_wired(True)
    lines = sh(device, status)[1].splitlines()
    assert "eth0:ethernet:unavailable:" in lines
    assert "cdc-wdm0:gsm:connected:cellular" in lines
    routes = sh(device, "ip route")[1].splitlines()
    defaults = [r for r in routes if r.startswith("default")]
    assert len(defaults) == 1
    assert defaults[0].startswith("default via 10.64.12.202 dev wwan0")
    assert "wwan0" in sh(device, "ip -o addr")[1]
    assert "eth0" not in sh(device, "ip -o -4 addr")[1]
    shown = sh(device, "nmcli -t -f IP4.GATEWAY,GENERAL.STATE device show eth0")[1].splitlines()
    assert shown[0] == "GENERAL.STATE:20 (unavailable)"


def test_rauc_status_json_has_the_1_8_shape(device: DeviceState) -> None:
    doc = json.loads(sh(device, "rauc status --detailed --output-format=json")[1])
    golden = json.loads((DATA / "rauc" / "status-1.8.json").read_text())
    assert set(doc) == set(golden)
    assert doc["booted"] == "A"
    assert doc["boot_primary"] == "rootfs.0"
    slot = next(iter(doc["slots"][0].values()))
    golden_slot = next(iter(golden["slots"][0].values()))
    assert set(slot) == set(golden_slot)
    assert set(slot["slot_status"]) >= {"bundle", "installed", "activated", "status"}
    plain = json.loads(sh(device, "rauc status --output-format=json")[1])
    assert "slot_status" not in next(iter(plain["slots"][0].values()))  # only with --detailed, as RAUC
    assert "=== Slot States ===" in sh(device, "rauc status")[1]


def test_journalctl_json_has_journald_fields(device: DeviceState) -> None:
    device.log("eth0: Link is Down", "kernel", priority=4)
    device.log("Started edge agent.", "edge-agent")
    lines = sh(device, "journalctl -o json -n 2")[1].splitlines()
    assert len(lines) == 2
    golden = [json.loads(line) for line in (DATA / "journal" / "journalctl-o-json.txt").read_text().splitlines()]
    for ours, real in zip((json.loads(line) for line in lines), golden, strict=True):
        assert set(real) - {"SYSLOG_FACILITY"} <= set(ours) | {"SYSLOG_FACILITY"}
    kernel_only = sh(device, "journalctl -o json -p warning")[1].splitlines()
    assert all(int(json.loads(line)["PRIORITY"]) <= 4 for line in kernel_only)
    assert kernel_only
    assert "Started edge agent." in sh(device, "journalctl -u edge-agent --no-pager")[1]


def _follow_until(device: DeviceState, command: str, wanted: int, log: Callable[[int], None]) -> list[str]:
    """Run ``command`` (a journalctl -f) and keep logging until ``wanted`` lines came out: no guess at
    how long the shim's interpreter takes to start following."""
    async def scenario() -> list[str]:
        out = bytearray()
        enough = asyncio.Event()

        async def sink(data: bytes) -> None:
            out.extend(data)
            if out.count(b"\n") >= wanted:
                enough.set()

        async def nothing(_data: bytes) -> None:
            return None

        async def keep_logging() -> None:
            n = 0
            while not enough.is_set():
                log(n)
                n += 1
                await asyncio.sleep(0.05)

        logger = asyncio.create_task(keep_logging())
        code = await run_streamed(device, command, on_out=sink, on_err=nothing, hangup=enough.wait(), timeout=30)
        await logger
        assert code == 129, f"journalctl -f ended by itself ({code}) or timed out"
        return out.decode().splitlines()

    return asyncio.run(scenario())


def test_journalctl_follow_prints_new_entries(device: DeviceState) -> None:
    lines = _follow_until(device, "journalctl -o json -f -n 0", 3, lambda n: device.log(f"following {n}", "kernel"))
    messages = [json.loads(line)["MESSAGE"] for line in lines[:3]]
    first = int(messages[0].split()[1])
    assert messages == [f"following {n}" for n in range(first, first + 3)]  # consecutive: none lost, none repeated


def test_journalctl_follow_survives_a_vacuum(device: DeviceState, monkeypatch: pytest.MonkeyPatch) -> None:
    """A trimmed journal (a new, smaller file) neither repeats old entries nor skips new ones."""
    monkeypatch.setattr(journal, "MAX_BYTES", 4096)  # this process writes the entries, so its limit applies
    for n in range(40):
        device.log(f"old entry {n} " + "x" * 60, "kernel")
    lines = _follow_until(device, "journalctl -o cat -f -n 0", 60, lambda n: device.log(f"new {n} " + "y" * 60))
    assert not [line for line in lines if line.startswith("old entry")]
    numbers = [int(line.split()[1]) for line in lines[:60]]
    assert numbers == list(range(numbers[0], numbers[0] + 60))


def test_state_changing_tools_act_on_the_state_dir(device: DeviceState) -> None:
    assert sh(device, "iptables -A INPUT -p tcp --dport 22 -j ACCEPT && iptables -S INPUT")[1].splitlines() == [
        "-P INPUT ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"]
    assert "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT" in sh(device, "iptables-save")[1]
    assert (device.root / "admin" / "iptables.json").exists()
    assert sh(device, "systemctl is-active mosquitto")[:2] == (3, "inactive\n")
    assert sh(device, "systemctl start mosquitto && systemctl is-active mosquitto")[:2] == (0, "active\n")
    assert sh(device, "printf 'newpw\\nnewpw\\n' | passwd")[0] == 0
    assert device.check_password("root", "newpw")
    assert sh(device, "chpasswd", stdin=b"root:third\n")[0] == 0
    assert device.check_password("root", "third")
    assert sh(device, "reboot")[0] == 0
    assert device.take_reboot_request()


@pytest.mark.parametrize(
    "command",
    ["mmcli --bogus", "mmcli -m 9", "nmcli frobnicate", "rauc", "rauc status mark-good nope", "fw_printenv -z",
     "journalctl -n abc", "journalctl -o nonsense", "uname -Q", "ip nothing", "iptables -t nope -L",
     "systemctl start nosuch", "df --bogus", "free -x", "passwd -Z", "nft list", "mount -Z", "sim-scenario",
     "uptime -Q", "hostname -Z x", "rauc install /definitely/missing.raucb", "ip route add"],
)
def test_wrong_arguments_give_the_tools_style_error_never_a_traceback(device: DeviceState, command: str) -> None:
    code, out, err = sh(device, command)
    assert code != 0
    assert "Traceback" not in out + err
    assert "internal error" not in err
    assert err.strip()


def test_shims_are_fast(device: DeviceState) -> None:
    sh(device, "uname -r")  # warm the page cache
    started = time.monotonic()
    for _ in range(5):
        sh(device, "uname -r")
    per_call = (time.monotonic() - started) / 5
    assert per_call < 0.5, f"a shim call took {per_call:.3f} s"


def test_passwd_on_a_terminal_does_not_echo(device: DeviceState) -> None:
    """passwd on a real pty (as over the serial console or an SSH shell): prompts, no echo of the password."""
    import os
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: a real /bin/sh on the pty running the device's passwd
        os.execve("/bin/sh", ["/bin/sh", "-c", "passwd"], device.shell_env())
    seen = b""

    def read_until(token: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 10
        while token not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen += os.read(fd, 1024)
                except OSError:
                    return

    try:
        read_until(b"New password: ")
        os.write(fd, b"on-a-tty\n")
        read_until(b"Retype new password: ")
        os.write(fd, b"on-a-tty\n")
        read_until(b"updated successfully")
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    assert b"on-a-tty" not in seen
    assert device.check_password("root", "on-a-tty")


def test_fallback_os_release_is_the_device_too(device: DeviceState) -> None:
    assert "ID=nwedge" in sh(device, "cat /usr/lib/os-release")[1]


def _host_file(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def test_shell_writes_and_real_tools_never_reach_the_host(device: DeviceState) -> None:
    if not hostguard.available():  # without it, `echo evil > /etc/hostname` below would write the host's file
        message = "the host guard's namespaces are not available here (root with CAP_SYS_ADMIN and unshare needed)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    watched = ("/etc/hostname", "/etc/shadow", "/etc/passwd", "/etc/hosts")
    before = {p: _host_file(p) for p in watched}
    host_name = socket.gethostname()
    _code, out, _ = sh(device, "echo evil > /etc/hostname; hostname evil2; /bin/hostname evil3; "
                              "cat /etc/shadow | head -1")
    assert {p: _host_file(p) for p in watched} == before
    assert socket.gethostname() == host_name
    assert device.hostname() == "evil2"
    assert out.splitlines()[-1].startswith("root:")
    assert out.splitlines()[-1] == (device.root / "rootfs/etc/shadow").read_text().splitlines()[0]


def test_host_changing_commands_act_on_the_device(device: DeviceState) -> None:
    forward = _host_file("/proc/sys/net/ipv4/ip_forward")
    code, out, err = sh(device, "hostnamectl set-hostname gw-new && sysctl -w net.ipv4.ip_forward=1 >/dev/null && "
                                "date -s '2030-01-02 03:04:05' >/dev/null && useradd tech && "
                                "ip6tables -A INPUT -j DROP && modprobe dummy && timedatectl set-ntp false && "
                                "hostname && sysctl -n net.ipv4.ip_forward && date -u +%Y && "
                                "ip6tables -S INPUT && lsmod | grep -c dummy && umount /data; echo umount=$?")
    assert code == 0, err
    assert out.splitlines() == ["gw-new", "1", "2030", "-P INPUT ACCEPT", "-A INPUT -j DROP", "1", "umount=32"]
    assert _host_file("/proc/sys/net/ipv4/ip_forward") == forward
    assert time.gmtime().tm_year < 2030
    assert "tech" in device.users()
    assert "tech:x:" in (device.root / "rootfs/etc/passwd").read_text()
    assert sh(device, "init 6")[0] == 0
    assert device.take_power_request() == "reboot"
    assert sh(device, "shutdown -h now")[0] == 0
    assert device.take_power_request() == "poweroff"
    assert "Kernel IP routing table" in sh(device, "route -n")[1]
    assert "inet " in sh(device, "ifconfig eth0")[1]


def test_file_readers_see_the_device_files(device: DeviceState) -> None:
    fs = device.root / "rootfs"
    assert sh(device, "head -n 1 /etc/os-release")[1] == "ID=nwedge\n"
    assert sh(device, "sed -n 1p /etc/os-release")[1] == "ID=nwedge\n"
    assert sh(device, "tail -n 1 /etc/hostname")[1] == "gw-tools\n"
    assert sh(device, "grep -c nwedge /etc/os-release")[1] == "2\n"
    assert sh(device, "grep -H ^ID= /etc/os-release")[1] == "/etc/os-release:ID=nwedge\n"
    assert sh(device, "ls /etc/rauc")[1] == "system.conf\n"
    assert sh(device, "stat -c %n /etc/rauc/system.conf")[1] == "/etc/rauc/system.conf\n"
    assert sh(device, "/usr/bin/env test -f /etc/rauc/system.conf && echo yes")[1] == "yes\n"
    assert sh(device, "head -1 /etc/shadow")[1] == (fs / "etc/shadow").read_text().splitlines()[0] + "\n"
    code, _, err = sh(device, "head /etc/no-such-file")
    assert code == 1
    assert str(fs) not in err
    assert "/etc/no-such-file" in err
