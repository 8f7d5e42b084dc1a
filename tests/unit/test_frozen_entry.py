"""siteline.frozen.main stands in for the interpreter in a bundle: the same argv forms give what CPython gives.

Run without freezing: `python -c "from siteline.frozen import main; ..."` with the argv a child would get.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from siteline import __version__
from siteline.frozen import _split_flags

ENTRY = "import sys; from siteline.frozen import main; sys.argv[0] = 'siteline'; sys.exit(main())"


def frozen(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run frozen.main with ``argv`` as its command line (what the bundle's program would get)."""
    return subprocess.run([sys.executable, "-c", ENTRY, *argv], capture_output=True, text=True, timeout=30,
                          cwd=cwd, env={**os.environ, **(env or {})}, check=False)


def cpython(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=30, cwd=cwd, check=False)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-m", "x"], (set(), ["-m", "x"])),
        (["-P", "-c", "pass", "-m"], ({"P"}, ["-c", "pass", "-m"])),
        (["-Pu", "-I", "-mfoo", "a"], ({"P", "u", "I"}, ["-mfoo", "a"])),
        (["-E", "-s", "-B", "-c", "1"], ({"E", "s", "B"}, ["-c", "1"])),
        (["--version"], None),
        (["run", "-c", "x"], None),
        (["-v", "-m", "x"], None),  # -v is siteline's --verbose, not python's
        (["-P"], None),
        ([], None),
        (["-", "-c"], None),
    ],
)
def test_interpreter_forms_are_told_from_the_cli(argv: list[str], expected: object) -> None:
    assert _split_flags(argv) == expected


def test_code_form_prints_and_exits_like_cpython(tmp_path: Path) -> None:
    code = "import sys; print(sys.argv); print(__name__); sys.exit(int(sys.argv[1]))"
    for run in (frozen, cpython):
        done = run("-P", "-c", code, "7", "--flag", cwd=tmp_path)
        assert done.returncode == 7, done.stderr
        assert done.stdout.splitlines() == ["['-c', '7', '--flag']", "__main__"]


def test_code_form_uncaught_error_exits_1_with_traceback() -> None:
    for run in (frozen, cpython):
        done = run("-c", "raise ValueError('boom')")
        assert done.returncode == 1
        assert "ValueError: boom" in done.stderr


def test_module_form_sets_argv_like_cpython(tmp_path: Path) -> None:
    (tmp_path / "probe_mod.py").write_text(
        "import sys\nprint(sys.argv[1:])\nprint(sys.argv[0].endswith('probe_mod.py'))\nprint(__name__)\n"
        "sys.exit(3)\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    done = frozen("-u", "-m", "probe_mod", "a", "-c", "b", env=env)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["['a', '-c', 'b']", "True", "__main__"]


def test_module_form_runs_siteline_package_main() -> None:
    done = frozen("-m", "siteline", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"siteline {__version__}"


def test_missing_module_and_missing_argument_fail_like_cpython() -> None:
    done = frozen("-m", "siteline_no_such_module_x")
    assert done.returncode == 1
    assert "No module named siteline_no_such_module_x" in done.stderr
    for flag in ("-m", "-c"):
        done = frozen(flag)
        assert done.returncode == 2
        assert f"Argument expected for the {flag} option" in done.stderr


def test_anything_else_is_the_siteline_cli() -> None:
    done = frozen("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"siteline {__version__}"
    done = frozen("no-such-command")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_unbuffered_flag_writes_through() -> None:
    code = "import sys; print(sys.stdout.write_through, sys.stderr.write_through)"
    assert frozen("-u", "-c", code).stdout.strip() == "True True"


def test_no_bytecode_flag() -> None:
    code = "import sys; print(sys.dont_write_bytecode)"
    assert frozen("-B", "-c", code).stdout.strip() == "True"


def test_children_get_the_users_library_path_back() -> None:
    code = "import os; print(os.environ.get('LD_LIBRARY_PATH'))"
    done = frozen("-c", code, env={"LD_LIBRARY_PATH": "/bundle/_internal", "LD_LIBRARY_PATH_ORIG": "/usr/local/lib"})
    assert done.stdout.strip() == "/usr/local/lib"
