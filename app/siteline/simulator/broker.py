"""Start an MQTT broker for the demo and the tests: Mosquitto, or an embedded amqtt when it is missing.

Either broker runs as a separate process with its own config in a private folder, bound to
loopback only, and is stopped with the handle. A separate process behaves like the control
plane's broker would: it can be killed and restarted under a running client.

Security rests on the broker (see docs/mqtt-device-contract.md): with ``users`` given, anonymous
clients are refused and every user gets only the topics its :data:`Acl` entry grants.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from siteline.simulator.lifetime import die_with_parent
from siteline.simulator.private import write_private

log = logging.getLogger(__name__)

Access = Literal["read", "write", "readwrite"]
Grant = tuple[Access, str]
Acl = Mapping[str, Sequence[Grant]]
KINDS = ("mosquitto", "embedded")
BROKER_ENV = "SITELINE_BROKER"  # "mosquitto" or "embedded" forces one; unset or "auto" picks Mosquitto first


class BrokerUnavailableError(RuntimeError):
    """No broker could be started; the message says which package to install."""


def device_acl(site: str, name: str) -> list[Grant]:
    """A device writes its own status, telemetry and replies, and reads only its own requests."""
    prefix = f"edge/{site}/{name}"
    return [("write", f"{prefix}/status"), ("write", f"{prefix}/telemetry/#"), ("write", f"{prefix}/cmd/res/#"),
            ("read", f"{prefix}/cmd/req")]


def siteline_acl() -> list[Grant]:
    """Siteline reads every device's status, telemetry and replies and may send requests; nothing else."""
    return [("read", "edge/#"), ("write", "edge/+/+/cmd/req")]


def control_plane_acl(technician: str) -> list[Grant]:
    """A technician's Siteline as a control plane sees it: publishes under its own outbox, reads its inbox
    and the fleet's (the contract in docs/control-plane.md)."""
    root = "siteline/v1"
    return [("write", f"{root}/{technician}/outbox/#"), ("read", f"{root}/{technician}/in/#"),
            ("read", f"{root}/fleet/in/#")]


def mosquitto_acl_text(acl: Acl) -> str:
    """The ACL in Mosquitto's acl_file format."""
    lines: list[str] = []
    for user, grants in acl.items():
        lines.append(f"user {user}")
        lines.extend(f"topic {access} {topic}" for access, topic in grants)
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class TlsListener:
    """Makes Mosquitto's listener TLS-only: its certificate and key, and the CA that signs client certificates.

    With ``require_certificate`` a client without a certificate signed by ``cafile`` is refused.
    """

    certfile: Path
    keyfile: Path
    cafile: Path
    require_certificate: bool = False

    def config(self) -> str:
        for path in (self.certfile, self.keyfile, self.cafile):
            if any(c in str(path) for c in "\n\r"):
                raise ValueError(f"{path!r} cannot be written into a Mosquitto config")
        require = "true" if self.require_certificate else "false"
        return (f"certfile {self.certfile}\nkeyfile {self.keyfile}\ncafile {self.cafile}\n"
                f"require_certificate {require}\n")


@dataclass
class BrokerHandle:
    host: str
    port: int
    kind: str
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    users: dict[str, str] | None = field(default=None, repr=False)
    acl: Acl | str | None = field(default=None, repr=False)
    tls: TlsListener | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart(self) -> None:
        """Start the same broker again on the same port with the same users (after stop() or a crash)."""
        self.stop()
        if self.kind == "mosquitto":
            handle = start_mosquitto(self.workdir, self.port, users=self.users, acl=self.acl, tls=self.tls)
            self.process = handle.process
        else:
            self.process = start_embedded(self.workdir, self.port, users=self.users, acl=self.acl).process


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def embedded_available() -> bool:
    return importlib.util.find_spec("amqtt") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _private_file(path: Path, text: str) -> None:
    """Write a secret-bearing file readable by its owner only (created 0600, never world-readable)."""
    write_private(path, text)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], logfile: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = logfile.read_text(errors="replace") if logfile.exists() else ""
            raise BrokerUnavailableError(f"{what} exited with code {proc.returncode}: {err.strip()[-400:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerUnavailableError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


def _launch(argv: list[str], workdir: Path, port: int, timeout: float, what: str) -> subprocess.Popen[bytes]:
    logfile = workdir / f"{what}.log"
    # A file, not a pipe: a pipe nobody reads fills up and stalls the broker.
    with logfile.open("ab") as logfh:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfh, stderr=logfh,
                                start_new_session=True,  # Ctrl-C in a terminal is the demo's to handle, in order
                                preexec_fn=die_with_parent())
    try:
        _wait_listening(port, proc, logfile, timeout, what)
    except BrokerUnavailableError:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    return proc


