"""MQTT on a bad link: a broker restart, a cut mid-reply, a black hole, a slow link, a cancelled connect.

Real peers: Mosquitto, the simulator's MQTT device, and the tests' fault proxy between Siteline and
the broker (the device talks to the broker directly, as it would from its own site). The worst
event-loop stall is measured during each fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from tests.peers.faultproxy import FaultProxy
from tests.peers.pki import Pki
from tests.peers.sim import running_device
from tests.peers.stall import assert_no_stall, measure_stalls

from siteline.core.backoff import Backoff
from siteline.core.errors import TransportError
from siteline.core.inventory import DeviceEntry
from siteline.core.mqtt_client import MqttClient, TlsSettings
from siteline.core.plugins import PluginHost
from siteline.core.session import DeviceSession
from siteline.core.targets import Target, parse_target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.mqtt import MqttTransport
from siteline.simulator.broker import BrokerHandle
from siteline.simulator.device import SimulatedDevice
from siteline.simulator.state import DeviceState

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("mosquitto"), pytest.mark.timeout(30)]
PREFIX = "edge/test-site/gw-01"
GONE = "lost the broker 127.0.0.1:[0-9]+|the device reported offline|dropped off the broker"
BIG = "printf '%0200000d' 0"  # a 200 KB reply: many TCP segments, so a cut lands inside it


@contextlib.asynccontextmanager
async def _device(state: DeviceState, broker: BrokerHandle) -> AsyncIterator[SimulatedDevice]:
    async with running_device(state, ssh=False, mqtt_url=broker.url) as device:
        assert device.mqtt is not None
        await asyncio.wait_for(device.mqtt.connected.wait(), 10)
        yield device


@pytest.fixture
def proxy(mosquitto: BrokerHandle) -> Iterator[FaultProxy]:
    with FaultProxy(mosquitto.port) as p:
        yield p


def _transport(port: int, query: str = "") -> MqttTransport:
    target = parse_target(f"mqtt://127.0.0.1:{port}/{PREFIX}{query}")
    return MqttTransport(target, Credentials(), connect_timeout=3, status_timeout=3)


async def _until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def test_broker_restart_session_retries_then_comes_back(sim_state: DeviceState, mosquitto: BrokerHandle) -> None:
    def factory(t: Target, c: Credentials) -> Transport:
        return MqttTransport(t, c, connect_timeout=2, status_timeout=3)

    url = f"mqtt://127.0.0.1:{mosquitto.port}/{PREFIX}"
    session = DeviceSession(DeviceEntry("gw", url), factory, Credentials(), PluginHost(),
                            backoff=Backoff(initial=0.1, maximum=0.5, jitter=0.1))
    seen: list[ConnectionState] = []
    session.add_state_listener(seen.append)
    async with _device(sim_state, mosquitto):
        session.start()
        try:
            await _until(lambda: session.state.state is ConnState.UP, what="first UP")
            assert (await session.run("true")).exit_code == 0
            async with measure_stalls() as watch:
                in_flight = asyncio.create_task(session.run("sleep 3; echo late", timeout=10))
                await asyncio.sleep(0.3)
                await asyncio.to_thread(mosquitto.stop)
                # Not retried: `sleep; echo` may have side effects, so the caller is told and decides.
                # Mosquitto sends every client's will as it shuts down, so the device's "offline" may come first.
                with pytest.raises(TransportError, match=rf"({GONE}) .* while a command was running"):
                    await asyncio.wait_for(in_flight, 5)
                await _until(lambda: session.state.state is ConnState.RETRYING, what="RETRYING")
                assert re.search(GONE, session.state.reason), session.state.reason
                await asyncio.to_thread(mosquitto.restart)
                await _until(lambda: session.state.state is ConnState.UP, 20, "UP after the restart")
                assert (await session.run("echo back")).stdout == "back\n"
            assert_no_stall(watch, "broker restart")
        finally:
            await session.stop()
    retrying = [s for s in seen if s.state is ConnState.RETRYING]
    assert retrying
    assert all(s.reason for s in retrying), "every RETRYING says why"


async def test_cut_in_the_middle_of_a_reply(sim_state: DeviceState, mosquitto: BrokerHandle,
                                            proxy: FaultProxy) -> None:
    async with _device(sim_state, mosquitto):
        t = _transport(proxy.port)
        await t.connect()
        try:
            async with measure_stalls() as watch:
                proxy.cut_after(down=20_000)
                began = time.monotonic()
                with pytest.raises(TransportError, match=r"lost the broker .* while a command was running"):
                    await asyncio.wait_for(t.run(BIG, timeout=20), 10)
                assert time.monotonic() - began < 5, "a cut is noticed at once, not at the command's timeout"
                assert t.state.state is ConnState.DOWN
            assert_no_stall(watch, "cut mid-reply")
            proxy.heal()
            await t.connect()
            assert len((await t.run(BIG)).stdout) == 200_000
        finally:
            await t.close()


async def test_reset_under_a_waiting_command(sim_state: DeviceState, mosquitto: BrokerHandle,
                                             proxy: FaultProxy) -> None:
    """An RST (a NAT that forgot us) while a command waits: a clear error at once, and a clean reconnect."""
    async with _device(sim_state, mosquitto):
        t = _transport(proxy.port)
        await t.connect()
        try:
            async with measure_stalls() as watch:
                waiting = asyncio.create_task(t.run("sleep 2; echo late", timeout=10))
                await asyncio.sleep(0.3)
                proxy.cut(reset=True)
                with pytest.raises(TransportError, match=r"lost the broker .* while a command was running"):
                    await asyncio.wait_for(waiting, 3)
            assert_no_stall(watch, "RST mid-command")
            await t.connect()
            assert (await t.run("echo again")).stdout == "again\n"
        finally:
            await t.close()


async def test_black_hole_is_noticed_by_the_keepalive(sim_state: DeviceState, mosquitto: BrokerHandle,
                                                      proxy: FaultProxy) -> None:
    async with _device(sim_state, mosquitto):
        t = _transport(proxy.port, "?keepalive=1")
        assert t.keepalive == 1
        await t.connect()
        try:
            async with measure_stalls() as watch:
                proxy.black_hole()
                began = time.monotonic()
                with pytest.raises(TransportError, match="lost the broker"):
                    await asyncio.wait_for(t.run("echo into the void", timeout=20), 8)
                took = time.monotonic() - began
                assert t.state.state is ConnState.DOWN
            assert_no_stall(watch, "black hole")
            assert took < 4, f"keepalive=1 should find a dead link in about 2 s, took {took:.1f} s"
            attempts = proxy.connections
            await asyncio.sleep(1.5)  # paho's own reconnect would come after 1 s
            assert proxy.connections == attempts, "a DOWN transport must not reconnect behind the session's back"
            proxy.heal()
            await t.connect()
            assert (await t.run("echo alive")).stdout == "alive\n"
        finally:
            await t.close()


async def test_slow_lossy_link_still_completes(sim_state: DeviceState, mosquitto: BrokerHandle,
                                              proxy: FaultProxy) -> None:
    async with _device(sim_state, mosquitto):
        proxy.shape(rtt=0.2, rate=200_000)  # 1.6 Mbit/s and 200 ms: a poor cellular link
        t = _transport(proxy.port)
        async with measure_stalls() as watch:
            await t.connect()
            try:
                began = time.monotonic()
                assert (await t.run("echo slow")).stdout == "slow\n"
                assert time.monotonic() - began >= 0.2  # it really went over the shaped link
                results = await asyncio.gather(t.run(BIG), t.run("echo small"))
                assert len(results[0].stdout) == 200_000
                assert results[1].stdout == "small\n"
            finally:
                await t.close()
        assert_no_stall(watch, "shaped link")


async def test_device_link_cut_publishes_its_will(sim_state: DeviceState, mosquitto: BrokerHandle) -> None:
    """The device's own link drops without a goodbye: the broker sends its will, Siteline says offline."""
    with FaultProxy(mosquitto.port) as device_link:
        via = BrokerHandle("127.0.0.1", device_link.port, "mosquitto", mosquitto.workdir)
        async with _device(sim_state, via):
            t = _transport(mosquitto.port)
            await t.connect()
            try:
                async with measure_stalls() as watch:
                    device_link.cut()
                    await _until(lambda: t.state.state is ConnState.DOWN, 10, "DOWN on the will")
                assert "dropped off the broker (its last will)" in t.state.reason
                assert_no_stall(watch, "device link cut")
            finally:
                await t.close()


