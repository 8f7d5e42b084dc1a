"""Getting a serial console to a shell prompt: find its baud rate, wake it, answer its login."""

from __future__ import annotations

import asyncio
import logging

from siteline.core.errors import AuthError, TransportError
from siteline.core.transports.base import Credentials
from siteline.core.transports.console import (
    AUTOBAUD_RATES,
    ConsoleState,
    clean,
    last_line,
    printable_share,
    reads_as_text,
)
from siteline.core.transports.serial_link import SerialLink
from siteline.core.transports.serial_options import COMMON_BAUDS

AUTOBAUD_WINDOW = 0.6  # at most this long listening at each candidate rate
AUTOBAUD_QUIET = 0.15  # an answer followed by this much silence is complete enough to judge
AUTOBAUD_BUDGET = 8.0  # all rates together


async def detect_baud(link: SerialLink, first: int | None, log: logging.LoggerAdapter[logging.Logger]) -> int:
    """Wake the console at each common rate (``first`` first) and return the first that reads as text."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AUTOBAUD_BUDGET
    rates = [r for r in (first,) if r] + [r for r in AUTOBAUD_RATES if r != first]
    tried: list[int] = []
    for rate in rates:
        if loop.time() >= deadline:
            break
        tried.append(rate)
        if reads_as_text(await _probe(link, rate, min(AUTOBAUD_WINDOW, deadline - loop.time()))):
            link.settings["baudrate"] = rate
            log.info("autobaud: %s answers at %d baud", link.device, rate)
            return rate
    raise TransportError(
        f"No readable response on {link.device} at any common baud rate "
        f"(tried {', '.join(map(str, tried))}).",
        "Check the cable, the port and whether the device is powered.")


async def _probe(link: SerialLink, rate: int, window: float) -> bytes:
    """Switch the port to ``rate``, send a carriage return and return what comes back within ``window``."""
    await link.set_rate(rate)
    await asyncio.sleep(0.02)  # let the reader hand over what it read before the switch, then drop it
    link.reset()
    await link.write(b"\r")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    while loop.time() < deadline:
        seen = link.raw_total
        if seen and reads_as_text(bytes(link.raw)):
            break
        await link.wait_for(link.grew_past(seen), min(AUTOBAUD_QUIET, deadline - loop.time()))
        if seen and link.raw_total == seen:
            break  # answered, then quiet: judge what we have
    return bytes(link.raw)


async def login(link: SerialLink, credentials: Credentials, wake_timeout: float, login_timeout: float,
                log: logging.LoggerAdapter[logging.Logger], *, fresh: bool = False) -> bool:
    """Bring the console to a shell prompt; True if we logged in (so we should log out when done).

    ``fresh``: the login itself must be answered (a password proof): a console already at a shell prompt (left
    logged in, or a getty that logs in by itself) is logged out first, and refused when it never asks."""
    state = ConsoleState.SILENCE
    for _attempt in range(3):  # a console in the middle of printing may need a second wake-up
        state = await link.send_and_read(b"\r", wake_timeout)
        if state not in (ConsoleState.SILENCE, ConsoleState.UNKNOWN):
            break
    log.info("console on %s shows a %s", link.device, state.value)
    if state is ConsoleState.PASSWORD:  # someone typed a user name before us: start over
        state = await link.send_and_read(b"\r", login_timeout, quiet_ends=False)
    if fresh and state is ConsoleState.SHELL:
        state = await _log_out(link, login_timeout, log)
    logged_in = False
    if state in (ConsoleState.LOGIN, ConsoleState.LOGIN_INCORRECT):
        state = await _answer_login(link, credentials, login_timeout)
        logged_in = True
    if state is not ConsoleState.SHELL:
        raise not_a_shell(link, state)
    return logged_in


async def _log_out(link: SerialLink, timeout: float, log: logging.LoggerAdapter[logging.Logger]) -> ConsoleState:
    """Type ``exit`` at a shell prompt until the console asks for a login (a nested shell may need a few)."""
    for _ in range(3):
        log.info("console on %s is at a shell prompt: logging it out to prove a login", link.device)
        state = await link.send_and_read(b"exit\r", timeout, quiet_ends=False)
        if state is ConsoleState.SILENCE:  # some gettys print the prompt only when woken
            state = await link.send_and_read(b"\r", timeout, quiet_ends=False)
        if state is not ConsoleState.SHELL:
            return state
    raise TransportError(f"The console on {link.device} stays at a shell prompt after 'exit' (a getty that logs "
                         "in by itself?), so no password can be proven on it.",
                         "Turn off the console's autologin, or provision over SSH, then run the provisioning again.")


async def _answer_login(link: SerialLink, credentials: Credentials, timeout: float) -> ConsoleState:
    user, password = credentials.username, credentials.password
    if not user:
        raise AuthError(f"The console on {link.device} asks for a login.",
                        "Give a user name (and password) for this device.")
    state = await link.send_and_read(user.encode() + b"\r", timeout, quiet_ends=False)
    if state is ConsoleState.PASSWORD:
        state = await link.send_and_read((password or "").encode() + b"\r", timeout, quiet_ends=False)
    if state in (ConsoleState.LOGIN_INCORRECT, ConsoleState.LOGIN, ConsoleState.PASSWORD):
        raise AuthError(f"The device on {link.device} answered 'Login incorrect' for user '{user}'.",
                        "Check the user name and password.")
    return state


def not_a_shell(link: SerialLink, state: ConsoleState) -> TransportError:
    where, baud = link.device, link.settings["baudrate"]
    # A wrong rate may answer a wake-up with only a garbled echo byte or two: too few for classify().
    if state is ConsoleState.GARBAGE or (state is ConsoleState.UNKNOWN and printable_share(bytes(link.raw)) < 0.5):
        return TransportError(f"No readable response on {where} at {baud} baud.",
                              f"Try {COMMON_BAUDS}, or baud=auto to let Siteline find the rate.")
    if state is ConsoleState.SILENCE:
        return TransportError(f"No answer on {where} at {baud} baud.",
                              f"Is the device powered, and are TX/RX the right way round? Try {COMMON_BAUDS}.")
    if state is ConsoleState.BOOTLOADER:
        return TransportError(f"The device on {where} is at its boot loader prompt, not a shell.",
                              "Type 'boot' in the Console tab or reset the device, then connect again.")
    shown = last_line(clean(bytes(link.raw)))[-60:]
    return TransportError(f"The console on {where} shows something that is not a prompt: '{shown}'.",
                          "Open the Console tab to see what the device is doing.")
