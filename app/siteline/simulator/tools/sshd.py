"""sshd: ``sshd -T`` (the effective settings), ``sshd -t`` and ``-V``, read from the device's own sshd_config.

The device keeps /etc/ssh/sshd_config (and /etc/ssh/sshd_config.d/*.conf through its Include line) in its
rootfs; a new device gets the demo's file, which still allows password logins. As in OpenSSH, the first
value of a keyword wins, a keyword left out takes OpenSSH's default, Match blocks apply only to some
connections (so ``-T`` without ``-C`` leaves them out), and ``-T`` needs root to read the host keys.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from siteline.core.atomic import write_atomic
from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import err, fail, out

VERSION = "OpenSSH_8.9p1, OpenSSL 3.0.12 24 Oct 2023"  # what Yocto kirkstone ships
CONFIG = "etc/ssh/sshd_config"
DEMO_CONFIG = """\
# Northwind Edge OS: OpenSSH server settings. See sshd_config(5).
Include /etc/ssh/sshd_config.d/*.conf

HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin yes
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
# Factory setting for first provisioning; the rollout checklist says to turn it off.
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
ClientAliveInterval 30
Subsystem sftp internal-sftp
"""

# OpenSSH 8.9's defaults, in the order `sshd -T` prints them (the ones a posture or audit tool reads).
DEFAULTS: tuple[tuple[str, str], ...] = (
    ("port", "22"), ("addressfamily", "any"), ("listenaddress", "[::]:22"), ("listenaddress", "0.0.0.0:22"),
    ("usepam", "no"), ("logingracetime", "120"), ("x11displayoffset", "10"), ("maxauthtries", "6"),
    ("maxsessions", "10"), ("clientaliveinterval", "0"), ("clientalivecountmax", "3"), ("streamlocalbindmask", "0177"),
    ("permitrootlogin", "without-password"), ("ignorerhosts", "yes"), ("ignoreuserknownhosts", "no"),
    ("hostbasedauthentication", "no"), ("hostbasedusesnamefrompacketonly", "no"), ("pubkeyauthentication", "yes"),
    ("kerberosauthentication", "no"), ("gssapiauthentication", "no"), ("passwordauthentication", "yes"),
    ("kbdinteractiveauthentication", "yes"), ("printmotd", "yes"), ("printlastlog", "yes"),
    ("x11forwarding", "no"), ("x11uselocalhost", "yes"), ("permittty", "yes"), ("permituserrc", "yes"),
    ("strictmodes", "yes"), ("tcpkeepalive", "yes"), ("permitemptypasswords", "no"), ("compression", "yes"),
    ("gatewayports", "no"), ("usedns", "no"), ("allowtcpforwarding", "yes"), ("allowagentforwarding", "yes"),
    ("disableforwarding", "no"), ("allowstreamlocalforwarding", "yes"), ("streamlocalbindunlink", "no"),
    ("fingerprinthash", "SHA256"), ("exposeauthinfo", "no"), ("pidfile", "/var/run/sshd.pid"),
    ("xauthlocation", "/usr/bin/xauth"), ("ciphers", "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,"
                                                    "aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"),
    ("loglevel", "INFO"), ("syslogfacility", "AUTH"), ("authorizedkeysfile", ".ssh/authorized_keys"),
    ("hostkey", "/etc/ssh/ssh_host_ed25519_key"), ("authenticationmethods", "any"),
    ("subsystem", "sftp /usr/libexec/sftp-server"), ("maxstartups", "10:30:100"), ("permittunnel", "no"),
    ("ipqos", "lowdelay throughput"), ("rekeylimit", "0 0"), ("permitopen", "any"), ("permitlisten", "any"),
)
ALIASES = {"challengeresponseauthentication": "kbdinteractiveauthentication"}
YES_NO = {"true": "yes", "false": "no"}
# Keywords OpenSSH takes that this stand-in does not print; accepted so a real config is not "bad".
ACCEPTED = {"include", "match", "acceptenv", "banner", "chrootdirectory", "forcecommand", "hostkeyalgorithms",
            "kexalgorithms", "macs", "allowusers", "allowgroups", "denyusers", "denygroups", "trustedusercakeys",
            "revokedkeys", "authorizedprincipalsfile", "versionaddendum", "debianbanner", "useprivilegeseparation"}


def ensure_config(state: DeviceState) -> None:
    """Give a device made before this tool existed the demo's sshd_config (an existing one is kept)."""
    path = rootfs.rootfs(state.root) / CONFIG
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "sshd_config.d").mkdir(exist_ok=True)
        write_atomic(path, DEMO_CONFIG.encode())


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    from siteline.simulator.tools.storage import provision

    provision(state)
    if "-V" in argv:
        err(VERSION)
        return 0
    config = CONFIG
    if "-f" in argv and argv.index("-f") + 1 < len(argv):
        config = argv[argv.index("-f") + 1].lstrip("/")
    testing = "-T" in argv or "-t" in argv
    if not testing:
        # The device's sshd is already listening (it is the simulator's SSH server).
        return fail("Bind to port 22 on 0.0.0.0 failed: Address already in use.\n"
                    "Cannot bind any address.", 255)
    if state.config.user != "root":
        return fail("sshd: no hostkeys available -- exiting.", 1)  # the host keys are readable by root only
    settings = effective(state, config)
    if isinstance(settings, str):
        return fail(settings, 255)
    if "-T" in argv:
        out("".join(f"{key} {value}\n" for key, value in settings))
    return 0


def effective(state: DeviceState, config: str = CONFIG) -> list[tuple[str, str]] | str:
    """The effective global settings (keyword, value), or sshd's error text for a bad or missing file."""
    fs = rootfs.rootfs(state.root)
    given: dict[str, str] = {}
    problem = _read_config(fs, fs / config, "/" + config, given, depth=0)
    if problem:
        return problem
    printed: list[tuple[str, str]] = []
    for key, default in DEFAULTS:
        if key == "listenaddress" and "listenaddress" in given:
            if not any(k == key for k, _v in printed):
                printed.append((key, f"{given[key]}:{given.get('port', '22')}"))
            continue
        printed.append((key, given.get(key, default)))
    return printed


def _read_config(fs: Path, path: Path, shown: str, given: dict[str, str], depth: int) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"{shown}: No such file or directory" if depth == 0 else None  # an Include glob may match nothing
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.strip().replace("=", " ", 1).split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key = ALIASES.get(words[0].lower(), words[0].lower())
        value = words[1].strip().strip('"') if len(words) > 1 else ""
        if key == "match":
            return None  # the rest of the file applies only to matching connections
        if key == "include" and depth < 8:
            for pattern in value.split():
                for inc in _glob(fs, pattern):
                    problem = _read_config(fs, inc, "/" + str(inc.relative_to(fs)), given, depth + 1)
                    if problem:
                        return problem
            continue
        if key not in ACCEPTED and not any(key == k for k, _d in DEFAULTS):
            return (f"{shown}: line {number}: Bad configuration option: {words[0]}\n"
                    f"{shown}: terminating, 1 bad configuration options")
        if key not in ACCEPTED:
            given.setdefault(key, YES_NO.get(value.lower(), value.lower() if _yes_no(key) else value))
    return None


def _yes_no(key: str) -> bool:
    return any(k == key and d in ("yes", "no", "without-password") for k, d in DEFAULTS)


def _glob(fs: Path, pattern: str) -> list[Path]:
    rel = pattern.lstrip("/") if pattern.startswith("/") else f"etc/ssh/{pattern}"
    folder, _sep, name = rel.rpartition("/")
    base = fs / folder
    if not base.is_dir() or not rootfs.inside(fs.parent, base):
        return []
    return sorted(p for p in base.iterdir() if fnmatch.fnmatch(p.name, name) and p.is_file())


def passwords_allowed(state: DeviceState) -> bool:
    """Whether the device's sshd would offer password logins (for the simulator's SSH server to follow)."""
    settings = effective(state)
    if isinstance(settings, str):
        return True
    values = dict(settings)
    return values.get("passwordauthentication") == "yes" or (
        values.get("kbdinteractiveauthentication") == "yes" and values.get("usepam") == "yes")