Popen = subprocess.Popen[bytes]


def _with_free_port(port: int, attempt: Callable[[int], Popen]) -> tuple[int, Popen]:
    """Run ``attempt(port)``; with port 0, retry on other free ports when one was taken in the meantime."""
    for _ in range(5):
        chosen = port or _free_port()
        try:
            return chosen, attempt(chosen)
        except BrokerUnavailableError as exc:
            if port or "in use" not in str(exc).lower():
                raise
    raise BrokerUnavailableError("could not find a free port for the broker")


def _mosquitto_auth(workdir: Path, users: Mapping[str, str], acl: Acl | str | None) -> str:
    """Password and ACL files for Mosquitto; returns the config lines that use them."""
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    pwfile, aclfile = workdir / "passwd", workdir / "acl"
    for user in users:
        if not user or ":" in user or any(c.isspace() for c in user):
            raise ValueError(f"'{user}' cannot be a broker user name (no ':' or spaces)")
    # Plain text first, hashed in place by -U: passwords never appear on a command line `ps` shows.
    _private_file(pwfile, "".join(f"{u}:{p}\n" for u, p in users.items()))
    try:
        subprocess.run([passwd, "-U", str(pwfile)], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pwfile.unlink(missing_ok=True)
        raise BrokerUnavailableError(f"mosquitto_passwd could not hash the broker's passwords: {exc}") from exc
    _private_file(aclfile, acl if isinstance(acl, str) else mosquitto_acl_text(acl or {}))
    # Started as root, Mosquitto drops to the 'mosquitto' user, which cannot read our 0600 files.
    keep_user = "user root\n" if os.geteuid() == 0 else ""
    return f"{keep_user}allow_anonymous false\npassword_file {pwfile}\nacl_file {aclfile}\n"


def start_mosquitto(workdir: Path, port: int = 0, *, users: Mapping[str, str] | None = None,
                    acl: Acl | str | None = None, timeout: float = 10.0,
                    tls: TlsListener | None = None) -> BrokerHandle:
    """Run Mosquitto on 127.0.0.1:port (0 = a free port) with a config written under ``workdir``.

    Without ``users`` it accepts anonymous clients (for tests of the protocol itself); with them,
    only those users, each limited by ``acl`` (a user without an entry may do nothing). With
    ``tls`` the listener speaks TLS only (see :class:`TlsListener`).
    """
    exe = find_mosquitto()
    if exe is None:
        raise BrokerUnavailableError("Mosquitto is not installed: install the Debian package 'mosquitto'.")
    workdir.mkdir(parents=True, exist_ok=True)
    auth = _mosquitto_auth(workdir, users, acl) if users else "allow_anonymous true\n"
    if tls is not None and os.geteuid() == 0 and "user root" not in auth:
        # Started as root, Mosquitto drops to the 'mosquitto' user, which cannot read private key files.
        auth = "user root\n" + auth
    listener_tls = tls.config() if tls is not None else ""
    conf = workdir / "mosquitto.conf"

    def attempt(chosen: int) -> subprocess.Popen[bytes]:
        conf.write_text(f"listener {chosen} 127.0.0.1\n{listener_tls}{auth}persistence false\nlog_dest stderr\n"
                        "log_type error\nlog_type warning\nmax_queued_messages 10000\n")
        return _launch([exe, "-c", str(conf)], workdir, chosen, timeout, "mosquitto")

    chosen, proc = _with_free_port(port, attempt)
    log.info("mosquitto listening on 127.0.0.1:%d%s", chosen, " (TLS)" if tls else "")
    return BrokerHandle("127.0.0.1", chosen, "mosquitto", workdir, proc, dict(users) if users else None, acl, tls)


def _amqtt_config(port: int, workdir: Path, users: Mapping[str, str] | None, acl: Acl | None) -> dict[str, object]:
    plugins: dict[str, object] = {}
    if users:
        # pwdlib is amqtt's own dependency (amqtt verifies these Argon2 hashes); imported by name so that
        # type checks pass on machines without the optional extra.
        hasher = importlib.import_module("pwdlib.hashers.argon2").Argon2Hasher()
        pwfile = workdir / "passwd"
        _private_file(pwfile, "".join(f"{u}:{hasher.hash(p)}\n" for u, p in users.items()))
        plugins["amqtt.plugins.authentication.FileAuthPlugin"] = {"password_file": str(pwfile)}
        grants = acl or {}

        def topics(*kinds: str) -> dict[str, list[str]]:
            return {u: [t for a, t in grants.get(u, ()) if a in kinds] for u in users}

        plugins["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
            "publish_acl": topics("write", "readwrite"),
            # amqtt 0.12's Config takes the subscribe ACL as "acl" (with a DeprecationWarning in its own log)
            # and has no receive ACL: what a client may subscribe to is what it may read.
            "acl": topics("read", "readwrite"),
        }
    else:
        plugins["amqtt.plugins.authentication.AnonymousAuthPlugin"] = {"allow_anonymous": True}
    # amqtt binds 0.0.0.0 unless told: the listener names loopback explicitly.
    return {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}, "plugins": plugins}


