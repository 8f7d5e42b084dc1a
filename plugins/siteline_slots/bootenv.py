"""Parsers for bootloader environments: U-Boot `fw_printenv`, GRUB `grub-editenv list`, barebox `barebox-state -d`.

Each returns a BootEnv holding every variable as printed (the raw counters) and what the A/B scheme reads from
them, or raises ParseError in words.
"""

from __future__ import annotations

import re
from dataclasses import replace

from siteline.api import BootEnv, Health, ParseError

MAX_INPUT = 1024 * 1024  # an env listing is a few KiB; more is not one of these tools talking
_UBOOT_LEFT = re.compile(r"^BOOT_(.+)_LEFT$")
_GRUB_FLAG = re.compile(r"^(.+)_(OK|TRY)$")
_BAREBOX_VAR = re.compile(r"^bootstate\.(.+)\.(remaining_attempts|priority)$")
# SWUpdate's bootloader variable `ustate` (include/state.h: update_state_t).
_USTATE = {
    "0": "ok",
    "1": "installed",
    "2": "testing",
    "3": "failed",
    "4": "not available",
    "5": "error",
    "6": "waiting",
    "7": "in progress",
}
_ENV_ERRORS = (
    "Cannot read environment",
    "Cannot read default environment",
    "Configuration file wrong",
    "## Error",
    "error:",
    "Error:",
)


def clip(text: str, limit: int = 80) -> str:
    """The first line of ``text``, cut to ``limit`` characters: enough to quote in a message."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _env_lines(text: str, tool: str) -> tuple[dict[str, str], list[str]]:
    if len(text) > MAX_INPUT:
        raise ParseError(
            f"{tool} printed {len(text)} characters, far more than a boot environment has.",
            f"Run `{tool}` on the device and look at its output.",
        )
    variables: dict[str, str] = {}
    problems: list[str] = []
    skipped = 0
    for line in text.replace("\r", "").split("\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if sep and name and not name[0].isspace() and " " not in name:
            variables[name] = value
        elif any(marker in line for marker in _ENV_ERRORS):
            problems.append(f"{tool}: {clip(line, 160)}")
        else:
            skipped += 1
    if not variables and (skipped or problems):
        first = problems[0] if problems else clip(text)
        raise ParseError(
            f"{tool} printed no name=value lines: {first}",
            f"Check that `{tool}` can read the environment on the device.",
        )
    if skipped:
        problems.append(f"{tool}: {skipped} line(s) were not name=value and were ignored.")
    return variables, problems


def _counter(variables: dict[str, str], name: str, problems: list[str]) -> int | None:
    value = variables.get(name)
    if value is None:
        return None
    number = to_int(value)
    if number is None or number < 0:
        problems.append(f"{name} is {clip(value, 40)!r}, not a count; treated as unknown.")
        return None
    return number


def _flag(variables: dict[str, str], name: str, problems: list[str]) -> bool | None:
    value = variables.get(name)
    if value is None:
        return None
    if value.strip() in ("0", "1"):
        return value.strip() == "1"
    problems.append(f"{name} is {clip(value, 40)!r}, not 0 or 1; treated as unknown.")
    return None


def _order(variables: dict[str, str], key: str) -> tuple[str, ...] | None:
    return tuple(variables[key].split()) if key in variables else None


def _names(order: tuple[str, ...] | None, found: list[str]) -> list[str]:
    names = list(order or ())
    return names + [n for n in found if n not in names]


def parse_fw_printenv(text: str) -> BootEnv:
    """libubootenv / u-boot-tools `fw_printenv`: ``name=value`` per line; RAUC's U-Boot counters."""
    variables, problems = _env_lines(text, "fw_printenv")
    order = _order(variables, "BOOT_ORDER")
    found = [m.group(1) for k in variables if (m := _UBOOT_LEFT.match(k))]
    left = {n: _counter(variables, f"BOOT_{n}_LEFT", problems) for n in _names(order, found)}
    env = BootEnv(
        kind="uboot",
        variables=variables,
        order=order,
        attempts_left=left,
        upgrade_available=_flag(variables, "upgrade_available", problems),
        bootcount=_counter(variables, "bootcount", problems),
        bootlimit=_counter(variables, "bootlimit", problems),
        update_state=_ustate(variables, problems),
        raw=text[:MAX_INPUT],
    )
    return _check_env(env, problems)


