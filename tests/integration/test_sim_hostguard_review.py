"""Review: ways a device command (root in the simulator's namespaces) can still reach the host.

Every command that could touch the host runs only after the same shell proved it is in a private mount
namespace (as test_sim_hostguard.py does), and the probes only *check* writability (``[ -w ]``: access(2),
no write) or write under this test's tmp dir, so a broken guard fails the test instead of changing the host.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import asyncssh
import pytest
from tests.integration.test_sim_hostguard import require_guard
from tests.peers.sim import PASSWORD, make_state, running_device

from siteline.simulator import hostguard, rootfs
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState

NOT_ISOLATED = 99
CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_ADMIN, CAP_SYS_TIME, CAP_MKNOD = 16, 17, 21, 25, 27


@pytest.fixture
def device(tmp_path: Path) -> DeviceState:
    require_guard()
    return DeviceState.open(tmp_path / "dev", name="gw-review", password="pw")


def sh(device: DeviceState, command: str) -> tuple[int, str, str]:
    """``command`` on the device, only once its shell proved its mount namespace is not the host's."""
    host = os.readlink("/proc/self/ns/mnt")
    guarded = f'[ "$(/bin/readlink /proc/self/ns/mnt)" != "{host}" ] || exit {NOT_ISOLATED}\n{command}'
    code, out, err = asyncio.run(run_command(device, guarded, timeout=20))
    assert code != NOT_ISOLATED, "the device command ran in the host's mount namespace"
    return code, out.decode(), err.decode()


def test_device_root_cannot_turn_the_host_root_writable_again(device: DeviceState) -> None:
    # `mount -o remount,rw /` is what a technician types on every read-only-rootfs device; by absolute path it
    # skips the mount shim. The guard's `remount,bind,ro /` is undone by the same root that it confines.
    _, out, _ = sh(device, "/bin/mount -o remount,bind,rw / 2>/dev/null; [ -w /usr/lib ] && echo HOST-WRITABLE")
    assert "HOST-WRITABLE" not in out


def test_device_root_cannot_unmount_its_etc_to_reach_the_hosts(device: DeviceState) -> None:
    # The device's own /etc is writable (the overlay, or its own files bound over a read-only /etc), so
    # `[ -w /etc/passwd ]` alone says nothing: /etc is the host's when the device's marker is gone from it and the
    # folder itself can be written.
    marker = rootfs.rootfs(device.root) / "etc" / "siteline-review-marker"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("device\n")
    _, out, _ = sh(device, "cd /; /bin/umount -l /etc 2>/dev/null; /bin/mount -o remount,bind,rw / 2>/dev/null; "
                           f"[ ! -e /etc/{marker.name} ] && [ -w /etc ] && echo HOST-ETC-WRITABLE")
    assert "HOST-ETC-WRITABLE" not in out


def test_device_commands_have_no_host_wide_capabilities(device: DeviceState) -> None:
    # Read only: the bounding set says what any device command can do to the (shared) kernel: remount the host's
    # superblock (`mount -o remount,ro /` without bind turns the HOST read-only), set the host clock (`/bin/date
    # -s`: no time namespace for CLOCK_REALTIME), load/unload host kernel modules, make device nodes.
    _, out, _ = sh(device, "/bin/grep CapBnd /proc/self/status")
    bounding = int(out.split()[1], 16)
    kept = {name: bit for name, bit in (("CAP_SYS_ADMIN", CAP_SYS_ADMIN), ("CAP_SYS_TIME", CAP_SYS_TIME),
                                        ("CAP_SYS_MODULE", CAP_SYS_MODULE), ("CAP_MKNOD", CAP_MKNOD),
                                        ("CAP_SYS_RAWIO", CAP_SYS_RAWIO)) if bounding >> bit & 1}
    assert not kept, f"device commands keep {sorted(kept)} in the host's user namespace"


