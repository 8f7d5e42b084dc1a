"""MQTT transport: commands to a device through a broker, following ``mqtt_contract``.

paho-mqtt runs its own network thread (``loop_start``) and every callback hops onto the
asyncio loop with ``call_soon_threadsafe``. That is chosen over driving paho from the loop's
``add_reader``/``add_writer``: paho's thread owns keepalive pings, TLS want-read/want-write
and partial writes itself, and it works on event loops without ``add_reader`` (Windows'
proactor loop, which qasync uses there). The blocking TCP connect and TLS handshake run in an
executor so a slow or black-holed broker never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from siteline.core.errors import CommandTimeout, TransportError
from siteline.core.mqtt_client import (
    KEEPALIVE,
    TlsSettings,
    await_connack,
    close_leftover_socket,
    connect_socket,
    early_close_error,
    protocol_from_options,
    tls_context,
)
from siteline.core.targets import Target
from siteline.core.transports import mqtt_contract as contract
from siteline.core.transports.base import ConnState, Credentials, Result, StatefulLink

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
STATUS_TIMEOUT = 3.0  # how long a retained "online" status may take to arrive after subscribing
REPLY_GRACE = 1.0  # the device enforces ``timeout`` itself; allow for the round trip on top


def _when(ts: Any) -> str:
    if isinstance(ts, int | float) and not isinstance(ts, bool) and 0 < ts < 2**33:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "an unknown time"


def _offline(ts: Any) -> str:
    # A will has no time: the broker sends it when the device's link breaks, long after it was set.
    if ts is None:
        return "the device dropped off the broker (its last will)"
    return f"the device reported offline at {_when(ts)}"


def parse_status(payload: bytes) -> tuple[str, Any] | None:
    """The device's ``{"state": ..., "ts": ...}``, or None for anything that does not follow the contract."""
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("state") not in ("online", "offline"):
        return None
    return str(doc["state"]), doc.get("ts")


