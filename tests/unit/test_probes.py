"""The modem, network and slots probes through a real /bin/sh, with stand-in tools that print golden samples.

Each stand-in is a shell script in a private PATH (nothing else on it but `cat`), so a tool left out is
really missing (exit 127) and the probes' one-round-trip scripts run exactly as on a device.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import shutil
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siteline_modemmanager
import siteline_networkmanager
import siteline_slots
from siteline.api import DeviceContext, Unavailable, hookimpl, sections_command, split_sections
from siteline.core.device.network import Network
from siteline.core.device.slots import Slots
from siteline.core.plugin_api import make_context
from siteline.core.plugins import PluginHost
from siteline.core.transports.base import Result
from siteline.probe_cli import add_probe_arguments, probe_command
from siteline_modemmanager.probe import ModemManagerProbe, ModemReport
from siteline_networkmanager.probe import NetworkManagerProbe
from siteline_slots.probe import SlotsProbe

DATA = Path(__file__).resolve().parents[1] / "data"
log = logging.getLogger(__name__)


class FakeDevice:
    """A PATH of stand-in tools run by a real /bin/sh; each tool is a few lines of shell."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.root = root
        cat = shutil.which("cat")
        assert cat is not None
        shutil.copy(cat, self.bin / "cat")  # a copy, never a link: a stand-in written here must not reach the host
        self.commands: list[str] = []

    def tool(self, name: str, script: str) -> None:
        path = self.bin / name
        path.unlink(missing_ok=True)  # a new file, never writing through whatever was there
        path.write_text("#!/bin/sh\n" + script + "\n")
        path.chmod(0o755)

    def prints(self, name: str, sample: str, code: int = 0) -> None:
        """A tool that prints a golden sample (whatever its arguments) and exits with ``code``."""
        self.tool(name, f"cat {shlex.quote(str(DATA / sample))}; exit {code}")

    async def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, env={"PATH": str(self.bin)}, cwd=self.root,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return Result(proc.returncode or 0, out.decode(), err.decode())

    def ctx(self, target: str = "ssh://root@gw") -> DeviceContext:
        return make_context("gw", target, self.run, log)


@pytest.fixture
def dev(tmp_path: Path) -> FakeDevice:
    return FakeDevice(tmp_path)


def collect(probe: object, dev: FakeDevice) -> object:
    return asyncio.run(probe.collect(dev.ctx()))  # type: ignore[attr-defined]


# -- sections ---------------------------------------------------------------------------------------------


def test_sections_keep_each_commands_output_status_and_errors(dev: FakeDevice) -> None:
    commands = (("a", "echo one; echo oops >&2"), ("b", "nosuchtool --x"), ("c", "echo two; (exit 3)"))
    result = asyncio.run(dev.run(sections_command(commands), 5))
    got = split_sections(commands, result)
    assert (got["a"].stdout, got["a"].stderr, got["a"].exit_code) == ("one", "oops", 0)
    assert got["b"].missing
    assert "nosuchtool is not installed" in got["b"].failure()
    assert (got["c"].stdout, got["c"].exit_code) == ("two", 3)
    assert "failed with exit status 3: two" in got["c"].failure()


def test_output_without_a_final_newline(dev: FakeDevice) -> None:
    commands = (("a", "printf 'no newline'"), ("b", "printf ''"), ("c", "printf 'x\\ny'"))
    got = split_sections(commands, asyncio.run(dev.run(sections_command(commands), 5)))
    assert [(got[n].stdout, got[n].exit_code) for n in "abc"] == [("no newline", 0), ("", 0), ("x\ny", 0)]


def test_sections_cut_off_and_merged_streams() -> None:
    commands = (("a", "x"), ("b", "y"))
    merged = sections_command(commands)  # a console merges stderr into stdout: markers appear twice
    text = "@@siteline-section@@a\n@@siteline-section@@a\nout\nerr\n@@siteline-section@@rc a 1\n@@siteline-section@@b\n"
    got = split_sections(commands, Result(0, text, ""))
    assert got["a"].stdout == "out\nerr"
    assert got["a"].exit_code == 1
    assert got["b"].exit_code is None
    assert "did not finish" in got["b"].failure()
    assert merged.count("@@siteline-section@@") == 6


