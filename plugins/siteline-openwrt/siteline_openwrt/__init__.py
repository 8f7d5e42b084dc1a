"""Siteline plugin: OpenWrt routers (ubus, QMI modems through uqmi, netifd interfaces, mwan3).

A separate distribution (``siteline-openwrt``) that plugs in through the ``siteline.plugins`` entry-point
group, as a vendor's own plugin would. It only imports :mod:`siteline.api`.

Logs: OpenWrt's `logread` is already read by Siteline's own log sources (core/logs/sources.py), so this
plugin adds no log probe.
"""

from __future__ import annotations

from siteline.api import Probe, hookimpl

from .probe import NotOpenWrt, OpenWrtModemProbe, OpenWrtNetworkProbe, OpenWrtSystemProbe

__version__ = "0.1.0"


@hookimpl
def siteline_probes() -> list[Probe]:
    not_openwrt = NotOpenWrt()  # one memory: once the System probe heard "no ubus", the others do not ask
    return [OpenWrtSystemProbe(not_openwrt), OpenWrtModemProbe(not_openwrt), OpenWrtNetworkProbe(not_openwrt)]
