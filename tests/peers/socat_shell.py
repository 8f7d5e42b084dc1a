"""A real bash on a pty through socat: a serial console a pyserial client can open by path.

bash starts clean (no rc files, no history) with a prompt full of escape sequences (a window
title, colours, and bash's own bracketed-paste switches) so tests prove the stripping works.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import find_tool
from tests.peers.process import die_with_test_run, stop_tree

# \[ \] mark non-printing parts for readline; \e]0;...\a sets a window title; \e[1;32m is bold green.
FANCY_PS1 = r"\[\e]0;sim-console\a\]\[\e[1;32m\]root@sim\[\e[0m\]:\[\e[1;34m\]\w\[\e[0m\]# "


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
    workdir: Path, ps1: str = FANCY_PS1, timeout: float = 10.0, program: str = "/bin/bash --norc --noprofile -i"
) -> SocatShell:
    """Start socat; ``program`` (words split on spaces, as socat's EXEC does) runs on the pty."""
    socat = find_tool("socat")
    if socat is None:
        raise RuntimeError("socat not found: install the Debian package 'socat'")
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    link = workdir / "ttyDEV"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "xterm-256color",
        "PS1": ps1, "HISTFILE": "/dev/null", "LANG": "C.UTF-8",
    }
    cmd = [socat, f"PTY,link={link},raw,echo=0",
           f"EXEC:{program},pty,stderr,setsid,sigint,sane"]
    with (workdir / "socat.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=home,
                                start_new_session=True, preexec_fn=die_with_test_run())
    shell = SocatShell(workdir, link, proc)
    deadline = time.monotonic() + timeout
    while not link.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            shell.stop()
            raise RuntimeError(f"socat did not create {link}: {(workdir / 'socat.log').read_text()[-400:]}")
        time.sleep(0.01)
    return shell
