"""The MQTT link to the control plane: one persistent-session connection, QoS 1 publishes with their acks.

Connection set-up and its errors come from :mod:`siteline.core.mqtt_client` (TLS context, the blocking
connect in an executor, the CONNACK wait, errors a technician can act on); this module adds what the
outbox needs: a client id that stays the same for this installation (so the broker keeps our session
and subscriptions across drops), an in-flight window, a future per publish that resolves on its PUBACK
with an honest count of the bytes that crossed the wire, and "the link dropped" for everything unacked.

A link is used once: after a drop the syncer makes a new one. paho never reconnects by itself here, so
an unacked message is never resent behind the syncer's back (the syncer resends it, from the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from siteline import paths
from siteline.core.errors import SitelineError, TransportError
from siteline.core.mqtt_client import (
    VERSIONS,
    MqttSettingsError,
    TlsSettings,
    await_connack,
    close_leftover_socket,
    connect_socket,
    early_close_error,
    tls_context,
)
from siteline.core.outbox.envelope import WireMessage
from siteline.core.outbox.settings import ControlPlaneSettings
from siteline.core.redact import safe_url

log = logging.getLogger(__name__)

KEEPALIVE = 30
SESSION_EXPIRY = 7 * 24 * 3600  # MQTT 5: the broker keeps our session (subscriptions, inbound queue) a week
PERMANENT_CODES = (0x87, 0x95)  # not authorised, packet too large: sending the same message again cannot help
PUBACK_BYTES = 4  # fixed header 2 + packet id 2 (MQTT 5 omits the reason code on success)
TLS_RECORD_OVERHEAD = 22  # TLS 1.3 AEAD: 5 header + 1 content type + 16 tag, per record of up to 16 KiB
TLS_HANDSHAKE_ESTIMATE = 5000  # certificates dominate; an estimate, counted once per TLS connect on metered links
CLIENT_ID_FILE = "control-plane-client-id"


class SyncConfigError(SitelineError):
    """The control-plane settings cannot work as given (plain MQTT not allowed, a bad URL)."""


class LinkDropped(TransportError):  # noqa: N818 (an event, not a mistake)
    """The connection to the control plane ended; unacknowledged messages were not delivered (maybe)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PublishOutcome:
    """The broker's answer to one message: ``ok``, or the reason code's text (``permanent``: never retry)."""

    ok: bool
    reason: str
    permanent: bool
    nbytes: int


def parse_url(url: str, allow_plain: bool) -> Endpoint:
    """``mqtts://host[:8883]``; ``mqtt://host[:1883]`` only when the user allowed plain MQTT. The URL holds no
    login: the user name is a setting of its own and the password lives in the vault."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise SyncConfigError(f"'{safe_url(url)}' is not a broker URL: {exc}.", "Use mqtts://host:8883.") from exc
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise SyncConfigError(f"'{safe_url(url)}' is not a broker URL.", "Use mqtts://host:8883.")
    if "@" in parts.netloc:
        raise SyncConfigError(f"The broker URL '{safe_url(url)}' holds a user name or password.",
                              "Remove it from the URL: give the user name with --username (or in the settings); "
                              "the password comes from the vault.")
    if parts.scheme == "mqtt" and not allow_plain:
        raise SyncConfigError(
            f"The control plane {parts.hostname} is given as plain mqtt://, which sends the outbox unencrypted.",
            "Use mqtts://; or, if the link is trusted, allow plain MQTT (allow_plain in control-plane.json, "
            "--plain-ok on the command line).")
    tls = parts.scheme == "mqtts"
    return Endpoint(parts.hostname, port or (8883 if tls else 1883), tls)


def installation_client_id(technician: str) -> str:
    """``siteline-<technician>-<8 hex>``: the 8 hex are made once and kept in the state folder, so the broker
    recognises this installation's session after a restart, a crash or a cut."""
    path = paths.state_dir() / CLIENT_ID_FILE
    try:
        stable = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        stable = ""
    if len(stable) != 8 or any(c not in "0123456789abcdef" for c in stable):
        stable = secrets.token_hex(4)
        with contextlib.suppress(OSError):  # a read-only state folder: this run still works with a fresh id
            path.write_text(stable + "\n", encoding="ascii")
    return f"siteline-{technician}-{stable}"


def _varint_len(n: int) -> int:
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size


