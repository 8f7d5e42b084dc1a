"""mmcli's three output forms, and that they match ModemManager's real shapes (tests/data/mmcli)."""

from __future__ import annotations

import json
from pathlib import Path

from siteline.simulator.tools.mmcli_output import Field, as_json, human, keyvalue

DATA = Path(__file__).resolve().parents[2] / "data" / "mmcli"
FIELDS = [
    Field("modem.generic.state", "Status", "state", "connected"),
    Field("modem.generic.state-failed-reason", "Status", "failed reason", None),
    Field("modem.generic.access-technologies", "Status", "access tech", ["lte"]),
    Field("modem.generic.own-numbers", "Numbers", "own", []),
    Field("modem.generic.signal-quality.value", "Status", "signal quality", "56", shown="56% (recent)"),
    Field("modem.generic.signal-quality.recent", "Status", None, "yes"),
]


def test_keyvalue_aligns_keys_and_uses_length_value_for_lists() -> None:
    text = keyvalue(FIELDS)
    lines = text.splitlines()
    assert len({line.index(" : ") for line in lines}) == 1  # one column, as mmcli aligns it
    assert "modem.generic.state-failed-reason" in text
    assert text.count(" : --") == 2
    assert any(line.startswith("modem.generic.access-technologies.length") and line.endswith(": 1") for line in lines)
    assert any(line.startswith("modem.generic.access-technologies.value[1]") for line in lines)


def test_json_nests_keys_uses_dashes_and_arrays() -> None:
    doc = json.loads(as_json(FIELDS))
    generic = doc["modem"]["generic"]
    assert generic["state"] == "connected"
    assert generic["state-failed-reason"] == "--"
    assert generic["access-technologies"] == ["lte"]
    assert generic["own-numbers"] == []
    assert generic["signal-quality"] == {"value": "56", "recent": "yes"}


def test_human_skips_unset_and_shows_human_values() -> None:
    text = human(FIELDS)
    assert "56% (recent)" in text
    assert "failed reason" not in text
    assert "own" not in text
    assert text.splitlines()[0].strip().startswith("---")


def test_golden_samples_parse_with_the_conventions_we_print() -> None:
    sample = json.loads((DATA / "modem-0.json").read_text())
    assert sample["modem"]["generic"]["state-failed-reason"] == "--"
    kv = (DATA / "modem-0-keyvalue.txt").read_text().splitlines()
    assert all(" : " in line for line in kv)
