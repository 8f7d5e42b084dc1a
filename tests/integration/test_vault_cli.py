"""`siteline vault ...` through real subprocesses, and the agent as a real background process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASS = "field tech passphrase 7"
EXPORT_PASS = "handover passphrase 9"
SECRET = "gw1-root-Pa55-unique"
CHEAP = "1,64,1"  # Argon2id cost for test vaults; test_real_cost_end_to_end uses the real one


def _command() -> list[str]:
    """`siteline` itself once cli.py registers the vault commands; until then the vault CLI's own entry."""
    try:  # another helper's half-written module must not stop the vault's own tests
        from siteline import cli

        parser = cli.build_parser()
        names = {name for action in parser._subparsers._group_actions  # type: ignore[union-attr]
                 for name in getattr(action, "choices", {}) or {}}
    except Exception:
        names = set()
    return [sys.executable, "-m", "siteline.cli" if "vault" in names else "siteline.vault_cli"]


COMMAND = _command()


class Cli:
    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_VAULT_")}
        self.env.update({"SITELINE_HOME": str(home), "PYTHONPATH": str(ROOT)}, **env)
        self.env.pop("XDG_RUNTIME_DIR", None)

    def __call__(self, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        # A new session has no controlling terminal: a prompt could never reach anyone, so none may be tried.
        return subprocess.run([*COMMAND, "vault", *args], input=stdin, capture_output=True, text=True,
                              env={**self.env, **env}, cwd=ROOT, timeout=30, start_new_session=True,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def python(self, code: str) -> str:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env, cwd=ROOT,
                             timeout=30, start_new_session=True, stdin=subprocess.DEVNULL, check=True)
        return out.stdout.strip()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path / "home", SITELINE_VAULT_PASSPHRASE=PASS, SITELINE_VAULT_KDF_COST=CHEAP)
    yield runner
    _stop_agent(runner)


def _stop_agent(runner: Cli) -> None:
    """Teardown: ask the agent to lock; if it still runs, end it by its pid (we started it)."""
    if not list((runner.home / "state" / "agent").glob("*.sock")):
        return
    pid = runner.python("from siteline.core.vault import agent; i = agent.agent_info(); print(i.pid if i else '')")
    if pid:
        runner("lock")
        for _ in range(200):
            if not _alive(int(pid)):
                return
            time.sleep(0.01)
        os.kill(int(pid), 9)


def _alive(pid: int) -> bool:
    """Running, not merely a zombie: the daemon's parent is init, which may reap it only a second later."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return not Path("/proc").is_dir()


def _audited(cli: Cli) -> list[str]:
    """The actions in that home's audit trail, oldest first; no secret in any record."""
    code = ("import json; from siteline.core.outbox.store import Outbox; from siteline.core.audit import AuditTrail\n"
            "with Outbox.open() as o:\n"
            "    print(json.dumps([[r.action, r.detail] for r in AuditTrail(o, 'x').records()][::-1]))")
    rows = json.loads(cli.python(code))
    assert not any(SECRET in detail or PASS in detail or EXPORT_PASS in detail for _, detail in rows)
    return [action for action, _ in rows]


def _init_with_secret(cli: Cli) -> None:
    assert cli("init").returncode == 0
    out = cli("add", "device/site-a/gw1/password", "--note", "root on gw1", stdin=SECRET)
    assert out.returncode == 0, out.stderr


def test_init_add_list(cli: Cli) -> None:
    _init_with_secret(cli)
    vault_file = cli.home / "data" / "vault.siteline"
    assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600
    assert SECRET.encode() not in vault_file.read_bytes()
    again = cli("init")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    listed = cli("list")
    assert listed.returncode == 0
    assert "device/site-a/gw1/password" in listed.stdout
    assert SECRET not in listed.stdout + listed.stderr
    doc = json.loads(cli("list", "--json").stdout)
    (row,) = doc["entries"]
    assert row["name"] == "device/site-a/gw1/password"
    assert row["kind"] == "password"
    assert row["note"] == "root on gw1"
    assert row["updated"].endswith("Z")
    assert "value" not in row


def test_real_cost_end_to_end(tmp_path: Path) -> None:
    """The default Argon2id cost (no test override): create, add, list; each unlock well under a few seconds."""
    cli = Cli(tmp_path / "home", SITELINE_VAULT_PASSPHRASE=PASS)
    _init_with_secret(cli)
    started = time.monotonic()
    assert "device/site-a/gw1/password" in cli("list").stdout
    assert time.monotonic() - started < 10
    header = (tmp_path / "home" / "data" / "vault.siteline").read_bytes()[:400]
    assert b'"memory_kib":262144' in header


def test_add_existing_needs_replace_and_echo_newline_is_dropped(cli: Cli) -> None:
    _init_with_secret(cli)
    refused = cli("add", "device/site-a/gw1/password", stdin="other")
    assert refused.returncode == 1
    assert "--replace" in refused.stderr
    assert cli("add", "device/site-a/gw1/password", "--replace", stdin="new-value\n").returncode == 0
    value = cli.python("from siteline.core.vault import Vault; v = Vault.open(); "
                       f"v.unlock({PASS!r}); print(repr(v.get('device/site-a/gw1/password')))")
    assert value == "'new-value'"
    empty = cli("add", "token/x", stdin="")
    assert empty.returncode == 1
    assert "empty" in empty.stderr
    assert cli("remove", "device/site-a/gw1/password").returncode == 0
    gone = cli("remove", "device/site-a/gw1/password")
    assert gone.returncode == 1
    assert "no entry" in gone.stderr
    assert "vault is empty" in cli("list").stdout


def test_wrong_passphrase_exit_5(cli: Cli) -> None:
    _init_with_secret(cli)
    out = cli("list", SITELINE_VAULT_PASSPHRASE="not the passphrase")
    assert out.returncode == 5
    assert "passphrase is not right" in out.stderr


