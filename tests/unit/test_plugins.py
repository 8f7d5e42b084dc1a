"""Plugins arrive through the entry-point group; a broken one is disabled and reported, never fatal."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.plugin_api import DeviceContext
from siteline.core.plugin_settings import CORE_PLUGINS
from siteline.core.plugins import PluginHost
from siteline.core.transports.base import Result

BUILTIN = set(CORE_PLUGINS)


def _install_dist(site: Path, dist: str, module: str, source: str) -> None:
    """Install a plugin the way pip would leave it: a module plus a dist-info with entry points."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[siteline.plugins]\n{dist} = {module}\n")


@pytest.fixture
def site_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("sl_test_")]:
            del sys.modules[name]


def _ctx(output: str = "") -> DeviceContext:
    async def run(cmd: str, timeout: float) -> Result:
        return Result(0, output)

    return DeviceContext("dev", "ssh://root@127.0.0.1", run, logging.LoggerAdapter(logging.getLogger("t"), {}))


def test_builtin_plugins_come_through_the_entry_point_group() -> None:
    host = PluginHost()
    host.load_entry_points()
    assert "system" in {p.name for p in host.plugins if p.enabled}
    assert any(c.item.kind == "system" for c in host.probes())


def test_plugin_that_fails_to_import_is_reported(site_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    _install_dist(site_dir, "broken-import", "sl_test_broken_import", "raise RuntimeError('vendor bug at import')\n")
    host = PluginHost()
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.plugins"):
        host.load_entry_points()
    info = {p.name: p for p in host.plugins}
    assert info["broken-import"].enabled is False
    assert "vendor bug at import" in info["broken-import"].error
    assert info["system"].enabled, "a broken plugin must not stop the others"
    assert host.failures[0].where == "load"


def test_plugin_whose_hook_raises_is_disabled(site_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    _install_dist(
        site_dir,
        "broken-hook",
        "sl_test_broken_hook",
        """
        from siteline.api import hookimpl

        @hookimpl
        def siteline_probes():
            raise ValueError("cannot list probes")
        """,
    )
    host = PluginHost()
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.plugins"):
        host.load_entry_points()
        probes = host.probes()
    assert "broken-hook" not in {c.plugin for c in probes}
    assert "system" in {c.plugin for c in probes}  # the built-in ones go on
    assert {p.name: p.enabled for p in host.plugins}["broken-hook"] is False
    assert host.probes() == probes  # disabled for good, not failing again


def test_probe_that_raises_disables_its_plugin_only(site_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    _install_dist(
        site_dir,
        "broken-probe",
        "sl_test_broken_probe",
        """
        from siteline.api import hookimpl

        class Boom:
            name = "boom"
            kind = "modem"

            async def collect(self, ctx):
                return 1 / 0

        @hookimpl
        def siteline_probes():
            return [Boom()]
        """,
    )
    host = PluginHost()
    seen = []
    host.add_failure_listener(seen.append)
    host.load_entry_points()
    (entry,) = [c for c in host.probes("modem") if c.plugin == "broken-probe"]
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.plugins"):
        assert asyncio.run(host.run_probe(entry, _ctx())) is None
    assert len(seen) == 1
    assert "ZeroDivisionError" in seen[0].error
    assert seen[0].describe().startswith("Plugin 'broken-probe' failed in probe 'boom'")
    # the built-in modem probes go on: ModemManager first, the AT port as its fallback
    # (other installed plugins, such as a vendor's, may add modem probes of their own)
    assert [c.plugin for c in host.probes("modem") if c.plugin in BUILTIN] == ["modemmanager", "atmodem"]
    assert host.probes("system")


def test_user_can_disable_a_plugin() -> None:
    host = PluginHost(disabled=["system"])
    host.load_entry_points()
    assert "system" not in {c.plugin for c in host.probes("system")}
    assert host.probes("modem")  # the others stay
    assert {p.name: p.error for p in host.plugins}["system"] == "disabled by user"


def test_link_errors_in_a_probe_do_not_disable_its_plugin() -> None:
    host = PluginHost()
    host.load_entry_points()
    (entry,) = [c for c in host.probes("system") if c.plugin == "system"]

    async def dead_link(cmd: str, timeout: float) -> Result:
        raise ConnectionResetError("peer reset the connection")

    ctx = DeviceContext("dev", "ssh://h", dead_link, logging.LoggerAdapter(logging.getLogger("t"), {}))
    with pytest.raises(ConnectionResetError):
        asyncio.run(host.run_probe(entry, ctx))
    assert host.failures == []
    assert host.probes("system")
