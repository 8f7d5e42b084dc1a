"""MQTT connection settings (TLS, protocol version) shared by the transport and `siteline mqtt`, and a
small asyncio wrapper around paho-mqtt for publishing and subscribing.

TLS failures are turned into errors a technician can act on: an untrusted certificate names the CA
that was tried, a name mismatch names the host, and a broker that drops us right after the
handshake is said to want (or refuse) a client certificate: with TLS 1.3 the broker checks the
client certificate only after the client's handshake has finished, so paho sees just an EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from siteline.core.errors import AuthError, TransportError

log = logging.getLogger(__name__)

KEEPALIVE = 30  # seconds between pings on an idle link: paho drops one that stays silent for about two of them
VERSIONS = {"3.1.1": paho.MQTTv311, "4": paho.MQTTv311, "311": paho.MQTTv311, "5": paho.MQTTv5}
AUTH_CODES = (4, 5, 134, 135)  # bad user name or password / not authorised, in 3.1.1 and 5
_UNTRUSTED = (2, 18, 19, 20, 21, 27)  # OpenSSL verify codes for "no path to a trusted CA"
_NAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN",
                       "HANDSHAKE_FAILURE", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED")
CERT_HINT = "Give a client certificate the broker trusts (cert= and key= in the target, or --cert/--key)."


class MqttSettingsError(TransportError):
    """A local setting is wrong (a missing or unreadable PEM file, an unknown version): no use retrying."""


@dataclass(frozen=True)
class TlsSettings:
    """Files for TLS: the CA that signed the broker's certificate (None: the system's store) and ours."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False  # skip the name check only; the chain is still verified

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> TlsSettings:
        """From target options ``ca=``, ``cert=``, ``key=``, ``insecure=1``."""
        insecure = options.get("insecure", "").lower() in ("1", "true", "yes")
        return cls(options.get("ca") or None, options.get("cert") or None, options.get("key") or None, insecure)


def protocol_from_options(options: Mapping[str, str]) -> MQTTProtocolVersion:
    """The MQTT protocol from target option ``v=`` (3.1.1 unless ``v=5``)."""
    raw = options.get("v", "3.1.1").strip()
    if raw not in VERSIONS:
        raise MqttSettingsError(f"MQTT version '{raw[:20]}' is not supported.", "Use v=5 or v=3.1.1.")
    return VERSIONS[raw]


def keepalive_from_options(options: Mapping[str, str], default: int = KEEPALIVE) -> int:
    """Option ``keepalive=SECONDS`` (1..3600) as paho wants it (whole seconds), else ``default``."""
    raw = options.get("keepalive")
    if raw is None:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 3600:
        raise MqttSettingsError(f"'{raw[:20]}' is not a keepalive interval.", "Give seconds between 1 and 3600.")
    return max(1, round(seconds))


