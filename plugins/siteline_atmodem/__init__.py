"""Built-in plugin: modems without ModemManager, read with 3GPP TS 27.007 AT commands on their serial port.

The AT port is found among the usual paths (/dev/ttyUSB2, /dev/ttyUSB3, /dev/cdc-wdm-at, /dev/ttyACM0 ...);
``SITELINE_AT_PORT`` (on the laptop) names it when the modem's is elsewhere.
"""

from __future__ import annotations

import os

from siteline.api import Probe, hookimpl
from siteline_atmodem.probe import ATModemProbe

__version__ = "0.1.0"
PORT_ENV = "SITELINE_AT_PORT"


@hookimpl
def siteline_probes() -> list[Probe]:
    return [ATModemProbe(port=os.environ.get(PORT_ENV) or None)]
