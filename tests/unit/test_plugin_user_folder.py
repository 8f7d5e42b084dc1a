"""Plugins dropped into the user plugin folder (and SITELINE_PLUGIN_PATH): real files, really imported."""

from __future__ import annotations

import json
import logging
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.plugins import PluginHost, UnknownPluginError, load_plugins
from siteline.core.user_plugins import MODULE_PREFIX, PATH_ENV

PROBE_PLUGIN = """
    from siteline.api import hookimpl

    __version__ = "{version}"

    class Probe:
        name = "{name}-probe"
        kind = "logs"

        async def collect(self, ctx):
            return None

    @hookimpl
    def siteline_probes():
        return [Probe()]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private SITELINE_HOME whose user plugin folder exists; user plugin modules are forgotten after."""
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    monkeypatch.delenv(PATH_ENV, raising=False)
    (tmp_path / "data" / "plugins").mkdir(parents=True, mode=0o700)
    (tmp_path / "config").mkdir()
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Failing plugins log errors on purpose."""
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.plugins"):
        yield


def folder(home: Path) -> Path:
    return home / "data" / "plugins"


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def probe_plugin(home: Path, name: str, version: str = "2.0") -> Path:
    return write(folder(home) / f"{name}.py", PROBE_PLUGIN.format(name=name, version=version))


def user_rows(host: PluginHost) -> list[str]:
    return [p.name for p in host.plugins if p.source.startswith("user folder")]


def test_single_file_plugin_is_loaded_with_its_version_and_source(home: Path) -> None:
    path = probe_plugin(home, "vendor_x", "1.4.2")
    host = load_plugins()
    info = host.info("vendor_x")
    assert info is not None
    assert (info.enabled, info.version, info.source) == (True, "1.4.2", f"user folder {path}")
    assert "vendor-x-probe" not in {c.item.name for c in host.probes()}
    assert "vendor_x-probe" in {c.item.name for c in host.probes("logs")}
    assert host.info("system") is not None
    assert host.info("system").enabled


def test_package_plugin_with_relative_imports(home: Path) -> None:
    pkg = folder(home) / "router"
    write(pkg / "parsers.py", "def parse(text):\n    return text.upper()\n")
    write(pkg / "__init__.py", """
        from siteline.api import hookimpl
        from . import parsers
        from .parsers import parse

        class Probe:
            name = "router"
            kind = "network"

            async def collect(self, ctx):
                return parse("ok")

        @hookimpl
        def siteline_probes():
            assert parsers.parse("a") == "A"
            return [Probe()]
        """)
    host = load_plugins()
    info = host.info("router")
    assert info is not None
    assert info.enabled, info
    assert info.version == "?"  # no __version__
    assert info.source == f"user folder {pkg}"
    assert [c.plugin for c in host.probes("network") if c.item.name == "router"] == ["router"]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("import siteline_no_such_module_here\n", "ModuleNotFoundError"),
        ("raise RuntimeError('vendor bug at import')\n", "vendor bug at import"),
        ("import sys\nsys.exit('plugin wants out')\n", "SystemExit: plugin wants out"),
    ],
)
def test_broken_user_plugin_is_disabled_and_reported(home: Path, quiet: None, source: str, words: str) -> None:
    write(folder(home) / "broken.py", source)
    probe_plugin(home, "good")
    host = load_plugins()
    info = host.info("broken")
    assert info is not None
    assert info.failed
    assert words in info.error
    assert info.status.startswith("failed: ")
    assert "Traceback" in info.details
    assert host.failures[-1].where == "load"
    assert host.info("good").enabled
    assert host.info("system").enabled
    assert not [m for m in sys.modules if m == f"{MODULE_PREFIX}broken"]  # no half-imported module left


def test_user_plugin_whose_hook_raises_is_disabled(home: Path, quiet: None) -> None:
    write(folder(home) / "hooky.py", """
        from siteline.api import hookimpl

        @hookimpl
        def siteline_probes():
            raise ValueError("cannot list probes")
        """)
    host = load_plugins()
    assert "hooky" not in {c.plugin for c in host.probes()}
    assert "cannot list probes" in host.info("hooky").error
    assert host.probes("system")


def test_name_clash_with_an_installed_plugin_is_refused(home: Path, quiet: None) -> None:
    marker = home / "imported"
    write(folder(home) / "system.py", f"open({str(marker)!r}, 'w').close()\n__version__ = '9'\n")
    host = load_plugins()
    rows = [p for p in host.plugins if p.name == "system"]
    assert len(rows) == 2
    builtin, mine = rows
    assert builtin.enabled
    assert builtin.source.startswith("entry point")
    assert not mine.enabled
    assert not mine.toggleable
    assert "already installed" in mine.error
    assert "rename system.py" in mine.error
    assert mine.version == "9"
    assert not marker.exists(), "a refused plugin is never imported"
    assert host.probes("system")


def test_a_plugin_file_cannot_shadow_a_real_module(home: Path) -> None:
    import json as real_json

    write(folder(home) / "json.py", "__version__ = '1'\nVALUE = 42\n")
    host = load_plugins()
    assert host.info("json").enabled
    assert sys.modules["json"] is real_json
    assert sys.modules[f"{MODULE_PREFIX}json"].VALUE == 42


def test_missing_folder_and_private_files_give_nothing(home: Path) -> None:
    folder(home).rmdir()
    assert not user_rows(load_plugins())
    for name in ("_helper.py", ".hidden.py", "notes.txt", "README.md"):
        write(folder(home) / name, "raise SystemExit('must not run')\n")
    (folder(home) / "not_a_package").mkdir()
    (folder(home) / "__pycache__").mkdir()
    assert not user_rows(load_plugins())


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_writable_folder_is_refused(home: Path, quiet: None) -> None:
    marker = home / "imported"
    write(folder(home) / "sneaky.py", f"open({str(marker)!r}, 'w').close()\n")
    folder(home).chmod(0o777)
    host = load_plugins()
    info = host.info("sneaky")
    assert info is not None
    assert info.failed
    assert "can be changed by every user" in info.error
    assert "chmod o-w" in info.error
    assert any("Plugin folder refused" in n for n in host.notices)
    assert not marker.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_writable_plugin_file_is_refused(home: Path, quiet: None) -> None:
    probe_plugin(home, "loose").chmod(0o666)
    assert "can be changed by every user" in load_plugins().info("loose").error


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_world_writable_package_init_is_refused(home: Path, quiet: None) -> None:
    write(folder(home) / "pkg" / "__init__.py", "__version__ = '1'\n").chmod(0o666)
    info = load_plugins().info("pkg")
    assert info is not None
    assert "can be changed by every user" in info.error


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="changing a file's owner needs root")
def test_folder_owned_by_another_user_is_refused(home: Path, quiet: None) -> None:
    probe_plugin(home, "foreign")
    os.chown(folder(home), 65534, 65534)
    info = load_plugins().info("foreign")
    assert info is not None
    assert info.failed
    assert "belongs to another user (uid 65534)" in info.error


def test_extra_folders_from_the_environment(home: Path, tmp_path_factory: pytest.TempPathFactory,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = tmp_path_factory.mktemp("vendor1"), tmp_path_factory.mktemp("vendor2")
    write(one / "vendor_a.py", PROBE_PLUGIN.format(name="vendor_a", version="0.3"))
    write(two / "vendor_b.py", PROBE_PLUGIN.format(name="vendor_b", version="0.4"))
    monkeypatch.setenv(PATH_ENV, os.pathsep.join([str(one), "", str(two), str(home / "absent")]))
    host = load_plugins()
    assert (host.info("vendor_a").version, host.info("vendor_b").version) == ("0.3", "0.4")
    assert host.info("vendor_b").source == f"user folder {two / 'vendor_b.py'}"


def test_disabled_user_plugin_is_listed_but_never_imported(home: Path) -> None:
    marker = home / "imported"
    write(folder(home) / "vendor.py", f"__version__ = '3.1'\nopen({str(marker)!r}, 'w').close()\n")
    (home / "config" / "plugins.json").write_text(json.dumps({"version": 1, "disabled": ["vendor", "system"]}))
    host = load_plugins()
    assert host.info("vendor").status == "disabled by user"
    assert host.info("vendor").version == "3.1"  # read from the source, not by running it
    assert host.info("system").status == "disabled by user"
    assert "system" not in {c.plugin for c in host.probes()}
    assert not marker.exists()


def test_switching_off_takes_effect_at_once_and_persists(home: Path) -> None:
    probe_plugin(home, "vendor")
    host = load_plugins()
    assert "vendor" in {c.plugin for c in host.probes()}
    message = host.set_enabled("vendor", False)
    assert "disabled" in message
    assert "vendor" not in {c.plugin for c in host.probes()}
    assert host.info("vendor").status == "disabled by user"
    assert load_plugins().info("vendor").status == "disabled by user"  # the next start remembers
    assert host.set_enabled("vendor", True) == "Plugin 'vendor' is enabled and loaded now."
    assert "vendor" in {c.plugin for c in host.probes()}
    assert load_plugins().info("vendor").enabled


def test_enabling_a_plugin_disabled_at_start_loads_it_now(home: Path) -> None:
    probe_plugin(home, "later")
    (home / "config" / "plugins.json").write_text(json.dumps({"disabled": ["later", "posture"]}))
    host = load_plugins()
    assert "later" not in {c.plugin for c in host.probes()}
    assert host.set_enabled("later", True) == "Plugin 'later' is enabled and loaded now."
    assert host.set_enabled("posture", True) == "Plugin 'posture' is enabled and loaded now."  # an entry point
    assert {"later", "posture"} <= {c.plugin for c in host.probes()}
    assert host.info("later").version == "2.0"


def test_failed_plugin_switched_off_and_on_stays_failed_until_restart(home: Path, quiet: None) -> None:
    write(folder(home) / "broken.py", "raise RuntimeError('nope')\n")
    host = load_plugins()
    assert host.set_enabled("broken", False) == "Plugin 'broken' is disabled; Siteline stopped using it."
    assert host.info("broken").status == "disabled by user"
    assert "tried again when Siteline restarts" in host.set_enabled("broken", True)
    assert host.info("broken").failed


def test_unknown_names(home: Path) -> None:
    host = load_plugins()
    with pytest.raises(UnknownPluginError, match="Known plugins: atmodem, modemmanager"):
        host.set_enabled("nope", False)
    assert "not installed" in host.set_enabled("future", False, allow_unknown=True)
    probe_plugin(home, "future")
    assert load_plugins().info("future").status == "disabled by user"


def test_host_without_settings_keeps_changes_in_memory(home: Path) -> None:
    host = PluginHost()
    host.load_entry_points()
    host.set_enabled("posture", False)
    assert host.probes("posture") == []
    assert not (home / "config" / "plugins.json").exists()
