"""The contract every transport keeps, and the connection state the UI watches."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Result:
    """What a command left behind. ``stdout``/``stderr`` are decoded text (UTF-8, bad bytes replaced)."""

    exit_code: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class ConnState(enum.Enum):
    DOWN = "down"
    CONNECTING = "connecting"
    UP = "up"
    RETRYING = "retrying"


@dataclass(frozen=True)
class ConnectionState:
    """A snapshot of a link: what state it is in, why, and when the next try is due."""

    state: ConnState
    reason: str = ""
    retry_at: float | None = None  # time.monotonic() of the next attempt while RETRYING
    since: float = field(default_factory=time.monotonic)

    def retry_in(self, now: float | None = None) -> float | None:
        if self.retry_at is None:
            return None
        return max(0.0, self.retry_at - (time.monotonic() if now is None else now))

    def describe(self, now: float | None = None) -> str:
        """Text for a person: 'up', 'retrying in 4 s: connection refused', 'down: wrong password'."""
        if self.state is ConnState.RETRYING:
            left = round(self.retry_in(now) or 0.0)
            text = f"retrying in {left} s" if left >= 1 else "retrying now"
        else:
            text = self.state.value
        return f"{text}: {self.reason}" if self.reason else text


StateListener = Callable[[ConnectionState], None]


@dataclass(frozen=True)
class Credentials:
    """Secrets for one connection, held in memory only (the vault keeps them at rest)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    key_path: str | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    use_agent: bool = True


@runtime_checkable
class Transport(Protocol):
    """A link to one device. Implementations: serial, SSH, MQTT.

    ``connect`` raises :class:`siteline.core.errors.TransportError` (or a subclass) with a message
    for a person; ``run`` raises :class:`CommandTimeout` when ``timeout`` passes.
    """

    @property
    def state(self) -> ConnectionState: ...

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call ``listener`` on every state change; returns a function that removes it."""
        ...

    async def connect(self) -> None: ...

    async def run(self, command: str, timeout: float = 30.0) -> Result: ...

    async def close(self) -> None: ...


class StateHolder:
    """Keeps a transport's state and tells listeners; transports compose one of these."""

    def __init__(self) -> None:
        self._state = ConnectionState(ConnState.DOWN)
        self._listeners: list[StateListener] = []

    @property
    def state(self) -> ConnectionState:
        return self._state

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def set(self, state: ConnState, reason: str = "", retry_at: float | None = None) -> None:
        self._state = ConnectionState(state, reason, retry_at)
        for listener in list(self._listeners):
            listener(self._state)


class StatefulLink:
    """What every transport shares: a :class:`StateHolder` exposed as the protocol's state API."""

    def __init__(self) -> None:
        self._state = StateHolder()

    @property
    def state(self) -> ConnectionState:
        return self._state.state

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        return self._state.add_state_listener(listener)
