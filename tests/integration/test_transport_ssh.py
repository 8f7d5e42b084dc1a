"""SshTransport against OpenSSH's real sshd on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from pathlib import Path

import asyncssh
import pytest
from tests.peers import free_port
from tests.peers.sshd import SshdHandle, keygen

from siteline.core.errors import AuthError, CommandTimeout, HostKeyError, TransportError
from siteline.core.targets import parse_target
from siteline.core.transports.base import ConnectionState, ConnState, Credentials, Transport
from siteline.core.transports.ssh import KnownHosts, SshTransport, fingerprint

pytestmark = [pytest.mark.asyncio, pytest.mark.peer("sshd")]


def _transport(sshd: SshdHandle, known: Path, key: Path | None = None, jump: str = "") -> SshTransport:
    query = f"?jump={jump}" if jump else ""
    target = parse_target(f"ssh://{sshd.user}@{sshd.host}:{sshd.port}{query}")
    creds = Credentials(key_path=str(key or sshd.client_key), use_agent=False)
    return SshTransport(target, creds, known, accept_new_host_key=True)


async def test_run_exit_codes_stdout_stderr(sshd: SshdHandle, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path / "known_hosts")
    assert isinstance(t, Transport)
    await t.connect()
    try:
        assert t.state.state is ConnState.UP
        ok = await t.run("echo hello; echo oops >&2")
        assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "hello\n", "oops\n")
        assert (await t.run("sh -c 'exit 7'")).exit_code == 7
        bad = await t.run("printf '\\377ok\\n'")  # not UTF-8: replaced, never raised
        assert bad.stdout == "\ufffdok\n"
    finally:
        await t.close()
    assert t.state.state is ConnState.DOWN


async def test_first_contact_pins_key_in_openssh_form(
    sshd: SshdHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    known = tmp_path / "known_hosts"
    t = _transport(sshd, known)
    await t.connect()
    await t.close()
    line = known.read_text().strip()
    assert line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    pinned = KnownHosts(known).keys_for("127.0.0.1", sshd.port)
    assert [fingerprint(k) for k in pinned] == [sshd.host_fingerprint]
    assert "first contact" in caplog.text
    assert sshd.host_fingerprint in caplog.text
    # A second connection uses the pin and does not add a line.
    t2 = _transport(sshd, known)
    await t2.connect()
    await t2.close()
    assert known.read_text().strip() == line


async def test_changed_host_key_is_refused_with_both_fingerprints(sshd: SshdHandle, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    t = _transport(sshd, known)
    await t.connect()
    await t.close()
    old = sshd.host_fingerprint
    sshd.regenerate_host_key()
    new = sshd.host_fingerprint
    t2 = _transport(sshd, known)
    with pytest.raises(HostKeyError) as info:
        await t2.connect()
    text = str(info.value)
    assert old in text
    assert new in text
    assert "CHANGED" in text
    assert "attack" in text
    assert str(known) in info.value.hint
    assert t2.state.state is ConnState.DOWN
    assert len(known.read_text().splitlines()) == 1  # the new key was NOT pinned


async def test_wrong_key_is_auth_error(sshd: SshdHandle, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")
    t = _transport(sshd, tmp_path / "known_hosts", key=stranger)
    with pytest.raises(AuthError, match="refused the login"):
        await t.connect()


async def test_key_with_passphrase(sshd: SshdHandle, tmp_path: Path) -> None:
    key = keygen(tmp_path / "locked", passphrase="correct horse")
    sshd.authorize(key)
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}")
    good = SshTransport(target, Credentials(key_path=str(key), key_passphrase="correct horse", use_agent=False),
                        tmp_path / "kh", accept_new_host_key=True)
    await good.connect()
    assert (await good.run("true")).ok
    await good.close()
    bad = SshTransport(target, Credentials(key_path=str(key), key_passphrase="wrong", use_agent=False), tmp_path / "kh",
                       accept_new_host_key=True)
    with pytest.raises(AuthError, match="passphrase"):
        await bad.connect()


async def test_refused_port_is_transport_error(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    t = SshTransport(parse_target(f"ssh://root@127.0.0.1:{port}"), Credentials(use_agent=False), tmp_path / "kh",
                     accept_new_host_key=True)
    with pytest.raises(TransportError, match="refused the connection") as info:
        await t.connect()
    assert not isinstance(info.value, AuthError | HostKeyError)
    assert info.value.hint
    assert t.state.state is ConnState.DOWN


async def test_timeout_interrupts_remote_command(sshd: SshdHandle, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path / "known_hosts")
    await t.connect()
    tick = f"TICK{uuid.uuid4().hex}"  # unique, so other test runs on this host cannot interfere
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match=r"did not finish within 0\.5 s"):
            await t.run(f"while :; do echo {tick}; sleep 0.05; done", timeout=0.5)
        assert time.monotonic() - started < 3
        # The link is still usable, and the remote command was stopped, not left to run on. (As root,
        # OpenSSH refuses the 'signal' request; the closed channel ends it at its next write.)
        assert (await t.run("echo still here")).stdout == "still here\n"
        pattern = f"{tick[:-1]}[{tick[-1]}]"  # the bracket keeps pgrep's own command line from matching
        for _ in range(40):
            out = await t.run(f"pgrep -f '{pattern}' || true")
            if not out.stdout.strip():
                break
            await asyncio.sleep(0.05)
        assert out.stdout.strip() == ""
    finally:
        await t.close()


async def test_connection_loss_sets_down_with_reason(sshd: SshdHandle, tmp_path: Path) -> None:
    t = _transport(sshd, tmp_path / "known_hosts")
    seen: list[ConnectionState] = []
    t.add_state_listener(seen.append)
    await t.connect()
    down = asyncio.Event()
    t.add_state_listener(lambda s: down.set() if s.state is ConnState.DOWN else None)
    sshd.stop()  # the listener and every per-connection process go away
    await asyncio.wait_for(down.wait(), 5)
    assert "connection" in t.state.reason
    assert [s.state for s in seen][:2] == [ConnState.CONNECTING, ConnState.UP]
    with pytest.raises(TransportError, match="Not connected"):
        await t.run("true")
    await t.close()


async def test_jump_through_bastion(sshd: SshdHandle, sshd_bastion: SshdHandle, tmp_path: Path) -> None:
    sshd_bastion.authorize(sshd.client_key)
    known = tmp_path / "known_hosts"
    jump = f"{sshd_bastion.user}@127.0.0.1:{sshd_bastion.port}"
    t = _transport(sshd, known, jump=jump)
    await t.connect()
    try:
        assert (await t.run("echo through")).stdout == "through\n"
    finally:
        await t.close()
    # The bastion forwarded a channel to the device's port, and both hosts' keys are pinned.
    assert f"port {sshd.port}" in sshd_bastion.log_text()
    kh = KnownHosts(known)
    assert [fingerprint(k) for k in kh.keys_for("127.0.0.1", sshd_bastion.port)] == [sshd_bastion.host_fingerprint]
    # The device is pinned under the jump chain (the bastions, not the login used on them): the same
    # inner address at another site is another host.
    chain = f"127.0.0.1:{sshd_bastion.port}"
    assert [fingerprint(k) for k in kh.keys_for(f"127.0.0.1%{chain}", sshd.port)] == [sshd.host_fingerprint]
    assert kh.keys_for("127.0.0.1", sshd.port) == []


async def test_host_names_are_pinned_case_insensitively(sshd: SshdHandle, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    KnownHosts(known).add("LocalHost", sshd.port, _host_key(sshd))
    assert [fingerprint(k) for k in KnownHosts(known).keys_for("localhost", sshd.port)] == [sshd.host_fingerprint]


def _host_key(sshd: SshdHandle) -> asyncssh.SSHKey:
    return asyncssh.import_public_key(sshd.host_key.with_name("host_key.pub").read_text())


async def test_changed_bastion_key_is_refused(sshd: SshdHandle, sshd_bastion: SshdHandle, tmp_path: Path) -> None:
    sshd_bastion.authorize(sshd.client_key)
    known = tmp_path / "known_hosts"
    jump = f"{sshd_bastion.user}@127.0.0.1:{sshd_bastion.port}"
    first = _transport(sshd, known, jump=jump)
    await first.connect()
    await first.close()
    sshd_bastion.regenerate_host_key()
    with pytest.raises(HostKeyError, match=f"127.0.0.1\\]:{sshd_bastion.port} has CHANGED"):
        await _transport(sshd, known, jump=jump).connect()


async def test_agent_auth(sshd: SshdHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_key = keygen(tmp_path / "agent_key")
    sshd.authorize(agent_key)
    sock = tmp_path / "agent.sock"
    agent = await asyncio.create_subprocess_exec("ssh-agent", "-D", "-a", str(sock), stdout=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            await asyncio.sleep(0.01)
        add = await asyncio.create_subprocess_exec(
            "ssh-add", "-q", str(agent_key), env={"SSH_AUTH_SOCK": str(sock)}, stderr=asyncio.subprocess.DEVNULL
        )
        assert await add.wait() == 0
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}")
        t = SshTransport(target, Credentials(use_agent=True), tmp_path / "kh", accept_new_host_key=True)
        await t.connect()
        assert (await t.run("echo agent")).stdout == "agent\n"
        await t.close()
        monkeypatch.delenv("SSH_AUTH_SOCK")  # no agent socket: the agent is not tried, so the key is refused
        with pytest.raises(AuthError):
            await SshTransport(target, Credentials(use_agent=True), tmp_path / "kh", accept_new_host_key=True).connect()
    finally:
        agent.terminate()
        await agent.wait()


async def test_known_hosts_file_is_read_forgivingly(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    salt = b"0123456789abcdefghij"
    hashed = base64.b64encode(hmac.new(salt, b"[10.0.0.9]:2222", hashlib.sha1).digest()).decode()
    known = tmp_path / "known_hosts"
    known.write_text(
        "# a comment\n\ngarbage\nhost ssh-ed25519 notbase64!!\n\xff\xfe\n"
        f"@revoked [10.0.0.9]:2222 {key[0]} {key[1]}\n"
        f"other,[10.0.0.9]:2222 {key[0]} {key[1]} comment\n"
        f"|1|{base64.b64encode(salt).decode()}|{hashed} {key[0]} {key[1]}\n"
        f"10.0.0.9 {key[0]} {key[1]}\n",
        encoding="latin-1",
    )
    kh = KnownHosts(known)
    assert len(kh.keys_for("10.0.0.9", 2222)) == 2  # the plain and the hashed entry; not port 22's, not @revoked
    assert len(kh.keys_for("10.0.0.9", 22)) == 1
    assert kh.keys_for("nowhere", 22) == []
    assert KnownHosts(tmp_path / "missing").keys_for("h", 22) == []


async def test_unknown_key_problem_then_pin_lets_the_next_connect_in(sshd: SshdHandle, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    target = parse_target(f"ssh://{sshd.user}@127.0.0.1:{sshd.port}")
    creds = Credentials(key_path=str(sshd.client_key), use_agent=False)
    with pytest.raises(HostKeyError) as info:
        await SshTransport(target, creds, known, accept_new_host_key=False).connect()
    problem = info.value.problem
    assert problem is not None
    assert (problem.kind, problem.host, problem.port) == ("unknown", "127.0.0.1", sshd.port)
    assert problem.display_name == f"[127.0.0.1]:{sshd.port}"
    assert problem.offered_fingerprint == sshd.host_fingerprint
    assert problem.offered_key.split() == sshd.host_key.with_name("host_key.pub").read_text().split()[:2]
    assert problem.pinned_fingerprints == ()
    assert problem.known_hosts_path == str(known)
    # The user accepted it in the dialog:
    KnownHosts(Path(problem.known_hosts_path)).pin(problem.host, problem.port, problem.offered_key)
    t = SshTransport(target, creds, known, accept_new_host_key=False)
    await t.connect()
    await t.close()


async def test_changed_key_problem_then_explicit_replace(sshd: SshdHandle, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    first = _transport(sshd, known)
    await first.connect()  # first contact pins the key
    await first.close()
    old = sshd.host_fingerprint
    sshd.regenerate_host_key()
    with pytest.raises(HostKeyError) as info:
        await _transport(sshd, known).connect()
    problem = info.value.problem
    assert problem is not None
    assert problem.kind == "changed"
    assert problem.pinned_fingerprints == (old,)
    assert problem.offered_fingerprint == sshd.host_fingerprint
    KnownHosts(known).replace(problem.host, problem.port, problem.offered_key)
    t = _transport(sshd, known)
    await t.connect()
    assert (await t.run("echo ok")).stdout == "ok\n"
    await t.close()
    assert [fingerprint(k) for k in KnownHosts(known).keys_for("127.0.0.1", sshd.port)] == [sshd.host_fingerprint]


async def test_changed_key_behind_a_bastion_names_the_jump_chain(
    sshd: SshdHandle, sshd_bastion: SshdHandle, tmp_path: Path
) -> None:
    sshd_bastion.authorize(sshd.client_key)
    known = tmp_path / "known_hosts"
    jump = f"{sshd_bastion.user}@127.0.0.1:{sshd_bastion.port}"
    first = _transport(sshd, known, jump=jump)
    await first.connect()
    await first.close()
    sshd.regenerate_host_key()
    with pytest.raises(HostKeyError) as info:
        await _transport(sshd, known, jump=jump).connect()
    problem = info.value.problem
    assert problem is not None
    assert (problem.kind, problem.host) == ("changed", f"127.0.0.1%127.0.0.1:{sshd_bastion.port}")
    KnownHosts(known).replace(problem.host, problem.port, problem.offered_key)
    t = _transport(sshd, known, jump=jump)
    await t.connect()
    await t.close()


async def test_a_key_of_another_type_is_reported_as_changed(sshd: SshdHandle, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    rsa = asyncssh.generate_private_key("ssh-rsa").export_public_key().decode()
    KnownHosts(known).pin("127.0.0.1", sshd.port, rsa)  # the device now has only an ed25519 key
    with pytest.raises(HostKeyError, match="CHANGED") as info:
        await _transport(sshd, known).connect()
    assert info.value.problem is not None
    assert info.value.problem.offered_fingerprint == sshd.host_fingerprint


async def test_keepalive_comes_from_the_target_or_the_openssh_default(tmp_path: Path) -> None:
    creds = Credentials(use_agent=False)
    assert SshTransport(parse_target("ssh://r@h"), creds, tmp_path / "kh").keepalive_interval == 30
    assert SshTransport(parse_target("ssh://r@h?keepalive=7"), creds, tmp_path / "kh").keepalive_interval == 7
    explicit = SshTransport(parse_target("ssh://r@h?keepalive=7"), creds, tmp_path / "kh", keepalive_interval=2)
    assert (explicit.keepalive_interval, explicit.keepalive_count_max) == (2, 3)