def start_embedded(workdir: Path, port: int = 0, *, users: Mapping[str, str] | None = None,
                   acl: Acl | str | None = None, timeout: float = 15.0) -> BrokerHandle:
    """Run amqtt (pure Python, the ``broker`` extra) in a subprocess on 127.0.0.1:port.

    It is the demo's fallback, not a control plane: amqtt sends a newly connected client the
    retained messages matching *other* clients' subscriptions, past its ACL. The agent and the
    transport guard against that (exact topics, no retained requests; see the contract).
    """
    if not embedded_available():
        raise BrokerUnavailableError("Neither Mosquitto nor the embedded broker is installed: install the Debian "
                                     "package 'mosquitto', or `pip install 'siteline[broker]'` for amqtt.")
    if isinstance(acl, str):
        raise ValueError("the embedded broker takes the ACL as a mapping of user -> [(access, topic)]")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "amqtt.json"  # JSON is YAML, so amqtt reads it and we need no YAML writer

    def attempt(chosen: int) -> subprocess.Popen[bytes]:
        _private_file(conf, json.dumps(_amqtt_config(chosen, workdir, users, acl), indent=1))
        argv = [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]
        return _launch(argv, workdir, chosen, timeout, "amqtt")

    chosen, proc = _with_free_port(port, attempt)
    log.info("embedded amqtt broker listening on 127.0.0.1:%d", chosen)
    return BrokerHandle("127.0.0.1", chosen, "embedded", workdir, proc, dict(users) if users else None, acl)


def start_broker(workdir: Path, port: int = 0, *, users: Mapping[str, str] | None = None,
                 acl: Acl | None = None, kind: str | None = None) -> BrokerHandle:
    """The demo's broker: Mosquitto when installed, else the embedded amqtt.

    ``kind`` (or the SITELINE_BROKER environment variable) forces "mosquitto" or "embedded".
    """
    wanted = (kind or os.environ.get(BROKER_ENV, "") or "auto").strip().lower()
    if wanted not in (*KINDS, "auto"):
        raise BrokerUnavailableError(f"{BROKER_ENV}={wanted!r} is not one of auto, mosquitto, embedded.")
    if wanted == "mosquitto" or (wanted == "auto" and find_mosquitto() is not None):
        return start_mosquitto(workdir, port, users=users, acl=acl)
    return start_embedded(workdir, port, users=users, acl=acl)
