"""The Linux packaging files, checked without building the bundle: desktop entry, AppStream metadata, the .deb
control template, the icon renderer, AppRun, and that the spec never trims a Qt module the app imports."""

from __future__ import annotations

import ast
import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.peers import require_tool

REPO = Path(__file__).resolve().parents[2]
LINUX = REPO / "installers" / "linux"
SPEC = REPO / "installers" / "pyinstaller" / "siteline.spec"


def metainfo(tmp_path: Path) -> Path:
    text = (LINUX / "io.siteline.Siteline.metainfo.xml.in").read_text()
    out = tmp_path / "io.siteline.Siteline.metainfo.xml"
    out.write_text(text.replace("@VERSION@", "1.2.3").replace("@DATE@", "2026-01-31"))
    return out


def test_metainfo_validates(tmp_path: Path) -> None:
    tool = require_tool("appstreamcli")
    done = subprocess.run([tool, "validate", "--no-net", str(metainfo(tmp_path))], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_metainfo_names_the_desktop_entry_and_version(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(metainfo(tmp_path)).getroot()
    assert root.findtext("id") == "io.siteline.Siteline"
    assert root.findtext("launchable") == "siteline.desktop"
    release = root.find("releases/release")
    assert release is not None
    assert release.get("version") == "1.2.3"


def test_desktop_entry_is_well_formed() -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(REPO / "resources" / "siteline.desktop")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "siteline"  # /usr/bin/siteline in the .deb
    assert (REPO / "resources" / "icons" / f"{entry['Icon']}.svg").is_file()
    for key in ("Categories", "Keywords"):
        assert entry[key].endswith(";")


def test_control_template_renders_a_valid_control_file() -> None:
    text = (LINUX / "control.in").read_text()
    rendered = (text.replace("@VERSION@", "1.2.3").replace("@INSTALLED_SIZE@", "200000")
                .replace("@DEPENDS@", "libc6 (>= 2.36), libgl1").replace("@RECOMMENDS@", "libxcb-cursor0"))
    assert "@" not in rendered.replace("support@siteline.io", "")
    fields: dict[str, str] = {}
    for line in rendered.splitlines():
        if line.startswith(" "):
            assert line.strip(), "a blank description line must be ' .'"
            continue
        key, _, value = line.partition(": ")
        fields[key] = value
    assert fields["Package"] == "siteline"
    assert fields["Architecture"] == "amd64"
    assert re.fullmatch(r"[0-9][A-Za-z0-9.+~-]*", fields["Version"])
    assert fields["Installed-Size"].isdigit()
    assert {"Maintainer", "Description", "Depends", "Section", "Priority"} <= fields.keys()


def test_build_script_parses() -> None:
    for script in ("build.sh", "AppRun"):
        path = LINUX / script
        assert os.access(path, os.X_OK), f"{path} must be executable"
        subprocess.run(["sh" if script == "AppRun" else "bash", "-n", str(path)], check=True, timeout=10)


def test_apprun_runs_the_bundled_program(tmp_path: Path) -> None:
    appdir = tmp_path / "Siteline.AppDir"
    (appdir / "usr" / "siteline").mkdir(parents=True)
    fake = appdir / "usr" / "siteline" / "siteline"
    fake.write_text('#!/bin/sh\necho "bundle:$*"\n')
    fake.chmod(0o755)
    (appdir / "AppRun").write_bytes((LINUX / "AppRun").read_bytes())
    (appdir / "AppRun").chmod(0o755)
    done = subprocess.run([str(appdir / "AppRun"), "demo", "--headless"], capture_output=True, text=True, timeout=10,
                          check=True)
    assert done.stdout.strip() == "bundle:demo --headless"


def test_icon_renders_to_a_256_png(tmp_path: Path) -> None:
    out = tmp_path / "siteline.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    subprocess.run([sys.executable, str(LINUX / "render_icon.py"), str(REPO / "resources/icons/siteline.svg"),
                    str(out), "256"], check=True, timeout=60, env=env)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 256  # IHDR width
    assert int.from_bytes(data[20:24], "big") == 256


def _spec_list(name: str) -> list[str]:
    tree = ast.parse(SPEC.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError(f"{name} not found in {SPEC}")


def test_spec_never_trims_a_qt_module_the_app_imports() -> None:
    """Every UI module (and what it pulls in: pyqtgraph loads QtOpenGL, QtSvg, QtTest) is imported in a child;
    no Qt module it loaded may be on the spec's list of modules to leave out."""
    code = ("import importlib, pkgutil, sys, siteline.ui\n"
            "for m in pkgutil.walk_packages(siteline.ui.__path__, 'siteline.ui.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(' '.join(sorted(n.split('.')[1] for n in sys.modules if n.startswith('PySide6.Qt'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    used = set(done.stdout.split())
    assert {"QtCore", "QtGui", "QtWidgets"} <= used, done.stdout
    assert not used & set(_spec_list("UNUSED_QT"))
