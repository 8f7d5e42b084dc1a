"""Build the right transport for a target."""

from __future__ import annotations

from pathlib import Path

from siteline.core.targets import Target
from siteline.core.transports.base import Credentials, Transport


def open_transport(target: Target, credentials: Credentials, known_hosts: Path) -> Transport:
    """Return an unconnected transport for ``target``; imports only the library that scheme needs."""
    if target.is_ssh:
        from siteline.core.transports.ssh import SshTransport

        return SshTransport(target, credentials, known_hosts)
    if target.is_serial:
        from siteline.core.transports.serial import SerialTransport

        return SerialTransport(target, credentials)
    from siteline.core.transports.mqtt import MqttTransport

    return MqttTransport(target, credentials)
