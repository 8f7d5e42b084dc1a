"""The control plane's side of provisioning, for the tests: a CA made with the openssl CLI, and a consumer that
reads the CSR (and provisioning) items Siteline's sync publishes, signs them and publishes the certificates back.

The CA is what an operator would run (openssl, not our code): ``openssl ca`` signs with an exact start and end
time, so a test can ask for a certificate that lives ten minutes, one already expired or one not valid yet.
The consumer is a paho subscriber on ``siteline/v1/<technician>/outbox/#`` (envelopes decoded and checked with
``siteline.core.outbox.envelope.decode``, as the documented contract says a consumer should); certificates go
back retained, QoS 1, on ``siteline/v1/<technician>/in/certificates/<site>/<device>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import paho.mqtt.publish as paho_publish
from paho.mqtt.enums import CallbackAPIVersion

from siteline.core.outbox.envelope import decode
from siteline.core.outbox.inbound import certificate_topic
from tests.peers import require_tool

_CONFIG = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
x509_extensions = device_cert

[ anything ]
commonName = supplied
organizationalUnitName = optional
organizationName = optional
serialNumber = optional
countryName = optional
localityName = optional

[ device_cert ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    out = subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    return out.stdout


def _asn1_time(when: dt.datetime) -> str:
    """openssl ca's -startdate/-enddate form (GeneralizedTime, UTC)."""
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


class ControlPlaneCA:
    """A self-signed EC P-256 CA in ``directory`` (created with the openssl CLI; nothing leaves that folder)."""

    def __init__(self, directory: Path, name: str = "Siteline test device CA") -> None:
        require_tool("openssl")
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "issued").mkdir(exist_ok=True)
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        (directory / "ca.cnf").write_text(_CONFIG.format(dir=directory))
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3",
                 "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"), "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.signed: list[str] = []  # every certificate PEM issued, in order

    @property
    def certificate_pem(self) -> str:
        return (self.dir / "ca.pem").read_text()

    def sign(self, csr_pem: str, lifetime: dt.timedelta = dt.timedelta(days=1), *,
             not_before: dt.datetime | None = None) -> str:
        """The certificate (PEM) for ``csr_pem``, valid from ``not_before`` (default: a minute ago, for clock
        skew) for ``lifetime``. A start in the past with a short lifetime gives an expired certificate."""
        start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        n = len(self.signed)
        csr = self.dir / f"req-{n}.csr"
        out = self.dir / f"cert-{n}.pem"
        csr.write_text(csr_pem)
        _openssl("ca", "-batch", "-config", str(self.dir / "ca.cnf"), "-in", str(csr), "-out", str(out),
                 "-notext", "-startdate", _asn1_time(start), "-enddate", _asn1_time(start + lifetime))
        pem = out.read_text()
        self.signed.append(pem)
        return pem

    def certificate_doc(self, site: str, device: str, certificate_pem: str, *, chain: bool = True) -> dict[str, Any]:
        """The retained document the control plane publishes (docs/control-plane.md, "Certificates")."""
        doc: dict[str, Any] = {"v": 1, "site": site, "device": device, "certificate": certificate_pem}
        if chain:
            doc["chain"] = [self.certificate_pem]
        return doc


def csr_subject(csr_pem: str) -> str:
    """The CSR's subject as openssl prints it (``CN = gw-1, OU = north``); also checks its signature."""
    text = _openssl("req", "-noout", "-verify", "-subject", "-nameopt", "oneline", stdin=csr_pem.encode()).decode()
    return text.split("subject=", 1)[1].strip() if "subject=" in text else text.strip()


def public_key_sha256(pem: str) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo of a certificate or CSR (the hash the steps record)."""
    kind = "x509" if "CERTIFICATE-----" in pem and "REQUEST" not in pem else "req"
    public = _openssl(kind, "-noout", "-pubkey", stdin=pem.encode())
    der = _openssl("pkey", "-pubin", "-outform", "DER", stdin=public)
    return hashlib.sha256(der).hexdigest()


def publish_certificate(port: int, technician: str, doc: Mapping[str, Any], host: str = "127.0.0.1") -> str:
    """Publish ``doc`` retained (QoS 1) on its device's certificate topic; returns the topic."""
    topic = certificate_topic(technician, str(doc["site"]), str(doc["device"]))
    paho_publish.single(topic, json.dumps(doc), qos=1, retain=True, hostname=host, port=port,
                        client_id=f"ops-publisher-{time.time_ns()}",
                        protocol=paho.MQTTv311)
    return topic


@dataclass(frozen=True)
class Received:
    topic: str
    envelope: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.envelope["kind"])

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.envelope["payload"]
        return payload


class CsrConsumer:
    """The operator's consumer: every envelope published under the technician's outbox, checked and kept.

    With ``ca`` set it also answers each ``csr`` item by signing it and publishing the certificate back retained
    (what a control plane's enrolment service does)."""

    def __init__(self, port: int, technician: str, *, ca: ControlPlaneCA | None = None,
                 lifetime: dt.timedelta = dt.timedelta(days=1)) -> None:
        self.port, self.technician, self.ca, self.lifetime = port, technician, ca, lifetime
        self.received: list[Received] = []
        self.bad: list[str] = []
        self.answered: dict[str, str] = {}  # csr item id -> certificate topic
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        c = self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ca-consumer-{time.time_ns()}")
        c.on_connect = lambda cl, _u, _f, _rc, _p: cl.subscribe(f"siteline/v1/{technician}/outbox/#", qos=1)
        c.on_subscribe = lambda *_a: self._subscribed.set()
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, 30)
        c.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError("the control plane's consumer could not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            envelopes = decode(bytes(msg.payload))
        except Exception as exc:  # a test peer: keep going, the test fails on self.bad
            self.bad.append(f"{msg.topic}: {exc}")
            return
        with self._lock:
            self.received.extend(Received(msg.topic, env) for env in envelopes)
        if self.ca is not None:
            for env in envelopes:
                if env["kind"] == "csr" and env["id"] not in self.answered:
                    self._answer(env)

    def _answer(self, env: dict[str, Any]) -> None:
        assert self.ca is not None
        payload = env["payload"]
        try:
            pem = self.ca.sign(payload["csr"], self.lifetime)
            doc = self.ca.certificate_doc(payload.get("site", env["site"]), payload.get("device", env["device"]), pem)
            self.answered[env["id"]] = publish_certificate(self.port, self.technician, doc)
        except Exception as exc:
            self.bad.append(f"could not answer csr {env['id']}: {exc}")

    def items(self, kind: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if kind is None or r.kind == kind]

    def wait_for(self, ids: Iterable[str], timeout: float = 20.0) -> set[str]:
        """Wait until every item id arrived; returns those still missing."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                missing = wanted - {str(r.envelope["id"]) for r in self.received}
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
