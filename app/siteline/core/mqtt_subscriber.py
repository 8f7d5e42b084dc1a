"""A flood-proof MQTT subscriber for the explorer: paho's network thread fills a buffer, the UI drains it.

Messages do NOT hop into asyncio one by one (at thousands per second that alone would stall the
loop): paho's thread appends a tuple to a ``collections.deque`` (append/popleft are thread-safe)
and the consumer takes everything in one :meth:`MqttSubscriber.drain` per tick. Only the rare
connection events (connected, lost) cross into the loop, to update the visible state.

paho reconnects by itself (its loop thread retries with ``reconnect_delay_set`` back-off); the
filters are subscribed again on every CONNACK, so a broker restart is survived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from siteline.core.errors import TargetError, TransportError
from siteline.core.mqtt_client import (
    TlsSettings,
    await_connack,
    close_leftover_socket,
    connack_error,
    connect_socket,
    early_close_error,
    keepalive_from_options,
    protocol_from_options,
    tls_context,
)
from siteline.core.mqtt_topics import RawMessage
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnState, Credentials, StatefulLink

log = logging.getLogger(__name__)

BUFFER_MAX = 500_000  # messages held for the consumer; beyond, the oldest are dropped (and counted)
RECONNECT_MIN, RECONNECT_MAX = 1, 30  # seconds, paho's own back-off between reconnect attempts


class FilterError(TransportError):
    """A subscription filter is not valid MQTT."""


def check_filter(text: str) -> str:
    """``text`` if it is a valid subscription filter, else a FilterError saying why."""
    if not text or len(text.encode()) > 65535 or "\x00" in text:
        raise FilterError(f"'{text[:60]}' is not a subscription filter.",
                          "Give a topic filter such as edge/+/cpu or #.")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise FilterError(f"'{text[:60]}': '#' must be a whole level, and the last one.", "Write it as a/b/#.")
        if "+" in level and level != "+":
            raise FilterError(f"'{text[:60]}': '+' must be a whole level.", "Write it as a/+/c.")
    return text


def parse_filters(text: str) -> list[str]:
    """Filters separated by spaces or commas; ``#`` when empty."""
    parts = [p for p in text.replace(",", " ").split() if p]
    return [check_filter(p) for p in parts] or ["#"]


