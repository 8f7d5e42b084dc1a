"""The Windows and macOS installer recipes and their CI workflow, checked where they can be on Linux.

They run only on those platforms' runners; these checks keep them from rotting in between: the files
parse, they name files that exist, and the decisions that must never change (the AppId) have not.
"""

from __future__ import annotations

import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = ROOT / "installers" / "windows"
MACOS = ROOT / "installers" / "macos"
WORKFLOW = ROOT / ".github" / "workflows" / "installers.yml"
# Inno Setup ties upgrades and the uninstaller to this: a new one makes a second "Siteline" in Apps & features.
APP_ID = "{{4C55B5AF-7BEB-42CD-9671-E8E646BE5CFF}"


def iss_setup() -> dict[str, str]:
    """The [Setup] directives of siteline.iss (preprocessor lines and comments left out)."""
    text = (WINDOWS / "siteline.iss").read_text(encoding="utf-8")
    section = text.split("[Setup]", 1)[1].split("\n[", 1)[0]
    pairs = (line.split("=", 1) for line in section.splitlines() if "=" in line and not line.startswith((";", "#")))
    return {key.strip(): value.strip() for key, value in pairs}


def test_inno_setup_script_keeps_its_decisions() -> None:
    setup = iss_setup()
    assert setup["AppId"] == APP_ID
    assert (setup["PrivilegesRequired"], setup["PrivilegesRequiredOverridesAllowed"]) == ("lowest", "dialog")
    assert setup["Compression"].startswith("lzma2")
    assert setup["SolidCompression"] == "yes"
    assert setup["AppVersion"] == "{#AppVersion}"  # from the build, never typed in
    icon = (WINDOWS / setup["SetupIconFile"].replace("\\", "/")).resolve()
    assert icon == ROOT / "installers" / "icons" / "siteline.ico"  # what make_icons.py writes


def test_inno_setup_shortcuts_point_at_the_programs_the_spec_builds() -> None:
    text = (WINDOWS / "siteline.iss").read_text(encoding="utf-8")
    spec = (ROOT / "installers" / "pyinstaller" / "siteline.spec").read_text(encoding="utf-8")
    assert '#define GuiExe "siteline-gui.exe"' in text
    assert '#define CliExe "siteline.exe"' in text
    assert '"siteline-gui"' in spec  # the windowed program the spec adds on Windows
    assert '"siteline"' in spec
    icons = text.split("[Icons]", 1)[1].split("\n[", 1)[0]
    assert all('Filename: "{app}\\{#GuiExe}"' in line for line in icons.splitlines() if line.startswith("Name:"))


def test_inno_setup_tasks_are_the_ones_used() -> None:
    text = (WINDOWS / "siteline.iss").read_text(encoding="utf-8")
    tasks = set(re.findall(r'^Name: "(\w+)"', text.split("[Tasks]", 1)[1].split("\n[", 1)[0], re.MULTILINE))
    assert tasks == {"desktopicon", "addtopath"}
    assert "Tasks: desktopicon" in text
    assert "WizardIsTaskSelected('addtopath')" in text
    assert 'TASKS="addtopath"' in (WINDOWS / "README.md").read_text(encoding="utf-8")


def test_uninstall_messages_say_the_data_stays_and_escape_percent() -> None:
    text = (WINDOWS / "siteline.iss").read_text(encoding="utf-8")
    messages = dict(line.split("=", 1) for line in text.split("[Messages]", 1)[1].split("\n[", 1)[0].splitlines()
                    if "=" in line and not line.startswith(";"))
    for key in ("ConfirmUninstall", "UninstalledAll"):
        assert "%%LOCALAPPDATA%%\\siteline" in messages[key]
        # In messages with arguments a lone % must be %1..%9, %n or %% (else Inno Setup garbles it).
        assert not re.search(r"%(?![1-9n%])", messages[key].replace("%%", ""))


def test_build_scripts_name_files_that_exist() -> None:
    ps1 = (WINDOWS / "build.ps1").read_text(encoding="utf-8")
    named = set(re.findall(r"installers\\[\w\\.-]+\.(?:py|spec|iss)", ps1))
    assert named >= {"installers\\icons\\make_icons.py", "installers\\pyinstaller\\siteline.spec",
                     "installers\\windows\\siteline.iss"}
    for path in named:
        assert (ROOT / path.replace("\\", "/")).is_file(), path
    sh = (MACOS / "build.sh").read_text(encoding="utf-8")
    for path in set(re.findall(r"installers/[\w/.-]+\.(?:py|spec)", sh)) | {"installers/macos/entitlements.plist"}:
        assert (ROOT / path).is_file(), path


def test_macos_build_script_parses_and_refuses_linux_clearly() -> None:
    script = MACOS / "build.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 1
    assert "needs a Mac" in done.stderr


def test_entitlements_are_a_plist_without_false_entries() -> None:
    entitlements = plistlib.loads((MACOS / "entitlements.plist").read_bytes())
    assert isinstance(entitlements, dict)
    assert all(value is True for value in entitlements.values())  # Apple: leave out what would be false


def test_workflow_builds_on_each_platform_and_uploads() -> None:
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert triggers["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in triggers
    jobs = flow["jobs"]
    assert jobs["linux"]["strategy"]["matrix"]["os"] == ["ubuntu-22.04", "ubuntu-24.04"]
    assert (jobs["windows"]["runs-on"], jobs["macos"]["runs-on"]) == ("windows-latest", "macos-14")
    runs = {name: " ".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    assert "./run.sh setup" in runs["linux"]
    assert "installers/linux/build.sh" in runs["linux"]
    assert "pytest tests/bundle" in runs["linux"]  # the Linux bundle's smoke test
    smoke = next(step for step in jobs["linux"]["steps"] if "tests/bundle" in step.get("run", ""))
    assert smoke["env"]["SITELINE_BUNDLE"] == "dist/siteline"
    assert "build.ps1" in runs["windows"]
    assert "installers/macos/build.sh" in runs["macos"]
    for name, job in jobs.items():
        uploads = [step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/upload-artifact")]
        assert uploads, name
        assert uploads[0]["with"]["if-no-files-found"] == "error"
