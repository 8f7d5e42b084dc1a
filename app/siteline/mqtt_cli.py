"""`siteline mqtt sub|pub`: talk to a broker directly, as mosquitto_sub/_pub do, with Siteline's errors.

    siteline mqtt sub mqtts://broker:8883 'edge/+/+/status' --ca ca.pem --count 1
    siteline mqtt pub mqtt://user@broker edge/site-a/gw1/cmd/req '{"id": ...}' --qos 1

The URL names the broker only (no topic); its query may carry ``ca=``, ``cert=``, ``key=``,
``insecure=1`` and ``v=5`` like a device target; command-line options win over the query.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from siteline.core.errors import AuthError, SitelineError, TargetError, TransportError
from siteline.core.mqtt_client import (
    MqttClient,
    MqttSettingsError,
    TlsSettings,
    keepalive_from_options,
    protocol_from_options,
)

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 2, 4, 5
URL_OPTIONS = ("ca", "cert", "key", "insecure", "v", "keepalive")
EPILOG = """exit codes:
  0  ok
  1  sub: fewer than --count messages arrived within --duration
  2  usage: a bad URL, option or file
  4  unreachable: no broker within --timeout, TLS failed, or the link broke
  5  authentication failed: user name/password or client certificate refused
The password comes from SITELINE_PASSWORD (the user name from the URL: mqtt://user@broker)."""


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: TlsSettings | None
    options: dict[str, str]
    user: str | None


def parse_broker_url(text: str, args: argparse.Namespace) -> Broker:
    """``mqtt[s]://[user@]host[:port][?options]`` plus the TLS options of the command line."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"'{text[:60]}' is not a broker URL: {exc}.", "Use mqtt://host:1883 or mqtts://host:8883.") \
            from exc
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise TargetError(f"'{text[:60]}' is not a broker URL.", "Use mqtt://host:1883 or mqtts://host:8883.")
    if parts.path not in ("", "/") or parts.fragment:
        raise TargetError("The broker URL names no topic.", "Give the topics after the URL.")
    if parts.password is not None:
        raise TargetError("Passwords do not belong in a URL.", "Set SITELINE_PASSWORD instead.")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(URL_OPTIONS))
    if unknown:
        raise TargetError(f"'{unknown[0]}' is not a broker URL option.", f"Known options: {', '.join(URL_OPTIONS)}.")
    for name in ("ca", "cert", "key"):
        if getattr(args, name):
            options[name] = getattr(args, name)
    if args.insecure:
        options["insecure"] = "1"
    if args.mqtt_version:
        options["v"] = args.mqtt_version
    tls = TlsSettings.from_options(options) if parts.scheme == "mqtts" else None
    if tls is None and any(options.get(k) for k in ("ca", "cert", "key")):
        raise TargetError("--ca, --cert and --key need TLS.", "Use an mqtts:// URL (the port never implies TLS).")
    default_port = 8883 if parts.scheme == "mqtts" else 1883
    user = unquote(parts.username) if parts.username else None
    return Broker(parts.hostname, port or default_port, tls, options, user)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="broker URL: mqtt://host[:1883] or mqtts://host[:8883] (TLS)")
    parser.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) that signed the broker's certificate")
    parser.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    parser.add_argument("--key", metavar="FILE", help="client private key (PEM)")
    parser.add_argument("--insecure", action="store_true", help="do not check the name in the broker's certificate")
    parser.add_argument("--mqtt-version", choices=("3.1.1", "5"), help="protocol (default 3.1.1, or v= in the URL)")
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=0, help="quality of service (default 0)")
    parser.add_argument("--timeout", type=float, default=20.0, help="give up connecting after this many seconds")


def add_mqtt_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mqtt sub`` and ``mqtt pub`` on the ``siteline`` command's subparsers."""
    mqtt = sub.add_parser("mqtt", help="subscribe or publish on an MQTT broker")
    actions = mqtt.add_subparsers(dest="mqtt_command", metavar="ACTION", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    s = actions.add_parser("sub", help="print messages on topics (wildcards + and # allowed)", epilog=EPILOG,
                           formatter_class=fmt)
    _common(s)
    s.add_argument("topics", nargs="+", metavar="TOPIC")
    s.add_argument("--count", type=int, default=0, help="exit after this many messages (default: never)")
    s.add_argument("--duration", type=float, default=0.0, help="exit after this many seconds (default: never)")
    s.set_defaults(handler=run_mqtt)
    p = actions.add_parser("pub", help="publish one message", epilog=EPILOG, formatter_class=fmt)
    _common(p)
    p.add_argument("topic")
    p.add_argument("payload")
    p.add_argument("--retain", action="store_true", help="ask the broker to keep the message for late subscribers")
    p.set_defaults(handler=run_mqtt)


def run_mqtt(args: argparse.Namespace) -> int:
    """Handler for both actions: one line on stderr and an exit code for every failure."""
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
    except AuthError as exc:
        return _fail(exc, EXIT_AUTH)
    except MqttSettingsError as exc:  # a bad local file or setting: the caller's to fix, not the link's
        return _fail(exc, EXIT_USAGE)
    except TransportError as exc:
        return _fail(exc, EXIT_UNREACHABLE)
    except SitelineError as exc:
        return _fail(exc, EXIT_USAGE)


def _fail(exc: SitelineError, code: int) -> int:
    print(f"siteline: {exc}", file=sys.stderr)
    return code


async def _run(args: argparse.Namespace) -> int:
    broker = parse_broker_url(args.url, args)
    client = MqttClient(broker.host, broker.port, tls=broker.tls, protocol=protocol_from_options(broker.options),
                        username=broker.user, password=os.environ.get("SITELINE_PASSWORD"),
                        connect_timeout=args.timeout, keepalive=keepalive_from_options(broker.options))
    try:
        await client.connect()
        if args.mqtt_command == "pub":
            from siteline.cli_audit import UNLISTED_SITE, record_for
            from siteline.core.keep import publish_detail

            payload = args.payload.encode()
            # A message to a device's topics can change the device: audited, with the payload's hash only
            # (it may hold a token or a password).
            detail = {"broker": f"{broker.host}:{broker.port}", **publish_detail(args.topic, payload, args.qos,
                                                                                  args.retain)}
            try:
                await client.publish(args.topic, payload, args.qos, args.retain)
            except SitelineError as exc:
                record_for(UNLISTED_SITE, f"{broker.host}:{broker.port}", "mqtt-publish",
                           {**detail, "error": str(exc)[:500]}, "error")
                raise
            record_for(UNLISTED_SITE, f"{broker.host}:{broker.port}", "mqtt-publish", detail)
            return EXIT_OK
        return await _subscribe(client, args)
    finally:
        await client.close()


async def _subscribe(client: MqttClient, args: argparse.Namespace) -> int:
    if args.count < 0 or args.duration < 0:
        raise TargetError("--count and --duration cannot be negative.")
    client.on_link_change = lambda text: print(f"siteline: {text}", file=sys.stderr, flush=True)
    await client.subscribe(args.topics, args.qos)
    received = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.duration or None):
            while not args.count or received < args.count:
                msg = await client.messages.get()
                received += 1
                print(f"{msg.topic} {msg.payload.decode('utf-8', 'replace')}", flush=True)
    if args.count and received < args.count:
        print(f"siteline: only {received} of {args.count} messages arrived within {args.duration:g} s.",
              file=sys.stderr)
        return 1
    return EXIT_OK
