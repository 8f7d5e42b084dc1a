"""The entry point of a frozen bundle (PyInstaller): ``siteline`` that also stands in for the interpreter.

In a bundle ``sys.executable`` is this program, not python. The simulator, the vault agent, the MQTT intake
child and the demo start ``sys.executable -m siteline...`` or ``sys.executable -P -c CODE``; so this entry
accepts the interpreter's forms and behaves like CPython for them:

  siteline [-P|-u|-I|-E|-s|-B ...] -m MODULE ARGS...   runpy.run_module(alter_sys=True), argv[0] = module path
  siteline [-P|-u|-I|-E|-s|-B ...] -c CODE ARGS...      exec CODE in a new __main__ module, argv[0] = "-c"

Flags cluster as in CPython, -m/-c included as the last letter (`-Im venv`, `-Pc CODE`).

Anything else is the ``siteline`` command line (siteline.cli.main). The flags are accepted so the same
command lines work both ways; ``-u`` makes stdout/stderr unbuffered, ``-B`` writes no bytecode, the rest have
nothing to do in a bundle (no site-packages, no PYTHON* variables are read, the current directory is never put
on sys.path: what -P asks for, and safe for `-m` run from any folder).
This module stays import-light: every `-m` child pays for what it imports here.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence

# Interpreter flags that take no value; clustered forms such as -Pu are accepted too.
_FLAGS = frozenset("PuIEsBqOS")


def _restore_library_path() -> None:
    """Give child programs (ssh, socat, bash ...) the environment the user had, not the bundle's library path.

    PyInstaller's bootloader points LD_LIBRARY_PATH at the bundle and keeps the original in *_ORIG; this
    process has loaded its libraries already, so only children see the variable. A child that is this
    bundle again gets the bundle's path from its own bootloader.
    """
    if getattr(sys, "frozen", False):
        # A child that is this bundle again (`sys.executable -m ...`) starts as a new, independent instance
        # rather than as part of this one (PyInstaller >= 6.9 reads this variable).
        os.environ["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
    for name in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH"):
        orig = os.environ.get(name + "_ORIG")
        if orig is not None:
            os.environ[name] = orig
        elif getattr(sys, "frozen", False):
            os.environ.pop(name, None)


def _split_flags(argv: Sequence[str]) -> tuple[set[str], list[str]] | None:
    """(flags, rest) when argv is an interpreter form (flags then -m/-c), else None.

    As CPython reads them: -m or -c may end a flag cluster (`-Im venv`, `-Pc CODE`) and what follows the m/c
    in the same word is the module or code (`-Pmjson.tool`); rest starts with that -m/-c word.
    """
    flags: set[str] = set()
    for i, arg in enumerate(argv):
        if len(arg) < 2 or arg[0] != "-" or arg[1] == "-":
            return None
        for j, letter in enumerate(arg[1:], start=1):
            if letter in "mc":
                return flags, ["-" + arg[j:], *argv[i + 1:]]
            if letter not in _FLAGS:
                return None
            flags.add(letter)
    return None


def _unbuffered() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=False, write_through=True)


def _run_module(rest: list[str]) -> None:
    import runpy

    module = rest[0][2:] or (rest[1] if len(rest) > 1 else "")
    args = rest[1:] if rest[0][2:] else rest[2:]
    if not module:
        sys.stderr.write("Argument expected for the -m option\n")
        raise SystemExit(2)
    # CPython: argv[0] is "-m" while the module is found, then its file; run_module(alter_sys) sets it.
    sys.argv = ["-m", *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _run_code(rest: list[str]) -> None:
    code = rest[0][2:] or (rest[1] if len(rest) > 1 else None)
    args = rest[1:] if rest[0][2:] else rest[2:]
    if code is None:
        sys.stderr.write("Argument expected for the -c option\n")
        raise SystemExit(2)
    sys.argv = ["-c", *args]
    # A real module, as CPython gives -c code: `import __main__` sees the code's names and pickle finds classes
    # defined there through sys.modules["__main__"]. The entry script's module stays referenced meanwhile.
    entry_module = sys.modules.get("__main__")
    main_module = types.ModuleType("__main__")
    main_module.__dict__.update({"__builtins__": __builtins__, "__spec__": None, "__annotations__": {},
                                 "__loader__": getattr(entry_module, "__loader__", None)})
    sys.modules["__main__"] = main_module
    exec(compile(code, "<string>", "exec"), main_module.__dict__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run as the interpreter (``-m``/``-c`` forms) or as the ``siteline`` command; returns the exit code."""
    import multiprocessing

    # A frozen multiprocessing child (spawn) must not run the app again: freeze_support answers it and exits.
    multiprocessing.freeze_support()
    _restore_library_path()
    args = list(sys.argv[1:] if argv is None else argv)
    form = _split_flags(args)
    if form is None:
        from siteline.cli import main as cli_main

        return cli_main(args)
    flags, rest = form
    if "u" in flags:
        _unbuffered()
    if "B" in flags:
        sys.dont_write_bytecode = True  # user plugins are plain .py files: no __pycache__ next to them
    # SystemExit from the module or code travels up to the caller as it would out of the interpreter.
    if rest[0].startswith("-m"):
        _run_module(rest)
    else:
        _run_code(rest)
    return 0
