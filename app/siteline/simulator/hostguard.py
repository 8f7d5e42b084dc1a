"""Keep device commands off the host: private namespaces with the device's files on top.

Shims catch the commands a device tool answers, but a shell redirection (``echo x > /etc/hostname``)
or a host binary called by absolute path (``/sbin/reboot``, ``/usr/sbin/iptables -F``, ``ip link set
lo down``, ``kill -9 -1``, ``dd of=/dev/mmcblk0p3``) cannot be shimmed. When the simulator runs as root
on Linux (CI does), every device command and shell therefore starts inside ``unshare`` with private
mount, UTS, network and PID namespaces (and a fresh /proc), a tmpfs over /run (so systemd's and D-Bus's
sockets are out of reach), the device's own /etc files bind-mounted over the host's, its /var/tmp,
/data, /root and /home over the host's where the host has them (never one holding the state dir or this
Python), /proc/sys and a fresh /sys read-only with /proc/sysrq-trigger gone (the kernel's global knobs),
and the UTS hostname set to the device's. /dev is the device's own (<state>/rootfs/dev, see
rootfs.ensure_dev): null, zero, full, random, urandom and tty copied from the host, the host's devpts
(the simulator's consoles and SSH shells are ptys there), and the A/B slots' "block devices" as regular
files in the state dir, so a raw image written to /dev/mmcblk0p3 lands there, and no disk of the host
is in reach. Writes land in the state directory; network changes hit an empty namespace with only
``lo``; signals reach only the device's own processes.

As root without namespaces (a container without CAP_SYS_ADMIN) nothing would stop a device command
from changing the host, so ``wrap`` and ``check`` refuse with ``HostGuardError``. Without root the
simulator cannot change those host files, firewall or links anyway, so commands run as they are; the
``dd`` and ``bmaptool`` shims (rootfs.DEV_WRITERS) still send a slot path to the slot's file and refuse
any other device, and a raw install refuses a slot path the host lacks ("does not exist on the device").
The command itself then runs without the capabilities that would undo all this or reach the shared kernel
(DROPPED_CAPS: remount or unmount, set the clock, load modules, mknod), in a private IPC namespace too; the
host's secrets under /etc (SSH host keys, password hashes) are whited out of the /etc overlay, and the host's
well-known socket folders in /tmp (tmux, X11, ssh-agent) are hidden. Anything the simulator mounts from or
writes to in the state dir is refused when a device-planted link takes it out of there.
The cost is one ``unshare`` + ``sh`` + a tmpfs on /run + one ``mount -a`` of the device's fstab (kept in
that /run, out of the device's reach: one exec for every mount) + ``cp -a`` + ``mount --rbind`` for /dev +
``setpriv``: measured side by side on a busy 2-core machine before the /run and setpriv execs, 17-22 ms a
command against 17-26 ms for the earlier guard without /dev (a ``mount`` exec per /etc file: 18 ms when
idle), and 1.6 ms with no guard (tests/integration/test_sim_hostguard.py).
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from siteline.simulator import rootfs, slots

log = logging.getLogger(__name__)

# Host files a device owns when its rootfs has them (only files that exist on both sides are covered:
# creating a mount point would change the host).
GUARDED = ("etc/hostname", "etc/hosts", "etc/shadow", "etc/passwd", "etc/group", "etc/os-release",
           "etc/machine-id")
# Host folders the device has its own copy of (in its rootfs), mounted over the host's when the host has them:
# an upload to /var/tmp (the flash default) or /data over SFTP is where the device's shell finds it, and an
# `rm -f /var/tmp/x` or `> /root/.ssh/authorized_keys` in a device command never touches the host's.
DEVICE_DIRS = ("var/tmp", "data", "root", "home")
# Folders of /tmp holding host services' sockets: X11/ICE (keystrokes into the desktop), tmux (send-keys runs
# anything on the host), ssh-agent (the user's keys), D-Bus session buses. Hidden from device commands.
HOST_SOCKET_DIRS = (".X11-unix", ".ICE-unix", ".XIM-unix", ".font-unix", "tmux-*", "ssh-*", "dbus-*")
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# --fork: the PID namespace starts with the next child; --kill-child: when unshare itself is killed
# (a hangup, a timeout) its namespace's init dies, and with it every process of the device command.
# --ipc: a device's `ipcrm --all` (no capability needed) would otherwise remove the host's System V IPC objects.
NAMESPACES = ("--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
              "--propagation", "private")
# Capabilities no device command keeps (dropped from the bounding set once the namespace is set up): with them
# the device's root could undo the guard (remount the host's / writable, unmount its /etc), or act on the shared
# kernel (set the host's clock, load modules, make device nodes, reboot it, raw I/O, BPF, the kernel log, the
# audit and LSM policy), or read any host file by handle, past every mount (open_by_handle_at: dac_read_search).
# No shim needs one: they read and write files in the state dir (CAP_DAC_OVERRIDE and CAP_NET_ADMIN stay).
DROPPED_CAPS = ("sys_admin", "sys_module", "sys_time", "mknod", "sys_rawio", "sys_boot", "bpf", "perfmon", "syslog",
                "linux_immutable", "sys_pacct", "dac_read_search", "audit_control", "mac_admin", "mac_override")


class HostGuardError(RuntimeError):
    """Device commands would run unconfined as root on the host; the message says what to do."""


TOOL_NAMES = ("unshare", "mount", "hostname", "setsid", "cp", "setpriv")
SYSRQ = "/proc/sysrq-trigger"
FSTAB = "/run/.siteline-guard.fstab"  # in the namespace's /run: every other mount, done by one `mount -a -T`


@functools.cache
def _tools() -> dict[str, str] | None:
    found = {name: shutil.which(name, path=SYSTEM_PATH) for name in TOOL_NAMES}
    return {k: v for k, v in found.items() if v} if all(found.values()) else None


def required() -> bool:
    """True when device commands could change the host unless confined: root on Linux."""
    return sys.platform == "linux" and os.geteuid() == 0


def _refuse(what: str) -> str:
    return f"{{ echo 'siteline sim: cannot {what}; refusing to run' >&2; exit 126; }}"


def _fstab_word(path: Path | str) -> str:
    """A path as fstab spells it: the separators and the escape character octal-escaped."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in str(path))


