"""The headless subcommands behind `siteline run|probe|plugins`, and the connect and exit-code rules they share."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import shlex
import signal
import sys

from siteline import paths
from siteline.core.errors import AuthError, HostKeyError, SitelineError, TransportError
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnState, Credentials, Transport
from siteline.core.transports.factory import open_transport

log = logging.getLogger(__name__)


# Exit codes, shared by every command that connects (documented in `siteline --help`).
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED_FOR_SAFETY = 3  # a changed host key: never retried, never prompted
EXIT_UNREACHABLE = 4
EXIT_AUTH_FAILED = 5
PASSWORD_ENV = "SITELINE_PASSWORD"


def command_line(words: list[str]) -> str | None:
    """The remote command after ``--``.

    Several words are quoted and joined as a shell would (shlex.join), so ``-- sh -c 'exit 7'``
    arrives intact. A single word is taken as a shell line as typed — ``-- 'df -h | head'`` —
    as ssh does, because that is what a technician in a hurry types.
    """
    if not words:
        return None
    return words[0] if len(words) == 1 else shlex.join(words)


def _credentials(args: argparse.Namespace, password: str | None) -> Credentials:
    return Credentials(username=args.user, password=password, key_path=args.identity)


def vault_password(target: Target) -> str | None:
    """The password kept in the vault for the device this target belongs to (in the device list), when
    ``siteline vault unlock`` left an agent running; never prompts."""
    from siteline.cli_audit import UNLISTED_SITE, device_of
    from siteline.core.keep import device_secret_name
    from siteline.core.vault import agent

    if not agent.supported() or agent.agent_info() is None:
        return None  # no agent: the device list is not even read
    site, device = device_of(target)
    if site == UNLISTED_SITE:
        return None
    return agent.get_secret(device_secret_name(site, device, "password"))


def _ask_password(target: Target) -> str | None:
    """Prompt only on a terminal: a script must fail with exit 5, never hang on a prompt."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    return getpass.getpass(f"Password for {target}: ")


def _fail(code: int, exc: BaseException) -> int:
    print(f"siteline: {exc}", file=sys.stderr)
    return code


async def _connect(args: argparse.Namespace, target: Target) -> Transport:
    """Connect within --timeout; on a refused password ask once (terminal only) and try again."""
    password = os.environ.get(PASSWORD_ENV) or vault_password(target)
    for attempt in range(2):
        transport = open_transport(
            target,
            _credentials(args, password),
            paths.data_dir() / "known_hosts",
            accept_new_host_key=args.accept_new_host_key,
            connect_timeout=args.timeout,
        )
        try:
            async with asyncio.timeout(args.timeout):
                await transport.connect()
            return transport
        except AuthError:
            await transport.close()
            if attempt or password is not None or (password := _ask_password(target)) is None:
                raise
        except BaseException:
            await transport.close()
            raise
    raise AssertionError("unreachable")


async def connect_or_code(args: argparse.Namespace, target: Target) -> Transport | int:
    """A connected transport, or the exit code after one line on stderr (shared by every command that connects)."""
    try:
        return await _connect(args, target)
    except HostKeyError as exc:
        return _fail(EXIT_REFUSED_FOR_SAFETY, exc)
    except AuthError as exc:
        return _fail(EXIT_AUTH_FAILED, exc)
    except TimeoutError:
        return _fail(EXIT_UNREACHABLE, TransportError(f"{target} did not answer within {args.timeout:g} s."))
    except (SitelineError, OSError) as exc:
        return _fail(EXIT_UNREACHABLE, exc)


def fail(code: int, exc: BaseException) -> int:
    """Say what happened on stderr (one line, prefixed) and return ``code``."""
    return _fail(code, exc)


async def run_or_probe(args: argparse.Namespace) -> int:
    command = command_line(list(args.cmd)) if args.command == "run" else ""
    if command is None:
        print("siteline: give the command after --, e.g. siteline run TARGET -- uptime", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return _fail(EXIT_USAGE, exc)
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    try:
        if args.command == "run":
            return await _run_audited(transport, target, command, args.timeout)
        from siteline.probe_cli import probe_command

        return await probe_command(args, args.target, transport.run)
    except (SitelineError, OSError, TimeoutError) as exc:
        return _fail(EXIT_UNREACHABLE, exc)
    finally:
        await transport.close()


async def _run_audited(transport: Transport, target: Target, command: str, timeout: float) -> int:
    """Run the command and record it with how it ended: an error too, since the device may have run it."""
    from siteline.cli_audit import record
    from siteline.core.redact import command_detail

    line = command_detail(command)  # a password typed into the command is not kept (best effort)
    try:
        result = await transport.run(command, timeout)
    except (SitelineError, OSError, TimeoutError) as exc:
        error = str(exc).replace(command, str(line["line"]))[:500]  # an error may quote the command
        record(target, "console-command", {**line, "error": error}, result="error")
        raise
    record(target, "console-command", {**line, "exit_code": result.exit_code},
           result="ok" if result.exit_code == 0 else f"exit {result.exit_code}")
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_code


def list_ports() -> int:
    from siteline.core.transports.serial_ports import list_ports as find_ports

    ports = find_ports()
    if not ports:
        print("No serial ports found. Plug in the USB-serial cable; on Linux check `dmesg` for the new tty.")
        return 0
    for port in ports:
        usb = f"  [{port.usb_id}{' #' + port.serial_number if port.serial_number else ''}]" if port.usb_id else ""
        print(f"{port.device:18} {port.name}{usb}")
        print(f"{'':18} {port.target}")
    return 0


def parse_forward_spec(spec: str) -> tuple[int, int] | None:
    """``[LOCAL_PORT:]REMOTE_PORT`` to (local, remote); local 0 means any free port. None: not that form."""
    local, sep, remote = spec.rpartition(":")
    if not remote.isdigit() or (sep and not local.isdigit()):
        return None
    ports = (int(local) if sep else 0, int(remote))
    return ports if 0 <= ports[0] < 65536 and 0 < ports[1] < 65536 else None


async def forward(args: argparse.Namespace) -> int:
    """`siteline forward TARGET [LOCAL_PORT:]REMOTE_PORT`: a device port on localhost until Ctrl-C."""
    ports = parse_forward_spec(args.spec)
    if ports is None:
        print(f"siteline: '{args.spec}' is not [LOCAL_PORT:]REMOTE_PORT, e.g. 8080:80 or 80.", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = parse_target(args.target)
    except SitelineError as exc:
        return _fail(EXIT_USAGE, exc)
    if not target.is_ssh:
        return _fail(EXIT_USAGE, SitelineError(f"Port forwarding needs SSH; {target.scheme}:// cannot carry TCP.",
                                               "Use the device's ssh:// target."))
    transport = await connect_or_code(args, target)
    if isinstance(transport, int):
        return transport
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        from siteline.core.transports.ssh import SshTransport

        if not isinstance(transport, SshTransport):
            raise TransportError(f"{target} did not give an SSH connection.")
        fwd = await transport.forward_local("127.0.0.1", ports[1], ports[0])
        print(f"Open {fwd.url} (Ctrl-C to stop)", flush=True)
        # Ends on Ctrl-C, or when the link to the device is gone (nothing could be carried any more).
        while not stop.is_set() and transport.state.state is ConnState.UP:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        if not stop.is_set():
            return _fail(EXIT_UNREACHABLE, TransportError(f"The link to {target} was lost: "
                                                          f"{transport.state.describe()}.", "Run it again."))
        return EXIT_OK
    except (SitelineError, OSError) as exc:
        return _fail(EXIT_UNREACHABLE, exc)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await transport.close()