# -- modem ------------------------------------------------------------------------------------------------


MMCLI = """
case "$*" in
  "-L") cat {data}/mmcli/list-human.txt ;;
  "-m 0 -J") cat {data}/mmcli/modem-0.json ;;
  "-m 0 -K") cat {data}/mmcli/modem-0-keyvalue.txt ;;
  "-m 0 --signal-setup=10") touch polling; echo "successfully setup signal quality information polling" ;;
  "-m 0 --signal-get -J") if [ -e polling ]; then cat {data}/mmcli/signal-get-5g.json;
                          else cat {data}/mmcli/signal-get-off.json; fi ;;
  *) echo "error: couldn't find modem" >&2; exit 1 ;;
esac
"""


def mmcli(dev: FakeDevice, **replace: str) -> None:
    script = MMCLI.format(data=DATA)
    for old, new in replace.items():
        script = script.replace(old.replace("_", " "), new)
    dev.tool("mmcli", script)
    dev.tool("touch", ': > "$1"')


def test_modem_in_one_round_trip_with_polling_switched_on(dev: FakeDevice) -> None:
    mmcli(dev)
    report = collect(ModemManagerProbe(), dev)
    assert isinstance(report, ModemReport)
    assert len(dev.commands) == 1
    assert report.index == 0
    assert report.modem.state is not None
    assert report.signal is not None
    assert report.signal.nr is not None
    assert report.signal.nr.rsrp is not None
    assert (dev.root / "polling").exists()


def test_polling_already_on_is_left_alone(dev: FakeDevice) -> None:
    mmcli(dev)
    (dev.root / "polling").write_text("")
    dev.tool("touch", "echo touched >&2; exit 9")  # --signal-setup must not run
    report = collect(ModemManagerProbe(), dev)
    assert isinstance(report, ModemReport)
    assert report.signal is not None
    assert report.signal.refresh_rate != 0


def test_json_refused_falls_back_to_keyvalue(dev: FakeDevice) -> None:
    mmcli(dev, **{'"-m 0 -J") cat': '"-m 0 -J") echo "Unknown option -J" >&2; exit 1; cat'})
    report = collect(ModemManagerProbe(), dev)
    assert isinstance(report, ModemReport)
    assert report.modem.manufacturer is not None
    assert len(dev.commands) == 1


def test_garbled_json_is_asked_again_as_keyvalue(dev: FakeDevice) -> None:
    mmcli(dev, **{'"-m 0 -J") cat': '"-m 0 -J") echo \'{"modem": {"gen\'; exit 0; cat'})
    report = collect(ModemManagerProbe(), dev)
    assert isinstance(report, ModemReport)
    assert report.modem.manufacturer is not None
    assert dev.commands[-1] == "mmcli -m 0 -K"


def test_no_modemmanager_means_unavailable(dev: FakeDevice) -> None:
    got = collect(ModemManagerProbe(), dev)
    assert isinstance(got, Unavailable)
    assert "not installed" in got.reason
    assert "mmcli" in got.reason


def test_no_modem_and_failed_list(dev: FakeDevice) -> None:
    dev.prints("mmcli", "mmcli/list-none-human.txt")
    got = collect(ModemManagerProbe(), dev)
    assert isinstance(got, Unavailable)
    assert "no modem" in got.reason
    dev.tool("mmcli", "echo 'error: could not find the ModemManager process in the bus' >&2; exit 1")
    got = collect(ModemManagerProbe(), dev)
    assert isinstance(got, Unavailable)
    assert "exit status 1" in got.reason
    assert "ModemManager process" in got.reason


def test_signal_failure_keeps_the_modem(dev: FakeDevice) -> None:
    mmcli(dev, **{'"-m 0 --signal-get -J")': '"nothing")'})
    report = collect(ModemManagerProbe(), dev)
    assert isinstance(report, ModemReport)
    assert report.signal is None
    assert any("could not read the signal" in p for p in report.problems)


# -- network ----------------------------------------------------------------------------------------------