def parse_grub_editenv(text: str) -> BootEnv:
    """`grub-editenv FILE list`: ``name=value`` per line; RAUC's GRUB scheme ORDER, <slot>_OK, <slot>_TRY."""
    variables, problems = _env_lines(text, "grub-editenv")
    order = _order(variables, "ORDER")
    found = list(dict.fromkeys(m.group(1) for k in variables if (m := _GRUB_FLAG.match(k))))
    names = _names(order, found)
    good = {n: _flag(variables, f"{n}_OK", problems) for n in names}
    trying = {n: _flag(variables, f"{n}_TRY", problems) for n in names}
    # RAUC's grub.cfg boots a slot only while OK=1 and TRY=0, and sets TRY=1 before it does: one attempt.
    left = {n: None if good[n] is None or trying[n] is None else int(bool(good[n]) and not trying[n]) for n in names}
    env = BootEnv(
        kind="grub",
        variables=variables,
        order=order,
        attempts_left=left,
        good=good,
        trying=trying,
        raw=text[:MAX_INPUT],
    )
    return _check_env(env, problems)


def _ustate(variables: dict[str, str], problems: list[str]) -> str | None:
    value = variables.get("ustate")
    if value is None:
        return None
    words = _USTATE.get(value.strip())
    if words is None:
        problems.append(f"ustate is {clip(value, 40)!r}, which SWUpdate does not define; treated as unknown.")
    elif words in ("failed", "error"):
        problems.append(
            f"SWUpdate's last update {'failed' if words == 'failed' else 'ended in an error'} (ustate={value})."
        )
    return words


def parse_barebox_state(text: str) -> BootEnv:
    """`barebox-state -d`: ``bootstate.<target>.remaining_attempts|priority=N`` and ``bootstate.last_chosen=N``."""
    variables, problems = _env_lines(text, "barebox-state")
    found = list(dict.fromkeys(m.group(1) for k in variables if (m := _BAREBOX_VAR.match(k))))
    left = {n: _counter(variables, f"bootstate.{n}.remaining_attempts", problems) for n in found}
    prio = {n: _counter(variables, f"bootstate.{n}.priority", problems) for n in found}
    # bootchooser boots the enabled target (priority > 0) of highest priority that has attempts left.
    order = tuple(sorted((n for n in found if (prio[n] or 0) > 0), key=lambda n: -(prio[n] or 0)))
    env = BootEnv(
        kind="barebox",
        variables=variables,
        order=order if found else None,
        attempts_left=left,
        priority=prio,
        last_chosen=variables.get("bootstate.last_chosen"),
        raw=text[:MAX_INPUT],
    )
    return _check_env(env, problems)


def _check_env(env: BootEnv, problems: list[str]) -> BootEnv:
    key = {"uboot": "BOOT_ORDER", "grub": "ORDER", "barebox": "bootstate.<target>.priority"}[env.kind]
    if env.order is None:
        problems.append(f"The environment has no {key}: the bootloader falls back to its built-in order.")
    elif env.kind == "barebox" and not env.order:
        problems.append("Every barebox boot target has priority 0: bootchooser has nothing enabled to boot.")
    for name in env.order or ():
        if env.attempts_left.get(name) is None and env.kind == "uboot":
            problems.append(f"{key} names slot {name} but BOOT_{name}_LEFT is missing: its attempts are unknown.")
    count, limit = env.bootcount, env.bootlimit
    if env.kind == "uboot" and env.upgrade_available and count is not None and limit is not None and count > limit:
        problems.append(
            f"bootcount {count} is over bootlimit {limit}: U-Boot takes its fallback (altbootcmd) "
            "instead of the normal boot."
        )
    return replace(env, problems=tuple(problems))


def env_health(env: BootEnv, bootname: str) -> Health | None:
    """Good while the bootloader would still boot the slot (or, GRUB, while it is OK); bad when used up."""
    if env.kind == "grub":
        ok = env.good.get(bootname)
        return None if ok is None else ("good" if ok else "bad")
    left = env.attempts_left.get(bootname)
    return None if left is None else ("good" if left > 0 else "bad")


def env_primary(env: BootEnv) -> str | None:
    """The bootname the next boot tries first: the first in the order with attempts left."""
    return next((n for n in env.order or () if (env.attempts_left.get(n) or 0) > 0), None)
