"""Antenna alignment: ModemManager reads the signal every second while a person points the antenna.

``start_alignment`` remembers the polling rate in force (``--signal-get``'s "refresh rate") and sets 1 s;
``sample`` reads one signal (JSON, falling back to key-value); ``stop_alignment`` puts the old rate back.
Each is one short command: alignment runs for minutes over whatever link reaches the device, so a sample
costs about one small round trip. Errors are :class:`AlignmentError` with what happened and what to do.
"""

from __future__ import annotations

from siteline.api import DeviceContext, ModemSignal, ParseError
from siteline_modemmanager.parsers import parse_signal

ALIGNMENT_RATE = 1  # seconds; ModemManager's fastest polling
TIMEOUT = 15.0
# Read both forms in one round trip: JSON first, key-value when this mmcli refuses JSON (before 1.14).
_GET = 'mmcli -m {n} --signal-get -J 2>/dev/null || mmcli -m {n} --signal-get -K'


class AlignmentError(ParseError):
    """The modem's signal polling could not be set or read.

    A ParseError because that is the SitelineError (message + hint) the plugin API offers: the app shows it
    the way it shows every device error.
    """


def _index(modem_index: int) -> int:
    if isinstance(modem_index, bool) or not isinstance(modem_index, int) or modem_index < 0:
        raise AlignmentError(f"{modem_index!r} is not a modem index.", "Pass the N of `mmcli -m N` (0, 1 ...).")
    return modem_index


async def sample(ctx: DeviceContext, modem_index: int) -> ModemSignal:
    """One signal reading (`mmcli -m N --signal-get`); raises AlignmentError when it cannot be read."""
    n = _index(modem_index)
    result = await ctx.run(_GET.format(n=n), TIMEOUT)
    if result.exit_code != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise AlignmentError(
            f"`mmcli -m {n} --signal-get` failed (exit {result.exit_code})" + (f": {said[-1]}" if said else "."),
            "Check that ModemManager runs and sees the modem (`mmcli -L`).",
        )
    try:
        return parse_signal(result.stdout)
    except ParseError as exc:
        raise AlignmentError(f"could not read the signal: {exc}", exc.hint) from None


async def _set_rate(ctx: DeviceContext, n: int, rate: int) -> None:
    result = await ctx.run(f"mmcli -m {n} --signal-setup={rate}", TIMEOUT)
    if result.exit_code != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise AlignmentError(
            f"ModemManager refused to poll the signal every {rate} s (exit {result.exit_code})"
            + (f": {said[-1]}" if said else "."),
            "This modem may not support extended signal information; `mmcli -m N --signal-get` tells.",
        )


async def start_alignment(ctx: DeviceContext, modem_index: int) -> int:
    """Switch polling to every second; returns the rate in force before (0 when off or unknown), for the stop."""
    n = _index(modem_index)
    try:
        previous = (await sample(ctx, n)).refresh_rate or 0
    except AlignmentError:
        previous = 0  # nothing readable yet (polling never set up on some modems): off is what was there
    await _set_rate(ctx, n, ALIGNMENT_RATE)
    return previous


async def stop_alignment(ctx: DeviceContext, modem_index: int, previous_rate: int | None = 0) -> None:
    """Put back the polling rate that was in force before the alignment (0: off)."""
    n = _index(modem_index)
    rate = previous_rate if isinstance(previous_rate, int) and previous_rate >= 0 else 0
    await _set_rate(ctx, n, rate)
