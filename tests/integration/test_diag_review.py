"""Review of `siteline diag` (issue 8) end to end: the real command against a simulated device over SSH, with
secrets planted in the forms a field device really holds them, and the CLI's exit codes and messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests.peers import free_port
from tests.peers.sim import PASSWORD, make_state, start_sim_process

from siteline.simulator import rootfs
from siteline.simulator.state import DeviceState

pytestmark = pytest.mark.timeout(120)

NM_PSK_WORDS = ("mango", "tango", "fandango")  # psk=mango tango fandango (NM keyfiles: to the end of the line)
BRIDGE_WORDS = ("open", "sesame", "please")  # mosquitto's remote_password: the rest of the line
KEY_BODY = "b3BlbnNzaC1rZXktdjEreviewbody"
JSON_SECRET = "jsonPwReview42"
IMEI = "356938035643809"


def plant(state: DeviceState) -> None:
    etc = rootfs.rootfs(state.root) / "etc"
    nm = etc / "NetworkManager/system-connections"
    nm.mkdir(parents=True, exist_ok=True)
    (nm / "site-wifi.nmconnection").write_text(
        "[wifi]\nssid=site\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=" + " ".join(NM_PSK_WORDS) + "\n")
    (etc / "mosquitto").mkdir(exist_ok=True)
    (etc / "mosquitto/mosquitto.conf").write_text(
        "connection cp\nremote_username gw01\nremote_password " + " ".join(BRIDGE_WORDS) + "\n"
        "password_file /etc/mosquitto/passwd\n")
    (etc / "siteline").mkdir(exist_ok=True)
    (etc / "siteline/agent.conf").write_text(
        "[agent]\nbroker = mqtts://cp.example:8883\nclient_key = -----BEGIN OPENSSH PRIVATE KEY-----\n"
        f"  {KEY_BODY}\n  -----END OPENSSH PRIVATE KEY-----\n")
    state.log(f'config pushed: {{"user": "gw01", "password": "{JSON_SECRET}"}}', unit="agent")
    state.log(f"modem 0: IMEI {IMEI} registered on 23415", unit="ModemManager")


def diag(home: Path, target: str, out: Path, *extra: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_HOME": str(home), "SITELINE_PASSWORD": PASSWORD}
    return subprocess.run([sys.executable, "-m", "siteline", "diag", target, "-o", str(out), "--accept-new-host-key",
                           "--logs", "100", *extra], capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def test_secrets_as_field_devices_hold_them_never_reach_the_zip(tmp_path: Path) -> None:
    """A support person is handed the zip: no word of the Wi-Fi key (NM keyfile, value with spaces), of the
    MQTT bridge password (mosquitto.conf, with spaces), of an OpenSSH private key in a config file, of a JSON
    password in the journal, nor the full IMEI, may be in any member. The command says where it saved the file
    and exits 0."""
    state = make_state(tmp_path / "dev")
    plant(state)
    device = start_sim_process(tmp_path / "dev")
    home = tmp_path / "home"
    try:
        done = diag(home, device.ready["ssh"], tmp_path / "b.zip", "--no-outbox")
    finally:
        device.stop()
    assert done.returncode == 0, done.stderr
    assert f"saved {tmp_path / 'b.zip'}" in done.stdout
    assert "not queued (--no-outbox)" in done.stdout
    with zipfile.ZipFile(io.BytesIO((tmp_path / "b.zip").read_bytes())) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    config = files["config/files.txt"].decode()
    assert "password_file /etc/mosquitto/passwd" in config  # a path support needs stays
    leaks = [(word, name) for word in (*NM_PSK_WORDS, *BRIDGE_WORDS[1:], KEY_BODY, JSON_SECRET, IMEI, PASSWORD)
             for name, data in files.items() if word.encode() in data]
    assert leaks == [], f"secrets in the bundle: {leaks}"
    manifest = json.loads(files["manifest.json"])
    assert manifest["partial"] is False


def test_a_missing_output_folder_is_refused_before_connecting(tmp_path: Path) -> None:
    """`-o /no/such/folder/x.zip`: the technician is told at once (usage, exit 2, naming the folder), not after
    connecting and collecting for minutes (today: it connects first; an unreachable device even hides the
    folder problem behind exit 4)."""
    port = free_port()  # nothing listens there
    out = tmp_path / "no-such-folder" / "x.zip"
    done = diag(tmp_path / "home", f"ssh://root@127.0.0.1:{port}", out, "--timeout", "3", timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert str(out.parent) in done.stderr
    assert not out.parent.exists()


def test_an_unreachable_device_is_exit_4_and_leaves_no_file(tmp_path: Path) -> None:
    """Guard: nothing listening: exit 4 with a message that says the device did not answer; no zip written."""
    port = free_port()
    out = tmp_path / "x.zip"
    done = diag(tmp_path / "home", f"ssh://root@127.0.0.1:{port}", out, "--timeout", "3", timeout=60)
    assert done.returncode == 4, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "home"] == []
