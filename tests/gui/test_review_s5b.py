"""Review s5b regression tests: chunked SSH lines, orjson vs json, log warnings on the Timeline, days-old "since"."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest

from siteline.core.device.history import DeviceHistory
from siteline.core.logs import parsers
from siteline.core.logs.record import Source
from siteline.core.logs.warnings import warnings_of
from siteline.core.transports import streaming

# -- SSH line streams: chunk boundaries are handled (these pass; kept as regression guards) --------------------


class _Reader:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def read(self, n: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class _Process:
    def __init__(self, chunks: list[bytes]) -> None:
        self.stdout, self.stderr = _Reader(chunks), _Reader([])
        self.exit_status, self.exit_signal = 0, None

    async def wait_closed(self) -> None:
        return None


async def _lines_of(chunks: list[bytes]) -> list[str]:
    stream = streaming.LineStream(None, "cmd")  # type: ignore[arg-type]
    stream._process = _Process(chunks)  # type: ignore[assignment]
    return [line async for line in stream]


def test_chunk_boundaries_split_crlf_utf8_and_last_line() -> None:
    euro = "€".encode()
    chunks = [b"one\r", b"\ntw", b"o\n" + euro[:1], euro[1:] + b"x\r\n\r\n", b"", b"tail"]
    assert asyncio.run(_lines_of(chunks[:4] + chunks[5:])) == ["one", "two", "€x", "", "tail"]


# -- Timeline: a restarted Logs follower re-reads its recent lines, and each warning is kept again -------------


def _journal(message: str, priority: str) -> str:
    return json.dumps({"MESSAGE": message, "PRIORITY": priority, "__REALTIME_TIMESTAMP": "1795788121000000"})


def test_logs_tab_restart_does_not_duplicate_timeline_warnings(qapp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from siteline.core.logs.follow import LogBatch
    from siteline.core.transports.base import ConnState
    from siteline.ui.logs import device_logs

    recent = LogBatch([_journal("modem lost", "3"), _journal("fine", "6")], Source.JOURNAL)

    async def fake_follow(*_a: Any, **_k: Any) -> AsyncIterator[Any]:
        yield recent  # every start of the follower reads the device's recent lines back
        await asyncio.sleep(3600)

    monkeypatch.setattr(device_logs, "follow", fake_follow)
    monkeypatch.setattr(device_logs, "log_link", lambda session: None)
    history = DeviceHistory("gw")

    async def scenario() -> None:
        tab = device_logs.DeviceLogsTab()
        tab.on_warnings = lambda name, records: history.observe_logs(records) and None
        session = types.SimpleNamespace(state=types.SimpleNamespace(state=ConnState.UP))
        tab.set_device("gw", session, False)  # type: ignore[arg-type]
        tab.set_shown(True)
        await asyncio.sleep(0.05)
        tab.set_shown(False)  # the technician looks at another tab, then back at Logs
        tab.set_shown(True)
        await asyncio.sleep(0.05)
        await tab.close()
        tab.deleteLater()

    asyncio.run(scenario())
    assert [log.message for log in history.logs] == ["modem lost"], "one error on the device, one on the Timeline"


# -- warnings_of: a syslog PRI's severity is PRI % 8, not its last decimal digit ------------------------------


def test_syslog_pri_prefilter_keeps_daemon_err() -> None:
    line = "<27>Nov 27 14:02:01 gw-01 modem[12]: lost carrier"  # daemon.err: 3 * 8 + 3
    assert parsers.parse_syslog(line, 2026)[4] == 3
    assert [r.message for r in warnings_of([line], Source.SYSLOG)] == ["lost carrier"]


def test_real_formats_are_kept() -> None:  # passes: the formats in the brief are read
    assert warnings_of(["Fri Nov 27 14:02:01 2026 daemon.err modem[12]: lost carrier"], Source.LOGREAD)
    assert warnings_of(["kern  :err   : [    1.234] msg"], Source.DMESG)
    assert warnings_of(['{"MESSAGE":"x","PRIORITY":"3"}'], Source.JOURNAL)


# -- orjson: integers beyond 64 bits become floats, so the batch path stores another message than the line path


def test_orjson_big_int_keeps_the_stored_message() -> None:
    line = '{"MESSAGE":[104,105,18446744073709551616]}'
    batch = parsers.fields_chunk([line, '{"MESSAGE":"ok"}'], Source.JOURNAL)[0]
    assert batch == parsers.parse_journal(line)


def test_real_sshd_stream_keeps_every_line(sshd: Any, tmp_path: Any) -> None:
    import asyncssh

    lines = [("€" * (i % 7)) + f"line-{i}-" + "x" * (i % 300) for i in range(6000)]  # ~1 MB: many 64 KiB chunks
    data = tmp_path / "out.txt"
    data.write_bytes(("\r\n".join(lines) + "\r\nno-newline").encode())

    async def run() -> tuple[list[str], int | None]:
        key = [str(sshd.client_key)]
        async with (asyncssh.connect(sshd.host, sshd.port, username=sshd.user, client_keys=key, known_hosts=None) as c,
                    streaming.stream_lines(c, f"cat {data}; exit 3") as stream):
            got = [line async for line in stream]
            return got, stream.exit_code

    got, code = asyncio.run(asyncio.wait_for(run(), 30))
    assert got == [*lines, "no-newline"]
    assert code == 3


# -- Network: NetworkManager's TIMESTAMP can be days old (on backup for days, or since before a reboot) ----------


def test_days_old_since_is_shown_with_its_date() -> None:
    import time
    from pathlib import Path

    from siteline_networkmanager.parsers import network_from_outputs

    stamp = int(time.time()) - 3 * 86400  # wired went down three days ago
    routes = (Path(__file__).parents[1] / "data/nmcli/ip-route-default-failover.txt").read_text()
    net = network_from_outputs("cdc-wdm0:gsm:connected:LTE\neth0:ethernet:unavailable:\n",
                               f"LTE:u1:gsm:cdc-wdm0:yes:10:{int(time.time())}\nWired:u2:802-3-ethernet::yes:100:{stamp}\n",
                               routes)
    assert net.since is not None
    assert net.since.timestamp() == stamp
    hhmm = f"since {net.since:%H:%M};"
    assert hhmm not in net.summary, f"reads as today: {net.summary!r}"