def nm(dev: FakeDevice, scenario: str, *, ip: bool = True) -> None:
    dev.tool("nmcli", f"""case "$*" in
  *"device status") cat {DATA}/nmcli/device-status-{scenario}.txt ;;
  *"connection show") cat {DATA}/nmcli/connection-show-{scenario}.txt ;;
  *"device show") cat {DATA}/nmcli/device-show-ip-iface.txt ;;
esac""")
    if ip:
        dev.prints("ip", f"nmcli/ip-route-default-{scenario}.txt")


def test_network_on_cellular_backup_and_since(dev: FakeDevice) -> None:
    probe = NetworkManagerProbe()
    nm(dev, "wired")
    first = collect(probe, dev)
    assert isinstance(first, Network)
    assert first.on_backup is False
    assert first.since is None  # never guessed before a change is seen
    nm(dev, "failover")
    second = collect(probe, dev)
    assert isinstance(second, Network)
    assert second.on_backup is True
    assert second.since is not None
    assert f"since {second.since:%H:%M}" in second.summary
    third = collect(probe, dev)
    assert isinstance(third, Network)
    assert third.since == second.since
    assert len(dev.commands) == 3


def test_network_without_nmcli_or_ip(dev: FakeDevice) -> None:
    got = collect(NetworkManagerProbe(), dev)
    assert isinstance(got, Unavailable)
    assert "NetworkManager is not on this device" in got.reason
    nm(dev, "wired", ip=False)
    net = collect(NetworkManagerProbe(), dev)
    assert isinstance(net, Network)
    assert net.on_backup is None  # a missing `ip` is not "offline"
    assert any("ip is not installed" in p for p in net.problems)


# -- slots ------------------------------------------------------------------------------------------------


def test_slots_rauc_and_uboot_counters(dev: FakeDevice) -> None:
    dev.prints("rauc", "rauc/status-1.8.json")
    dev.prints("fw_printenv", "fw_printenv/rauc-booted-b-trial.txt")
    got = collect(SlotsProbe(), dev)
    assert isinstance(got, Slots)
    assert got.source == "rauc+uboot"
    assert got.booted == "A"
    assert got.env is not None
    assert got.env.variables["BOOT_ORDER"] == "B A"


def test_slots_from_counters_alone_and_cmdline(dev: FakeDevice) -> None:
    dev.prints("fw_printenv", "fw_printenv/rauc-booted-b-trial.txt")
    (dev.root / "cmdline").write_text("console=ttymxc1 root=/dev/mmcblk0p3 rauc.slot=B\n")
    real_cat = shutil.which("cat")
    dev.tool("cat", f'[ "$1" = /proc/cmdline ] && exec {real_cat} {dev.root}/cmdline; exec {real_cat} "$@"')
    got = collect(SlotsProbe(), dev)
    assert isinstance(got, Slots)
    assert got.source == "uboot"
    assert got.booted == "B"
    slot = got.slot("B")
    assert slot is not None
    assert slot.attempts_left == 2


def test_slots_grub_only_without_uboot_tools(dev: FakeDevice) -> None:
    dev.prints("grub-editenv", "grub-editenv/rauc-trying-b.txt")
    got = collect(SlotsProbe(), dev)
    assert isinstance(got, Slots)
    assert got.source == "grub"


def test_slots_unavailable_with_every_reason(dev: FakeDevice) -> None:
    got = collect(SlotsProbe(), dev)
    assert isinstance(got, Unavailable)
    assert "no A/B update tool found" in got.reason
    dev.tool("rauc", "echo 'Failed to obtain status: The name de.pengutronix.rauc was not provided' >&2; exit 1")
    dev.tool("fw_printenv", "echo 'Cannot read environment, using default' >&2; exit 243")
    got = collect(SlotsProbe(), dev)
    assert isinstance(got, Unavailable)
    assert "de.pengutronix.rauc" in got.reason
    assert "243" in got.reason


# -- garbage never escapes collect --------------------------------------------------------------------------


