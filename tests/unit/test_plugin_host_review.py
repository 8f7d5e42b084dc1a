"""Review of the plugin host (issue 8): what a technician or a vendor expects when a user plugin misbehaves.

Each test states the expectation in its docstring. Real files in a private SITELINE_HOME, really imported.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from siteline.core.plugin_settings import PluginSettings, settings_path
from siteline.core.plugins import PluginHost, load_plugins
from siteline.core.user_plugins import MODULE_PREFIX, PATH_ENV

PROBE = """
    from siteline.api import hookimpl

    __version__ = "1.0"

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
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    monkeypatch.delenv(PATH_ENV, raising=False)
    (tmp_path / "data" / "plugins").mkdir(parents=True, mode=0o700)
    (tmp_path / "config").mkdir()
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(MODULE_PREFIX)]:
        del sys.modules[name]


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.CRITICAL, logger="siteline.core.plugins"):
        yield


def plugins_dir(home: Path) -> Path:
    return home / "data" / "plugins"


def write(path: Path, source: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    path.chmod(mode)
    return path


def cli(home: Path, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    env.pop(PATH_ENV, None)
    return subprocess.run([sys.executable, "-m", "siteline", "plugins", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


# -- a plugin that ends the program ---------------------------------------------------------------------


def test_hook_that_calls_sys_exit_is_disabled_not_the_end_of_siteline(home: Path, quiet: None) -> None:
    """A vendor plugin whose hook calls sys.exit() (a CLI habit) must be disabled and reported like one that
    raises; the window (which asks the hooks when a device opens) must not quit."""
    write(plugins_dir(home) / "quitter.py", """
        import sys
        from siteline.api import hookimpl

        @hookimpl
        def siteline_probes():
            sys.exit("quitter: no config found")
    """)
    host = load_plugins()
    try:
        host.probes()
    except SystemExit as exc:  # pragma: no cover - the defect
        pytest.fail(f"a plugin's hook ended Siteline: SystemExit({exc.code!r})")
    info = host.info("quitter")
    assert info is not None
    assert info.failed, info
    assert "SystemExit" in info.error


def test_probe_that_calls_sys_exit_is_disabled_not_the_end_of_siteline(home: Path, quiet: None) -> None:
    """Same for a probe's collect(): the probe run is guarded, the plugin is disabled and the caller goes on."""
    import asyncio

    from siteline.core.plugin_api import make_context
    from siteline.core.transports.base import Result

    write(plugins_dir(home) / "exitprobe.py", """
        import sys
        from siteline.api import hookimpl

        class Probe:
            name = "exit-probe"
            kind = "logs"

            async def collect(self, ctx):
                sys.exit(2)

        @hookimpl
        def siteline_probes():
            return [Probe()]
    """)
    host = load_plugins()

    async def run(command: str, timeout: float = 10.0) -> Result:
        return Result(0, "")

    async def go() -> object:
        entry = next(c for c in host.probes("logs") if c.plugin == "exitprobe")
        return await host.run_probe(entry, make_context("dev", "ssh://x", run, logging.getLogger("t")))

    try:
        got = asyncio.run(go())
    except SystemExit as exc:  # pragma: no cover - the defect
        pytest.fail(f"a plugin's probe ended Siteline: SystemExit({exc.code!r})")
    assert got is None
    info = host.info("exitprobe")
    assert info is not None
    assert info.failed


def test_sys_exit_at_import_is_reported(home: Path, quiet: None) -> None:
    """Guard: a plugin that sys.exit()s while being imported is one failed plugin, the others load."""
    write(plugins_dir(home) / "exits.py", "import sys\nsys.exit(7)\n")
    write(plugins_dir(home) / "fine.py", PROBE.format(name="fine"))
    host = load_plugins()
    info = host.info("exits")
    assert info is not None
    assert info.failed
    assert "SystemExit" in info.error
    fine = host.info("fine")
    assert fine is not None
    assert fine.enabled


def test_hook_that_raises_on_a_later_call_is_disabled(home: Path, quiet: None) -> None:
    """Guard: a hook that works the first time and raises later (after a switch off/on clears the cache) is
    disabled, and the other plugins' probes are still there."""
    write(plugins_dir(home) / "flaky.py", """
        from siteline.api import hookimpl
        calls = []

        @hookimpl
        def siteline_probes():
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("second call")
            return []
    """)
    write(plugins_dir(home) / "steady.py", PROBE.format(name="steady"))
    host = load_plugins()
    assert host.probes("logs")
    host.set_enabled("steady", False)
    host.set_enabled("steady", True)  # the cache is cleared: every hook is asked again
    names = {c.item.name for c in host.probes("logs")}
    assert "steady-probe" in names
    info = host.info("flaky")
    assert info is not None
    assert info.failed
    assert "second call" in info.error


# -- shadowing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "logging", "asyncio", "siteline", "pluggy"])
def test_a_user_plugin_named_like_a_module_does_not_shadow_it(home: Path, name: str) -> None:
    """Guard: a plugin file called json.py / siteline.py is plugin "json", never the module ``import json``
    gives everyone else."""
    write(plugins_dir(home) / f"{name}.py", "raise RuntimeError('imported as the real module')\nX = 1\n")
    before = sys.modules.get(name)
    load_plugins()
    assert sys.modules.get(name) is before
    code = f"import {name}; print(getattr({name}, '__file__', ''))"
    env = {**os.environ, "SITELINE_HOME": str(home)}
    script = f"from siteline.core.plugins import load_plugins; load_plugins(); {code}"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=40,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert str(plugins_dir(home)) not in out.stdout


# -- permissions ----------------------------------------------------------------------------------------


def test_world_writable_module_inside_a_package_plugin_is_refused(home: Path, quiet: None) -> None:
    """A package plugin's other modules run as the technician just like its __init__.py: one that every user
    may change must get the plugin refused (today only the folder and __init__.py are checked)."""
    pkg = plugins_dir(home) / "vendorpkg"
    pkg.mkdir(mode=0o700)
    write(pkg / "__init__.py", "from . import helpers\nfrom siteline.api import hookimpl\n")
    write(pkg / "helpers.py", "PWNED = True\n", mode=0o666)
    host = load_plugins()
    info = host.info("vendorpkg")
    assert info is not None
    assert not info.enabled, "a package whose helpers.py every user can write was imported"
    assert "helpers.py" in info.error


def test_plugin_symlinked_into_a_world_writable_folder_is_refused(home: Path, quiet: None,
                                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    """The plugin file is a symlink whose real file lies in a folder every user may write (no sticky bit):
    anyone can swap that file, so the plugin must be refused as a world-writable plugin folder is."""
    shared = tmp_path_factory.mktemp("shared")
    shared.chmod(0o777)
    try:
        real = write(shared / "linked.py", PROBE.format(name="linked"))
        (plugins_dir(home) / "linked.py").symlink_to(real)
        host = load_plugins()
        info = host.info("linked")
        assert info is not None
        assert not info.enabled, "a plugin whose real file sits in a world-writable folder was imported"
    finally:
        shared.chmod(0o700)


def test_symlink_to_a_world_writable_plugin_file_is_refused(home: Path, quiet: None,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    """Guard: a symlink to a file every user may write is refused (the check follows the link)."""
    other = tmp_path_factory.mktemp("other")
    real = write(other / "ww.py", PROBE.format(name="ww"), mode=0o666)
    (plugins_dir(home) / "ww.py").symlink_to(real)
    info = load_plugins().info("ww")
    assert info is not None
    assert not info.enabled
    assert "every user" in info.error


def test_enabling_a_dormant_plugin_rechecks_its_file(home: Path, quiet: None) -> None:
    """A user plugin switched off at start is imported only when switched on (maybe hours later, in the open
    window). If its file became world-writable meanwhile, switching it on must refuse it, as a start would."""
    path = write(plugins_dir(home) / "later.py", PROBE.format(name="later"))
    PluginSettings(settings_path()).set_disabled("later", True)
    host = load_plugins()
    assert host.info("later") is not None
    path.chmod(0o666)
    message = host.set_enabled("later", True)
    assert f"{MODULE_PREFIX}later" not in sys.modules, f"imported a world-writable plugin: {message}"
    info = host.info("later")
    assert info is not None
    assert not info.enabled


def test_enabling_a_dormant_plugin_replaced_by_a_symlink_rechecks_it(home: Path, quiet: None,
                                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """The dormant plugin's file was replaced by a symlink to a world-writable file: switching it on must
    not import what is there now without the checks a start applies."""
    path = write(plugins_dir(home) / "swapped.py", PROBE.format(name="swapped"))
    PluginSettings(settings_path()).set_disabled("swapped", True)
    host = load_plugins()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    evil = write(elsewhere / "evil.py", "EVIL = True\n", mode=0o666)
    path.unlink()
    path.symlink_to(evil)
    host.set_enabled("swapped", True)
    module = sys.modules.get(f"{MODULE_PREFIX}swapped")
    assert module is None or not hasattr(module, "EVIL"), "a world-writable file swapped in was imported"


# -- plugins.json ---------------------------------------------------------------------------------------


def test_concurrent_writers_keep_every_change(home: Path) -> None:
    """The window and the CLI (or two CLIs) switching different plugins off at the same moment: every
    name they switched off is in the file afterwards (no lost update)."""
    path = settings_path()
    names = [f"p{i}" for i in range(12)]
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            settings = PluginSettings(path)
            barrier.wait(timeout=10)
            settings.set_disabled(name, True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    written = set(json.loads(path.read_text())["disabled"])
    assert written == set(names), f"lost: {sorted(set(names) - written)}"


@pytest.mark.parametrize("content", [b"", b"\xff\xfe garbage", b'{"disabled": "system"}', b"[1, 2]",
                                     b'{"disabled": [null]}', b'{"version": 1, "disabled": ["system"'])
def test_damaged_plugins_json_never_stops_the_cli(home: Path, content: bytes) -> None:
    """Guard: with a damaged plugins.json `siteline plugins` still lists the plugins (exit 0) and says what
    was wrong; the damaged file is kept beside for the person."""
    settings_path().write_bytes(content)
    out = cli(home)
    assert out.returncode == 0, out.stderr
    assert "system" in out.stdout
    assert "damaged" in out.stderr
    assert any(p.name.startswith("plugins.json.damaged") for p in settings_path().parent.iterdir())


def test_plugins_json_that_is_a_folder_is_a_message(home: Path) -> None:
    """Guard: plugins.json being a folder (a sync tool's accident) is a message, not a traceback."""
    settings_path().mkdir()
    listed = cli(home)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    out = cli(home, "disable", "posture")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "cannot save" in out.stderr


# -- core plugins, the CLI ------------------------------------------------------------------------------


def test_disabled_core_plugin_is_listed_as_disabled_with_a_way_back(home: Path) -> None:
    """After `plugins disable system`, `siteline plugins` lists system as "disabled by user" (exit 0) and
    enable brings it back."""
    out = cli(home, "disable", "system")
    assert out.returncode == 0, out.stderr
    assert "What stops working" in out.stdout
    listed = cli(home, "--json")
    rows = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert rows["system"]["status"] == "disabled by user"
    assert rows["system"]["core"] is True
    assert cli(home, "enable", "system").returncode == 0
    rows = {p["name"]: p for p in json.loads(cli(home, "--json").stdout)["plugins"]}
    assert rows["system"]["enabled"] is True


def test_diag_says_the_area_is_off_because_its_plugin_is_disabled(home: Path, quiet: None) -> None:
    """With the core "system" plugin switched off, the bundle's reason for the system area must say that
    plugin is disabled and how to switch it on ("siteline plugins enable system"); support must not chase a
    device problem (today: "no installed plugin ..." or another plugin's "not an OpenWrt device")."""
    import asyncio

    from siteline.core.diag.collect import collect
    from siteline.core.transports.base import Result

    PluginSettings(settings_path()).set_disabled("system", True)
    host = load_plugins()

    async def run(command: str, timeout: float = 10.0) -> Result:
        return Result(127, "", "sh: not found")

    out = asyncio.run(collect(run, host, target="ssh://x", device="dev", areas=("system",)))
    reason = out.missing.get("system", "")
    assert "disabled" in reason, reason
    assert "siteline plugins enable system" in reason, reason


def test_enable_of_a_never_loaded_plugin_by_cli_loads_it_next_start(home: Path) -> None:
    """Guard: a user plugin disabled before it was ever loaded, then enabled by the CLI, is loaded by the next
    start (listed "enabled" with its version)."""
    write(plugins_dir(home) / "fresh.py", PROBE.format(name="fresh").replace('"1.0"', '"3.1"'))
    assert cli(home, "disable", "fresh").returncode == 0
    rows = {p["name"]: p for p in json.loads(cli(home, "--json").stdout)["plugins"]}
    assert rows["fresh"]["status"] == "disabled by user"
    assert rows["fresh"]["version"] == "3.1"
    assert cli(home, "enable", "fresh").returncode == 0
    rows = {p["name"]: p for p in json.loads(cli(home, "--json").stdout)["plugins"]}
    assert rows["fresh"]["enabled"] is True
    assert rows["fresh"]["version"] == "3.1"


def test_disable_a_plugin_that_hangs_at_import_without_importing_it(home: Path) -> None:
    """Guard: a plugin that hangs while imported can still be switched off from the CLI (nothing is imported)."""
    write(plugins_dir(home) / "hangs.py", "import time\nwhile True:\n    time.sleep(1)\n")
    out = cli(home, "disable", "hangs", timeout=30)
    assert out.returncode == 0, out.stderr
    assert "hangs" in json.loads(settings_path().read_text())["disabled"]


def test_enable_unknown_plugin_is_a_usage_error(home: Path) -> None:
    """Guard: `plugins enable nosuch` exits 2 and names the known plugins."""
    out = cli(home, "enable", "nosuch")
    assert out.returncode == 2
    assert "no plugin is called 'nosuch'" in out.stderr
    assert "system" in out.stderr


def test_host_without_settings_file_on_a_read_only_config(home: Path, quiet: None) -> None:
    """Guard: the GUI switching a plugin while the config folder cannot be written raises OSError to its
    caller (which says so) rather than pretending it was saved."""
    host = PluginHost(settings=PluginSettings(settings_path()))
    host.load_entry_points()
    (home / "config").chmod(0o500)
    try:
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        with pytest.raises(PermissionError):
            host.set_enabled("posture", False)
    finally:
        (home / "config").chmod(0o700)


def test_enable_of_a_refused_plugin_says_why_it_is_not_loaded(home: Path) -> None:
    """`plugins enable vendor` for a plugin refused (its file every user may write) or failed: the technician
    must hear that it is NOT running and why, not "already enabled" (exit 0) while it stays off."""
    write(plugins_dir(home) / "vendor.py", PROBE.format(name="vendor"), mode=0o666)
    listed = {p["name"]: p for p in json.loads(cli(home, "--json").stdout)["plugins"]}
    assert listed["vendor"]["enabled"] is False
    out = cli(home, "enable", "vendor")
    said = out.stdout + out.stderr
    assert "already enabled" not in said, said
    assert "every user" in said or "refused" in said, said
