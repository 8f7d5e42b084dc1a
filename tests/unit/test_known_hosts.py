"""KnownHosts on real files: OpenSSH's own hashed entries (ssh-keygen -H), markers, garbage lines."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncssh
import pytest

from siteline.core.errors import HostKeyProblem, TransportError
from siteline.core.transports.known_hosts import HostKeyCheck, KnownHosts, fingerprint, public_key_text
from siteline.core.transports.ssh import KnownHosts as ReExported
from tests.peers import require_tool


def _key(kind: str = "ssh-ed25519") -> str:
    return public_key_text(asyncssh.generate_private_key(kind))


def _fp(key_text: str) -> str:
    return fingerprint(asyncssh.import_public_key(key_text))


def _ssh_keygen(*args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("ssh-keygen")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=10, check=False)


def _hash_file(path: Path) -> None:
    assert _ssh_keygen("-H", "-f", str(path)).returncode == 0
    path.with_name(path.name + ".old").unlink()


def test_ssh_module_still_exports_known_hosts() -> None:
    assert ReExported is KnownHosts


def test_hashed_entries_made_by_ssh_keygen_are_found(tmp_path: Path) -> None:
    a, b = _key(), _key("ecdsa-sha2-nistp256")
    known = tmp_path / "known_hosts"
    known.write_text(f"[10.0.0.5]:2222 {a}\ngw1.example {b}\n")
    _hash_file(known)
    assert "10.0.0.5" not in known.read_text()  # really hashed
    kh = KnownHosts(known)
    assert [public_key_text(k) for k in kh.keys_for("10.0.0.5", 2222)] == [a]
    assert [public_key_text(k) for k in kh.keys_for("GW1.example", 22)] == [b]
    assert kh.keys_for("10.0.0.5", 22) == []


def test_pin_appends_once_and_openssh_reads_it(tmp_path: Path) -> None:
    known = tmp_path / "sub" / "known_hosts"
    kh, key = KnownHosts(known), _key()
    kh.pin("10.0.0.5", 2222, key + " a comment that is not kept")
    kh.pin("10.0.0.5", 2222, key)  # already there: no second line
    assert known.read_text() == f"[10.0.0.5]:2222 {key}\n"
    found = _ssh_keygen("-F", "[10.0.0.5]:2222", "-f", str(known))
    assert found.returncode == 0
    assert key in found.stdout
    # The same key for another port is another pin.
    kh.pin("10.0.0.5", 22, key)
    assert len(known.read_text().splitlines()) == 2


def test_pin_never_glues_onto_a_torn_last_line(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_bytes(b"# half a line with no newline")
    key = _key()
    KnownHosts(known).pin("h", 22, key)
    assert known.read_bytes() == f"# half a line with no newline\nh {key}\n".encode()


def test_pin_rejects_text_that_is_not_a_key(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="not an OpenSSH public key"):
        KnownHosts(tmp_path / "kh").pin("h", 22, "ssh-ed25519 not-base64!!")
    assert not (tmp_path / "kh").exists()


def test_replace_removes_plain_and_hashed_lines_and_keeps_the_rest_byte_identical(tmp_path: Path) -> None:
    old1, old2, other, new = _key(), _key(), _key(), _key()
    known = tmp_path / "known_hosts"
    hashed = tmp_path / "hashed"
    hashed.write_text(f"[10.0.0.5]:2222 {old2}\n")
    _hash_file(hashed)
    keep_before = b"# my comment\n\ngarbage\n\xff\xfe not utf-8\n" + f"@revoked [10.0.0.5]:2222 {old1}\n".encode()
    shared = f"other.example,[10.0.0.5]:2222 {other} comment\n".encode()
    keep_after = f"10.0.0.5 {old1}\n[10.0.0.6]:2222 {old1}\n".encode()
    known.write_bytes(keep_before + f"[10.0.0.5]:2222 {old1}\n".encode() + hashed.read_bytes() + shared + keep_after)
    os.chmod(known, 0o600)

    KnownHosts(known).replace("10.0.0.5", 2222, new)

    text = known.read_bytes()
    want = keep_before + f"other.example {other} comment\n".encode() + keep_after + f"[10.0.0.5]:2222 {new}\n".encode()
    assert text == want
    kh = KnownHosts(known)
    assert [public_key_text(k) for k in kh.keys_for("10.0.0.5", 2222)] == [new]
    assert [public_key_text(k) for k in kh.keys_for("other.example", 22)] == [other]
    assert [public_key_text(k) for k in kh.keys_for("10.0.0.5", 22)] == [old1]
    assert os.stat(known).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hashed", "known_hosts"]  # no temp file left


def test_replace_creates_a_missing_file_and_handles_a_torn_end(tmp_path: Path) -> None:
    key = _key()
    KnownHosts(tmp_path / "new" / "kh").replace("h", 22, key)
    assert (tmp_path / "new" / "kh").read_text() == f"h {key}\n"
    torn = tmp_path / "torn"
    torn.write_bytes(b"x ssh-ed25519")
    KnownHosts(torn).replace("h", 22, key)
    assert torn.read_bytes() == f"x ssh-ed25519\nh {key}\n".encode()


def test_keys_behind_a_bastion_are_pinned_under_the_jump_chain(tmp_path: Path) -> None:
    kh, key = KnownHosts(tmp_path / "kh"), _key()
    kh.pin("10.0.0.5%ops@bastion:22", 22, key)
    assert kh.keys_for("10.0.0.5", 22) == []
    kh.replace("10.0.0.5%ops@bastion:22", 22, _key())
    assert len(kh.keys_for("10.0.0.5%ops@bastion:22", 22)) == 1


def test_problem_for_an_unknown_key(tmp_path: Path) -> None:
    known = tmp_path / "kh"
    check = HostKeyCheck(KnownHosts(known), "10.0.0.5", 2222, accept_new=False, via="ops@bastion:22")
    offered = asyncssh.generate_private_key("ssh-ed25519")
    assert check.validate(offered) is False
    assert not known.exists()
    err = check.error()
    assert err.problem == HostKeyProblem(
        kind="unknown", host="10.0.0.5%ops@bastion:22", port=2222, display_name="[10.0.0.5%ops@bastion:22]:2222",
        offered_fingerprint=fingerprint(offered), offered_key=public_key_text(offered),
        pinned_fingerprints=(), known_hosts_path=str(known),
    )
    assert fingerprint(offered) in str(err)


def test_problem_for_a_changed_key_matches_ssh_keygen(tmp_path: Path) -> None:
    known, pinned = tmp_path / "kh", _key()
    KnownHosts(known).pin("gw1", 22, pinned)
    check = HostKeyCheck(KnownHosts(known), "gw1", 22, accept_new=True)
    offered = asyncssh.generate_private_key("ssh-ed25519")
    assert check.validate(offered) is False  # a changed key is never accepted, accept_new or not
    problem = check.error().problem
    assert problem is not None
    assert problem.kind == "changed"
    pub = tmp_path / "offered.pub"
    pub.write_text(problem.offered_key + "\n")
    assert _ssh_keygen("-lf", str(pub)).stdout.split()[1] == problem.offered_fingerprint
    assert problem.pinned_fingerprints == (_fp(pinned),)
    # What the GUI does after the user explicitly replaces the key: the next check trusts it.
    KnownHosts(known).replace(problem.host, problem.port, problem.offered_key)
    assert [fingerprint(k) for k in HostKeyCheck(KnownHosts(known), "gw1", 22, False).pinned] == [
        problem.offered_fingerprint
    ]


def test_pinned_key_types_are_asked_for_first_then_every_other(tmp_path: Path) -> None:
    KnownHosts(tmp_path / "kh").pin("h", 22, _key("ecdsa-sha2-nistp256"))
    algs = HostKeyCheck(KnownHosts(tmp_path / "kh"), "h", 22, False).host_key_algs()
    assert isinstance(algs, list)
    assert algs[0] == "ecdsa-sha2-nistp256"
    assert "ssh-ed25519" in algs
    assert HostKeyCheck(KnownHosts(tmp_path / "none"), "h", 22, False).host_key_algs() == ()
