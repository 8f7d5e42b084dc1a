"""Build the right transport for a target."""

from __future__ import annotations

from pathlib import Path

from siteline.core.targets import Target
from siteline.core.transports.base import Credentials, Transport


def open_transport(
    target: Target,
    credentials: Credentials,
    known_hosts: Path,
    *,
    accept_new_host_key: bool = False,
    connect_timeout: float | None = None,
) -> Transport:
    """Return an unconnected transport for ``target``; imports only the library that scheme needs.

    ``accept_new_host_key`` (SSH): pin an unknown host key on first use (only when the person said so,
    like --accept-new-host-key); by default an unknown key is refused. A changed
    key is refused either way. ``connect_timeout`` bounds reaching the device (default: each
    transport's own).
    """
    timeouts = {} if connect_timeout is None else {"connect_timeout": connect_timeout}
    if target.is_ssh:
        from siteline.core.transports.ssh import SshTransport

        return SshTransport(target, credentials, known_hosts, accept_new_host_key=accept_new_host_key, **timeouts)
    if target.is_serial:
        from siteline.core.transports.serial import SerialTransport

        wake = {} if connect_timeout is None else {"wake_timeout": min(3.0, connect_timeout)}
        return SerialTransport(target, credentials, **wake)
    from siteline.core.transports.mqtt import MqttTransport

    return MqttTransport(target, credentials, **timeouts)
