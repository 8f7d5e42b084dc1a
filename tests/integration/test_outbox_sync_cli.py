"""`siteline outbox sync` as a process: exit codes and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.test_outbox_sync_support import TECH, Consumer, fill
from tests.peers import free_port

from siteline.core.outbox.model import NewItem
from siteline.core.outbox.settings import ControlPlaneSettings, save_settings
from siteline.core.outbox.store import Outbox
from siteline.simulator.broker import BrokerHandle

pytestmark = pytest.mark.peer("mosquitto")


def outbox_sync(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "SITELINE_CONTROL_PLANE_PASSWORD"}
    full_env.update({"SITELINE_HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "siteline.outbox_cli", "outbox", "sync", *args], capture_output=True,
                          text=True, timeout=60, env=full_env, stdin=subprocess.DEVNULL, check=False)


def _home_with_items(tmp_path: Path, n: int = 5) -> tuple[Path, list[str]]:
    home = tmp_path / "home"
    with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
        ids = fill(outbox, n)
    return home, ids


def test_sync_sends_everything_and_says_so(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    home, ids = _home_with_items(tmp_path)
    consumer = Consumer(mosquitto.port)
    try:
        done = outbox_sync(home, "--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--plain-ok",
                           "--technician", TECH)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("sent 5 items (")
        assert consumer.wait_for(ids, 10) == set()
        again = outbox_sync(home, "--broker", f"mqtt://127.0.0.1:{mosquitto.port}", "--plain-ok")
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("sent 0 items (0 bytes)")
    finally:
        consumer.close()


def test_sync_uses_the_saved_settings(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    home, _ids = _home_with_items(tmp_path)
    (home / "config").mkdir(parents=True, exist_ok=True)
    settings = ControlPlaneSettings(url=f"mqtt://127.0.0.1:{mosquitto.port}", technician=TECH, allow_plain=True,
                                    protocol="3.1.1")
    save_settings(settings, home / "config" / "control-plane.json")
    done = outbox_sync(home)
    assert done.returncode == 0, done.stderr


def test_no_settings_and_no_broker_says_how_to_set_up(tmp_path: Path) -> None:
    home, _ids = _home_with_items(tmp_path)
    done = outbox_sync(home)
    assert done.returncode == 2
    assert "No control plane is set up" in done.stderr
    assert "--broker" in done.stderr


def test_plain_mqtt_without_plain_ok_is_refused_with_how_to_allow_it(tmp_path: Path) -> None:
    home, _ids = _home_with_items(tmp_path)
    done = outbox_sync(home, "--broker", "mqtt://127.0.0.1:1883")
    assert done.returncode == 2
    assert "unencrypted" in done.stderr
    assert "--plain-ok" in done.stderr


def test_an_unreachable_broker_exits_4(tmp_path: Path) -> None:
    home, _ids = _home_with_items(tmp_path)
    done = outbox_sync(home, "--broker", f"mqtt://127.0.0.1:{free_port()}", "--plain-ok")
    assert done.returncode == 4
    assert "refused" in done.stderr


def test_items_held_by_the_budget_exit_7(tmp_path: Path, mosquitto: BrokerHandle) -> None:
    home = tmp_path / "home"
    with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
        outbox.add_usage(10**6)
        outbox.put(NewItem("telemetry", "site-a", "gw1", {"rssi": -70}))
        outbox.put(NewItem("audit", "site-a", "gw1", {"action": "connect"}))
    (home / "config").mkdir(parents=True, exist_ok=True)
    settings = ControlPlaneSettings(url=f"mqtt://127.0.0.1:{mosquitto.port}", technician=TECH, allow_plain=True,
                                    metered=True, monthly_budget_bytes=10**6)
    save_settings(settings, home / "config" / "control-plane.json")
    done = outbox_sync(home)
    assert done.returncode == 7, done.stderr
    assert done.stdout.startswith("sent 1 items")
    assert "1 items wait: Data budget used up" in done.stderr


def test_a_locked_vault_entry_for_the_password_is_said(tmp_path: Path) -> None:
    home, _ids = _home_with_items(tmp_path)
    (home / "config").mkdir(parents=True, exist_ok=True)
    save_settings(ControlPlaneSettings(url="mqtts://127.0.0.1:8883", technician=TECH, username="jane",
                                       password_ref="control-plane/password"), home / "config" / "control-plane.json")
    done = outbox_sync(home)
    assert done.returncode == 2
    assert "vault is locked" in done.stderr
    assert "SITELINE_CONTROL_PLANE_PASSWORD" in done.stderr
