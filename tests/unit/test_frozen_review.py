"""Fresh-eyes review of siteline.frozen.main: the bundle's program must answer interpreter forms as CPython does.

Each case runs both ways, frozen.main (unfrozen, as tests/unit/test_frozen_entry.py does) and the real
interpreter, and expects the same output and exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENTRY = "import sys; from siteline.frozen import main; sys.argv[0] = 'siteline'; sys.exit(main())"
# As in a PyInstaller bundle: sys.frozen is set (the bootloader does it) before the entry runs.
FROZEN_ENTRY = "import sys; sys.frozen = True; " + ENTRY.removeprefix("import sys; ")


def frozen(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None,
           entry: str = ENTRY) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", entry, *argv], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env={**os.environ, **(env or {})}, check=False)


def cpython(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=30, cwd=cwd,
                          env={**os.environ, **(env or {})}, check=False)


def test_system_exit_with_a_message_prints_it_and_exits_1() -> None:
    for run in (frozen, cpython):
        done = run("-c", "raise SystemExit('cannot open /dev/ttyUSB0')")
        assert done.returncode == 1, run
        assert done.stderr.strip() == "cannot open /dev/ttyUSB0"
        assert done.stdout == ""


def test_system_exit_none_and_big_codes_like_cpython() -> None:
    for code, status in (("sys.exit()", 0), ("sys.exit(None)", 0), ("sys.exit(258)", 2)):
        for run in (frozen, cpython):
            assert run("-c", f"import sys; {code}").returncode == status, (run, code)


def test_clustered_flags_ending_in_m_or_c_like_cpython() -> None:
    """`python -Im venv`, `python -Pc CODE`: CPython takes -m/-c as the last letter of a flag cluster."""
    for args in (("-Pc", "print('ok')"), ("-Im", "json.tool", "--help")):
        want = cpython(*args)
        got = frozen(*args)
        assert got.returncode == want.returncode == 0, got.stderr
        assert got.stdout.splitlines()[0] == want.stdout.splitlines()[0]


def test_code_runs_in_the_real_main_module(tmp_path: Path) -> None:
    """`-c` code runs in __main__'s namespace: `import __main__` sees its names, so pickle (and any library that
    looks classes up through sys.modules['__main__']) works on what the code defined."""
    code = ("import pickle, __main__\nclass Probe: pass\nx = 5\nprint(getattr(__main__, 'x', None))\n"
            "print(type(pickle.loads(pickle.dumps(Probe()))).__name__)")
    want = cpython("-c", code)
    assert want.stdout.splitlines() == ["5", "Probe"]
    got = frozen("-c", code)
    assert got.returncode == 0, got.stderr[-800:]
    assert got.stdout.splitlines() == want.stdout.splitlines()


def test_module_form_of_a_package_without_main_fails_like_cpython(tmp_path: Path) -> None:
    (tmp_path / "pkgx").mkdir()
    (tmp_path / "pkgx" / "__init__.py").write_text("")
    env = {"PYTHONPATH": str(tmp_path)}
    for run in (frozen, cpython):
        done = run("-m", "pkgx", env=env)
        assert done.returncode == 1, run
        assert "pkgx.__main__" in done.stderr
        assert "cannot be directly executed" in done.stderr


def test_module_form_of_a_package_runs_its_main_with_argv(tmp_path: Path) -> None:
    (tmp_path / "pkgy").mkdir()
    (tmp_path / "pkgy" / "__init__.py").write_text("")
    (tmp_path / "pkgy" / "__main__.py").write_text(
        "import sys\nprint(__name__, sys.argv[0].endswith('__main__.py'), sys.argv[1:])\nraise SystemExit(4)\n")
    env = {"PYTHONPATH": str(tmp_path)}
    for run in (frozen, cpython):
        done = run("-m", "pkgy", "-c", "x", env=env)
        assert done.returncode == 4, done.stderr
        assert done.stdout.strip() == "__main__ True ['-c', 'x']"


def test_uncaught_error_in_a_module_exits_1_with_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad_mod.py").write_text("def f():\n    raise KeyError('slot')\nf()\n")
    env = {"PYTHONPATH": str(tmp_path)}
    for run in (frozen, cpython):
        done = run("-m", "bad_mod", env=env)
        assert done.returncode == 1
        assert done.stderr.startswith("Traceback (most recent call last):")
        assert "KeyError: 'slot'" in done.stderr


def test_closed_stdin_is_none_and_does_not_crash() -> None:
    """A child started with stdin closed (fd 0 not open): CPython gives sys.stdin None and runs fine."""
    code = "import sys; print(sys.stdin is None)"
    entry_cmd = [sys.executable, "-c", ENTRY, "-c", code]
    for cmd in (entry_cmd, [sys.executable, "-c", code]):
        done = subprocess.run(["/bin/sh", "-c", 'exec 0<&- "$@"', "sh", *cmd], capture_output=True, text=True,
                              timeout=30, check=False)
        assert done.returncode == 0, done.stderr[-800:]
        assert done.stdout.strip() == "True"


def test_frozen_children_do_not_inherit_the_bundle_library_path() -> None:
    """Frozen, the bootloader set LD_LIBRARY_PATH to the bundle and the user had none (no *_ORIG): ssh, socat and
    bash started from the bundle must not load the bundle's libssl/libz."""
    code = ("import subprocess; print(subprocess.run(['/bin/sh', '-c', 'echo \"[${LD_LIBRARY_PATH-unset}]\"'], "
            "capture_output=True, text=True).stdout.strip())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_LIBRARY_PATH")}
    env["LD_LIBRARY_PATH"] = "/opt/siteline/_internal"
    done = subprocess.run([sys.executable, "-c", FROZEN_ENTRY, "-c", code], capture_output=True, text=True,
                          timeout=30, env=env, check=False)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip() == "[unset]"


def test_frozen_children_get_the_users_own_library_path_back() -> None:
    code = "import os; print(os.environ.get('LD_LIBRARY_PATH'))"
    done = frozen("-c", code, entry=FROZEN_ENTRY,
                  env={"LD_LIBRARY_PATH": "/opt/siteline/_internal", "LD_LIBRARY_PATH_ORIG": "/opt/vendor/lib"})
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stdout.strip() == "/opt/vendor/lib"