class MqttSubscriber(StatefulLink):
    """Subscribe ``filters`` at ``target`` (an ``mqtt://``/``mqtts://`` URL; its path is not used as a topic)."""

    def __init__(self, target: Target | str, filters: Sequence[str], *, credentials: Credentials | None = None,
                 qos: int = 0, connect_timeout: float = 10.0, buffer_max: int = BUFFER_MAX,
                 client_id: str | None = None) -> None:
        super().__init__()
        self.target = _as_target(target)
        self.filters = [check_filter(f) for f in filters] or ["#"]
        self.qos = qos
        self.where = f"{self.target.host}:{self.target.effective_port}"
        self.connect_timeout = connect_timeout
        self.buffer: deque[RawMessage] = deque(maxlen=buffer_max)
        self.received = 0  # written by paho's thread only
        self.drained = 0
        self.reconnects = 0
        self._tls = TlsSettings.from_options(self.target.options) if self.target.scheme == "mqtts" else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._closing = False
        self._last_error = ""
        self._client = self._make_client(credentials, client_id)

    def _make_client(self, credentials: Credentials | None, client_id: str | None) -> paho.Client:
        options = self.target.options
        name = client_id or f"siteline-explorer-{uuid.uuid4().hex[:12]}"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=protocol_from_options(options))
        user = (credentials.username if credentials else None) or self.target.user
        if user:
            c.username_pw_set(user, credentials.password if credentials else None)
        if self._tls is not None:
            c.tls_set_context(tls_context(self._tls))
        c.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        self._keepalive = keepalive_from_options(options)
        c.on_message = self._on_message
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_log = self._on_log
        return c

    # ---- paho's thread ---------------------------------------------------------------------------

    def _on_message(self, _c: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        # The raw topic bytes: paho's .topic property raises on invalid UTF-8, which would kill its thread.
        payload = m.payload if isinstance(m.payload, bytes) else bytes(m.payload)
        self.buffer.append((m._topic, payload, m.qos, bool(m.retain), time.time()))
        self.received += 1

    def _on_connect(self, c: paho.Client, _u: Any, _flags: Any, rc: ReasonCode, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe([(f, self.qos) for f in self.filters])  # again after every reconnect
        self._hop(self._connected, rc)

    def _on_disconnect(self, _c: paho.Client, _u: Any, _flags: Any, rc: ReasonCode, _p: Any) -> None:
        self._hop(self._lost, rc)

    def _on_log(self, _c: paho.Client, _u: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            self._last_error = text

    def _hop(self, func: Callable[..., None], *args: Any) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
                self._loop.call_soon_threadsafe(func, *args)

    # ---- the loop's thread ----------------------------------------------------------------------

    def _connected(self, rc: ReasonCode) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(rc)
            return
        if rc.is_failure:
            err = connack_error(rc, self.where)
            self._state.set(ConnState.RETRYING, err.args[0] if err.args else str(err),
                            time.monotonic() + RECONNECT_MIN)
        else:
            self.reconnects += 1
            self._state.set(ConnState.UP, f"resubscribed after reconnect #{self.reconnects}")

    def _lost(self, rc: ReasonCode) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(early_close_error(self.where, rc, self._tls is not None, self._last_error))
            return
        if self._closing:
            return
        self._state.set(ConnState.RETRYING, f"lost the broker {self.where} ({rc}); paho reconnects by itself",
                        time.monotonic() + RECONNECT_MIN)

    async def connect(self) -> None:
        """Connect and subscribe; raises TransportError/AuthError with what to do. Then reconnects by itself."""
        self._loop = asyncio.get_running_loop()
        self._connack = self._loop.create_future()
        self._closing = False
        self._state.set(ConnState.CONNECTING, self.where)
        try:
            await connect_socket(self._client, self.target.host, self.target.effective_port, self._keepalive,
                                 self.connect_timeout, self._tls)
            self._client.loop_start()
            await await_connack(self._connack, self.where, self.connect_timeout)
        except TransportError as exc:
            await self._stop_thread()
            self._state.set(ConnState.DOWN, str(exc.args[0]) if exc.args else str(exc))
            raise
        self._state.set(ConnState.UP, f"subscribed to {', '.join(self.filters)}")

    def drain(self, limit: int | None = None) -> list[RawMessage]:
        """Take up to ``limit`` buffered messages (all when None), oldest first."""
        buf = self.buffer
        n = len(buf) if limit is None else min(limit, len(buf))
        pop = buf.popleft
        out = [pop() for _ in range(n)]
        self.drained += n
        return out

    @property
    def dropped(self) -> int:
        """Messages the buffer had to drop because the consumer fell behind."""
        return max(0, self.received - self.drained - len(self.buffer))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Queue a message for the broker (does not wait for its acknowledgement)."""
        if self.state.state is not ConnState.UP:
            raise TransportError(f"Not connected to the broker {self.where}.", "Connect first.")
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            raise TransportError(f"Cannot publish to '{topic[:60]}': {exc}.",
                                 "A topic to publish to has no '+' or '#' and is not empty.") from exc
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"Could not publish to {topic[:60]}: {paho.error_string(info.rc)}.", "Retry.")

    async def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        await self._stop_thread()
        self._state.set(ConnState.DOWN, "disconnected")

    async def _stop_thread(self) -> None:
        await asyncio.to_thread(self._client.loop_stop)
        close_leftover_socket(self._client)


def _as_target(target: Target | str) -> Target:
    if isinstance(target, str):
        text = target.strip()
        # The explorer needs no device topic: a bare broker URL is fine, so give the parser a placeholder path.
        scheme, _sep, rest = text.partition("://")
        if scheme.lower() not in ("mqtt", "mqtts"):
            raise TargetError(f"'{text[:80]}' is not an MQTT broker URL.", "Use mqtt://host:1883 or mqtts://host:8883.")
        if "/" not in rest.split("?", 1)[0]:
            base, q, query = rest.partition("?")
            text = f"{scheme}://{base}/_{q}{query}"
        target = parse_target(text)
    if not target.is_mqtt:
        raise TargetError(f"'{target}' is not an MQTT broker URL.", "Use mqtt://host:1883 or mqtts://host:8883.")
    return target
