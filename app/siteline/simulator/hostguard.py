"""Keep device commands off the host: private namespaces with the device's files on top.

Shims catch the commands a device tool answers, but a shell redirection (``echo x > /etc/hostname``)
or a host binary called by absolute path (``/sbin/reboot``, ``/usr/sbin/iptables -F``, ``ip link set
lo down``, ``kill -9 -1``) cannot be shimmed. When the simulator runs as root on Linux (CI does),
every device command and shell therefore starts inside ``unshare`` with private mount, UTS, network
and PID namespaces (and a fresh /proc), a tmpfs over /run (so systemd's and D-Bus's sockets are out
of reach), the device's own /etc files bind-mounted over the host's and the UTS hostname set to the
device's. Writes land in the state directory; network changes hit an empty namespace with only
``lo``; signals reach only the device's own processes.

As root without namespaces (a container without CAP_SYS_ADMIN) nothing would stop a device command
from changing the host, so ``wrap`` and ``check`` refuse with ``HostGuardError``. Without root the
simulator cannot change those host files, firewall or links anyway, so commands run as they are.
The cost is one ``unshare`` + ``sh`` + a few ``mount`` execs: about 18 ms a command here, against
13 ms with only the mount and UTS namespaces and 1.6 ms with none (tests/integration/test_sim_hostguard.py).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from siteline.simulator import rootfs

# Host files a device owns when its rootfs has them (only files that exist on both sides are covered:
# creating a mount point would change the host).
GUARDED = ("etc/hostname", "etc/hosts", "etc/shadow", "etc/passwd", "etc/group", "etc/os-release",
           "etc/machine-id")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# --fork: the PID namespace starts with the next child; --kill-child: when unshare itself is killed
# (a hangup, a timeout) its namespace's init dies, and with it every process of the device command.
NAMESPACES = ("--mount", "--uts", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
              "--propagation", "private")


class HostGuardError(RuntimeError):
    """Device commands would run unconfined as root on the host; the message says what to do."""


@functools.cache
def _tools() -> tuple[str, str, str, str] | None:
    found = tuple(shutil.which(name, path=SYSTEM_PATH) for name in ("unshare", "mount", "hostname", "setsid"))
    return (found[0], found[1], found[2], found[3]) if all(found) else None  # type: ignore[return-value]


def required() -> bool:
    """True when device commands could change the host unless confined: root on Linux."""
    return sys.platform == "linux" and os.geteuid() == 0


def _setup_lines(mount: str, hostname_bin: str) -> list[str]:
    """Shell lines run as the namespace's init before the device command, common to probe and wrap."""
    ip = shutil.which("ip", path=SYSTEM_PATH)
    return [
        f"{mount} -t tmpfs -o mode=0755 siteline-run /run || {{ echo 'siteline sim: cannot hide the host /run; "
        "refusing to run' >&2; exit 126; }",
        *([f"{ip} link set lo up 2>/dev/null || :"] if ip else []),  # a private net ns starts with lo down
    ]


@functools.cache
def available() -> bool:
    """True when the full set of namespaces, the /run tmpfs and a bind mount work here (checked once)."""
    tools = _tools()
    if sys.platform != "linux" or os.geteuid() != 0 or tools is None:
        return False
    unshare, mount, hostname, _setsid = tools
    probe = "\n".join([*_setup_lines(mount, hostname), f"{mount} --bind /dev/null /dev/null",
                       f"{hostname} siteline-probe"])
    try:
        done = subprocess.run([unshare, *NAMESPACES, "--", "/bin/sh", "-c", probe],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def check() -> None:
    """Raise ``HostGuardError`` when device commands would run as root on the host unconfined."""
    if required() and not available():
        raise HostGuardError(
            "the simulator runs as root but cannot put the device's commands in private mount, UTS, network "
            "and PID namespaces (unshare failed: a container without CAP_SYS_ADMIN?), so a device command could "
            "change this host. Run the simulator as an ordinary user, or give the container CAP_SYS_ADMIN "
            "(docker run --cap-add SYS_ADMIN).")


def wrap(root: Path, hostname: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the device's namespaces; ``argv`` itself when not root (see the module doc)."""
    if not required():
        return argv
    check()
    tools = _tools()
    if tools is None:  # not reached: available() is False without them, and check() raised
        raise HostGuardError("unshare, mount, hostname or setsid (util-linux) is missing")
    unshare, mount, hostname_bin, setsid = tools
    fs = rootfs.rootfs(root)
    lines = _setup_lines(mount, hostname_bin)
    for rel in GUARDED:
        src, dst = fs / rel, Path("/") / rel
        if src.is_file() and not src.is_symlink() and dst.is_file():
            lines.append(f"{mount} --bind {shlex.quote(str(src))} {shlex.quote(str(dst))} || "
                         f"{{ echo 'siteline sim: cannot cover the host file {dst}; refusing to run' >&2; exit 126; }}")
    lines.append(f"{hostname_bin} {shlex.quote(hostname)} 2>/dev/null || :")  # a name the kernel refuses: keep going
    # Not `exec`: this sh stays the namespace's init, so the command keeps the default signal actions
    # (the kernel drops unhandled signals sent to an init). On a terminal the command gets a session
    # of its own with the tty as its controlling terminal: an interactive shell must see a foreground
    # process group inside its PID namespace (the session leader's is outside) to restore it on exit.
    lines.append(f'if [ -t 0 ]; then {setsid} --ctty --wait "$@"; else "$@"; fi\nexit $?')
    return [unshare, *NAMESPACES, "--", "/bin/sh", "-c", "\n".join(lines), "sh", *argv]
