"""OpenSSH's real sshd on a loopback port, with its own host key, client key and config in a temp dir.

sshd insists on /run/sshd (its privilege-separation directory). Rather than create it on the
host, sshd runs in a private mount namespace with a tmpfs over /run, so the test leaves no trace.
(It stays in the host's PID namespace: tests compare the pids its shells report with /proc.) Its
per-connection processes setsid() out of its process group; stop_tree holds them by pidfd. Where
namespaces are not allowed, a non-CI run falls back to creating the empty /run/sshd on the host;
CI fails instead (a test run must not change the host). Password authentication stays off: it would need the
host's own passwords.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from siteline.simulator.lifetime import die_with_parent
from tests.peers import find_tool, free_port
from tests.peers.process import stop_tree

_UNSHARE_OK: bool | None = None
_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NAMESPACES = ("--mount", "--propagation", "private")


def unshare_works() -> bool:
    global _UNSHARE_OK
    if _UNSHARE_OK is None:
        exe = find_tool("unshare")
        _UNSHARE_OK = bool(exe) and subprocess.run(
            [str(exe), *NAMESPACES, "sh", "-c", "mount -t tmpfs tmpfs /run"],
            capture_output=True, timeout=10, check=False,
        ).returncode == 0
    return _UNSHARE_OK


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    """Make a key pair with ssh-keygen (``path`` and ``path.pub``); returns the private key path."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "siteline-test", "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )
    return path


def key_fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True, text=True, timeout=10)
    return out.stdout.split()[1]


@dataclass
class SshdHandle:
    workdir: Path
    sshd: str
    host: str = "127.0.0.1"
    port: int = 0
    user: str = field(default_factory=getpass.getuser)
    log_level: str = "VERBOSE"
    extra_config: str = ""  # more sshd_config lines (e.g. SetEnv for a device's sessions)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_key"

    @property
    def host_key(self) -> Path:
        return self.workdir / "host_key"

    @property
    def log_file(self) -> Path:
        return self.workdir / "sshd.log"

    @property
    def host_fingerprint(self) -> str:
        return key_fingerprint(self.host_key.with_name("host_key.pub"))

    def log_text(self, offset: int = 0) -> str:
        """sshd's log from byte ``offset`` (sshd -e ends lines with CRLF: compare bytes, not text)."""
        try:
            return self.log_file.read_bytes()[offset:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def authorize(self, private_key: Path) -> None:
        pub = private_key.with_name(private_key.name + ".pub").read_text()
        with (self.workdir / "authorized_keys").open("a") as fh:
            fh.write(pub)

    def _write_config(self) -> Path:
        cfg = self.workdir / "sshd_config"
        cfg.write_text(
            f"ListenAddress {self.host}\nPort {self.port}\n"
            f"HostKey {self.host_key}\nAuthorizedKeysFile {self.workdir / 'authorized_keys'}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nSubsystem sftp internal-sftp\n"
            f"LogLevel {self.log_level}\nPrintMotd no\nUseDNS no\n{self.extra_config}"
        )
        return cfg

    def start(self) -> None:
        """Start sshd, on ``self.port`` if set (a restart), else on a fresh free port."""
        fixed = self.port != 0
        for _attempt in range(5):
            if not fixed:
                self.port = free_port()
            cmd = [self.sshd, "-D", "-e", "-f", str(self._write_config())]
            if unshare_works():
                script = 'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0755 /run/sshd && exec "$@"'
                cmd = ["unshare", *NAMESPACES, "sh", "-c", script, "sshd", *cmd]
            elif _IN_CI:
                raise RuntimeError("sshd needs /run/sshd, and without mount namespaces (unshare) it would have to be "
                                   "created on the host: give the CI container CAP_SYS_ADMIN")
            else:
                Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with self.log_file.open("ab") as log:
                self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                start_new_session=True,  # stop_tree ends the whole group
                                                preexec_fn=die_with_parent())
            if self._wait_ready(10.0, offset):
                return
            self.stop()
            if fixed or "Address already in use" not in self.log_text(offset):
                raise RuntimeError(f"sshd did not start: {self.log_text()[-800:]}")
        raise RuntimeError("could not find a free port for sshd")

    def _wait_ready(self, timeout: float, offset: int) -> bool:
        deadline = time.monotonic() + timeout
        marker = f"Server listening on {self.host} port {self.port}"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if marker in self.log_text(offset):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the listener and the per-connection processes, which outlive it by design."""
        proc, self.process = self.process, None
        if proc is not None:
            stop_tree(proc)

    def regenerate_host_key(self) -> None:
        """A 'reinstalled device': a new host key on the same port."""
        self.stop()
        keygen(self.host_key)
        self.start()


def start_sshd(workdir: Path, *, log_level: str = "VERBOSE") -> SshdHandle:
    sshd = find_tool("sshd")
    if sshd is None:
        raise RuntimeError("sshd not found: install openssh-server")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    handle = SshdHandle(workdir=workdir, sshd=sshd, log_level=log_level)
    keygen(handle.host_key)
    keygen(handle.client_key)
    (workdir / "authorized_keys").write_text("")
    handle.authorize(handle.client_key)
    handle.start()
    return handle