def _readable(path: str, what: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise MqttSettingsError(f"The {what} file {p} does not exist.", "Check the path.")
    return str(p)


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when the handshake fails: paho drops a socket whose handshake raised without closing it."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def tls_context(settings: TlsSettings) -> ssl.SSLContext:
    """A verifying client context; raises TransportError naming the file that cannot be used."""
    ca = _readable(settings.ca, "CA certificate") if settings.ca else None
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise MqttSettingsError(f"The CA file {ca} is not a PEM certificate: {exc}.", "Give the broker's CA in PEM.") \
            from exc
    ctx.sslsocket_class = _ClosingSSLSocket
    if settings.insecure:
        ctx.check_hostname = False
    if settings.key and not settings.cert:
        raise MqttSettingsError("A client key was given without its certificate.", "Give both --cert and --key.")
    if settings.cert:
        cert = _readable(settings.cert, "client certificate")
        key = _readable(settings.key, "client key") if settings.key else None
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            raise MqttSettingsError(f"The client certificate {cert} or its key cannot be used: {exc}.",
                                 "Give the matching PEM certificate and unencrypted key.") from exc
    return ctx


def tls_error(exc: ssl.SSLError, where: str, settings: TlsSettings) -> TransportError:
    """Explain a failed TLS handshake with the broker at ``where``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code in _NAME_MISMATCH:
            return TransportError(f"The broker's certificate does not name {where.rpartition(':')[0]}: "
                                  f"{exc.verify_message}.",
                                  "Connect by the name in the certificate, or get a certificate for this address.")
        if code in _UNTRUSTED:
            ca = f"the CA in {settings.ca}" if settings.ca else "any CA in the system's trust store"
            return TransportError(f"The broker {where} has a certificate not signed by {ca} ({exc.verify_message}).",
                                  "Give the CA that signed the broker's certificate (ca= in the target, or --ca).")
        return TransportError(f"The broker {where} has a certificate that cannot be trusted: {exc.verify_message}.",
                              "Check the broker's certificate (dates, usage) with its administrator.")
    reason = str(exc.reason or "")
    if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
        return AuthError(f"The broker {where} refused our TLS client certificate ({reason}).", CERT_HINT)
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason:
        return TransportError(f"The broker {where} does not speak TLS on this port.",
                              "Use mqtt:// for a plain broker, or the broker's TLS port (often 8883).")
    return TransportError(f"TLS with the broker {where} failed: {exc}.", "Check the broker's TLS setup.")


def early_close_error(where: str, rc: object, tls: bool, log_line: str) -> TransportError:
    """The broker dropped us before its CONNACK."""
    detail = f" ({log_line})" if log_line else ""
    if tls:
        return AuthError(f"The broker {where} closed the TLS connection before accepting us{detail}: it requires a "
                         "client certificate, or refused ours.", CERT_HINT)
    return TransportError(f"The broker {where} closed the connection before accepting us ({rc}){detail}.",
                          "Check the broker's log; it may limit connections or want TLS (mqtts://).")


def connack_error(rc: ReasonCode, where: str) -> TransportError:
    if rc.value in AUTH_CODES:
        return AuthError(f"The broker {where} refused the login: {rc}.", "Check the user name and password.")
    return TransportError(f"The broker {where} refused the connection: {rc}.")


def connect_error(exc: BaseException, where: str, timeout: float, settings: TlsSettings | None) -> TransportError:
    """Explain an exception from paho's (blocking) connect."""
    if isinstance(exc, ssl.SSLError):
        return tls_error(exc, where, settings or TlsSettings())
    if settings is not None and isinstance(exc, ConnectionResetError | ssl.SSLEOFError | BrokenPipeError):
        return TransportError(f"The broker {where} dropped the connection during the TLS handshake: it does not "
                              "speak TLS on this port, or refused us.",
                              "Use mqtt:// for a plain broker, or the broker's TLS port (often 8883).")
    if isinstance(exc, TimeoutError):
        return TransportError(f"The broker {where} did not answer within {timeout:g} s.",
                              "Check the address, the link and any firewall in between.")
    if isinstance(exc, ConnectionRefusedError):
        return TransportError(f"The broker {where} refused the connection.",
                              "Is the broker running, and is the port right?")
    return TransportError(f"Cannot reach the broker {where}: {exc}.", "Check the address and the link.")


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


async def connect_socket(client: paho.Client, host: str, port: int, keepalive: int, timeout: float,
                         tls: TlsSettings | None) -> None:
    """paho's blocking connect (TCP, then the TLS handshake) in an executor, so a slow broker never stalls the loop.

    paho's own ``connect_timeout`` bounds the executor call. If the caller is cancelled meanwhile, the
    thread cannot be stopped: once it has connected, the socket it made is closed (nothing else would:
    paho's loop thread never starts for this client).
    """
    loop = asyncio.get_running_loop()
    client.connect_timeout = timeout
    pending = loop.run_in_executor(None, client.connect, host, port, keepalive)
    try:
        await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(lambda done: _close_after_cancel(client, done))
        raise
    except (OSError, ValueError) as exc:  # ssl.SSLError, TimeoutError and socket.gaierror are OSErrors
        raise connect_error(exc, f"{host}:{port}", timeout, tls) from exc


def _close_after_cancel(client: paho.Client, connected: asyncio.Future[Any]) -> None:
    if connected.cancelled() or connected.exception() is not None:
        return  # no socket was made (and the error is consumed, so asyncio does not log it)
    close_leftover_socket(client)


async def await_connack(connack: asyncio.Future[Any], where: str, timeout: float) -> None:
    """Wait for the broker's CONNACK; a silence or a refusal becomes an error a person can act on."""
    try:
        rc = await asyncio.wait_for(connack, timeout)
    except TimeoutError as exc:
        raise TransportError(f"The broker {where} accepted TCP but never acknowledged the MQTT connect.",
                             "Is this really an MQTT port (and TLS on mqtts://)?") from exc
    if rc.is_failure:
        raise connack_error(rc, where)


class MqttClient:
    """One paho client driven from asyncio: connect, publish (waits for the broker's ack), subscribe.

    paho's network thread runs the socket; callbacks hop onto the loop with call_soon_threadsafe.
    When the broker goes away (a restart), paho reconnects by itself and the subscriptions are made
    again (the session is clean, so the broker has forgotten them); ``reconnects`` counts those.
    """

    def __init__(self, host: str, port: int, *, tls: TlsSettings | None = None,
                 protocol: MQTTProtocolVersion = paho.MQTTv311, username: str | None = None,
                 password: str | None = None, connect_timeout: float = 10.0, keepalive: int = KEEPALIVE) -> None:
        self.where = f"{host}:{port}"
        self.host, self.port, self.tls, self.connect_timeout = host, port, tls, connect_timeout
        self.keepalive = keepalive
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._client = c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"siteline-cli-{uuid.uuid4().hex[:12]}",
                                       protocol=protocol)
        if username:
            c.username_pw_set(username, password)
        if tls is not None:
            c.tls_set_context(tls_context(tls))
        self._connack: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._last_error = ""
        self._subscriptions: list[tuple[str, int]] = []  # read in paho's thread to subscribe again
        self._was_connected = False  # paho's thread only
        self.reconnects = 0
        self._closing = False
        # Told (on the loop) when the link drops and when it is back: a subscriber should not just fall silent.
        self.on_link_change: Callable[[str], None] | None = None
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self._hop(self._on_disconnect, rc)
        c.on_publish = lambda _c, _u, mid, _rc, _p: self._hop(self._ack, mid)
        c.on_subscribe = lambda _c, _u, mid, _codes, _p: self._hop(self._ack, mid)
        c.on_message = lambda _c, _u, m: self._hop(self.messages.put_nowait,
                                                   Message(m.topic, bytes(m.payload), m.qos, bool(m.retain)))
        c.on_log = self._on_log

    def _hop(self, func: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(func, *args)

    def _on_log(self, _c: paho.Client, _u: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR and not self._last_error:
            self._last_error = text

    def _on_connect(self, c: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        """paho's thread: the first CONNACK goes to connect(); after a reconnect, subscribe again right here."""
        if self._was_connected:
            if not rc.is_failure:
                self.reconnects += 1
                log.info("reconnected to the broker %s; subscribing again to %d topics", self.where,
                         len(self._subscriptions))
                if self._subscriptions:
                    c.subscribe(list(self._subscriptions))
                self._hop(self._tell, f"reconnected to the broker {self.where}")
            return
        self._was_connected = not rc.is_failure
        self._hop(self._on_connack, rc)

    def _on_connack(self, rc: ReasonCode) -> None:
        if not self._connack.done():
            self._connack.set_result(rc)

    def _on_disconnect(self, rc: ReasonCode) -> None:
        if not self._connack.done():
            self._connack.set_exception(early_close_error(self.where, rc, self.tls is not None, self._last_error))
        elif not self._closing:
            self._tell(f"lost the broker {self.where} ({rc}); reconnecting")
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(TransportError(f"Lost the broker {self.where} ({rc}).", "Retry."))

    def _ack(self, mid: int) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def connect(self) -> None:
        c = self._client
        await connect_socket(c, self.host, self.port, self.keepalive, self.connect_timeout, self.tls)
        c.loop_start()
        await await_connack(self._connack, self.where, self.connect_timeout)

    async def _await_ack(self, mid: int, what: str) -> None:
        fut = self._acks.setdefault(mid, self._loop.create_future())
        try:
            await asyncio.wait_for(fut, self.connect_timeout)
        except TimeoutError as exc:
            raise TransportError(f"The broker {self.where} did not acknowledge the {what} in time.", "Retry.") from exc

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        # paho's on_publish only reaches _ack through the loop, so registering after publish() is not late.
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise TransportError(f"Could not publish to {topic}: {paho.error_string(info.rc)}.")
        await self._await_ack(info.mid, "publish")

    async def subscribe(self, topics: Sequence[str], qos: int = 0) -> None:
        wanted = [(t, qos) for t in topics]
        result, mid = self._client.subscribe(wanted)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise TransportError(f"Could not subscribe: {paho.error_string(result)}.")
        await self._await_ack(mid, "subscription")
        self._subscriptions = [*self._subscriptions, *wanted]  # a new list: paho's thread may be reading the old

    def _tell(self, text: str) -> None:
        if self.on_link_change is not None:
            self.on_link_change(text)

    async def close(self) -> None:
        self._closing = True
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        close_leftover_socket(self._client)


def close_leftover_socket(client: paho.Client) -> None:
    """Close the socket paho keeps when its thread stopped before it handled our DISCONNECT (seen with TLS)."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
