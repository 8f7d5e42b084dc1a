"""health-checks.json: read strictly (a broken file refuses the flash), matched by compatible patterns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siteline.core.flash.family_health import HealthConfigError, chosen, family_check, load_config
from siteline.core.flash.job import HealthCheck
from siteline.core.plugin_api import HealthSpec


def test_missing_file_is_no_families(tmp_path: Path) -> None:
    assert load_config(tmp_path / "none.json") == []


def test_families_are_read_and_matched_in_order(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"families": [
        {"family": "gw", "compatibles": ["nwedge-gw-*"], "units": ["a.service", "b.service"], "settle": 5},
        {"compatibles": ["nwedge-*"], "command": "test -e /ok"}]}))
    specs = load_config(path)
    assert specs[0] == HealthSpec("gw", ("nwedge-gw-*",), HealthCheck(units=("a.service", "b.service"), settle=5))
    assert specs[1].family == "nwedge-*"
    found = family_check("nwedge-gw-imx8mm", specs)
    assert found is not None
    assert found.family == "gw"
    other = family_check("nwedge-sensor", specs)
    assert other is not None
    assert other.check.command == "test -e /ok"
    assert family_check("acme-box", specs) is None
    assert family_check(None, specs) is None
    assert family_check("NWEDGE-GW-X", specs) is None  # compatible strings are exact: no case folding


@pytest.mark.parametrize("text", [
    "not json", "[]", '{"families": {}}', '{"families": [1]}', '{"families": [{"compatibles": []}]}',
    '{"families": [{"compatibles": ["x"], "units": "a.service"}]}',
    '{"families": [{"compatibles": ["x"], "settle": -1}]}',
    '{"families": [{"compatibles": ["x"], "settle": "soon"}]}',
    '{"families": [{"compatibles": ["x"], "command": 3}]}',
    '{"families": [{"compatibles": ["x"], "unit": ["typo.service"]}]}',
])
def test_a_broken_file_is_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "health-checks.json"
    path.write_text(text)
    with pytest.raises(HealthConfigError, match=r"health-checks\.json"):
        load_config(path)


def test_chosen() -> None:
    assert not chosen(HealthCheck())
    assert not chosen(HealthCheck(settle=1.0))
    assert chosen(HealthCheck(units=("a",)))
    assert chosen(HealthCheck(command="true"))