def publish_bytes(topic: str, payload_len: int, v5: bool, tls: bool) -> int:
    """Bytes a QoS 1 PUBLISH and its PUBACK put on the wire (MQTT framing; TLS records when ``tls``)."""
    remaining = 2 + len(topic.encode()) + 2 + (1 if v5 else 0) + payload_len  # no properties: length 0
    total = 1 + _varint_len(remaining) + remaining + PUBACK_BYTES
    if tls:
        total += TLS_RECORD_OVERHEAD * (remaining // 16384 + 2)  # the publish's records and the ack's
    return total


def connect_bytes(cid: str, username: str | None, password: str | None, v5: bool, topics: Sequence[str],
                  tls: bool) -> int:
    """Bytes of CONNECT/CONNACK, SUBSCRIBE/SUBACK and DISCONNECT for one session (metered links count them)."""
    body = 10 + 2 + len(cid.encode())
    body += 2 + len(username.encode()) if username else 0
    body += 2 + len(password.encode()) if password else 0
    body += 6 if v5 else 0  # property length + session expiry interval
    total = 1 + _varint_len(body) + body + (5 if v5 else 4) + 2
    if topics:
        sub = 2 + (1 if v5 else 0) + sum(2 + len(t.encode()) + 1 for t in topics)
        total += 1 + _varint_len(sub) + sub + 4 + len(topics) + (1 if v5 else 0)
    return total + (TLS_HANDSHAKE_ESTIMATE if tls else 0)


def _no_passphrase() -> str:
    raise ValueError("the client key is encrypted and no passphrase was given")


class _SessionClient(paho.Client):
    """A paho client whose connect keeps the MQTT 5 session (clean start off, a session expiry):
    ``mqtt_client.connect_socket`` calls ``connect(host, port, keepalive)`` only."""

    persistent_v5 = False

    def connect(self, host: str, port: int = 1883, keepalive: int = 60, bind_address: str = "",
                bind_port: int = 0, clean_start: Any = paho.MQTT_CLEAN_START_FIRST_ONLY,
                properties: Properties | None = None) -> MQTTErrorCode:
        if self.persistent_v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho has no annotations here
            properties.SessionExpiryInterval = SESSION_EXPIRY
            clean_start = False
        return super().connect(host, port, keepalive, bind_address, bind_port, clean_start, properties)


class ControlLink:
    """One connection to the control plane's broker. ``publish`` returns a future of :class:`PublishOutcome`
    (or :class:`LinkDropped`); ``window`` is how many may be unacknowledged at once."""

    def __init__(self, settings: ControlPlaneSettings, *, password: str | None = None,
                 key_passphrase: str | None = None, window: int = 32, connect_timeout: float = 10.0,
                 on_message: Callable[[str, bytes], None] | None = None,
                 on_drop: Callable[[str], None] | None = None, client_id: str | None = None) -> None:
        self.endpoint = parse_url(settings.url, settings.allow_plain)
        if settings.protocol not in VERSIONS:
            raise SyncConfigError(f"MQTT version '{settings.protocol[:20]}' is not supported.", "Use 5 or 3.1.1.")
        self.settings, self.window, self.connect_timeout = settings, max(1, window), connect_timeout
        self.v5 = VERSIONS[settings.protocol] == paho.MQTTv5
        self.client_id = client_id or installation_client_id(settings.technician)
        self.alive = False
        self.session_present = False
        self.drop_reason = ""
        self._password, self._key_passphrase = password, key_passphrase
        self._on_message, self._on_drop = on_message, on_drop
        self._loop = asyncio.get_running_loop()
        self._acks: dict[int, tuple[asyncio.Future[PublishOutcome], int]] = {}
        self._sub_acks: dict[int, asyncio.Future[None]] = {}
        self._connack: asyncio.Future[ReasonCode] = self._loop.create_future()
        self._last_error = ""
        self._client = self._make_client()

    def _tls(self) -> TlsSettings | None:
        s = self.settings
        return TlsSettings(s.ca, s.cert, s.key) if self.endpoint.tls else None

    def _make_client(self) -> _SessionClient:
        protocol = VERSIONS[self.settings.protocol]
        c = _SessionClient(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol,
                           clean_session=None if self.v5 else False, reconnect_on_failure=False)
        c.persistent_v5 = self.v5
        if self.settings.username:
            c.username_pw_set(self.settings.username, self._password)
        tls = self._tls()
        if tls is not None:
            c.tls_set_context(self._tls_context(tls))
        c.max_inflight_messages_set(self.window)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda _c, _u, _f, rc, _p: self._hop(self._dropped, str(rc))
        c.on_publish = lambda _c, _u, mid, rc, _p: self._hop(self._acked, mid, rc)
        c.on_subscribe = lambda _c, _u, mid, _codes, _p: self._hop(self._subscribed, mid)
        c.on_message = lambda _c, _u, m: self._hop(self._message, m.topic, bytes(m.payload))
        c.on_log = self._on_log
        return c

    def _tls_context(self, tls: TlsSettings) -> ssl.SSLContext:
        """mqtt_client's verifying context; the client certificate is loaded here, with the key's passphrase
        from the vault, and never with OpenSSL's default of asking on the terminal for it."""
        if not tls.cert:
            return tls_context(tls)
        ctx = tls_context(TlsSettings(tls.ca))
        try:
            ctx.load_cert_chain(tls.cert, tls.key, password=self._key_passphrase or _no_passphrase)
        except (OSError, ValueError) as exc:
            hint = ("Check the key's passphrase in the vault." if self._key_passphrase else
                    "If the key is encrypted, keep its passphrase in the vault (key_passphrase_ref).")
            raise MqttSettingsError(f"The client certificate {tls.cert} or its key cannot be used: {exc}.",
                                    hint) from exc
        return ctx

    # -- paho's thread ---------------------------------------------------------------------------

    def _hop(self, func: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(func, *args)

    def _on_log(self, _c: paho.Client, _u: Any, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR and not self._last_error:
            self._last_error = text

    def _on_connect(self, _c: paho.Client, _u: Any, flags: Any, rc: ReasonCode, props: Properties | None) -> None:
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self._hop(self._connected, rc, receive_max, bool(getattr(flags, "session_present", False)))

    # -- the loop --------------------------------------------------------------------------------

    def _connected(self, rc: ReasonCode, receive_max: int | None, session_present: bool) -> None:
        self.session_present = session_present  # the broker still had our session (subscriptions, queued inbound)
        if isinstance(receive_max, int) and receive_max > 0:
            self.window = min(self.window, receive_max)  # MQTT 5: the broker says how many it takes at once
        if not self._connack.done():
            self._connack.set_result(rc)

    def _dropped(self, reason: str) -> None:
        if not self._connack.done():
            tls = self.endpoint.tls
            self._connack.set_exception(early_close_error(self.endpoint.where, reason, tls, self._last_error))
            return
        if not self.alive:
            return
        self.alive = False
        why = "the connection broke" if reason == "Unspecified error" else reason  # paho's words for a plain EOF
        self.drop_reason = f"Lost the control plane {self.endpoint.where} ({why})."
        error = LinkDropped(self.drop_reason, "The items stay in the outbox and go when the link is back.")
        for fut, _n in self._acks.values():
            if not fut.done():
                fut.set_exception(error)
        self._acks.clear()
        for sub in self._sub_acks.values():
            if not sub.done():
                sub.set_exception(error)
        self._sub_acks.clear()
        self._client.disconnect()  # stops paho's thread from reconnecting (and resending) on its own
        if self._on_drop is not None:
            self._on_drop(self.drop_reason)

    def _acked(self, mid: int, rc: ReasonCode) -> None:
        entry = self._acks.pop(mid, None)
        if entry is None or entry[0].done():
            return
        fut, nbytes = entry
        if rc.is_failure:
            fut.set_result(PublishOutcome(False, f"the broker refused it: {rc} (0x{rc.value:02x})",
                                          rc.value in PERMANENT_CODES, nbytes))
        else:
            fut.set_result(PublishOutcome(True, "", False, nbytes))

    def _subscribed(self, mid: int) -> None:
        fut = self._sub_acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _message(self, topic: str, payload: bytes) -> None:
        if self._on_message is not None:
            self._on_message(topic, payload)

    async def connect(self) -> None:
        """Connect and wait for the CONNACK; raises TransportError/AuthError a technician can act on."""
        c = self._client
        await connect_socket(c, self.endpoint.host, self.endpoint.port, KEEPALIVE, self.connect_timeout, self._tls())
        c.loop_start()
        try:
            await await_connack(self._connack, self.endpoint.where, self.connect_timeout)
        except BaseException:
            await self.close()
            raise
        self.alive = True

    def publish(self, message: WireMessage) -> asyncio.Future[PublishOutcome]:
        """Send one message at QoS 1 (never retained, no expiry: the outbox must not expire in transit)."""
        fut: asyncio.Future[PublishOutcome] = self._loop.create_future()
        if not self.alive:
            fut.set_exception(LinkDropped(self.drop_reason or "Not connected to the control plane.", "Retry."))
            return fut
        info = self._client.publish(message.topic, message.payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            fut.set_exception(LinkDropped(f"Could not publish to {message.topic}: {paho.error_string(info.rc)}.",
                                          "Retry."))
            if info.rc in (MQTTErrorCode.MQTT_ERR_NO_CONN, MQTTErrorCode.MQTT_ERR_CONN_LOST):
                self._dropped(paho.error_string(info.rc))  # paho saw the drop first: stop publishing into it
            return fut
        # on_publish reaches _acked through the loop, so registering after publish() is not too late.
        self._acks[info.mid] = (fut, publish_bytes(message.topic, len(message.payload), self.v5, self.endpoint.tls))
        return fut

    async def subscribe(self, topics: Sequence[str]) -> None:
        if not topics:
            return
        result, mid = self._client.subscribe([(t, 1) for t in topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise LinkDropped(f"Could not subscribe: {paho.error_string(result)}.", "Retry.")
        fut = self._sub_acks.setdefault(mid, self._loop.create_future())
        try:
            await asyncio.wait_for(fut, self.connect_timeout)
        except TimeoutError as exc:
            raise LinkDropped(f"The control plane {self.endpoint.where} did not acknowledge the subscription.",
                              "Retry.") from exc

    def session_bytes(self, topics: Sequence[str]) -> int:
        return connect_bytes(self.client_id, self.settings.username, self._password, self.v5, topics,
                             self.endpoint.tls)

    async def close(self) -> None:
        self.alive = False
        c = self._client
        c.disconnect()
        await asyncio.to_thread(c.loop_stop)
        close_leftover_socket(c)
        for fut, _n in self._acks.values():
            if not fut.done():
                fut.set_exception(LinkDropped("The link to the control plane was closed.", "Retry."))
        self._acks.clear()