@pytest.mark.asyncio
async def test_sftp_does_not_follow_a_device_planted_symlink_out_of_the_rootfs(tmp_path: Path) -> None:
    # The SFTP server runs in the simulator's own process, outside every namespace, chrooted only by path prefix
    # (asyncssh), so the OS follows symlinks the device made in its rootfs. Here the link is relative and lands
    # in this test's tmp dir (harmless); an absolute one (`ln -s /usr/lib /etc/x`) reaches any host path.
    require_guard()
    state = make_state(tmp_path / "dev", name="gw-sftp")
    if not hostguard.etc_overlay(state.root):
        pytest.skip("no /etc overlay here: the device cannot create files under /etc")
    outside = tmp_path / "outside"  # not in the device's rootfs, not in its state dir
    outside.mkdir()
    host = os.readlink("/proc/self/ns/mnt")
    plant = f'[ "$(/bin/readlink /proc/self/ns/mnt)" != "{host}" ] || exit {NOT_ISOLATED}\n' \
            "/bin/ln -s ../../../outside /etc/escape"
    code, _out, err = await run_command(state, plant, timeout=20)
    assert code == 0, err
    async with running_device(state, ssh=True) as running, asyncssh.connect(
            "127.0.0.1", running.ssh_port, username="root", password=PASSWORD, known_hosts=None, client_keys=None,
            agent_path=None) as conn, conn.start_sftp_client() as sftp:
        try:
            async with sftp.open("/etc/escape/planted", "wb") as remote:
                await remote.write(b"written by the simulator process on the host\n")
        except (asyncssh.SFTPError, OSError):
            pass  # refused: what the fix should do
    assert not (outside / "planted").exists(), "SFTP wrote through a device symlink to a host path"


def test_a_device_cannot_repoint_its_own_mount_sources_at_host_paths(device: DeviceState, tmp_path: Path) -> None:
    # The whole state dir is writable from inside the device, including the folders the NEXT command's
    # namespace is built from (<state>/rootfs/var/tmp is bound on /var/tmp). `mount -a` follows a symlink
    # there, so the device chooses which host folder it gets read-write next time (the host / is made
    # read-only, these binds are not). Harmless target here: a folder under this test's tmp dir; `/usr/lib`
    # does as well. Survives dropping CAP_SYS_ADMIN. (The /etc overlay's upper refuses a symlink: checked.)
    if not Path("/var/tmp").is_dir():
        pytest.skip("the host has no /var/tmp to bind the device's over")
    outside = tmp_path / "outside"
    outside.mkdir()
    own = rootfs.rootfs(device.root) / "var/tmp"
    code, _, err = sh(device, f"/bin/mv {own} {own}.old && /bin/ln -s {outside} {own}")
    assert code == 0, err
    sh(device, "echo planted > /var/tmp/redirected")
    assert not (outside / "redirected").exists(), "the device's /var/tmp became a host folder of its choice"


def test_device_commands_have_their_own_ipc_namespace(device: DeviceState) -> None:
    # No --ipc in hostguard.NAMESPACES: a device's root `ipcrm --all` (a cleanup line in many device scripts)
    # removes every SysV shared memory segment, semaphore set and message queue of the host's processes; it needs
    # no CAP_SYS_ADMIN. Read only here: the namespace link is compared, nothing is removed.
    _, out, _ = sh(device, "/bin/readlink /proc/self/ns/ipc")
    assert out.strip() != os.readlink("/proc/self/ns/ipc"), "device commands share the host's System V IPC"



def test_device_commands_cannot_read_the_hosts_private_keys_through_the_etc_overlay(device: DeviceState) -> None:
    # The overlay's lower layer is the host's whole /etc: what the device does not have of its own shows through,
    # so a device shell (an SSH login to `siteline sim`, any device command) reads the host's SSH host keys and
    # anything else secret under /etc. Compared by digest; nothing is printed or copied.
    key = Path("/etc/ssh/ssh_host_ed25519_key")
    if not key.is_file():
        pytest.skip("the host has no SSH host key to look for")
    host = hashlib.sha256(key.read_bytes()).hexdigest()
    _, out, _ = sh(device, f"/usr/bin/sha256sum {key} 2>/dev/null")
    assert host not in out, "a device command read the host's SSH host private key"
