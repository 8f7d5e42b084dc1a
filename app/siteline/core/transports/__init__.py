"""Transports: serial, SSH and MQTT behind the one :class:`Transport` protocol."""

from siteline.core.transports.base import (
    ConnectionState,
    ConnState,
    Credentials,
    Result,
    StateListener,
    Transport,
)

__all__ = ["ConnState", "ConnectionState", "Credentials", "Result", "StateListener", "Transport"]
