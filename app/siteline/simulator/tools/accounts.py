"""passwd and chpasswd: change the device's password hashes (state dir), never the host's /etc/shadow."""

from __future__ import annotations

import sys

from siteline.simulator.rootfs import valid_username, write_accounts
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import err, fail

EXIT_PASSWD_FAILED = 10  # passwd(1): "password unchanged"


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    if tool in ("useradd", "usermod", "userdel", "groupadd"):
        return manage(tool, argv, state)
    return passwd(argv, state) if tool == "passwd" else chpasswd(argv, state)


def _known(state: DeviceState, user: str) -> bool:
    return user in ("root", state.config.user) or user in state.users()


def passwd(argv: list[str], state: DeviceState) -> int:
    stdin_mode = "--stdin" in argv
    names = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("-") and a != "--stdin" for a in argv):
        return fail(f"passwd: unrecognized option '{next(a for a in argv if a.startswith('-'))}'", 2)
    user = names[0] if names else state.config.user
    if not _known(state, user):
        return fail(f"passwd: user '{user}' does not exist", 1)
    if stdin_mode:
        new = again = sys.stdin.readline().rstrip("\n")
    else:
        new = _ask("New password: ")
        again = _ask("Retype new password: ")
    if not new:
        return fail("No password has been supplied.\npasswd: Authentication token manipulation error\n"
                    "passwd: password unchanged", EXIT_PASSWD_FAILED)
    if new != again:
        return fail("Sorry, passwords do not match.\npasswd: Authentication token manipulation error\n"
                    "passwd: password unchanged", EXIT_PASSWD_FAILED)
    state.set_password(user, new)
    state.log(f"password changed for {user}", "passwd", priority=5)
    sys.stdout.write("passwd: password updated successfully\n")
    return 0


def _ask(prompt: str) -> str:
    """Read one line; on a terminal without echo, as passwd(1) does (a piped stdin is read as is)."""
    if not sys.stdin.isatty():
        sys.stderr.write(prompt + "\n")
        return sys.stdin.readline().rstrip("\n")
    import termios

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    quiet = list(old)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)  # echo off before the prompt, so no typed char shows
    try:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        sys.stderr.write("\n")
    return line.rstrip("\n")


def chpasswd(argv: list[str], state: DeviceState) -> int:
    if argv and any(a not in ("-c", "SHA512", "--crypt-method", "-s", "--sha-rounds") and not a.isdigit()
                    for a in argv):
        return fail(f"chpasswd: unrecognized option '{argv[0]}'", 2)
    changes: list[tuple[str, str]] = []
    failed = False
    for number, line in enumerate(sys.stdin.read().splitlines(), 1):
        if not line.strip():
            continue
        user, sep, password = line.partition(":")
        if not sep:
            err(f"chpasswd: line {number}: missing new password")
            failed = True
        elif not _known(state, user):
            err(f"chpasswd: line {number}: user '{user}' does not exist")
            failed = True
        else:
            changes.append((user, password))
    if failed:
        err("chpasswd: error detected, changes ignored")  # all or nothing, as chpasswd does
        return 1
    for user, password in changes:
        state.set_password(user, password)
        state.log(f"password changed for {user}", "chpasswd", priority=5)
    return 0


def manage(tool: str, argv: list[str], state: DeviceState) -> int:
    """useradd, usermod, userdel, groupadd: accounts of the device (shadow.json and its /etc files)."""
    names = [a for a in argv if not a.startswith("-")]
    name = names[-1] if names else ""
    if not name:
        return fail(f"Usage: {tool} [options] {'GROUP' if tool == 'groupadd' else 'LOGIN'}", 2)
    if not valid_username(name):
        return fail(f"{tool}: invalid {'group' if tool == 'groupadd' else 'user'} name '{name[:64]}'", 3)
    users = state.users()
    if tool == "groupadd":
        return 0  # groups carry no state the simulated tools read
    if tool == "useradd" and name in users:
        return fail(f"useradd: user '{name}' already exists", 9)
    if tool in ("usermod", "userdel") and name not in users:
        return fail(f"{tool}: user '{name}' does not exist", 6)
    if tool == "usermod":
        return 0  # shells, groups and comments are not modelled; the account stays as it is

    def change(shadow: dict[str, object]) -> None:
        if tool == "useradd":
            shadow[name] = "!"  # locked until passwd sets a password, as useradd leaves it
        else:
            shadow.pop(name, None)

    state.set_users(change)
    write_accounts(state.root, state.users())
    state.log(f"{'new user: name' if tool == 'useradd' else 'delete user'} '{name}'", tool, priority=5)
    return 0