class MqttTransport(StatefulLink):
    """A link to one MQTT-managed device: ``mqtt[s]://broker:port/<device prefix>``.

    Target options: ``ca=``, ``cert=``, ``key=`` (PEM files for mqtts://), ``insecure=1`` (skip the
    certificate's name check), ``v=5`` (MQTT 5: requests also carry a response topic and correlation
    data; 3.1.1 by default, where the JSON ``reply_to`` and ``id`` do the same job), ``keepalive=SECONDS``
    (30 by default: how soon a silent link is found dead).
    """

    def __init__(
        self,
        target: Target,
        credentials: Credentials,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        status_timeout: float = STATUS_TIMEOUT,
    ) -> None:
        if not target.is_mqtt:
            raise TransportError(f"{target} is not an mqtt:// or mqtts:// target.")
        self.target = target
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.status_timeout = status_timeout
        self.client_id = f"siteline-{uuid.uuid4().hex[:16]}"
        self.prefix = target.topic
        self.reply_topic = contract.reply_topic(self.prefix, self.client_id)
        self.tls = TlsSettings.from_options(target.options) if target.scheme == "mqtts" else None
        # paho pings after one idle keepalive and drops the link when the next passes with no answer:
        # a black-holed radio is noticed within about two intervals.
        self.keepalive = KEEPALIVE if target.keepalive is None else max(1, round(target.keepalive))
        self._last_error = ""  # paho's last error log line: the only trace of a TLS 1.3 client-cert refusal
        super().__init__()
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._subscribed: asyncio.Future[None] | None = None
        self._status_seen = asyncio.Event()
        self._status: tuple[str, Any] | None = None
        self._pending: dict[str, asyncio.Future[Result]] = {}
        self._closing = False
        self.log = logging.LoggerAdapter(log, {"target": str(target)})

    def _lost(self, reason: str) -> None:
        """The link is gone: fail every waiting command and tell the session."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TransportError(f"{reason} while a command was running.", "Reconnect and retry."))
        self._pending.clear()
        if not self._closing and self._state.state.state is ConnState.UP:
            self.log.info("%s", reason)
            self._state.set(ConnState.DOWN, reason)

    # -- paho callbacks (network thread) -> asyncio loop --------------------------------------

    def _to_loop(self, func: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(func, *args)

    # Each event carries the client that sent it and is dropped on the loop unless that client is
    # still ours: a late callback from a closed client must not touch the current connection.

    def _on_connect(self, c: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._to_loop(self._if_current, c, self._connected, rc)

    def _on_subscribe(self, c: paho.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self._to_loop(self._if_current, c, self._suback, [code.is_failure for code in codes])

    def _on_message(self, c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        correlation = getattr(msg.properties, "CorrelationData", None) if msg.properties is not None else None
        self._to_loop(self._if_current, c, self._message, msg.topic, bytes(msg.payload), correlation)

    def _on_disconnect(self, c: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self._to_loop(self._if_current, c, self._disconnected, rc)

    def _on_log(self, _c: paho.Client, _u: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR and not self._last_error:
            self._last_error = text

    def _if_current(self, client: paho.Client, func: Callable[..., None], *args: Any) -> None:
        if client is self._client:
            func(*args)

    # -- the same events, on the loop ----------------------------------------------------------

    def _disconnected(self, rc: ReasonCode) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(early_close_error(self._where(), rc, self.tls is not None, self._last_error))
        self._lost(f"lost the broker {self._where()} ({rc})")
        if self._client is not None:
            # Else paho reconnects by itself, behind a state that says DOWN, and a dead link keeps a hidden
            # connection going: reconnecting is the session's decision (with its backoff and its new subscriptions).
            self._client.disconnect()

    def _connected(self, rc: ReasonCode) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(rc)

    def _suback(self, failures: list[bool]) -> None:
        if self._subscribed is None or self._subscribed.done():
            return
        if any(failures):
            self._subscribed.set_exception(
                TransportError(f"The broker refused our subscription to {self.prefix}/...", "Check the broker's ACL.")
            )
        else:
            self._subscribed.set_result(None)

    def _message(self, topic: str, payload: bytes, correlation: bytes | None = None) -> None:
        if topic == contract.status_topic(self.prefix):
            status = parse_status(payload)
            if status is None:
                self.log.info("dropped a status message that does not follow the contract: %r", payload[:80])
                return
            self._status = status
            self._status_seen.set()
            if status[0] == "offline":
                self._lost(_offline(status[1]))
        elif topic == self.reply_topic:
            try:
                reply = contract.decode_reply(payload)
            except contract.ContractError as exc:
                self.log.info("dropped a reply that does not follow the contract: %s", exc)
                return
            # MQTT 5: the correlation data we sent names the request even if a device rewrote the id.
            key = correlation.decode("ascii", "replace") if correlation else reply.id
            fut = self._pending.pop(key, None)
            if fut is None or fut.done():
                self.log.debug("dropped a reply for unknown or finished request %s", reply.id)
                return
            fut.set_result(reply.result)

    # -- connecting --------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.target.host}:{self.target.effective_port}"

    def _make_client(self) -> paho.Client:
        protocol = protocol_from_options(self.target.options)
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol)
        user = self.credentials.username or self.target.user  # mqtt://user@broker/... names the login too
        if user:
            client.username_pw_set(user, self.credentials.password)
        if self.tls is not None:
            client.tls_set_context(tls_context(self.tls))
        self._last_error = ""
        client.on_log = self._on_log
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    async def connect(self) -> None:
        await self.close()
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._state.set(ConnState.CONNECTING)
        try:
            await self._connect_broker()
            await self._await_online()
        except BaseException as exc:
            await self._shutdown()
            self._state.set(ConnState.DOWN, str(exc))
            raise
        self.log.info("connected to %s through the broker %s", self.prefix, self._where())
        self._state.set(ConnState.UP)

    async def _connect_broker(self) -> None:
        loop = asyncio.get_running_loop()
        self._client = client = self._make_client()
        self._connack = loop.create_future()
        host, port = self.target.host, self.target.effective_port
        await connect_socket(client, host, port, self.keepalive, self.connect_timeout, self.tls)
        client.loop_start()
        await await_connack(self._connack, self._where(), self.connect_timeout)

    async def _await_online(self) -> None:
        assert self._client is not None
        assert self._loop is not None
        self._subscribed = self._loop.create_future()
        status_topic = contract.status_topic(self.prefix)
        result, _mid = self._client.subscribe([(status_topic, 1), (self.reply_topic, 1)])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"Could not subscribe on the broker {self._where()}: {paho.error_string(result)}.")
        deadline = time.monotonic() + self.status_timeout + self.connect_timeout
        try:
            await asyncio.wait_for(self._subscribed, max(0.1, deadline - time.monotonic()))
        except TimeoutError as exc:
            raise TransportError(
                f"The broker {self._where()} did not confirm our subscription to {self.prefix}/... in time.",
                "The broker may be overloaded or not a full MQTT broker; retry, or check the broker's log.",
            ) from exc
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._status_seen.wait(), self.status_timeout)
        name = self.target.label
        if self._status is None:
            raise TransportError(
                f"The device {name} has not reported to the broker {self._where()} (nothing on {status_topic}).",
                "Check the device topic in the target, and that the device is powered and online.",
            )
        if self._status[0] != "online":
            raise TransportError(
                f"The device {name} is offline: {_offline(self._status[1])}.",
                "Check the device's power and network; it reconnects to the broker by itself when it is back.",
            )

    # -- using -------------------------------------------------------------------------------

    async def run(self, command: str, timeout: float = 30.0) -> Result:
        client = self._client
        if client is None or self._state.state.state is not ConnState.UP or self._loop is None:
            raise TransportError(f"Not connected to {self.target.label} ({self._state.state.describe()}).",
                                 "Connect first.")
        if not command or len(command) > contract.MAX_COMMAND:
            raise TransportError(f"A command must be 1 to {contract.MAX_COMMAND} characters long.")
        request_id = uuid.uuid4().hex
        request = contract.CommandRequest(request_id, command, float(timeout), self.reply_topic)
        fut: asyncio.Future[Result] = self._loop.create_future()
        self._pending[request_id] = fut
        try:
            info = client.publish(contract.request_topic(self.prefix), request.encode(), qos=1,
                                  properties=_request_properties(client, self.reply_topic, request_id))
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise TransportError(f"Could not send the command to the broker: {paho.error_string(info.rc)}.")
            return await asyncio.wait_for(fut, timeout + REPLY_GRACE)
        except TimeoutError as exc:
            raise CommandTimeout(
                f"'{command[:80]}' got no answer from {self.target.label} within {timeout:g} s.",
                "The device may be busy or its link slow; retry with a longer timeout.",
            ) from exc
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        self._closing = True
        had = self._client is not None
        await self._shutdown()
        self._lost("closed")
        if had:
            self._state.set(ConnState.DOWN, "closed")

    async def _shutdown(self) -> None:
        client, self._client = self._client, None
        self._status, self._subscribed, self._connack = None, None, None
        self._status_seen.clear()
        if client is None:
            return
        client.disconnect()
        # loop_stop joins paho's thread; do it off the event loop.
        await asyncio.to_thread(client.loop_stop)
        close_leftover_socket(client)


def _request_properties(client: paho.Client, reply_topic: str, request_id: str) -> Properties | None:
    """MQTT 5's own request/response fields; None on 3.1.1, where the JSON payload carries them."""
    if client.protocol != paho.MQTTv5:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho ships no annotations here
    props.ResponseTopic = reply_topic
    props.CorrelationData = request_id.encode("ascii")
    return props
