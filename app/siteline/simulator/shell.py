"""Running commands on the simulated device: a real /bin/sh whose PATH starts with the shims.

One mechanism serves every way in: ``run_streamed`` (the SSH server streams a command's output to
its channel) and ``run_command`` (the MQTT agent and tests collect it) share how a command is
started (``device_argv``: the device's namespace, environment and home), how it is stopped
(SIGHUP, then SIGKILL for the whole process group) and what its exit status means.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from siteline.simulator import hostguard
from siteline.simulator.boot import BootOutcome
from siteline.simulator.ptyproc import kill_group
from siteline.simulator.rootfs import home_of
from siteline.simulator.state import DeviceState

__all__ = ["BootOutcome", "device_argv", "interactive_shell_argv", "run_command", "run_streamed"]

TIMEOUT_EXIT = 124  # what coreutils' timeout(1) returns, so callers recognise it
HANGUP_EXIT = 129  # the shell's status after SIGHUP: the client went away
BROKEN_EXIT = 255  # the output could not be delivered (a channel error)
HANGUP_GRACE = 1.0  # seconds a command gets to exit after SIGHUP before SIGKILL
CHUNK = 65536

Sink = Callable[[bytes], Awaitable[None]]
StdinPump = Callable[[asyncio.StreamWriter], Awaitable[None]]


def device_argv(state: DeviceState, argv: list[str]) -> list[str]:
    """``argv`` as the device runs it: inside its namespace when the host allows one (see hostguard)."""
    return hostguard.wrap(state.root, state.hostname(), argv)


def device_cwd(state: DeviceState) -> str:
    home = home_of(state.root, state.config.user)
    home.mkdir(parents=True, exist_ok=True)
    return str(home)


def interactive_shell_argv(state: DeviceState) -> list[str]:
    """The argv of a login-like interactive shell; run it with ``state.shell_env()`` on a pty."""
    return device_argv(state, ["/bin/sh", "-i"])


REAP_LIMIT = 5.0


async def run_streamed(state: DeviceState, command: str, *, on_out: Sink, on_err: Sink,
                       stdin: bytes | StdinPump | None = None, hangup: Awaitable[object] | None = None,
                       timeout: float | None = None) -> int:
    """Run ``/bin/sh -c command`` on the device, passing its output to the sinks as it comes.

    Ends when the command has exited and its output is delivered; or stops the command (its whole
    process group) when ``timeout`` passes (124), ``hangup`` completes (129) or a sink fails (255).
    """
    proc = await asyncio.create_subprocess_exec(
        *device_argv(state, ["/bin/sh", "-c", command]),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=state.shell_env(), cwd=device_cwd(state), start_new_session=True,
    )
    feeder = asyncio.ensure_future(_feed(proc, stdin))
    outputs = asyncio.ensure_future(asyncio.gather(_pump(proc.stdout, on_out), _pump(proc.stderr, on_err)))
    finished = asyncio.ensure_future(_finish(proc, outputs))
    hung: asyncio.Future[object] | None = asyncio.ensure_future(hangup) if hangup is not None else None
    try:
        waiting: set[asyncio.Future[Any]] = {finished, *([hung] if hung is not None else [])}
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if finished in done and finished.exception() is None:
            return _status(finished.result())
        code = BROKEN_EXIT if finished in done else HANGUP_EXIT if hung in done else TIMEOUT_EXIT
        await _stop(proc)
        return code
    finally:
        if proc.returncode is None:
            kill_group(proc.pid)  # cancelled: leave no orphan behind
        tasks = [t for t in (feeder, outputs, finished, hung) if t is not None]
        for task in tasks:
            task.cancel()
        await _reap(proc, tasks)


async def _reap(proc: asyncio.subprocess.Process, tasks: list[asyncio.Future[Any]]) -> None:
    """Wait until the process and its pipes are done, even through repeated cancels (then re-raise)."""
    ending = asyncio.ensure_future(asyncio.gather(proc.wait(), *tasks, return_exceptions=True))
    loop = asyncio.get_running_loop()
    give_up = loop.time() + REAP_LIMIT  # a killed group is gone in milliseconds; never wait forever
    cancelled = False
    while not ending.done() and loop.time() < give_up:
        try:
            await asyncio.wait({ending}, timeout=give_up - loop.time())
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError()


async def run_command(state: DeviceState, command: str, *, stdin: bytes | None = None,
                      timeout: float | None = None) -> tuple[int, bytes, bytes]:
    """Run ``command`` with ``/bin/sh -c`` in the device's environment; (exit code, stdout, stderr).

    Output printed before a timeout is still returned, with a line saying what happened.
    """
    out, err = bytearray(), bytearray()

    async def to_out(data: bytes) -> None:
        out.extend(data)

    async def to_err(data: bytes) -> None:
        err.extend(data)

    code = await run_streamed(state, command, on_out=to_out, on_err=to_err, stdin=stdin, timeout=timeout)
    await asyncio.sleep(0)  # lets the pipe transports run their scheduled close before we return
    if code == TIMEOUT_EXIT and timeout is not None:
        err.extend(f"command timed out after {timeout} s and was killed\n".encode())
    return code, bytes(out), bytes(err)


async def _pump(stream: asyncio.StreamReader | None, sink: Sink) -> None:
    if stream is None:
        return
    while chunk := await stream.read(CHUNK):
        await sink(chunk)


async def _feed(proc: asyncio.subprocess.Process, stdin: bytes | StdinPump | None) -> None:
    if proc.stdin is None or stdin is None:
        return
    try:
        if isinstance(stdin, bytes):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        else:
            await stdin(proc.stdin)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading: nothing more to feed
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()


async def _finish(proc: asyncio.subprocess.Process, outputs: asyncio.Future[tuple[None, None]]) -> int:
    await outputs  # raises when a sink failed: the caller stops the command
    return await proc.wait()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGHUP the command's group, then SIGKILL what is left; only while its leader is not yet reaped,
    so the group id cannot belong to another process by then."""
    if proc.returncode is None:
        kill_group(proc.pid, hangup=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), HANGUP_GRACE)
    if proc.returncode is None:
        kill_group(proc.pid)
        await proc.wait()


def _status(code: int) -> int:
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128+N
