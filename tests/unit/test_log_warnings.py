"""warnings_of: the Timeline's share of a log batch (priority warning or worse), from each tool's format."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from siteline.core.logs.record import Source
from siteline.core.logs.warnings import warnings_of


def _journal(message: str, priority: str) -> str:
    return json.dumps({"MESSAGE": message, "PRIORITY": priority, "__REALTIME_TIMESTAMP": "1795788121000000",
                       "_HOSTNAME": "gw-01", "SYSLOG_IDENTIFIER": "ModemManager"}, separators=(",", ":"))


def test_journald_keeps_warning_and_worse_only() -> None:
    lines = [_journal("modem lost", "3"), _journal("all fine", "6"), _journal("signal low", "4"), _journal("x", "5")]
    found = warnings_of(lines, Source.JOURNAL)
    assert [(r.message, r.priority, r.unit) for r in found] == [("modem lost", 3, "ModemManager"),
                                                                ("signal low", 4, "ModemManager")]
    assert found[0].time == 1795788121.0


def test_logread_levels() -> None:
    lines = ["Fri Nov 27 14:02:01 2026 daemon.err modem[12]: lost carrier",
             "Fri Nov 27 14:02:02 2026 daemon.warn netifd: wan down",
             "Fri Nov 27 14:02:03 2026 daemon.info netifd: wwan up"]
    assert [r.message for r in warnings_of(lines, Source.LOGREAD)] == ["lost carrier", "wan down"]


def test_formats_without_priorities_give_nothing() -> None:
    assert warnings_of(["error: something"], Source.TEXT) == []


@given(st.lists(st.text(max_size=200), max_size=20), st.sampled_from(list(Source)))
def test_garbage_never_raises(lines: list[str], source: Source) -> None:
    for record in warnings_of(lines, source):
        assert record.priority is not None
        assert record.priority <= 4
