"""The simulated device's MQTT side, following ``siteline.core.transports.mqtt_contract``.

paho-mqtt runs its network loop in its own thread (``loop_start``) and reconnects by itself with
backoff when the broker goes away; its callbacks hand work to the device's asyncio loop, where
commands run through the same real shell as over SSH.

The device logs in to the broker as the user named in its broker URL (``mqtt://gw-7@host:1883``)
with the password kept in its state directory (file ``mqtt-password``, mode 0600): never on a
command line, where ``ps`` would show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from siteline.core.transports import mqtt_contract as contract
from siteline.core.transports.base import Result
from siteline.simulator.private import write_private
from siteline.simulator.shell import run_command
from siteline.simulator.state import DeviceState

log = logging.getLogger(__name__)
MAX_OUTPUT = 256 * 1024  # per stream in a reply: a metered link should not carry a runaway command's output
MAX_CONCURRENT = 4
PASSWORD_FILE = "mqtt-password"


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://[user@]host:port`` (any path ignored) -> (host, port); raises ValueError with what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"'{url}' is not an mqtt://HOST:PORT broker URL")
    if parts.password is not None:
        raise ValueError("the broker URL must not carry a password (ps shows command lines): give only the user, "
                         "mqtt://USER@HOST:PORT, and the password in the SITELINE_SIM_MQTT_PASSWORD variable")
    try:
        port = parts.port or 1883
    except ValueError as exc:
        raise ValueError(f"'{url}' has no valid port") from exc
    return parts.hostname, port


def broker_user(url: str) -> str | None:
    return urlsplit(url).username or None


def save_broker_password(state_root: Path, password: str) -> None:
    """Keep the device's broker password in its state directory, readable by its owner only."""
    write_private(state_root / PASSWORD_FILE, password)


def load_broker_password(state_root: Path) -> str | None:
    try:
        return (state_root / PASSWORD_FILE).read_text(encoding="utf-8").strip("\n") or None
    except FileNotFoundError:
        return None


def _clip(data: bytes) -> tuple[str, bool]:
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace"), len(data) > MAX_OUTPUT


class MqttAgent:
    """Connects to ``broker_url`` as the device: status, telemetry, and answers to command requests."""

    def __init__(self, state: DeviceState, broker_url: str) -> None:
        self.state = state
        self.host, self.port = parse_broker_url(broker_url)
        self.username = broker_user(broker_url)
        self.prefix = f"edge/{state.config.site}/{state.config.name}"
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._telemetry: asyncio.Task[None] | None = None
        self._jobs = asyncio.Semaphore(MAX_CONCURRENT)
        # The device loop's own tasks (not the thread-side futures): stop() must wait until each has
        # really ended, or a killed command's pipes outlive the loop.
        self._running: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}/{self.prefix}"

    def _status(self, state: str, will: bool = False) -> bytes:
        # The will is set at connect but sent when the link breaks: a time in it would be a lie.
        return json.dumps({"state": state} if will else {"state": state, "ts": time.time()}).encode()

    async def start(self) -> None:
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.connected.clear()
        client_id = f"sim-{self.state.config.site}-{self.state.config.name}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        client.will_set(contract.status_topic(self.prefix), self._status("offline", will=True), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if self.username:
            client.username_pw_set(self.username, load_broker_password(self.state.root))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._telemetry = self._loop.create_task(self._publish_telemetry(), name="mqtt telemetry")

    async def stop(self, graceful: bool = True, grace: float = 0.0) -> None:
        """Leave the broker: status "offline" first when ``graceful`` (a clean shutdown or reboot).

        Commands still running get ``grace`` seconds to finish and send their reply (the ``reboot``
        that caused this stop must still be answered), then they are cancelled.
        """
        if self._telemetry is not None:
            self._telemetry.cancel()
            await asyncio.gather(self._telemetry, return_exceptions=True)
            self._telemetry = None
        running = list(self._running)
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        client, self._client = self._client, None
        if client is None:
            return
        if graceful and client.is_connected():
            info = client.publish(contract.status_topic(self.prefix), self._status("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                await asyncio.to_thread(info.wait_for_publish, 2.0)
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self.connected.clear()

    # -- paho callbacks (paho's thread) ------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the device (user %s): %s; check the user in --mqtt and the password "
                        "in SITELINE_SIM_MQTT_PASSWORD", self.host, self.port, self.username or "anonymous", reason)
            return
        log.info("connected to broker %s:%d as %s", self.host, self.port, self.prefix)
        client.publish(contract.status_topic(self.prefix), self._status("online"), qos=1, retain=True)
        client.subscribe(contract.request_topic(self.prefix), qos=1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        log.info("disconnected from broker (%s); paho reconnects with backoff", reason)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            contract.check_request_delivery(self.prefix, message.topic, bool(message.retain))
            request = contract.decode_request(bytes(message.payload))
            contract.check_reply_to(self.prefix, request.reply_to)
        except contract.ContractError as exc:
            log.warning("dropped a request on %s: %s", message.topic, exc)
            return
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and now
            self._loop.call_soon_threadsafe(self._start_job, request)

    def _start_job(self, request: contract.CommandRequest) -> None:
        job = asyncio.get_running_loop().create_task(self._answer(request), name=f"mqtt command {request.id}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    # -- work (the device's loop) ------------------------------------------------------------

    async def _answer(self, request: contract.CommandRequest) -> None:
        async with self._jobs:
            try:
                code, out, err = await run_command(self.state, request.cmd, timeout=request.timeout)
            except (OSError, ValueError) as exc:
                code, out, err = 127, b"", f"{exc}\n".encode()
        stdout, cut_out = _clip(out)
        stderr, cut_err = _clip(err)
        reply = contract.CommandReply(request.id, Result(code, stdout, stderr), truncated=cut_out or cut_err)
        client = self._client
        if client is not None:
            client.publish(request.reply_to, reply.encode(), qos=1)

    async def _publish_telemetry(self) -> None:
        while True:
            await self.connected.wait()
            client = self._client
            try:
                metrics = self.state.telemetry()
            except (OSError, ValueError) as exc:
                log.warning("telemetry could not be read: %s", exc)
                metrics = {}
            now = time.time()
            for metric in contract.METRICS:
                values = metrics.get(metric)
                if client is not None and isinstance(values, dict):
                    payload = json.dumps({"ts": now, **values}).encode()
                    client.publish(contract.telemetry_topic(self.prefix, metric), payload, qos=1)
            await asyncio.sleep(max(0.01, float(self.state.config.telemetry_interval)))
