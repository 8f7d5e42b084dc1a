"""`siteline image verify` and `siteline keys` end to end: real openssl keys and signatures, exit codes, stderr."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.peers import require_tool

from siteline import image_cli
from siteline.core.audit_verify import read_records


def _openssl(*args: str | Path) -> None:
    done = subprocess.run([require_tool("openssl"), *map(str, args)], capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("imagecli")
    image = d / "update.swu"
    image.write_bytes(os.urandom(2_500_000))
    out = {"dir": d, "image": image}
    for name, args in {"rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
                       "ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                       "ed": ["-algorithm", "ED25519"]}.items():
        _openssl("genpkey", *args, "-out", d / f"{name}.key")
        _openssl("pkey", "-in", d / f"{name}.key", "-pubout", "-out", d / f"{name}.pub")
        for suffix in ("key", "pub", "sig"):
            out[f"{name}.{suffix}"] = d / f"{name}.{suffix}"
    _openssl("dgst", "-sha256", "-sign", out["rsa.key"], "-out", out["rsa.sig"], image)
    _openssl("dgst", "-sha256", "-sign", out["ec.key"], "-out", out["ec.sig"], image)
    _openssl("pkeyutl", "-sign", "-rawin", "-inkey", out["ed.key"], "-in", image, "-out", out["ed.sig"])
    return out


def _cli(home: Path, *args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SITELINE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "siteline", *map(str, args)], capture_output=True,
                          text=True, input=stdin, env=env, timeout=30, check=False)


def test_verify_with_key_exit_codes(files: dict[str, Path], tmp_path: Path) -> None:
    image = files["image"]
    ok = _cli(tmp_path, "image", "verify", image, "--sig", files["rsa.sig"], "--key", files["rsa.pub"])
    assert ok.returncode == 0, ok.stderr
    assert "signature good" in ok.stdout
    assert "RSA 2048-bit" in ok.stdout
    wrong = _cli(tmp_path, "image", "verify", image, "--sig", files["rsa.sig"], "--key", files["ec.pub"])
    assert wrong.returncode == 3
    assert "refused" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    missing = _cli(tmp_path, "image", "verify", image, "--sig", files["dir"] / "none.sig", "--key", files["rsa.pub"])
    assert missing.returncode == 3
    assert "cannot read the signature file" in missing.stderr
    private = _cli(tmp_path, "image", "verify", image, "--sig", files["ed.sig"], "--key", files["ed.key"])
    assert private.returncode == 3
    assert "that is a private key" in private.stderr
    usage = _cli(tmp_path, "image", "verify", image)  # --sig is required
    assert usage.returncode == 2


def test_keys_add_list_verify_remove(files: dict[str, Path], tmp_path: Path) -> None:
    image = files["image"]
    unknown = _cli(tmp_path, "image", "verify", image, "--sig", files["ec.sig"])
    assert unknown.returncode == 3
    assert "no key is trusted" in unknown.stderr
    no_terminal = _cli(tmp_path, "keys", "add", files["ec.pub"], "--name", "ops-ec", stdin="y\n")
    assert no_terminal.returncode == 3
    assert "no confirmation" in no_terminal.stderr
    assert "SHA256:" in no_terminal.stdout  # the fingerprint was shown all the same
    added = _cli(tmp_path, "keys", "add", files["ec.pub"], "--name", "ops-ec", "--yes")
    assert added.returncode == 0, added.stderr
    assert "trusted 'ops-ec'" in added.stdout
    assert "warning" not in added.stderr
    again = _cli(tmp_path, "keys", "add", files["ec.pub"], "--name", "ops-ec", "--yes")
    assert again.returncode == 0
    assert "nothing changed" in again.stdout
    bad = _cli(tmp_path, "keys", "add", files["rsa.key"], "--name", "x", "--yes")
    assert bad.returncode == 3
    assert "private key" in bad.stderr

    listed = json.loads(_cli(tmp_path, "keys", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["ops-ec"]
    good = _cli(tmp_path, "image", "verify", image, "--sig", files["ec.sig"])
    assert good.returncode == 0, good.stderr
    assert "trusted key 'ops-ec'" in good.stdout
    other = _cli(tmp_path, "image", "verify", image, "--sig", files["ed.sig"])
    assert other.returncode == 3
    assert "signed by no trusted key" in other.stderr
    # --key checks that key alone, trusted or not
    assert _cli(tmp_path, "image", "verify", image, "--sig", files["ed.sig"], "--key", files["ed.pub"]).returncode == 0

    records = [r for r in read_records(tmp_path / "data" / "outbox.sqlite3") if r.action == "trusted-key-added"]
    assert len(records) == 1  # the no-op re-add is not recorded
    assert records[0].detail_obj()["name"] == "ops-ec"

    assert _cli(tmp_path, "keys", "remove", "nobody").returncode == 3
    removed = _cli(tmp_path, "keys", "remove", listed[0]["fingerprint"])
    assert removed.returncode == 0
    assert "no longer trusted" in removed.stdout
    assert "no trusted keys" in _cli(tmp_path, "keys", "list").stdout


def test_add_confirmation_prompt(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path))
    monkeypatch.setattr(image_cli, "record_audit", lambda action, detail: None)
    args = argparse.Namespace(pem=str(files["rsa.pub"]), name="ops-rsa", yes=False)
    questions: list[str] = []
    assert image_cli.keys_add_main(args, confirm=lambda q: questions.append(q) is not None) == 3
    assert "ops-rsa" in questions[0]
    assert image_cli.keys_add_main(args, confirm=lambda q: True) == 0
    out = capsys.readouterr().out
    assert out.count("SHA256:") >= 2
    assert "trusted 'ops-rsa'" in out


def test_image_info_says_what_an_image_is_and_refuses_garbage(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import gzip as gz

    from siteline.cli import main as cli_main

    image = tmp_path / "fw.img.gz"
    image.write_bytes(gz.compress(bytes(range(256)) * 4096))
    assert cli_main(["image", "info", str(image)]) == 0
    out = capsys.readouterr().out
    assert "fw.img.gz: raw" in out
    assert "unpacked    1.0 MiB (gzip)" in out
    assert cli_main(["image", "info", "--json", str(image)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["format"], data["details"]["uncompressed_size"]) == ("raw", 1 << 20)
    bad = tmp_path / "bad.swu"
    bad.write_text("garbage")
    assert cli_main(["image", "info", str(bad)]) == 3
    assert "refused: " in capsys.readouterr().err
