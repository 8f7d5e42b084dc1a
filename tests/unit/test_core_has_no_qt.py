"""Core, the simulator and the built-in plugins run on boxes with no Qt: importing them loads no PySide6."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import siteline
import siteline_system

ROOT = Path(siteline.__file__).parent


def _modules() -> list[str]:
    names = ["siteline", "siteline.cli", "siteline.commands", "siteline.api", "siteline.paths", "siteline_system"]
    for pkg in ("core", "simulator"):
        for info in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"siteline.{pkg}."):
            names.append(info.name)
    for info in pkgutil.walk_packages(siteline_system.__path__, prefix="siteline_system."):
        names.append(info.name)
    return names


def test_core_simulator_and_plugins_import_without_qt() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'qasync'))\n"
        "print(bad)\n"
        "raise SystemExit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"Qt was imported: {done.stdout} {done.stderr[-2000:]}"


def test_cli_version_runs_without_qt() -> None:
    code = (
        "import sys; from siteline.cli import main; main(['plugins']); "
        "print(sorted(m for m in sys.modules if m.startswith('PySide6')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("[]")
    assert "system" in done.stdout
