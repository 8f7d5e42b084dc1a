"""Keep device commands off the host: a private mount + UTS namespace with the device's files on top.

Shims catch the commands a device tool answers, but a shell redirection (``echo x > /etc/hostname``)
or the real ``hostname`` binary cannot be shimmed. When the simulator runs as root on Linux (CI
does), every device command and shell therefore starts inside ``unshare --mount --uts
--propagation private`` with the device's own /etc files bind-mounted over the host's and the UTS
hostname set to the device's: writes land in the state directory, never on the host. Without
root (or without unshare) the simulator cannot change those host files anyway, so commands run
as they are. The cost is one ``unshare`` + ``sh`` + a few ``mount`` execs, about 13 ms a command.
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


@functools.cache
def _tools() -> tuple[str, str, str] | None:
    found = tuple(shutil.which(name, path=SYSTEM_PATH) for name in ("unshare", "mount", "hostname"))
    return (found[0], found[1], found[2]) if all(found) else None  # type: ignore[return-value]


@functools.cache
def available() -> bool:
    """True when a private mount+UTS namespace with a bind mount works here (checked once per process)."""
    tools = _tools()
    if sys.platform != "linux" or os.geteuid() != 0 or tools is None:
        return False
    unshare, mount, hostname = tools
    probe = f"{mount} --bind /dev/null /dev/null && {hostname} siteline-probe"
    try:
        done = subprocess.run([unshare, "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", probe],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def wrap(root: Path, hostname: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the device's namespace, or ``argv`` itself where namespaces are not available."""
    tools = _tools()
    if tools is None or not available():
        return argv
    unshare, mount, hostname_bin = tools
    fs = rootfs.rootfs(root)
    lines = []
    for rel in GUARDED:
        src, dst = fs / rel, Path("/") / rel
        if src.is_file() and not src.is_symlink() and dst.is_file():
            lines.append(f"{mount} --bind {shlex.quote(str(src))} {shlex.quote(str(dst))} || "
                         f"{{ echo 'siteline sim: cannot cover the host file {dst}; refusing to run' >&2; exit 126; }}")
    lines.append(f"{hostname_bin} {shlex.quote(hostname)} 2>/dev/null || :")  # a name the kernel refuses: keep going
    lines.append('exec "$@"')
    return [unshare, "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", "\n".join(lines), "sh",
            *argv]
