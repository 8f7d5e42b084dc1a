"""`siteline provision` as a technician runs it: a real `siteline` process against a simulated device on its
serial pty (the device runs in this test's event loop, so the process is awaited, never waited on)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from tests.peers.sim import make_state, running_device

from siteline.core.audit import AuditTrail
from siteline.core.keep import device_secret_name
from siteline.core.outbox.store import Outbox
from siteline.core.provisioning.store import ProvisionStore
from siteline.core.vault import Vault

pytestmark = [pytest.mark.timeout(240)]
PASSPHRASE = "correct horse battery staple 42"
CHEAP_KDF = "1,8192,1"  # tests only: real vaults use the memory-hard default
FACTORY = "root"  # the profile's published factory password (resources/profiles/nwedge-gw-imx8mm.toml)
SITE = "north-7"


async def _siteline(home: Path, *args: str, **env: str) -> tuple[int, str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_")}
    full.update({"SITELINE_HOME": str(home), "SITELINE_VAULT_KDF_COST": CHEAP_KDF, **env})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "siteline", *args, env=full,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 180)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _siteline_ctrl_c(home: Path, when: str, *args: str, **env: str) -> tuple[int, str]:
    """Run siteline and press Ctrl-C (SIGINT) as soon as a stderr line holds ``when``. (exit code, stderr)"""
    full = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_")}
    full.update({"SITELINE_HOME": str(home), "SITELINE_VAULT_KDF_COST": CHEAP_KDF, **env})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "siteline", *args, env=full,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(120):
            while line := (await proc.stderr.readline()).decode():
                lines.append(line)
                if when in line:
                    proc.send_signal(signal.SIGINT)
                    break
            lines.append((await proc.stderr.read()).decode())
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, "".join(lines)


def _steps_present() -> None:
    """Every step module must be importable (a missing one fails, never skips)."""
    from siteline.core.errors import SitelineError
    from siteline.core.provisioning.runner import default_steps

    try:
        default_steps()
    except SitelineError as exc:
        pytest.fail(f"a provisioning step is missing: {exc.message}")


def test_usage_and_refusals_without_a_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """In this process (nothing connects): the checks made before any device is reached."""
    from siteline.cli import main

    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    assert main(["provision", "--profile", "nwedge-gw-imx8mm"]) == 2
    assert "TARGET" in capsys.readouterr().err
    assert main(["provision", "serial:///dev/ttyNONE", "--profile", "no-such-family"]) == 2
    assert "no-such-family" in capsys.readouterr().err
    assert main(["provision", "mqtt://broker.example/x/y", "--profile", "nwedge-gw-imx8mm"]) in (2, 3)
    assert "MQTT" in capsys.readouterr().err
    assert main(["provision", "--jobs"]) == 0
    assert "no provisioning jobs" in capsys.readouterr().out
    assert not (tmp_path / "home" / "data" / "provision-jobs").exists()


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_no_confirmation_from_a_script_changes_nothing(tmp_path: Path) -> None:
    state = make_state(tmp_path / "dev", password=FACTORY)
    tty = tmp_path / "tty"
    async with running_device(state, ssh=False, serial_link=tty):
        code, _, err = await _siteline(tmp_path / "home", "provision", f"serial://{tty}?baud=115200", "--user", "root",
                                       "--profile", "nwedge-gw-imx8mm", "--site", SITE)
    assert code == 3, err
    assert "--yes" in err
    assert state.check_password("root", FACTORY)


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_dry_run_then_provision_then_refuse_a_second_time(tmp_path: Path) -> None:
    _steps_present()
    home = tmp_path / "home"
    code, _, err = await _siteline(home, "vault", "init", SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
    assert code == 0, err
    state = make_state(tmp_path / "dev", password=FACTORY)
    tty = tmp_path / "tty"
    target = f"serial://{tty}?baud=115200"
    base = ("provision", target, "--user", "root", "--profile", "nwedge-gw-imx8mm", "--site", SITE, "--tag", "pump")
    async with running_device(state, ssh=False, serial_link=tty):
        hostname = state.hostname
        code, out, err = await _siteline(home, *base, "--dry-run", SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
        assert code == 0, err + out
        assert "chpasswd" in out
        assert "********" in out
        assert "nothing was changed" in out
        assert state.check_password("root", FACTORY)
        assert state.hostname == hostname
        assert ProvisionStore(home / "data" / "provision-jobs").jobs() == []

        # Ctrl-C while the device key is being made: the job is kept, interrupted; the same command resumes it.
        code, err = await _siteline_ctrl_c(home, "[4/8] Device key and certificate request: running", *base, "--yes",
                                           SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
        assert code == 130, err
        assert "run the same command again" in err
        cut = ProvisionStore(home / "data" / "provision-jobs").jobs()
        assert [j.status for j in cut] == ["interrupted"]
        assert not state.check_password("root", FACTORY)  # step 3 was done: the vault's password logs in now

        code, out, err = await _siteline(home, *base, "--yes", SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
        assert code in (0, 8), err + out
        assert f"resuming job {cut[0].id}" in err
        assert "[3/8] Replace factory passwords: running" not in err  # done steps are not run again
        assert "provisioned" in out
        assert "[8/8] Provisioning record: done" in err
        jobs = ProvisionStore(home / "data" / "provision-jobs").jobs()
        assert [j.status for j in jobs] == ["provisioned" if code == 0 else "incomplete"]
        device = jobs[0].device
        vault = Vault.open(home / "data" / "vault.siteline")
        vault.unlock(PASSPHRASE)
        password = vault.get(device_secret_name(SITE, device, "password"))
        assert password not in out + err
        assert state.check_password("root", password)
        assert not state.check_password("root", FACTORY)

        with Outbox.open(home / "data" / "outbox.sqlite3") as outbox:
            kinds = sorted(item.kind for item in outbox.items() if item.kind != "audit")
            actions = [r.action for r in AuditTrail(outbox, "t").records(device)]
        assert kinds == ["csr", "provisioning"]
        assert actions.count("provision-step") >= 8  # every step once, the one cut by Ctrl-C maybe twice
        assert actions[0] == "provision"  # newest first: the job's end
        code, out, _ = await _siteline(home, "provision", "--jobs", "--all")
        assert code == 0
        assert jobs[0].id in out

        code, out, err = await _siteline(home, *base, "--yes", SITELINE_VAULT_PASSPHRASE=PASSPHRASE)
        assert code == 3, err + out
        assert "--reprovision" in err + out


@pytest.mark.asyncio
@pytest.mark.peer("socat")
async def test_without_a_vault_the_password_step_refuses(tmp_path: Path) -> None:
    _steps_present()
    state = make_state(tmp_path / "dev", password=FACTORY)
    tty = tmp_path / "tty"
    async with running_device(state, ssh=False, serial_link=tty):
        code, out, err = await _siteline(tmp_path / "home", "provision", f"serial://{tty}?baud=115200", "--user",
                                         "root", "--profile", "nwedge-gw-imx8mm", "--site", SITE, "--yes")
    assert code == 3, err + out
    assert "vault" in (err + out).lower()
    assert state.check_password("root", FACTORY)