def _simulator_files(root: Path) -> tuple[Path, ...]:
    """What device commands need from the host's tree: the state dir (shims), this interpreter (a venv's and
    the one it links to: pyenv keeps it in /root), its libraries and this code."""
    paths = (root, Path(sys.executable), Path(sys.prefix), Path(sys.base_prefix), rootfs.app_dir())
    return tuple({q for p in paths for q in (p.absolute(), p.resolve())})


def _mounts(root: Path) -> list[tuple[str, str, str, str]]:
    """The namespace's mounts, in order: (source, target, type, options)."""
    fs, dev = rootfs.rootfs(root), rootfs.ensure_dev(root)
    # First the state dir on itself, so it stays writable when the rest of the host's / turns read-only
    # (first: a bind made later would hide the device's /dev mounts made inside it).
    # /tmp stays writable as on any device (scratch space; tests hand files to the device through it).
    state = str(root.absolute())
    rows = [("/tmp", "/tmp", "none", "rbind"), (state, state, "none", "bind"),
            ("siteline-dev", str(dev / rootfs.NODES_DIR), "tmpfs", "mode=0755,size=64k"),
            ("/dev/pts", str(dev / "pts"), "none", "bind"),
            # The kernel's global knobs read-only (a fresh sysfs: a bind of /sys on itself counts as mounted
            # already), and no magic SysRq: `echo b > /proc/sysrq-trigger` would reboot the machine.
            ("/proc/sys", "/proc/sys", "none", "bind,ro"), ("siteline-sys", "/sys", "sysfs", "ro,nosuid,nodev,noexec"),
            *([("/dev/null", SYSRQ, "none", "bind")] if os.path.exists(SYSRQ) else [])]
    rows += _socket_dir_rows(keep := _simulator_files(root))
    if not etc_overlay(root):
        # No overlay here: the host's /etc read-only, the device's own files of it on top (writable).
        rows.append(("/etc", "/etc", "none", "bind,ro"))
        for rel in GUARDED:
            src, dst = fs / rel, Path("/") / rel
            if src.is_file() and not src.is_symlink() and confined(src, fs) and dst.is_file():
                rows.append((str(src), str(dst), "none", "bind"))
    for rel in DEVICE_DIRS:  # never one holding the simulator itself: hiding it would break every command
        src, dst = fs / rel, Path("/") / rel
        if dst.is_dir() and not dst.is_symlink() and not any(p.is_relative_to(dst) for p in keep):
            rows.append(_device_dir_row(fs, src, dst))
    return rows


