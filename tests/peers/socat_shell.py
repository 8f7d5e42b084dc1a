"""A real bash on a pty through socat: a serial console a pyserial client can open by path.

bash starts clean (no rc files, no history) with a prompt full of escape sequences (a window
title, colours, and bash's own bracketed-paste switches) so tests prove the stripping works.

:func:`start_busybox_shell` runs BusyBox's ash instead, as a Buildroot box's console does: no
login, the prompt ``/ # ``, line editing that keeps at most 1022 typed
characters before the Enter, and a PATH that holds BusyBox applets only, so a test proves Siteline
needs nothing else on the device.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from siteline.simulator.lifetime import die_with_parent
from tests.peers import find_tool
from tests.peers.process import stop_tree

# \[ \] mark non-printing parts for readline; \e]0;...\a sets a window title; \e[1;32m is bold green.
FANCY_PS1 = r"\[\e]0;sim-console\a\]\[\e[1;32m\]root@sim\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]# "
BUSYBOX_PS1 = r"\w \$ "  # Buildroot's default: "~ # " in root's home, "/ # " at the root
# What a minimal Buildroot image has and Siteline may use; every one a link to the one busybox binary.
BUSYBOX_APPLETS = (
    "sh", "base64", "sha256sum", "dd", "df", "wc", "cat", "mv", "rm", "sync", "printf", "tee", "stty", "head",
    "vi", "sleep",  # the console tests' own: a full-screen program, and a command that outlasts its timeout
)


@dataclass
class SocatShell:
    workdir: Path
    path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"serial://{self.path}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            stop_tree(proc)


def start_socat_shell(
    workdir: Path, ps1: str = FANCY_PS1, timeout: float = 10.0, program: str = "/bin/bash --norc --noprofile -i",
    path: str | None = None, cwd: Path | None = None, ctty: bool = False,
) -> SocatShell:
    """Start socat; ``program`` (words split on spaces, as socat's EXEC does) runs on the pty.

    ``path``: the shell's PATH (default: this process's); ``cwd``: where it starts (default: its HOME);
    ``ctty``: make the pty the shell's controlling terminal (bash takes it by itself, ash does not).
    """
    socat = find_tool("socat")
    if socat is None:
        raise RuntimeError("socat not found: install the Debian package 'socat'")
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    link = workdir / "ttyDEV"
    env = {
        "PATH": path or os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "xterm-256color",
        "PS1": ps1, "HISTFILE": "/dev/null", "LANG": "C.UTF-8",
    }
    cmd = [socat, f"PTY,link={link},raw,echo=0",
           f"EXEC:{program},pty,stderr,setsid,sigint,sane" + (",ctty" if ctty else "")]
    with (workdir / "socat.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=cwd or home,
                                start_new_session=True, preexec_fn=die_with_parent())
    shell = SocatShell(workdir, link, proc)
    deadline = time.monotonic() + timeout
    while not link.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            shell.stop()
            raise RuntimeError(f"socat did not create {link}: {(workdir / 'socat.log').read_text()[-400:]}")
        time.sleep(0.01)
    return shell


def busybox_bin(folder: Path, busybox: str, applets: tuple[str, ...] = BUSYBOX_APPLETS) -> Path:
    """A folder of applet links to ``busybox`` (BusyBox picks the applet from the name it was run by)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in applets:
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(busybox)
    return folder


def start_busybox_shell(
    workdir: Path, busybox: str, timeout: float = 10.0, cwd: Path | None = None, job_control: bool = True
) -> SocatShell:
    """``busybox sh`` (ash with line editing) on a pty, already at a shell: no login, PATH = BusyBox applets only.

    The prompt is ``<cwd> # ``: ``/ # `` with ``cwd=Path("/")`` as on a Buildroot box (ash abbreviates
    only the passwd entry's home to ``~``, not $HOME), else the full path of the shell's HOME.

    ``job_control=True``: the pty is the shell's controlling terminal, as behind a getty, so Ctrl-C
    interrupts a command. ``False``: what inittab's ``::respawn:-/bin/sh`` on the console gives
    ("can't access tty; job control turned off"): Ctrl-C interrupts nothing. (Not BusyBox's
    ``cttyhack``: it looks up the host's own console in /sys and would run the shell on it.)
    """
    bin_dir = busybox_bin(workdir / "bin", busybox)
    # Started through the sh link (not "busybox sh") so $0 and ps show what a Buildroot box shows.
    return start_socat_shell(workdir, ps1=BUSYBOX_PS1, timeout=timeout, program=f"{bin_dir / 'sh'} -i",
                             path=str(bin_dir), cwd=cwd, ctty=job_control)
