"""`siteline plugins`: list (text and JSON), disable/enable by name, the user plugin folder."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.cli import main
from siteline.core.user_plugins import MODULE_PREFIX, PATH_ENV


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Path]:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    monkeypatch.delenv(PATH_ENV, raising=False)
    with caplog.at_level(logging.CRITICAL, logger="siteline.core"):  # broken plugins log on purpose
        yield tmp_path
    for name in [m for m in sys.modules if m.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["plugins", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def drop(home: Path, name: str, source: str) -> Path:
    folder = home / "data" / "plugins"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{name}.py"
    path.write_text(source)
    return path


def test_folder_is_printed_and_created(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "folder")
    assert (code, err) == (0, "")
    assert out.strip() == str(home / "data" / "plugins")
    assert (home / "data" / "plugins").is_dir()


def test_list_shows_versions_status_source_and_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = drop(home, "vendor", "__version__ = '1.2'\n")
    drop(home, "broken", "raise RuntimeError('vendor bug at import')\n")
    hook = "from siteline.api import hookimpl\n\n@hookimpl\ndef siteline_probes():\n    raise KeyError('x')\n"
    drop(home, "hooky", hook)
    code, out, _err = run(capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["PLUGIN"].split() == ["PLUGIN", "VERSION", "STATUS", "SOURCE"]
    assert lines["vendor"].split() == ["vendor", "1.2", "enabled", "user", "folder", str(path)]
    assert "failed: RuntimeError: vendor bug at import" in lines["broken"]
    assert "failed: KeyError" in lines["hooky"]  # a raising hook shows here too
    assert "enabled" in lines["system"]
    assert f"User plugin folder: {home / 'data' / 'plugins'}" in out


def test_list_as_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drop(home, "broken", "1/0\n")
    main(["plugins", "disable", "posture"])
    capsys.readouterr()
    for argv in (["--json"], ["list", "--json"]):
        code, out, _err = run(capsys, *argv)
        body = json.loads(out)
        plugins = {p["name"]: p for p in body["plugins"]}
        assert code == 0
        assert plugins["system"]["status"] == "enabled"
        assert plugins["system"]["core"] is True
        assert plugins["posture"]["status"] == "disabled by user"
        assert plugins["posture"]["error"] == ""
        assert plugins["broken"]["status"] == "failed: ZeroDivisionError: division by zero"
        assert "Traceback" in plugins["broken"]["details"]
        assert body["folder"] == str(home / "data" / "plugins")


def test_disable_and_enable(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "disable", "slots")
    assert code == 0
    assert "Plugin 'slots' is disabled" in out
    assert "What stops working: A/B slot state" in out
    assert json.loads((home / "config" / "plugins.json").read_text())["disabled"] == ["slots"]
    _code, out, _err = run(capsys)
    assert "disabled by user" in next(line for line in out.splitlines() if line.startswith("slots"))
    code, out, _err = run(capsys, "enable", "slots")
    assert code == 0
    assert "Plugin 'slots' is enabled" in out
    assert run(capsys, "enable", "slots")[1].strip() == "Plugin 'slots' is already enabled."


def test_disable_a_user_plugin_without_importing_it(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = home / "imported"
    drop(home, "hangs", f"open({str(marker)!r}, 'w').close()\n")
    assert run(capsys, "disable", "hangs")[0] == 0
    assert not marker.exists()


def test_unknown_name_lists_the_known_ones(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("disable", "enable"):
        code, out, err = run(capsys, action, "nosuch")
        assert code == 2
        assert out == ""
        assert "no plugin is called 'nosuch'" in err
        assert "Known plugins: " in err
        assert "system" in err
    assert not (home / "config" / "plugins.json").exists()


def test_force_disables_a_plugin_before_it_is_installed(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "disable", "future", "--force")[0] == 0
    drop(home, "future", "__version__ = '5'\n")
    _code, out, _err = run(capsys)
    assert "disabled by user" in next(line for line in out.splitlines() if line.startswith("future"))
    assert run(capsys, "enable", "future")[0] == 0


def test_damaged_settings_are_reported_and_replaced(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "config").mkdir(exist_ok=True)
    (home / "config" / "plugins.json").write_text("{{{")
    code, _out, err = run(capsys, "disable", "posture")
    assert code == 0
    assert "was damaged" in err
    assert json.loads((home / "config" / "plugins.json").read_text())["disabled"] == ["posture"]