def _socket_dir_rows(keep: tuple[Path, ...]) -> list[tuple[str, str, str, str]]:
    """An empty read-only tmpfs over each folder of /tmp where host services listen (see HOST_SOCKET_DIRS).

    A filesystem Unix socket is not scoped by the network namespace, and /tmp is shared (files pass through it),
    so a device command could type into the host's tmux or X server. Only the well-known folders: a socket
    elsewhere in /tmp stays reachable (a private /tmp would stop the files passed through it)."""
    rows = []
    for pattern in HOST_SOCKET_DIRS:
        for folder in Path("/tmp").glob(pattern):
            if folder.is_dir() and not folder.is_symlink() and not any(p.is_relative_to(folder) for p in keep):
                rows.append(("siteline-hidden", str(folder), "tmpfs", "ro,mode=0755,size=4k"))
    return rows


def confined(path: Path, top: Path) -> bool:
    """True when ``path``, every link on it followed, stays in ``top`` (itself resolved the same way).

    The whole state dir is writable by device commands: a folder the simulator writes to or mounts from may
    have become a link to any host path (``ln -s /usr/lib <state>/rootfs/var/tmp``)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(top))


def _device_dir_row(fs: Path, src: Path, dst: Path) -> tuple[str, str, str, str]:
    """The device's own folder bound over the host's; an empty read-only tmpfs when it now links out of the
    rootfs (bound, that host folder would be writable to the device: the host / is read-only, binds are not)."""
    if confined(src, fs):
        src.mkdir(parents=True, exist_ok=True)
        if confined(src, fs):  # the resolved path: mount follows no link the device could swap in meanwhile
            return (os.path.realpath(src), str(dst), "none", "bind")
    log.warning("%s links out of the device's rootfs (to %s): the device gets an empty read-only %s",
                src, os.path.realpath(src), dst)
    return ("siteline-refused", str(dst), "tmpfs", "ro,mode=0755,size=4k")


def _overlay_safe(path: Path) -> bool:
    """A path that can go into overlayfs's comma/colon separated mount options as it is."""
    return not any(c in str(path) for c in ",:\\= \t\n")


