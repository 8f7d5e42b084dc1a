"""The AT-command parsers (3GPP TS 27.007) against real-format responses (tests/data/at), and garbage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siteline.core.device.modem import Modem, ModemSignal
from siteline.core.errors import ParseError
from siteline_atmodem.parsers import merge, parse_cesq, parse_cops, parse_creg, parse_csq

DATA = Path(__file__).resolve().parents[1] / "data" / "at"


def read(name: str) -> str:
    return (DATA / name).read_bytes().decode()


def test_csq_to_dbm() -> None:
    s = parse_csq(read("csq.txt"))
    assert (s.rssi, s.problems) == (-67.0, ())
    assert s.technologies() == {}
    lte = parse_csq(read("csq.txt"), technology="lte")
    assert lte.rssi is None
    assert lte.lte is not None
    assert lte.lte.rssi == -67.0


@pytest.mark.parametrize(("index", "dbm"), [(0, -113.0), (1, -111.0), (31, -51.0), (99, None), (32, None)])
def test_csq_range_ends(index: int, dbm: float | None) -> None:
    assert parse_csq(f"+CSQ: {index},99\r\nOK\r\n").rssi == dbm


def test_csq_unknown_says_why() -> None:
    s = parse_csq(read("csq-unknown.txt"))
    assert s.rssi is None
    assert "99" in s.problems[0]


def test_cesq_lte() -> None:
    s = parse_cesq(read("cesq-lte.txt"))
    assert list(s.technologies()) == ["lte"]
    assert s.lte is not None
    assert (s.lte.rsrq, s.lte.rsrp, s.lte.snr) == (-8.0, -85.0, None)


def test_cesq_umts() -> None:
    s = parse_cesq(read("cesq-umts.txt"))
    assert list(s.technologies()) == ["umts"]
    assert s.umts is not None
    assert (s.umts.rscp, s.umts.ecio) == (-78.0, -6.0)


def test_cesq_lte_and_nr() -> None:
    s = parse_cesq(read("cesq-nr.txt"))
    assert list(s.technologies()) == ["lte", "nr"]
    assert s.lte is not None
    assert (s.lte.rsrq, s.lte.rsrp) == (-10.0, -93.0)
    assert s.nr is not None
    assert (s.nr.rsrq, s.nr.rsrp, s.nr.snr) == (-13.5, -95.0, 16.5)


@pytest.mark.parametrize(
    ("line", "attr", "field", "value"),
    [("+CESQ: 0,99,255,255,255,255", "gsm", "rssi", -111.0), ("+CESQ: 63,99,255,255,255,255", "gsm", "rssi", -48.0),
     ("+CESQ: 99,99,0,0,255,255", "umts", "rscp", -121.0), ("+CESQ: 99,99,96,49,255,255", "umts", "ecio", 0.0),
     ("+CESQ: 99,99,255,255,0,0", "lte", "rsrp", -141.0), ("+CESQ: 99,99,255,255,34,97", "lte", "rsrq", -3.0),
     ("+CESQ: 99,99,255,255,34,97", "lte", "rsrp", -44.0),
     ("+CESQ: 99,99,255,255,255,255,127,126,127", "nr", "snr", 40.0),
     ("+CESQ: 99,99,255,255,255,255,127,126,127", "nr", "rsrp", -31.0)],
)
def test_cesq_range_ends(line: str, attr: str, field: str, value: float) -> None:
    reading = getattr(parse_cesq(line), attr)
    assert getattr(reading, field) == value


def test_cesq_all_unknown_is_a_problem_not_zero() -> None:
    s = parse_cesq("+CESQ: 99,99,255,255,255,255\r\nOK\r\n")
    assert s.technologies() == {}
    assert s.problems


def test_cops_name_and_technology() -> None:
    m = parse_cops(read("cops.txt"))
    assert (m.operator_name, m.operator_code, m.access_technologies, m.problems) == ("Vodafone UK", None, ("lte",), ())


def test_cops_numeric_and_endc() -> None:
    m = parse_cops(read("cops-numeric.txt"))
    assert (m.operator_name, m.operator_code, m.access_technologies) == (None, "26201", ("lte", "5gnr"))


def test_cops_deregistered() -> None:
    m = parse_cops(read("cops-deregistered.txt"))
    assert (m.operator_name, m.operator_code, m.access_technologies, m.problems) == (None, None, (), ())


def test_creg_home() -> None:
    m = parse_creg(read("creg.txt"))
    assert (m.registration, m.roaming, m.problems) == ("home", False, ())


def test_cereg_roaming_with_technology() -> None:
    m = parse_creg(read("cereg-roaming.txt"), "+CEREG")
    assert (m.registration, m.roaming, m.access_technologies) == ("roaming", True, ("lte",))


def test_cereg_answer_after_an_unsolicited_line() -> None:
    m = parse_creg(read("cereg-urc-then-searching.txt"), "+CEREG")
    assert (m.registration, m.roaming) == ("searching", None)


def test_unsolicited_form_alone() -> None:
    m = parse_creg('+CEREG: 5,"1A2B","01C3D4E5",7\r\n', "+CEREG")
    assert (m.registration, m.access_technologies) == ("roaming", ("lte",))


def test_cme_error_says_what_and_what_to_do() -> None:
    with pytest.raises(ParseError, match="SIM not inserted") as caught:
        parse_csq(read("cme-error-sim.txt"))
    assert "SIM" in caught.value.hint


def test_plain_error() -> None:
    with pytest.raises(ParseError, match="ERROR"):
        parse_cesq(read("error.txt"))


def test_merge_fills_unknowns_in_order() -> None:
    m = merge(parse_cops(read("cops.txt")), parse_creg(read("cereg-roaming.txt"), "+CEREG"),
              parse_creg("+CREG: 0,4\r\nOK\r\n"))
    assert (m.operator_name, m.registration, m.roaming, m.access_technologies) == ("Vodafone UK", "roaming", True,
                                                                                   ("lte",))
    assert "+COPS" in m.raw
    assert "+CEREG" in m.raw


# -- bad input --------------------------------------------------------------------------------------------

PARSERS: list[Callable[[str], object]] = [parse_csq, parse_cesq, parse_cops, parse_creg,
                                          lambda t: parse_creg(t, "+CEREG")]
GOLDEN = sorted(p.name for p in DATA.iterdir() if p.name != "README.md")


def _never_crashes(text: str) -> None:
    for parser in PARSERS:
        with contextlib.suppress(ParseError):
            assert isinstance(parser(text), Modem | ModemSignal)


@pytest.mark.parametrize("text", ["", "OK\r\n", "+CSQ:", "+CSQ: ,", "+CESQ: 1,2", "+COPS: 0,0,\"unterminated",
                                  "+CREG: x,y", "+CEREG:", "+CSQ: 99999999999,1", "\x00\xff+CESQ: -1,-1,-1,-1,-1,-1"])
def test_garbage(text: str) -> None:
    _never_crashes(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_never_crashes(text: str) -> None:
    _never_crashes(text)


@settings(max_examples=200, deadline=None)
@given(prefix=st.sampled_from(["+CSQ: ", "+CESQ: ", "+COPS: ", "+CREG: ", "+CEREG: "]),
       cells=st.lists(st.one_of(st.integers(-5, 300).map(str), st.text(max_size=6)), max_size=12))
def test_any_response_line_never_crashes(prefix: str, cells: list[str]) -> None:
    _never_crashes(prefix + ",".join(cells) + "\r\nOK\r\n")


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(GOLDEN), cut=st.floats(0.0, 1.0), junk=st.text(max_size=20))
def test_truncated_and_corrupted_goldens_never_crash(name: str, cut: float, junk: str) -> None:
    text = read(name)
    at = int(len(text) * cut)
    _never_crashes(text[:at])
    _never_crashes(text[:at] + junk + text[at:])