def _garbage_run(text: str, code: int) -> DeviceContext:
    async def run(command: str, timeout: float) -> Result:
        return Result(code, text, text[::-1])

    return make_context("gw", "t", run, log)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.lists(st.one_of(st.text(max_size=60), st.sampled_from(
        ["@@siteline-section@@list", "@@siteline-section@@modem", "@@siteline-section@@rc list 0",
         "@@siteline-section@@rc modem 0", "@@siteline-section@@devices", "@@siteline-section@@rc devices 0",
         "@@siteline-section@@rauc", "@@siteline-section@@rc rauc 0", "{", '{"modem":{"generic":{}}}',
         "/org/freedesktop/ModemManager1/Modem/0", "eth0:ethernet:connected:x", "default dev eth0",
         '{"slots":[{"a":{"bootname":"A"}}]}', "BOOT_ORDER=A B", "BOOT_A_LEFT=x"]))),
    code=st.sampled_from([0, 1, 127]),
)
def test_garbage_gives_a_snapshot_or_unavailable(body: list[str], code: int) -> None:
    ctx = _garbage_run("\n".join(body), code)
    for probe in (ModemManagerProbe(), NetworkManagerProbe(), SlotsProbe()):
        got = asyncio.run(probe.collect(ctx))
        assert isinstance(got, ModemReport | Network | Slots | Unavailable)


# -- the probe command ---------------------------------------------------------------------------------------


def host_with(*modules: object) -> PluginHost:
    host = PluginHost()
    for module in modules:
        host.register(module, module.__name__)  # type: ignore[attr-defined]
    return host


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_probe_arguments(parser)
    return parser.parse_args(list(argv))


def test_probe_json_schema(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    mmcli(dev)
    dev.prints("rauc", "rauc/status-1.8.json")
    host = host_with(siteline_modemmanager, siteline_networkmanager, siteline_slots)
    code = asyncio.run(probe_command(args("--json", "--only", "modem,network,slots,posture"), "t", dev.run,
                                     host=host))
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "siteline-probe/1"
    assert "system" not in doc
    nr = doc["modem"]["signal"]["nr"]
    assert isinstance(nr["rsrp"], float)
    assert doc["modem"]["signal"]["gsm"] is None
    assert doc["modem"]["imei"].endswith("*******")
    assert doc["network"] == {"available": False, "reason": doc["network"]["reason"]}
    assert "NetworkManager" in doc["network"]["reason"]
    assert doc["slots"]["booted"] == "A"
    assert doc["posture"]["available"] is False


def test_unknown_signal_is_null_never_zero(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    mmcli(dev, **{"signal-get-5g.json": "signal-get-off.json"})
    asyncio.run(probe_command(args("--json", "--only", "modem"), "t", dev.run, host=host_with(siteline_modemmanager)))
    signal = json.loads(capsys.readouterr().out)["modem"]["signal"]
    assert all(signal[tech] is None for tech in ("gsm", "umts", "lte", "nr"))
    assert signal["rsrp_band"] is None


def test_a_raising_probe_is_one_unavailable_area(dev: FakeDevice, capsys: pytest.CaptureFixture[str]) -> None:
    class Broken:
        name, kind = "broken", "modem"

        async def collect(self, ctx: DeviceContext) -> object:
            raise ValueError("boom")

    @hookimpl
    def siteline_probes() -> list[object]:
        return [Broken()]

    plugin = types.ModuleType("broken_plugin")
    plugin.siteline_probes = siteline_probes  # type: ignore[attr-defined]
    dev.prints("rauc", "rauc/status-1.8.json")
    host = host_with(siteline_slots)
    host.register(plugin, "broken")
    assert asyncio.run(probe_command(args("--only", "modem,slots"), "t", dev.run, host=host)) == 0
    captured = capsys.readouterr()
    assert "modem: unavailable: Plugin 'broken' failed" in captured.out
    assert "slots: booted A" in captured.out
    assert "boom" in captured.err


@pytest.mark.parametrize("only", ["modem,bogus", ",", "SYSTEM,system"])
def test_only_is_checked(only: str) -> None:
    if only == "SYSTEM,system":
        assert args("--only", only).only == ("system",)
        return
    with pytest.raises(SystemExit):
        args("--only", only)


def test_long_scripts_go_in_round_trips_a_console_line_can_hold() -> None:
    from siteline.api import MAX_ROUND_TRIP, batches, sections_command

    commands = [(f"s{i}", "echo " + "x" * 150) for i in range(12)]
    groups = batches(commands, MAX_ROUND_TRIP)
    assert [pair for group in groups for pair in group] == commands  # all of them, in order
    assert len(groups) > 1
    assert all(len(sections_command(group)) <= MAX_ROUND_TRIP for group in groups)
