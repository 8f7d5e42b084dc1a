"""`siteline mqtt pub|sub` as a script sees them, against a real Mosquitto (plain and TLS)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.peers import free_port
from tests.peers.pki import Pki

from siteline.simulator.broker import BrokerHandle, start_mosquitto

pytestmark = [pytest.mark.peer("mosquitto")]
# Until cli.py registers the parser, the module's own entry point runs the same code.
ENTRY = [sys.executable, "-m", "siteline"]


def mqtt(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SITELINE_PASSWORD"}
    if password is not None:
        env["SITELINE_PASSWORD"] = password
    return subprocess.run([*ENTRY, "mqtt", *args], capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL, check=False)


def _tls(pki: Pki) -> list[str]:
    return ["--ca", str(pki.ca), "--cert", str(pki.client), "--key", str(pki.client_key)]


def _one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("siteline: ")
    return lines[0]


def test_pub_then_sub_over_tls(tls_broker: BrokerHandle, pki: Pki) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.port}"
    pub = mqtt("pub", url, "edge/a/gw1/note", "kept", "--retain", "--qos", "1", *_tls(pki))
    assert pub.returncode == 0, pub.stderr
    sub = mqtt("sub", url, "edge/+/gw1/#", "--count", "1", "--duration", "10", *_tls(pki))
    assert (sub.returncode, sub.stdout) == (0, "edge/a/gw1/note kept\n"), sub.stderr
    # A publish can change a device: it is in the audit trail, with the payload's hash, never the payload.
    from siteline.core.audit_verify import read_records
    from siteline.core.outbox.store import default_path

    published = [r.detail_obj() for r in read_records(default_path()) if r.action == "mqtt-publish"]
    mine = [d for d in published if d["topic"] == "edge/a/gw1/note" and d["retain"]]
    assert mine
    assert mine[-1]["sha256"] == hashlib.sha256(b"kept").hexdigest()
    assert "kept" not in json.dumps(mine[-1])


def test_sub_sees_live_messages_with_mqtt5(tls_broker: BrokerHandle, pki: Pki) -> None:
    url = f"mqtts://127.0.0.1:{tls_broker.port}?v=5"
    argv = [*ENTRY, "mqtt", "sub", url, "live/#", "--count", "2", "--duration", "20", *_tls(pki)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as sub:
        deadline = time.monotonic() + 15
        n = 0
        # The subscriber's SUBACK is not visible from here: publish until it has seen two messages.
        while sub.poll() is None and time.monotonic() < deadline:
            assert mqtt("pub", url, f"live/{n}", f"m{n}", "--qos", "1", *_tls(pki)).returncode == 0
            n += 1
        out, err = sub.communicate(timeout=10)
    assert sub.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("live/") for line in lines)


def test_sub_ends_after_duration_when_count_is_not_reached(mosquitto: BrokerHandle) -> None:
    done = mqtt("sub", f"mqtt://127.0.0.1:{mosquitto.port}", "quiet/#", "--count", "1", "--duration", "0.3")
    assert "only 0 of 1 messages arrived within 0.3 s" in _one_error_line(done, 1)


def test_exit_codes(tmp_path: Path, tls_broker: BrokerHandle, pki: Pki) -> None:
    tls_url = f"mqtts://127.0.0.1:{tls_broker.port}"
    line = _one_error_line(mqtt("pub", f"mqtt://127.0.0.1:{free_port()}", "t", "x", "--timeout", "3"), 4)
    assert "refused the connection" in line
    line = _one_error_line(mqtt("pub", tls_url, "t", "x", "--ca", str(pki.other_ca)), 4)
    assert f"not signed by the CA in {pki.other_ca}" in line
    line = _one_error_line(mqtt("pub", tls_url, "t", "x", "--ca", str(pki.ca)), 5)
    assert "requires a client certificate" in line
    line = _one_error_line(mqtt("pub", tls_url, "t", "x", "--ca", str(tmp_path / "missing.pem")), 2)
    assert "does not exist" in line
    assert "names no topic" in _one_error_line(mqtt("pub", f"{tls_url}/edge/a", "t", "x"), 2)
    assert "need TLS" in _one_error_line(mqtt("pub", "mqtt://127.0.0.1:1", "t", "x", "--ca", str(pki.ca)), 2)
    assert mqtt("pub", tls_url, "t", "x", "--qos", "3").returncode == 2  # argparse's own usage error


def test_password_from_environment(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path / "mosquitto-auth", users={"tech": "s3cret"}, acl={"tech": [("readwrite", "#")]})
    try:
        url = f"mqtt://tech@127.0.0.1:{broker.port}"
        assert mqtt("pub", url, "t", "x", password="s3cret").returncode == 0
        line = _one_error_line(mqtt("pub", url, "t", "x", password="wrong"), 5)
        assert "refused the login" in line
    finally:
        broker.stop()


def test_pub_keeps_the_qos_it_was_given(mosquitto: BrokerHandle) -> None:
    """QoS is chosen per use: what `pub --qos N` sends arrives at N for a subscriber that accepts up to 2."""
    import queue

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: queue.Queue[paho.MQTTMessage] = queue.Queue()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qos-watch-{time.monotonic_ns()}")
    sub.on_message = lambda _c, _u, m: got.put(m)
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("qos/#", qos=2)
    sub.loop_start()
    try:
        time.sleep(0.2)
        url = f"mqtt://127.0.0.1:{mosquitto.port}?keepalive=5"
        for qos in ("0", "1", "2"):
            assert mqtt("pub", url, f"qos/{qos}", "x", "--qos", qos).returncode == 0
        seen = {(m := got.get(timeout=5)).topic: m.qos for _ in range(3)}
        assert seen == {"qos/0": 0, "qos/1": 1, "qos/2": 2}
    finally:
        sub.disconnect()
        sub.loop_stop()
    bad = mqtt("pub", f"mqtt://127.0.0.1:{mosquitto.port}?keepalive=0", "t", "x")
    assert "keepalive" in _one_error_line(bad, 2)


def test_sub_survives_a_broker_restart(mosquitto: BrokerHandle) -> None:
    """The broker restarts under `sub`: it says so on stderr, reconnects, subscribes again and keeps printing."""
    import queue
    import threading

    url = f"mqtt://127.0.0.1:{mosquitto.port}?keepalive=2"
    proc = subprocess.Popen([*ENTRY, "mqtt", "sub", url, "live/#", "--count", "2", "--duration", "25", "--qos", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in proc.stdout], daemon=True)
    reader.start()

    def publish_until_printed(payload: str, seconds: float) -> str:
        """Publish until the subscriber prints something (a message sent before it subscribed is not seen)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            mqtt("pub", url, "live/x", payload, "--qos", "1")
            with contextlib.suppress(queue.Empty):
                return lines.get(timeout=0.5)
        raise AssertionError(f"the subscriber printed nothing for '{payload}' within {seconds} s")

    try:
        assert publish_until_printed("before", 10) == "live/x before"
        mosquitto.restart()
        assert publish_until_printed("after", 15) == "live/x after"
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.stderr is not None
    err = proc.stderr.read()
    reader.join(5)  # it has read to the end: the process is gone
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, err
    assert "lost the broker" in err
    assert "reconnected to the broker" in err
