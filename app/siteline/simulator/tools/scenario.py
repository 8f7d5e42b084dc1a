"""sim-scenario: switch the device's failure scenarios (a trainer's or a test's lever, not a real tool)."""

from __future__ import annotations

import json

from siteline.simulator.state import DeviceState
from siteline.simulator.tools.common import fail, out
from siteline.simulator.tools.systemctl import MARK_GOOD_UNIT, set_enabled

USAGE = ("usage: sim-scenario wired-fail|wired-ok|signal-degrade|signal-ok|mark-good-off|mark-good-on|status\n"
         "  wired-fail      eth0 loses carrier; cellular (wwan0) holds the default route\n"
         "  signal-degrade  the modem's signal falls towards cell-edge levels\n"
         "  mark-good-off   rauc-mark-good.service disabled: booted slots are never marked good, so\n"
         "                  plain reboots use up their attempts (the rollback path)")


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    if len(argv) != 1:
        return fail(USAGE, 2)
    action = argv[0]
    if action == "wired-fail":
        state.fail_wired(True)
    elif action == "wired-ok":
        state.fail_wired(False)
    elif action == "signal-degrade":
        state.degrade_signal(True)
    elif action == "signal-ok":
        state.degrade_signal(False)
    elif action in ("mark-good-off", "mark-good-on"):
        return set_enabled(state, MARK_GOOD_UNIT, action == "mark-good-on")
    elif action == "status":
        out(json.dumps(state.telemetry(), indent=2, sort_keys=True) + "\n")
    else:
        return fail(USAGE, 2)
    return 0
