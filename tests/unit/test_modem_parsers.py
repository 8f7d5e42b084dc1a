"""The ModemManager parsers against real-format mmcli output (tests/data/mmcli), the simulator, and garbage."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.core.device.modem import Modem, ModemList, ModemSignal, rsrp_band
from siteline.core.errors import ParseError
from siteline.simulator.state import DeviceState
from siteline.simulator.tools import mmcli
from siteline_modemmanager.parsers import flatten, parse_modem, parse_modem_list, parse_signal

DATA = Path(__file__).resolve().parents[1] / "data" / "mmcli"
Run = Callable[..., str]


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- mmcli -L ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["list-human.txt", "list-keyvalue.txt", "list.json"])
def test_modem_list_in_every_form(name: str) -> None:
    listed = parse_modem_list(read(name))
    assert [m.index for m in listed.modems] == [0, 3]
    assert listed.modems[0].path == "/org/freedesktop/ModemManager1/Modem/0"
    assert listed.problems == ()


def test_modem_list_human_names_the_maker() -> None:
    sierra = parse_modem_list(read("list-human.txt")).modems[1]
    assert sierra.manufacturer == "Sierra Wireless, Incorporated"
    assert sierra.model is not None
    assert sierra.model.startswith("Sierra Wireless EM7565")


@pytest.mark.parametrize("name", ["list-none-human.txt", "list-none.json", "list-none-keyvalue.txt"])
def test_no_modems_is_an_empty_list(name: str) -> None:
    assert parse_modem_list(read(name)).modems == ()


# -- mmcli -m N -------------------------------------------------------------------------------------------


def test_connected_modem_json() -> None:
    m = parse_modem(read("modem-0.json"))
    assert (m.manufacturer, m.model, m.firmware) == ("QUALCOMM INCORPORATED", "QUECTEL Mobile Broadband Module",
                                                     "EC25EFAR06A06M4G")
    assert (m.state, m.failed_reason, m.power_state) == ("connected", None, "on")
    assert m.access_technologies == ("hsdpa", "hsupa")
    assert (m.operator_name, m.operator_code, m.registration, m.roaming) == ("OperatorName", "00000", "home", False)
    assert (m.sim_present, m.sim_locked, m.unlock_required) == (True, False, "sim-pin2")
    assert (m.imei, m.signal_quality, m.signal_recent) == ("000000000000000", 40, True)
    assert m.problems == ()


def test_connected_modem_keyvalue() -> None:
    m = parse_modem(read("modem-0-keyvalue.txt"))
    assert (m.manufacturer, m.model, m.state, m.access_technologies) == ("Quectel", "EC25", "connected", ("lte",))
    assert (m.operator_name, m.operator_code, m.imei, m.signal_quality) == ("Dark Star", "310410", "357014749990990",
                                                                            29)
    assert m.signal_recent is False
    assert m.sim_present is None  # that capture has no modem.generic.sim line: unknown, not "absent"


def test_connected_modem_human() -> None:
    m = parse_modem(read("modem-0-human.txt"))
    assert (m.path, m.manufacturer, m.model, m.firmware) == ("/org/freedesktop/ModemManager1/Modem/0", "Quectel",
                                                             "EC25", "EC25EFAR06A06M4G")
    assert (m.state, m.access_technologies, m.signal_quality, m.signal_recent) == ("connected", ("lte",), 29, True)
    assert (m.operator_name, m.operator_code, m.registration, m.roaming) == ("Dark Star", "310410", "home", False)
    assert (m.sim_present, m.sim_locked, m.imei) == (True, False, "357014749990990")
    assert m.problems == ()


def test_older_mmcli_human_form() -> None:
    m = parse_modem(read("modem-0-human-1.10.txt"))
    assert (m.path, m.manufacturer, m.firmware, m.state) == ("/org/freedesktop/ModemManager1/Modem/0", "Huawei",
                                                             "12.631.07.01.00", "registered")
    assert (m.access_technologies, m.operator_name, m.sim_present) == (("hspa-plus",), "Vodafone.de", True)


def test_failed_modem_without_sim() -> None:
    m = parse_modem(read("modem-1-sim-missing-human.txt"))
    assert (m.state, m.failed_reason, m.sim_present) == ("failed", "sim-missing", False)
    assert (m.signal_quality, m.signal_recent, m.operator_name, m.registration) == (0, False, None, None)
    assert m.access_technologies == ()
    assert m.firmware == "SWI9X30C_02.33.03.00 r8209 CARMD-EV-FRMWR2 2019/08/28 20:59:30"


def test_locked_modem() -> None:
    m = parse_modem(read("modem-2-locked-keyvalue.txt"))
    assert (m.state, m.sim_present, m.sim_locked, m.unlock_required) == ("locked", True, True, "sim-pin")
    assert (m.operator_name, m.operator_code, m.registration, m.roaming) == (None, None, None, None)
    assert m.access_technologies == ()


def test_roaming_on_5g() -> None:
    m = parse_modem(read("modem-3-roaming-5g.json"))
    assert (m.access_technologies, m.registration, m.roaming) == (("lte", "5gnr"), "roaming", True)
    assert (m.sim_locked, m.unlock_required, m.signal_quality) == (False, "none", 71)


def test_the_three_forms_agree(sim_mmcli: Run) -> None:
    """The same fields in three forms give one snapshot (raw aside)."""
    forms = [parse_modem(sim_mmcli("-m", "0", *extra)) for extra in ([], ["--output-keyvalue"], ["--output-json"])]
    assert forms[0].state == "connected"
    stripped = [Modem(**{**f.__dict__, "raw": ""}) for f in forms]
    assert stripped[0] == stripped[1] == stripped[2]


def test_terminal_colours_are_ignored() -> None:
    coloured = read("modem-0-human.txt").replace("state: connected", "state: \x1b[32mconnected\x1b[0m")
    assert parse_modem(coloured).state == "connected"


def test_implausible_values_are_unknown_with_a_reason() -> None:
    doc = json.loads(read("modem-0.json"))
    doc["modem"]["generic"]["signal-quality"]["value"] = "250"
    doc["modem"]["3gpp"]["imei"] = "not-an-imei"
    m = parse_modem(json.dumps(doc))
    assert (m.signal_quality, m.imei) == (None, None)
    assert len(m.problems) == 2


def test_truncated_keyvalue_list_is_reported() -> None:
    text = read("modem-0-keyvalue.txt").replace("modem.generic.bearers.value[2]", "modem.generic.bearers.junk")
    assert any("bearers" in p for p in parse_modem(text).problems)


def test_imei_is_masked_for_display() -> None:
    assert parse_modem(read("modem-0-human.txt")).masked_imei() == "35701474*******"
    assert Modem().masked_imei() is None


@pytest.mark.parametrize(("rsrp", "band"), [(-75.0, "excellent"), (-80.0, "excellent"), (-85.5, "good"),
                                            (-90.0, "good"), (-95.0, "fair"), (-100.0, "fair"), (-100.5, "poor"),
                                            (None, None)])
def test_rsrp_bands(rsrp: float | None, band: str | None) -> None:
    assert rsrp_band(rsrp) == band


# -- mmcli -m N --signal-get ------------------------------------------------------------------------------


def test_signal_keyvalue_lte() -> None:
    s = parse_signal(read("signal-get-keyvalue.txt"))
    assert s.refresh_rate == 2
    assert s.lte is not None
    assert (s.lte.rssi, s.lte.rsrp, s.lte.rsrq, s.lte.snr, s.lte.error_rate) == (-71.0, -100.0, -9.0, 19.0, None)
    assert (s.gsm, s.umts, s.nr) == (None, None, None)
    assert list(s.technologies()) == ["lte"]


def test_signal_human_lte() -> None:
    s = parse_signal(read("signal-get-human.txt"))
    assert s.refresh_rate == 10
    assert s.lte is not None
    assert (s.lte.rssi, s.lte.rsrp, s.lte.rsrq, s.lte.snr) == (-71.0, -100.0, -9.0, 19.0)


def test_signal_json_lte_and_5g() -> None:
    s = parse_signal(read("signal-get-5g.json"))
    assert s.lte is not None
    assert (s.lte.rssi, s.lte.rsrp, s.lte.rsrq, s.lte.snr) == (-73.0, -102.0, -12.0, 11.4)
    assert s.nr is not None
    assert (s.nr.rssi, s.nr.rsrp, s.nr.rsrq, s.nr.snr) == (None, -95.0, -11.0, 7.0)
    assert list(s.technologies()) == ["lte", "nr"]


def test_signal_human_umts_lte_and_5g() -> None:
    s = parse_signal(read("signal-get-5g-human.txt"))
    assert list(s.technologies()) == ["umts", "lte", "nr"]
    assert s.umts is not None
    assert (s.umts.rssi, s.umts.rscp, s.umts.ecio) == (-79.0, -87.0, -8.5)
    assert s.nr is not None
    assert (s.nr.rsrq, s.nr.rsrp, s.nr.snr) == (-11.0, -95.0, 7.0)


def test_signal_output_is_not_a_modem() -> None:
    with pytest.raises(ParseError, match="no modem fields"):
        parse_modem(read("signal-get-5g.json"))


def test_signal_umts_and_gsm() -> None:
    s = parse_signal(read("signal-get-umts-keyvalue.txt"))
    assert s.gsm is not None
    assert s.gsm.rssi == -89.0
    assert s.umts is not None
    assert (s.umts.rssi, s.umts.rscp, s.umts.ecio) == (-79.0, -87.0, -8.5)
    assert s.lte is None


def test_signal_polling_off_says_what_to_do() -> None:
    s = parse_signal(read("signal-get-off.json"))
    assert s.refresh_rate == 0
    assert s.technologies() == {}
    assert "--signal-setup" in s.problems[0]


def test_placeholder_figures_are_unknown_never_zero() -> None:
    text = read("signal-get-keyvalue.txt").replace("-100.00", "0.00").replace("19.00", "-32768.00")
    s = parse_signal(text)
    assert s.lte is not None
    assert (s.lte.rsrp, s.lte.snr, s.lte.rssi) == (None, None, -71.0)
    assert len(s.problems) == 2


# -- the simulator's mmcli parses too ---------------------------------------------------------------------


@pytest.fixture
def sim_mmcli(tmp_path: Path) -> Run:
    device = DeviceState.open(tmp_path / "dev", name="gw-mm", password="pw")

    def run(*argv: str) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert mmcli.main("mmcli", list(argv), device) == 0
        return buf.getvalue()

    return run


@pytest.mark.parametrize("form", [[], ["--output-keyvalue"], ["--output-json"]])
def test_simulator_mmcli_parses(sim_mmcli: Run, form: list[str]) -> None:
    listed = parse_modem_list(sim_mmcli("-L", *form))
    assert isinstance(listed, ModemList)
    assert listed.modems[0].index == 0
    m = parse_modem(sim_mmcli("-m", "0", *form))
    assert (m.manufacturer, m.model, m.state, m.problems) == ("Quectel", "EC25", "connected", ())
    assert m.operator_code == "23415"
    assert m.signal_quality is not None
    before = parse_signal(sim_mmcli("-m", "0", "--signal-get", *form))
    assert before.technologies() == {}
    assert before.problems
    sim_mmcli("-m", "0", "--signal-setup=5")
    after = parse_signal(sim_mmcli("-m", "0", "--signal-get", *form))
    assert after.refresh_rate == 5
    assert after.problems == ()
    assert after.lte is not None
    assert after.lte.rsrp is not None
    assert after.lte.snr is not None


def test_simulator_disabled_modem(sim_mmcli: Run) -> None:
    sim_mmcli("-m", "0", "-d")
    m = parse_modem(sim_mmcli("-m", "0", "-J"))
    assert (m.state, m.operator_name, m.access_technologies, m.registration) == ("disabled", None, (), "idle")


# -- bad input --------------------------------------------------------------------------------------------

GOLDEN = sorted(p.name for p in DATA.iterdir() if p.name != "README.md")


@pytest.mark.parametrize("text", ["", "   \n", "error: couldn't find modem\n", "{", "[1,2]", "null", "\x00\xff",
                                  '{"modem": 5}', '{"modem": {"generic": {"state": ["a", {"b": 1}]}}}',
                                  "[" * 100_000, "a | b\n"])
def test_garbage_is_a_parse_error_or_a_snapshot(text: str) -> None:
    for parser in (parse_modem, parse_signal, parse_modem_list):
        try:
            result: object = parser(text)
        except ParseError as exc:
            result = exc
        ok = isinstance(result, Modem | ModemSignal | ModemList) or (isinstance(result, ParseError) and result.message)
        assert ok, result


def _never_crashes(text: str) -> None:
    for parser in (parse_modem, parse_signal, parse_modem_list, flatten):
        with contextlib.suppress(ParseError):
            parser(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_never_crashes(text: str) -> None:
    _never_crashes(text)


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(GOLDEN), cut=st.floats(0.0, 1.0), junk=st.text(max_size=40))
def test_truncated_and_corrupted_goldens_never_crash(name: str, cut: float, junk: str) -> None:
    text = read(name)
    at = int(len(text) * cut)
    _never_crashes(text[:at])
    _never_crashes(text[:at] + junk + text[at:])


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_any_json_document_never_crashes(doc: object) -> None:
    _never_crashes(json.dumps({"modem": doc}))
    _never_crashes(json.dumps(doc))
