"""`siteline outbox sync` after the review of issue 4: a refused item is a failure (exit 8), the saved login never
goes to another broker named with --broker, and a URL is never echoed with its password."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import pytest
from tests.integration.test_outbox_sync_cli import outbox_sync
from tests.integration.test_outbox_sync_support import TECH
from tests.peers import require_tool

from siteline.core.outbox.model import NewItem, State
from siteline.core.outbox.settings import ControlPlaneSettings, save_settings
from siteline.core.outbox.store import Outbox
from siteline.simulator.broker import start_mosquitto

pytestmark = pytest.mark.peer("mosquitto")


def _home(tmp_path: Path, *items: NewItem, settings: ControlPlaneSettings | None = None) -> Path:
    home = tmp_path / "home"
    with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
        outbox.put_many(items)
    if settings is not None:
        (home / "config").mkdir(parents=True, exist_ok=True)
        save_settings(settings, home / "config" / "control-plane.json")
    return home


def test_items_the_broker_refuses_for_good_exit_8_saying_how_many_and_why(tmp_path: Path) -> None:
    require_tool("mosquitto")
    acl = {TECH: [("write", f"siteline/v1/{TECH}/outbox/note")]}
    broker = start_mosquitto(tmp_path / "acl-broker", users={TECH: "right"}, acl=acl)
    try:
        home = _home(tmp_path, NewItem("note", "site-a", "gw1", {"text": "ok"}),
                     NewItem("audit", "site-a", "gw1", {"action": "connect"}))
        done = outbox_sync(home, "--broker", f"mqtt://127.0.0.1:{broker.port}", "--plain-ok", "--technician", TECH,
                           "--username", TECH, env={"SITELINE_CONTROL_PLANE_PASSWORD": "right"})
        assert done.returncode == 8, done.stderr
        assert done.stdout.startswith("sent 1 items (")
        assert "1 items failed for good" in done.stderr
        assert "0x87" in done.stderr
        assert "siteline outbox retry" in done.stderr
        with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
            assert outbox.status().failed == 1
            assert [i.kind for i in outbox.items(State.FAILED)] == ["audit"]
    finally:
        broker.stop()


class Capture:
    """A listener that keeps the first bytes a client sends (its MQTT CONNECT, login included) and hangs up."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.data = b""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._server.settimeout(30)
        try:
            conn, _addr = self._server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):  # nothing sent: data stays empty and the test says so
                self.data = conn.recv(65536)

    def close(self) -> None:
        self._server.close()
        self._thread.join(5)


SAVED = dict(technician=TECH, username="jane-saved", password_ref="control-plane/password", protocol="3.1.1")


def test_another_broker_named_with_broker_gets_not_the_saved_login(tmp_path: Path) -> None:
    capture = Capture()
    try:
        home = _home(tmp_path, NewItem("note", "site-a", "gw1", {"text": "x"}),
                     settings=ControlPlaneSettings(url="mqtts://127.0.0.1:8883", **SAVED))  # type: ignore[arg-type]
        done = outbox_sync(home, "--broker", f"mqtt://127.0.0.1:{capture.port}", "--plain-ok", "--timeout", "5",
                           env={"SITELINE_CONTROL_PLANE_PASSWORD": "saved-secret"})
        capture.close()
        assert capture.data.startswith(b"\x10")  # it did connect: a CONNECT packet
        assert b"jane-saved" not in capture.data
        assert b"saved-secret" not in capture.data
        assert done.returncode == 4, done.stderr  # the capture hangs up
        assert "the saved username, password_ref are not used" in done.stderr
    finally:
        capture.close()


def test_the_saved_broker_named_again_keeps_its_login(tmp_path: Path) -> None:
    capture = Capture()
    try:
        url = f"mqtt://127.0.0.1:{capture.port}"
        home = _home(tmp_path, NewItem("note", "site-a", "gw1", {"text": "x"}),
                     settings=ControlPlaneSettings(url=url, allow_plain=True, **SAVED))  # type: ignore[arg-type]
        done = outbox_sync(home, "--broker", url, "--plain-ok", "--timeout", "5",
                           env={"SITELINE_CONTROL_PLANE_PASSWORD": "saved-secret"})
        capture.close()
        assert b"jane-saved" in capture.data
        assert done.returncode == 4, done.stderr
        assert "not used" not in done.stderr
    finally:
        capture.close()


def test_a_broker_url_that_does_not_parse_is_not_echoed_with_its_password(tmp_path: Path) -> None:
    home = _home(tmp_path)
    for url in ("mqtts://jane:s3cret-pw@127.0.0.1:88x3", "mqtts://jane:s3cret-pw@127.0.0.1:8883"):
        done = outbox_sync(home, "--broker", url)
        assert done.returncode == 2, done.stderr
        assert "s3cret-pw" not in done.stderr + done.stdout
        assert "127.0.0.1" in done.stderr
