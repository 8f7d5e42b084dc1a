"""The U-Boot env codec: CRC, layout, and refusal of damaged files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from siteline.simulator import ubootenv


def test_encode_layout_is_crc_then_sorted_entries_padded_with_zeros() -> None:
    blob = ubootenv.encode({"b": "2", "a": "1 2"})
    assert len(blob) == ubootenv.ENV_SIZE
    (crc,) = struct.unpack("<I", blob[:4])
    assert crc == zlib.crc32(blob[4:])
    assert blob[4:].startswith(b"a=1 2\0b=2\0\0")
    assert set(blob[4 + len(b"a=1 2\0b=2\0\0") :]) == {0}


def test_round_trip() -> None:
    env = {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "empty_is_kept_out": "x"}
    assert ubootenv.decode(ubootenv.encode(env)) == env


@pytest.mark.parametrize("damage", ["crc", "data", "truncate"])
def test_damaged_env_is_refused(damage: str) -> None:
    blob = bytearray(ubootenv.encode({"BOOT_ORDER": "A B"}))
    if damage == "crc":
        blob[0] ^= 0xFF
    elif damage == "data":
        blob[10] ^= 0x01
    else:
        blob = blob[:100]
    with pytest.raises(ubootenv.EnvError):
        ubootenv.decode(bytes(blob))


def test_too_large_env_is_an_error_not_a_crash() -> None:
    with pytest.raises(ubootenv.EnvError, match="too large"):
        ubootenv.encode({"big": "x" * ubootenv.ENV_SIZE})


def test_config_file_names_the_env(tmp_path: Path) -> None:
    loc = ubootenv.create(tmp_path, {"x": "1"})
    parsed = ubootenv.read_config(tmp_path / ubootenv.CONFIG_NAME)
    assert parsed == loc
    assert ubootenv.load(parsed) == {"x": "1"}


def test_garbage_config_is_a_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "fw_env.config"
    bad.write_text("/x/y zz qq\n")
    with pytest.raises(ubootenv.EnvError):
        ubootenv.read_config(bad)
    bad.write_text("# only comments\n")
    with pytest.raises(ubootenv.EnvError):
        ubootenv.read_config(bad)