def test_no_terminal_no_env_fails_fast(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    started = time.monotonic()
    out = cli("init")
    assert out.returncode == 2
    assert "no terminal" in out.stderr
    assert "SITELINE_VAULT_PASSPHRASE" in out.stderr
    assert time.monotonic() - started < 20
    assert not (tmp_path / "home" / "data" / "vault.siteline").exists()


def test_missing_vault_and_bad_name(cli: Cli) -> None:
    out = cli("list")
    assert out.returncode == 1
    assert "siteline vault init" in out.stderr
    assert cli("init").returncode == 0
    bad = cli("add", "has space", stdin="x")
    assert bad.returncode == 1
    assert "not a valid vault entry name" in bad.stderr


def test_export_import_between_two_technicians(cli: Cli, tmp_path: Path) -> None:
    _init_with_secret(cli)
    cli("add", "device/site-b/gw2/password", stdin="other-site-unique")
    handover = tmp_path / "site-a.export"
    out = cli("export", str(handover), "--names", "device/site-a/gw1/password",
              SITELINE_VAULT_EXPORT_PASSPHRASE=EXPORT_PASS)
    assert out.returncode == 0, out.stderr
    assert SECRET.encode() not in handover.read_bytes()
    colleague = Cli(tmp_path / "c2", SITELINE_VAULT_PASSPHRASE="colleague passphrase",
                    SITELINE_VAULT_KDF_COST=CHEAP)
    assert colleague("init").returncode == 0
    wrong = colleague("import", str(handover), SITELINE_VAULT_EXPORT_PASSPHRASE=PASS)
    assert wrong.returncode == 5
    done = colleague("import", str(handover), SITELINE_VAULT_EXPORT_PASSPHRASE=EXPORT_PASS)
    assert done.returncode == 0, done.stderr
    assert "added 1" in done.stdout
    names = [e["name"] for e in json.loads(colleague("list", "--json").stdout)["entries"]]
    assert _audited(cli) == ["vault-created", "vault-exported"]
    assert _audited(colleague) == ["vault-created", "vault-imported"]
    assert names == ["device/site-a/gw1/password"]
    again = colleague("import", str(handover), SITELINE_VAULT_EXPORT_PASSPHRASE=EXPORT_PASS)
    assert "kept 1" in again.stdout


def test_damaged_vault_is_reported_before_any_prompt(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")  # no passphrase anywhere: a prompt would fail with "no terminal"
    vault_file = tmp_path / "home" / "data" / "vault.siteline"
    vault_file.parent.mkdir(parents=True)
    vault_file.write_bytes(b"SLVAULT\0" + b"\x00\x01" + b"garbage" * 20)
    for action in ("list", "status", "passwd"):
        out = cli(action)
        assert out.returncode == 1, (action, out.stderr)
        assert "damaged" in out.stderr
    assert vault_file.read_bytes().endswith(b"garbage")


def test_passwd(cli: Cli) -> None:
    _init_with_secret(cli)
    out = cli("passwd", SITELINE_VAULT_NEW_PASSPHRASE="a brand new passphrase")
    assert out.returncode == 0, out.stderr
    assert cli("list").returncode == 5
    assert cli("list", SITELINE_VAULT_PASSPHRASE="a brand new passphrase").returncode == 0


def test_agent_unlock_get_secret_lock(cli: Cli) -> None:
    _init_with_secret(cli)
    out = cli("unlock")
    assert out.returncode == 0, out.stderr
    fetch = ("from siteline.core.vault import agent; "
             "print(repr(agent.get_secret('device/site-a/gw1/password')))")
    no_passphrase = Cli(cli.home)  # another process with no passphrase anywhere
    assert no_passphrase.python(fetch) == repr(SECRET)
    assert no_passphrase("list").returncode == 0  # served by the agent: no prompt, no variable
    pid = int(no_passphrase.python("from siteline.core.vault import agent; print(agent.agent_info().pid)"))
    sock = Path(no_passphrase.python("from siteline.core.vault import agent; print(agent.socket_path())"))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    if Path(f"/proc/{pid}").exists():
        proc_text = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        assert PASS.encode() not in proc_text
        assert SECRET.encode() not in proc_text
    assert "agent: pid" in no_passphrase("status").stdout
    assert no_passphrase("lock").returncode == 0
    assert no_passphrase.python(fetch) == "None"
    for _ in range(300):
        if not _alive(pid):
            break
        time.sleep(0.01)
    assert not _alive(pid)
    assert not sock.exists()


def test_agent_exits_when_idle(cli: Cli) -> None:
    _init_with_secret(cli)
    assert cli("unlock", "--minutes", "0.02").returncode == 0  # 1.2 s
    pid = int(cli.python("from siteline.core.vault import agent; print(agent.agent_info().pid)"))
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert cli.python("from siteline.core.vault import agent; print(agent.get_secret('device/site-a/gw1/password'))") \
        == "None"


def test_keyring_vault_through_the_cli(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", SITELINE_VAULT_KDF_COST=CHEAP,
              PYTHON_KEYRING_BACKEND="tests.unit.test_vault_keyring.FileKeyring",
              SITELINE_TEST_KEYRING_FILE=str(tmp_path / "keyring.json"))
    out = cli("init", "--keyring")
    assert out.returncode == 0, out.stderr
    assert cli("add", "control-plane/password", stdin="kr-unique").returncode == 0
    assert "control-plane/password" in cli("list").stdout
    headless = Cli(tmp_path / "home2", PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    out = headless("init", "--keyring")
    assert out.returncode == 1
    assert "no OS keyring is available" in out.stderr
    assert "passphrase" in out.stderr