@functools.cache
def _overlay_works(st_dev: int, probe_dir: str) -> bool:
    tools = _tools()
    if tools is None:
        return False
    with tempfile.TemporaryDirectory(prefix=".siteline-ovl-probe-", dir=probe_dir) as tmp:
        upper, work, merged = (Path(tmp) / n for n in ("upper", "work", "merged"))
        for d in (upper, work, merged):
            d.mkdir()
        script = (f"{tools['mount']} -t overlay siteline-probe -o lowerdir=/etc,upperdir={upper},workdir={work} "
                  f"{merged} && [ -e {merged}/passwd -o -e {merged}/hostname ]")
        try:
            done = subprocess.run([tools["unshare"], "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                                   script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def etc_overlay(root: Path) -> bool:
    """True when the device's /etc is an overlay: the host's /etc below, <state>/rootfs/etc on top.

    Every write a device command makes under /etc (a new /etc/siteline, a changed /etc/hostname) then
    lands in the device's rootfs, where the shims read it too, and the host's /etc is never written.
    Checked once per filesystem (overlayfs refuses some as its upper layer); without it the host's /etc
    is read-only for device commands, with the device's own files bound on top."""
    fs = rootfs.rootfs(root)
    if not _overlay_safe(fs.absolute()):
        return False
    (fs / "etc").mkdir(parents=True, exist_ok=True)
    return _overlay_works(os.stat(fs).st_dev, str(root.absolute()))


# Host files under /etc a device must not read through its overlay (see _hide_host_secrets).
HOST_SECRETS = ("ssh/ssh_host_*_key", "shadow", "shadow-", "gshadow", "gshadow-", "ssl/private", "security/opasswd")
WORK_DIR = ".overlay-work"  # in the state dir: one overlayfs work dir per command (a shared one is unsafe)


@functools.cache
def _forget_old_work_dirs(root: Path) -> None:
    """Work dirs a killed command (SIGKILL runs no trap) left: removed once per simulator process."""
    if not confined(root / WORK_DIR, root):  # a link the device planted: rmtree would delete host folders
        return
    for old in (root / WORK_DIR).glob("w.*"):
        shutil.rmtree(old, ignore_errors=True)


def _hide_host_secrets(upper: Path) -> None:
    """Whiteouts in the overlay's upper layer for the host's secrets the device has no file of its own for.

    The lower layer is the host's whole /etc: without them a device command (any SSH login) reads the host's
    SSH host private keys and password hashes. A whiteout (a 0/0 character device) is how overlayfs records a
    removed file: the device sees no such file, and a file it writes there later is its own."""
    for pattern in HOST_SECRETS:
        for host in Path("/etc").glob(pattern):
            mine = upper / host.relative_to("/etc")
            if os.path.lexists(mine) or not confined(mine.parent, upper):
                continue
            try:
                mine.parent.mkdir(parents=True, exist_ok=True)
                os.mknod(mine, stat.S_IFCHR, os.makedev(0, 0))
            except OSError as exc:
                log.warning("cannot hide the host's %s from the device (%s): its commands can read it", host, exc)


def _overlay_lines(tools: dict[str, str], root: Path) -> list[str]:
    if not etc_overlay(root):
        return []
    mount, q = tools["mount"], shlex.quote
    upper = (rootfs.rootfs(root) / "etc").absolute()
    work_root = root.absolute() / WORK_DIR
    if not confined(work_root, root) or not confined(upper, root):
        return [_refuse("give the device its own /etc: its overlay folders link out of the state directory")]
    work_root.mkdir(exist_ok=True)
    _hide_host_secrets(upper)
    return [
        f"SITELINE_OVL=$(mktemp -d {q(str(work_root))}/w.XXXXXX) && {mount} -t overlay siteline-etc "
        f"-o lowerdir=/etc,upperdir={upper},workdir=\"$SITELINE_OVL\" /etc "
        f"|| {_refuse('give the device its own /etc')}",
    ]


def _fstab(root: Path) -> str:
    """The namespace's fstab for this device (every mount but /run's, see _setup_lines)."""
    rows = _mounts(root)
    return "".join(f"{_fstab_word(src)} {_fstab_word(dst)} {kind} {opts} 0 0\n" for src, dst, kind, opts in rows)


def _setup_lines(tools: dict[str, str], root: Path) -> list[str]:
    """Shell lines run as the namespace's init before the device command, common to probe and wrap.

    One ``mount -a`` does every mount of the fstab (an exec per mount cost 2-3 ms each); then the host's
    harmless character devices are copied into the device's /dev (cp -a: one exec for all, on a tmpfs, so a
    nodev state directory does not matter) and that /dev is mounted over the host's. A failure of either
    stops the command: a raw write to /dev/mmcblk0p3 must never find the host's /dev.
    """
    mount, q = tools["mount"], shlex.quote
    dev, fs = rootfs.dev_dir(root), rootfs.rootfs(root)
    if not confined(fs, root) or not confined(dev, fs):  # checked before anything is made or mounted there
        return [_refuse("give the device its own files: its rootfs or /dev links out of the state directory")]
    ip = shutil.which("ip", path=SYSTEM_PATH)
    nodes = " ".join(q(f"/dev/{n}") for n in rootfs.DEV_NODES)
    return [
        # The fstab lives in the namespace's own /run (printf: a builtin), not in the state dir: a device command
        # writes anywhere in its state, and could slip its own mounts (host folders, read-write) into the next one.
        f"{mount} -t tmpfs -o mode=0755 siteline-run /run && printf %s {q(_fstab(root))} > {FSTAB} && "
        f"{mount} -a -T {FSTAB} || {_refuse('hide the host /run, /etc files and folders')}",
        *_overlay_lines(tools, root),
        # Per-mount flags only (remount,bind): the host's own / stays as it is. A device command that writes
        # outside its state (mkdir /data on a host without one) now fails as on a read-only root.
        f"{mount} -o remount,bind,ro / || {_refuse('make the host files read-only')}",
        f"{tools['cp']} -a {nodes} {q(str(dev / rootfs.NODES_DIR))}/ && {mount} --rbind {q(str(dev))} /dev "
        f"|| {_refuse('give the device its own /dev')}",
        # Shell builtins, no exec: the /dev now in place is the device's (a link where the host has a node).
        f"[ -L /dev/null ] && [ -c /dev/null ] || {_refuse('prove that /dev is private')}",
        *([f"{ip} link set lo up 2>/dev/null || :"] if ip else []),  # a private net ns starts with lo down
    ]


def _drop_caps(tools: dict[str, str]) -> str:
    """The command prefix that runs what follows it without DROPPED_CAPS (in any process it starts either)."""
    return f"{tools['setpriv']} --bounding-set {','.join('-' + cap for cap in DROPPED_CAPS)} --"


@functools.cache
def available() -> bool:
    """True when the namespaces and the device's mounts work here, and hide the host's disks (checked once)."""
    tools = _tools()
    if sys.platform != "linux" or os.geteuid() != 0 or tools is None:
        return False
    with tempfile.TemporaryDirectory(prefix="siteline-guard-probe-") as tmp:
        slot = slots.SLOT_TABLE[-1].device
        probe = "\n".join([*_setup_lines(tools, Path(tmp)), f"{tools['hostname']} siteline-probe",
                           f"[ -f {slot} ] && [ ! -b {slot} ] || exit 1", f"{_drop_caps(tools)} /bin/true"])
        try:
            done = subprocess.run([tools["unshare"], *NAMESPACES, "--", "/bin/sh", "-c", probe],
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
            "and PID namespaces with a /dev of their own (unshare or mount failed: a container without "
            "CAP_SYS_ADMIN?), so a device command could change this host. Run the simulator as an ordinary "
            "user, or give the container CAP_SYS_ADMIN (docker run --cap-add SYS_ADMIN).")


def wrap(root: Path, hostname: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the device's namespaces; ``argv`` itself when not root (see the module doc)."""
    if not required():
        return argv
    check()
    tools = _tools()
    if tools is None:  # not reached: available() is False without them, and check() raised
        raise HostGuardError("unshare, mount, hostname, setsid, setpriv (util-linux) or cp (coreutils) is missing")
    lines = _setup_lines(tools, root)
    lines.append(f"{tools['hostname']} {shlex.quote(hostname)} 2>/dev/null || :")  # a name the kernel refuses
    # The working directory still points into the mounts as they were: look it up again, through the new ones
    # (the home in the state dir is writable only through its own bind).
    lines.append('cd -- "$PWD" 2>/dev/null || cd -- "$(pwd)" 2>/dev/null || :')
    # Not `exec`: this sh stays the namespace's init, so the command keeps the default signal actions
    # (the kernel drops unhandled signals sent to an init). On a terminal the command gets a session
    # of its own with the tty as its controlling terminal: an interactive shell must see a foreground
    # process group inside its PID namespace (the session leader's is outside) to restore it on exit.
    # setsid before setpriv: taking the tty as controlling terminal may need CAP_SYS_ADMIN; the command may not.
    drop = _drop_caps(tools)
    lines.append(f'if [ -t 0 ]; then {tools["setsid"]} --ctty --wait {drop} "$@"; else {drop} "$@"; fi\nexit $?')
    if etc_overlay(root):
        _forget_old_work_dirs(root.absolute())
        # The overlay's work dir goes with the command (also on a hangup: a console closed mid-command).
        lines.insert(0, 'trap \'[ -n "$SITELINE_OVL" ] && rm -rf "$SITELINE_OVL"\' EXIT\n'
                        'trap \'exit 129\' HUP\ntrap \'exit 143\' TERM')
    return [tools["unshare"], *NAMESPACES, "--", "/bin/sh", "-c", "\n".join(lines), "sh", *argv]
