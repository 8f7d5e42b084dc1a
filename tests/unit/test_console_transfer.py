"""Console transfer: the device-reply parsers (recorded real output, garbage) and the refusals before a byte is sent."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siteline.core.errors import TransportError
from siteline.core.transports import console_transfer_cmds as cmds
from siteline.core.transports.base import Result
from siteline.core.transports.console_transfer import (
    MAX_SIZE,
    RunCommand,
    TransferResult,
    get_over_console,
    put_over_console,
)
from siteline.core.transports.transfer import check_local_destination, into_folder, local_destination

# `df -Pk .` as printed by GNU coreutils 9.1 (Debian 12), in the directory /tmp.
GNU_DF = """Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 25109444  81281468      24% /
"""
# BusyBox 1.36 `df -Pk /data/upload`: one row; long device names do not wrap with -P.
BUSYBOX_DF = """Filesystem           1024-blocks    Used Available Capacity Mounted on
/dev/disk/by-partlabel/data-very-long-name   11252980   182344  10507988   2% /data
"""
# A df that lists every mount (BusyBox given a path it cannot stat, the simulator).
ALL_MOUNTS_DF = """Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/root          1011672   612884    348204      64% /
tmpfs              1004936       96   1004840       1% /tmp
/dev/mmcblk0p4    11252980   182344  10507988       2% /data
/dev/sdb1            15000    14900       100     100% /media/usb stick
"""
HEX = "ab" * 32


def _lines(text: str) -> list[str]:
    return text.split("\n")


def test_df_single_row_gnu_and_busybox() -> None:
    assert cmds.free_bytes(_lines(GNU_DF), "/tmp") == 81281468 * 1024
    assert cmds.free_bytes(_lines(BUSYBOX_DF), "/data/upload") == 10507988 * 1024


def test_df_all_mounts_picks_the_longest_prefix() -> None:
    rows = _lines(ALL_MOUNTS_DF)
    assert cmds.free_bytes(rows, "/tmp/x y") == 1004840 * 1024
    assert cmds.free_bytes(rows, "/data") == 10507988 * 1024
    assert cmds.free_bytes(rows, "/datastore") == 348204 * 1024  # /data is no prefix of /datastore
    assert cmds.free_bytes(rows, "/media/usb stick/dir") == 100 * 1024  # a mount point with a space
    assert cmds.free_bytes(rows, "") == 348204 * 1024  # no pwd: the root row matches "/"


def test_df_garbage_gives_none() -> None:
    assert cmds.free_bytes(["df: .: No such file or directory"], "/x") is None
    assert cmds.free_bytes([], "/x") is None


def test_upload_place_parsed() -> None:
    text = "dir=1\nwritable=1\ncodec=openssl\nsha=1\npart=4096\npwd=/data/upload\ndf:\n" + BUSYBOX_DF
    assert cmds.parse_upload_place(text) == cmds.UploadPlace(
        False, False, True, True, "openssl", True, 4096, 10507988 * 1024)
    assert cmds.parse_upload_place("dir=0\n") == cmds.UploadPlace(False, False, False, False, None, False, None, None)
    into = cmds.parse_upload_place("into=1\ndir=1\nisdir=1\n")
    assert into is not None
    assert (into.into_dir, into.is_dir) == (True, True)
    assert cmds.parse_upload_place("sh: syntax error\n") is None


def test_chunk_and_read_replies() -> None:
    assert cmds.parse_chunk_reply(f"{HEX}  -\n  4608\n") == cmds.ChunkReply(4608, HEX)
    assert cmds.parse_chunk_reply(f"{HEX}  -\r\n4608\r\n") == cmds.ChunkReply(4608, HEX)
    assert cmds.parse_chunk_reply(f"base64: invalid input\n{HEX}  -\n4608\n") is None
    assert cmds.parse_chunk_reply(f"4608\n{HEX}  -\n") is None
    assert cmds.parse_read_reply(f"QUJD\nREVG\n{HEX}  -\n") == cmds.ReadReply("QUJDREVG", HEX)
    assert cmds.parse_read_reply(f"QU*D\n{HEX}  -\n") is None
    assert cmds.parse_hash(f"{HEX}  -\n") == HEX
    assert cmds.parse_hash("sha256sum: not found\n") is None


@given(st.text(max_size=300))
def test_parsers_never_raise(text: str) -> None:
    cmds.parse_upload_place(text)
    cmds.parse_download_source(text)
    cmds.parse_chunk_reply(text)
    cmds.parse_read_reply(text)
    cmds.parse_hash(text)
    cmds.parse_size(text)
    cmds.free_bytes(text.split("\n"), text[:20])


@given(st.lists(st.sampled_from(["dir=1", "dir=0", "writable=1", "codec=base64", "sha=1", "part=12", "part=x",
                                 "pwd=/tmp", "df:", GNU_DF, "garbage \x1b[0m", ""]), max_size=12))
def test_probe_parser_on_shuffled_replies(parts: list[str]) -> None:
    place = cmds.parse_upload_place("\n".join(parts))
    assert place is None or isinstance(place.dir_exists, bool)


def test_commands_quote_paths_and_fit_a_console_line() -> None:
    remote = "/data/it's a \"file\"; rm -rf /.bin"
    line = cmds.append_chunk(remote, "base64", "QUJD")
    assert shlex.quote(remote + ".part") in line
    assert "; rm -rf /.bin.part'" in line  # inside the quotes, not a command
    assert "base64 -d|tee -a" in line
    assert "openssl base64 -d -A" in cmds.append_chunk(remote, "openssl", "QUJD")
    for command in (cmds.upload_probe(remote, "f.bin"), cmds.download_probe(remote), cmds.finish_upload(remote),
                    cmds.read_chunk(remote, "base64", 9999, 560), cmds.append_chunk(remote, "base64", "A" * 600)):
        assert cmds.typed_length(command) <= cmds.MAX_TYPED_LINE
    assert cmds.truncate("/a b", 0, 100) == ": > '/a b'"
    assert cmds.truncate("/a", 3, 100) == "dd if=/dev/null of=/a bs=100 seek=3 2>/dev/null"


# -- refusals, against a device whose answers are scripted (the real shells are in tests/integration) -----


def _device(probe_reply: str) -> tuple[list[str], RunCommand]:
    sent: list[str] = []

    async def run(command: str, timeout: float) -> Result:
        sent.append(command)
        return Result(0, probe_reply)

    return sent, run


def _put(run: RunCommand, local: Path, remote: str = "/data/up/f.bin", max_size: int = MAX_SIZE,
         line_bps: int | None = None) -> TransferResult:
    return asyncio.run(put_over_console(run, local, remote, max_size=max_size, line_bps=line_bps))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(b"\x00" * 300_000)
    return path


@pytest.mark.parametrize(("reply", "match"), [
    ("dir=0\n", "/data/up does not exist on the device"),
    ("dir=1\ncodec=base64\nsha=1\n", "/data/up is not writable"),
    ("dir=1\nwritable=1\nsha=1\n", "no base64 \\(or openssl\\)"),
    ("dir=1\nwritable=1\ncodec=base64\n", "no sha256sum"),
    ("garbage", "could not be understood"),
    (f"dir=1\nwritable=1\ncodec=base64\nsha=1\npwd=/data/up\ndf:\n{BUSYBOX_DF.replace('10507988', '100')}",
     "has 102400 bytes free at /data/up, the file needs 300000 bytes"),
])
def test_refused_before_a_byte_is_sent(src: Path, reply: str, match: str) -> None:
    sent, run = _device(reply)
    with pytest.raises(TransportError, match=match):
        _put(run, src)
    assert len(sent) == 1  # only the probe


def test_too_large_for_a_console(src: Path) -> None:
    sent, run = _device("")
    with pytest.raises(TransportError, match=r"up to 100000 bytes\. At 115200 bit/s it would take about 0.6 minutes"):
        _put(run, src, max_size=100_000, line_bps=115200)
    with pytest.raises(TransportError) as info:
        _put(run, src, max_size=100_000)
    assert "minutes" not in str(info.value)
    assert "ssh://" in info.value.hint
    assert sent == []
    assert MAX_SIZE == 16 << 20


def test_local_missing_and_local_folder_missing(tmp_path: Path) -> None:
    sent, run = _device("")
    with pytest.raises(TransportError, match=r"local file .* does not exist"):
        _put(run, tmp_path / "nope")
    with pytest.raises(TransportError, match=r"local folder .* does not exist"):
        asyncio.run(get_over_console(run, "/x", tmp_path / "no" / "x"))
    assert sent == []


def test_a_path_too_long_for_a_line_is_refused(src: Path) -> None:
    ok = f"dir=1\nwritable=1\ncodec=base64\nsha=1\npwd=/\ndf:\n{GNU_DF}"
    _, run = _device(ok)
    with pytest.raises(TransportError, match="too long to type"):
        _put(run, src, remote="/" + "d" * 1700 + "/f")


# -- where the file lands ------------------------------------------------------------------------------------


def test_remote_folder_forms() -> None:
    assert into_folder("/data/", "f.bin") == "/data/f.bin"
    assert into_folder("", "f.bin") == "f.bin"  # the login's home, as scp host:
    assert into_folder("/data/x", "f.bin") is None  # the device says whether it is a directory


def test_local_destination(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    assert local_destination(tmp_path / "logs", "/var/log/messages") == tmp_path / "logs" / "messages"
    assert local_destination(f"{tmp_path}/new/", "/r/a.bin") == tmp_path / "new" / "a.bin"  # the separator counts
    assert local_destination(tmp_path / "x.bin", "/r/a.bin") == tmp_path / "x.bin"
    assert local_destination("", "/r/a.bin") == Path("a.bin")
    assert local_destination(tmp_path / "logs", "/var/log/") == tmp_path / "logs" / "log"
    for remote in ("/", "", "/tmp/..", "."):
        with pytest.raises(TransportError, match="names no file"):
            local_destination(tmp_path / "logs", remote)
    with pytest.raises(TransportError, match=r"local folder .* does not exist"):
        check_local_destination(tmp_path / "new" / "a.bin")
    (tmp_path / "logs" / "messages").mkdir()
    with pytest.raises(TransportError, match="is a folder"):
        check_local_destination(tmp_path / "logs" / "messages")


def test_an_existing_remote_directory_takes_the_file_inside(src: Path) -> None:
    sent, run = _device(f"into=1\ndir=1\nisdir=1\nwritable=1\ncodec=base64\nsha=1\npwd=/data\ndf:\n{GNU_DF}")
    with pytest.raises(TransportError, match=r"Cannot upload /data/src\.bin: it is a directory on the device"):
        _put(run, src, remote="/data")
    assert sent == [cmds.upload_probe("/data", "src.bin")]
    sent.clear()
    with pytest.raises(TransportError, match=r"/data/src\.bin: it is a directory"):
        _put(run, src, remote="/data/")
    assert sent == [cmds.upload_probe("/data/src.bin")]  # a trailing slash: no second guess on the device


def test_the_rename_syncs_before_and_after_and_never_moves_into_a_directory() -> None:
    line = cmds.finish_upload("/data/f.bin")
    assert line.index("sync && mv -f /data/f.bin.part") < line.index("&& sync")
    assert line.endswith("&& sync")
    assert 'if [ -d "$r" ]' in line.split("mv")[0]
