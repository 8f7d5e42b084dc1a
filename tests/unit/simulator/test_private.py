"""Secret-bearing files are owner-only from the moment they exist."""

from __future__ import annotations

import os
from pathlib import Path

from siteline.simulator.private import write_private


def test_new_file_is_owner_only_even_with_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "secret", "s3cret\n")
    finally:
        os.umask(old)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secret").read_text() == "s3cret\n"


def test_replacing_a_readable_file_leaves_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private(path, b"\x00new")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == b"\x00new"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no temp file left behind
