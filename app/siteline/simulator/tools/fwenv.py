"""fw_printenv / fw_setenv, behaving as libubootenv's (Debian's libubootenv-tool, also used by Yocto)."""

from __future__ import annotations

from pathlib import Path

from siteline.simulator import ubootenv
from siteline.simulator.state import DeviceState
from siteline.simulator.store import locked
from siteline.simulator.tools.common import err, fail, out

# libubootenv returns -EACCES (exit 243) when neither the env nor a default env can be read.
EXIT_NO_ENV = 243
USAGE_PRINT = ("Usage fw_printenv [OPTION]\n -h,                              : print this help\n"
               " -c, --config <filename>          : configuration file (old fw_env.config)\n"
               " -n, --noheader                   : do not print variable name\n")
USAGE_SET = ("Usage fw_setenv [OPTION]\n -h,                              : print this help\n"
             " -c, --config <filename>          : configuration file (old fw_env.config)\n"
             " -s, --script <filename>          : read variables to be set from a script\n")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    return printenv(argv, state) if tool == "fw_printenv" else setenv(argv, state)


def _parse(argv: list[str], flags: str, with_value: str) -> tuple[dict[str, str], list[str]] | str:
    opts: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    longs = {"--config": "c", "--noheader": "n", "--script": "s", "--defenv": "f", "--help": "h"}
    while i < len(argv):
        arg = argv[i]
        letter = longs.get(arg) or (arg[1] if len(arg) == 2 and arg.startswith("-") else None)
        if letter is None or rest:
            rest.append(arg)
        elif letter not in flags:
            return f"invalid option -- '{arg.lstrip('-')}'"
        elif letter in with_value:
            if i + 1 >= len(argv):
                return f"option requires an argument -- '{letter}'"
            opts[letter] = argv[i + 1]
            i += 1
        else:
            opts[letter] = ""
        i += 1
    return opts, rest


def _location(opts: dict[str, str], state: DeviceState) -> ubootenv.EnvLocation:
    if "c" in opts:
        return ubootenv.read_config(Path(opts["c"]))
    return state.env_location()


def _load(loc: ubootenv.EnvLocation) -> dict[str, str] | None:
    try:
        return ubootenv.load(loc)
    except ubootenv.EnvError:
        err("Cannot read environment, using default\nCannot read default environment from file")
        return None


def printenv(argv: list[str], state: DeviceState) -> int:
    parsed = _parse(argv, "chn", "c")
    if isinstance(parsed, str):
        return fail(f"fw_printenv: {parsed}\n{USAGE_PRINT}")
    opts, names = parsed
    if "h" in opts:
        out(USAGE_PRINT)
        return 0
    try:
        env = _load(_location(opts, state))
    except (OSError, ubootenv.EnvError):
        return fail("Configuration file wrong or corrupted", EXIT_NO_ENV)
    if env is None:
        return EXIT_NO_ENV
    if not names:
        out("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
        return 0
    for name in names:
        # libubootenv prints an unset variable as empty rather than failing; scripts rely on it.
        out(f"{env.get(name, '')}\n" if "n" in opts else f"{name}={env.get(name, '')}\n")
    return 0


def setenv(argv: list[str], state: DeviceState) -> int:
    parsed = _parse(argv, "chsf", "csf")
    if isinstance(parsed, str):
        return fail(f"fw_setenv: {parsed}\n{USAGE_SET}")
    opts, rest = parsed
    if "h" in opts:
        out(USAGE_SET)
        return 0
    changes = _script_changes(Path(opts["s"])) if "s" in opts else None
    if changes is None and not rest:
        return fail(USAGE_SET)
    if changes is None:
        changes = {rest[0]: " ".join(rest[1:]) if len(rest) > 1 else None}
    if any(not name or "=" in name for name in changes):
        return fail("Invalid variable name")
    try:
        loc = _location(opts, state)
    except (OSError, ubootenv.EnvError):
        return fail("Configuration file wrong or corrupted", EXIT_NO_ENV)
    with locked(state.root):  # boot() and rauc change the same env: one read-modify-write at a time
        return _apply(loc, opts, changes)


def _apply(loc: ubootenv.EnvLocation, opts: dict[str, str], changes: dict[str, str | None]) -> int:
    try:
        env: dict[str, str] | None = ubootenv.load(loc)
    except ubootenv.EnvError:
        env = _defaults(opts)
    if env is None:
        err("Cannot read environment, using default\nCannot read default environment from file")
        return EXIT_NO_ENV
    for name, value in changes.items():
        if value is None or value == "":
            env.pop(name, None)
        else:
            env[name] = value
    try:
        ubootenv.store(loc, env)
    except (OSError, ubootenv.EnvError) as exc:
        return fail(f"Error: environment not saved: {exc}")
    return 0


def _defaults(opts: dict[str, str]) -> dict[str, str] | None:
    if "f" not in opts:
        return None
    return _script_changes(Path(opts["f"]), sep="=")  # type: ignore[return-value]


def _script_changes(path: Path, sep: str = " ") -> dict[str, str | None] | None:
    """A fw_setenv script: ``name value`` per line (``name=value`` for -f defaults); # comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    changes: dict[str, str | None] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(sep if sep in line else "=")
        changes[name.strip()] = value.strip() or None
    return changes
