"""Resources load from a source checkout, an installed wheel and a frozen (PyInstaller) bundle."""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from siteline import resources
from siteline.resources import ResourceError, read_resource, resource_path, resource_root

REPO = Path(__file__).resolve().parents[2]
ICONS = ["siteline", "add", "site", "state-up", "state-connecting", "state-retrying", "state-down",
         "transport-serial", "transport-ssh", "transport-mqtt"]  # fmt: skip


@pytest.fixture
def fresh_root() -> Iterator[None]:
    resource_root.cache_clear()
    yield
    resource_root.cache_clear()


def test_checkout_finds_repo_resources(fresh_root: None) -> None:
    assert resource_root() == REPO / "resources"
    for name in ICONS:
        data = read_resource(f"icons/{name}.svg")
        root = ElementTree.fromstring(data)  # well-formed SVG, not just a file
        assert root.tag.endswith("svg"), name
    assert resource_path("styles/siteline.qss").read_text().strip()


def test_desktop_entry_is_complete() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(read_resource("siteline.desktop").decode())
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "siteline"
    assert entry["Icon"] == "siteline"
    assert entry["Categories"].endswith(";")


@pytest.mark.parametrize("name", ["", "../pyproject.toml", "/etc/passwd", "icons/../../pyproject.toml", "a\\b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ResourceError, match="is not a resource name"):
        resource_path(name)


def test_missing_resource_says_what_to_do() -> None:
    with pytest.raises(ResourceError) as info:
        resource_path("icons/nope.svg")
    assert "icons/nope.svg" in info.value.message
    assert info.value.hint == "Reinstall Siteline."


def test_frozen_bundle_wins(fresh_root: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = tmp_path / "siteline" / "resources" / "icons"
    bundled.mkdir(parents=True)
    (bundled / "siteline.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resource_path("icons/siteline.svg") == bundled / "siteline.svg"


def test_no_resources_anywhere(fresh_root: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(resources, "_candidates", lambda: [tmp_path / "none"])
    with pytest.raises(ResourceError, match="resources folder is missing"):
        resource_root()


@pytest.mark.timeout(120)
def test_installed_wheel_carries_resources(tmp_path: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling is not installed in this environment (pip install hatchling)")
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(out), str(REPO)],
        check=True, capture_output=True, timeout=100,
    )  # fmt: skip
    (wheel,) = out.glob("siteline-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "siteline/resources/icons/siteline.svg" in names
        assert "siteline/resources/siteline.desktop" in names
        zf.extractall(tmp_path / "site")
    # The unpacked wheel first on the path stands in for site-packages of a regular install.
    probe = "from siteline.resources import resource_path; print(resource_path('icons/state-up.svg'))"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=True,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()  # fmt: skip
    assert Path(found) == tmp_path / "site" / "siteline" / "resources" / "icons" / "state-up.svg"
