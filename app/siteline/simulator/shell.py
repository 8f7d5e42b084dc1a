"""Running commands on the simulated device: a real /bin/sh whose PATH starts with the shims."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence

from siteline.simulator.boot import BootOutcome
from siteline.simulator.rootfs import home_of
from siteline.simulator.state import DeviceState

__all__ = ["BootOutcome", "interactive_shell_argv", "run_command"]

TIMEOUT_EXIT = 124  # what coreutils' timeout(1) returns, so callers recognise it


async def run_command(state: DeviceState, command: str, *, stdin: bytes | None = None,
                      timeout: float | None = None) -> tuple[int, bytes, bytes]:
    """Run ``command`` with ``/bin/sh -c`` in the device's environment; (exit code, stdout, stderr).

    The shell gets its own process group so that a timeout kills the whole pipeline, including
    long-running children such as ``journalctl -f``.
    """
    home = home_of(state.root, state.config.user)
    home.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=state.shell_env(), cwd=home, start_new_session=True,
    )
    # Readers collect into buffers so that output printed before a timeout is still returned.
    out, err = bytearray(), bytearray()
    readers = [asyncio.ensure_future(_drain(proc.stdout, out)), asyncio.ensure_future(_drain(proc.stderr, err))]
    try:
        await asyncio.wait_for(_feed_and_wait(proc, stdin, readers), timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        await asyncio.gather(proc.wait(), *readers, return_exceptions=True)
        await asyncio.sleep(0)  # lets the transport run its scheduled close before we return
        return TIMEOUT_EXIT, bytes(out), bytes(err) + f"command timed out after {timeout} s and was killed\n".encode()
    except BaseException:
        _kill_group(proc.pid)  # cancelled: leave no orphan behind
        for task in readers:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.shield(asyncio.gather(proc.wait(), *readers, return_exceptions=True))
        raise
    await asyncio.sleep(0)  # lets the transport run its scheduled close before we return
    code = proc.returncode if proc.returncode is not None else 1
    return (128 - code if code < 0 else code), bytes(out), bytes(err)  # killed by signal N: the shell's 128+N


async def _drain(stream: asyncio.StreamReader | None, sink: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        sink += chunk


async def _feed_and_wait(proc: asyncio.subprocess.Process, stdin: bytes | None,
                         readers: Sequence[asyncio.Future[None]]) -> None:
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        proc.stdin.close()
    await asyncio.gather(*readers)
    await proc.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def interactive_shell_argv(state: DeviceState) -> list[str]:
    """The argv of a login-like interactive shell; run it with ``state.shell_env()`` on a pty."""
    return ["/bin/sh", "-i"]