@pytest.mark.parametrize("kind", ["client", "transport"])
async def test_cancelled_tls_connect_closes_its_socket(tls_broker: BrokerHandle, pki: Pki, kind: str) -> None:
    """A connect cancelled while the TLS handshake hangs in its thread: the socket made later is closed."""
    made: list[Any] = []
    with FaultProxy(tls_broker.port) as p:
        p.black_hole()  # TCP is accepted, the handshake hangs
        if kind == "client":
            tls = TlsSettings(str(pki.ca), str(pki.client), str(pki.client_key))
            client = MqttClient("127.0.0.1", p.port, tls=tls, connect_timeout=5)
            made.append(client._client)
            connect = client.connect()
        else:
            query = f"?ca={pki.ca}&cert={pki.client}&key={pki.client_key}"
            t = MqttTransport(parse_target(f"mqtts://127.0.0.1:{p.port}/{PREFIX}{query}"), Credentials(),
                              connect_timeout=5)
            original = t._make_client
            t._make_client = lambda: made.append(original()) or made[-1]  # type: ignore[method-assign]
            connect = t.connect()
        async with measure_stalls() as watch:
            task = asyncio.create_task(connect)
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            p.heal()  # the handshake in the executor thread now completes and paho keeps a socket
            paho_client = made[0]
            await _until(lambda: paho_client.socket() is not None, 5, "the late socket")
            await _until(lambda: paho_client.socket().fileno() == -1, 5, "the late socket closed")
        assert_no_stall(watch, f"cancelled TLS connect ({kind})")
