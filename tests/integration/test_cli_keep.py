"""The CLI and what Siteline keeps: a device password from the vault agent, commands in the audit trail.

A real simulated device on a serial pty (`siteline sim`), real `siteline` processes, the real vault agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from siteline.core.inventory import DeviceEntry, Inventory
from siteline.core.keep import device_secret_name

PASSPHRASE = "correct horse battery staple 42"
CHEAP_KDF = "1,8192,1"  # tests only: real vaults use the memory-hard default


def _cli(home: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_")}
    full.update({"SITELINE_HOME": str(home), "SITELINE_VAULT_KDF_COST": CHEAP_KDF, **env})
    return subprocess.run([sys.executable, "-m", "siteline", *args], capture_output=True, text=True, timeout=60,
                          env=full, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, check=False)


@pytest.mark.peer("socat")
def test_run_takes_the_password_from_the_vault_agent_and_is_audited(tmp_path: Path) -> None:
    from tests.peers.sim import PASSWORD, start_sim_process

    home = tmp_path / "home"
    link = tmp_path / "ttySIM0"
    target = f"serial://{link}?baud=115200"
    inventory = Inventory(home / "config" / "devices.json")
    inventory.upsert(DeviceEntry("gw-01", target, "Tower 7", username="root"))
    inventory.save()
    device = start_sim_process(tmp_path / "dev", "--serial-link", str(link))
    try:
        assert _cli(home, "vault", "init", SITELINE_VAULT_PASSPHRASE=PASSPHRASE).returncode == 0
        added = _cli(home, "vault", "add", device_secret_name("Tower 7", "gw-01"), stdin=PASSWORD,
                     SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
        assert added.returncode == 0, added.stderr
        unlocked = _cli(home, "vault", "unlock", SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
        assert unlocked.returncode == 0, unlocked.stderr
        try:
            ok = _cli(home, "run", target, "--user", "root", "--", "cat /etc/hostname")
            assert (ok.returncode, ok.stdout) == (0, "gw-01\n"), ok.stderr
        finally:
            assert _cli(home, "vault", "lock").returncode == 0
        # Locked: no password from anywhere, no terminal: refused at once (exit 5), never a hanging prompt.
        refused = _cli(home, "run", target, "--user", "root", "--", "true")
        assert refused.returncode == 5, refused.stderr
    finally:
        device.stop()
    listed = _cli(home, "audit", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    commands = [r for r in records if r["action"] == "console-command"]
    assert {(r["site"], r["device"]) for r in commands} == {("Tower 7", "gw-01")}
    assert {"line": "cat /etc/hostname", "exit_code": 0, "via": "cli"} in [r["detail"] for r in commands]
    assert _cli(home, "audit", "verify").returncode == 0
    db = home / "data" / "outbox.sqlite3"
    for path in (db, db.with_name(db.name + "-wal"), home / "data" / "vault.siteline"):
        if path.exists():
            assert PASSWORD.encode() not in path.read_bytes(), path
