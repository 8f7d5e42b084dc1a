"""swupdate (2022.12-like): ``swupdate [-v] [-c] -i FILE.swu [-e SET,MODE] [-H BOARD:REV] [-k KEY] [-p CMD]``.

Reads the .swu as SWUpdate does (a newc/crc cpio, sw-description first, libconfig), checks its
hardware-compatibility against the simulated board, then installs its version into the inactive slot
and makes that slot primary, exactly as the simulator's ``rauc install`` does (the slot record, then
``boot.activate`` in the U-Boot env: what the bootenv section of an A/B sw-description does). Images are
never written anywhere: the slot record stands for the slot's contents.

Drill flags as in RAUC bundles: a ``siteline-sim.conf`` entry (``[siteline-sim] boots=false healthy=false``)
or a ``siteline-sim`` group inside ``software``. The signature (``sw-description.sig``, ``-k``) is not checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siteline.core.images import swu
from siteline.core.images.formats import ImageError
from siteline.simulator import boot, slots
from siteline.simulator.bundles import SIM_FLAGS, BundleError, flag_value, sim_flags
from siteline.simulator.state import DeviceState, iso_time
from siteline.simulator.store import locked
from siteline.simulator.tools.common import err, out
from siteline.simulator.tools.system import device_path

BANNER = "SWUpdate v2022.12.0\n\nLicensed under GPLv2. See source distribution for detailed copyright notices.\n\n"
USAGE = ("Usage swupdate [OPTION]\n -i, --image <filename>     : Software to be installed\n"
         " -e, --select <software>,<mode> : Select software images set and source\n"
         " -H, --hwrevision <board>:<revision> : Set hardware revision\n"
         " -c, --check                : check image and exit, use with -i <filename>\n"
         " -k, --key <public key file> : file with public key to verify images\n"
         " -p, --postupdate           : execute post-update command\n -v, --verbose              : be verbose\n"
         " -h, --help                 : print this help and exit\n")
REVISION = "1.0"
_VALUED = {"-i": "image", "--image": "image", "-e": "select", "--select": "select", "-H": "hw",
           "--hwrevision": "hw", "-k": "key", "--key": "key", "-p": "post", "--postupdate": "post",
           "-l": "loglevel", "--loglevel": "loglevel", "-f": "config", "--file": "config"}
_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-c": "check", "--check": "check", "-L": "syslog",
          "--syslog": "syslog"}
MAX_FLAGS = 64 * 1024


class SwuError(Exception):
    """Why SWUpdate refuses the image (its ERROR line's text)."""


@dataclass
class Update:
    version: str
    description: str
    hardware: list[str]
    images: list[dict[str, Any]]
    boots: bool
    healthy: bool
    sha256: str
    size: int


def main(tool: str, argv: list[str], state: DeviceState) -> int:
    opts, problem = _options(argv)
    if problem:
        err(f"swupdate: {problem}\n{USAGE}")
        return 1
    if opts.get("help"):
        out(USAGE)
        return 0
    if not opts.get("image"):
        err("swupdate: no image given (-i <filename>); this device runs no SWUpdate daemon\n" + USAGE)
        return 1
    verbose = bool(opts.get("verbose"))
    out(BANNER)
    board, revision = _hardware(opts.get("hw"))
    _info(f"SWUPDATE running :  [main] : Running on {board} Revision {revision}")
    _info("SWUPDATE started :  Software Update started !")
    arg = str(opts["image"])
    path = device_path(state, arg) or Path(arg)
    try:
        update = _read(path, opts.get("select"), board, revision, verbose)
    except SwuError as exc:
        return _failed(str(exc))
    if opts.get("check"):
        _info("SWUPDATE running :  [main] : swupdate: image checked, not installing (-c)")
        return 0
    try:
        target = _install(state, update, verbose)
    except SwuError as exc:
        return _failed(str(exc))
    state.log(f"SWUPDATE successful: {update.version} in {target.rauc_name} ({target.device})", "swupdate")
    _info("SWUPDATE successful ! SWUPDATE successful !")
    if opts.get("post") == "reboot":
        state.request_reboot("reboot")
    return 0


def _options(argv: list[str]) -> tuple[dict[str, str | bool], str | None]:
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if key in ("-h", "--help"):
            opts["help"] = True
        elif key in _FLAGS:
            opts[_FLAGS[key]] = True
        elif key in _VALUED:
            if inline:
                opts[_VALUED[key]] = inline
            elif i + 1 < len(argv):
                i += 1
                opts[_VALUED[key]] = argv[i]
            else:
                return opts, f"option {key} requires an argument"
        else:
            return opts, f"invalid option -- '{arg.lstrip('-')}'"
        i += 1
    return opts, None


def _hardware(given: Any) -> tuple[str, str]:
    """The board as SWUpdate sees it: -H board:revision, else this device's compatible (its /etc/hwrevision)."""
    if isinstance(given, str) and ":" in given:
        board, revision = given.split(":", 1)
        return board, revision
    return slots.COMPATIBLE, REVISION


def _info(text: str) -> None:
    out(f"[INFO ] : {text}\n")


def _trace(text: str, verbose: bool) -> None:
    if verbose:
        out(f"[TRACE] : SWUPDATE running :  {text}\n")


def _failed(message: str) -> int:
    err(f"[ERROR] : SWUPDATE failed [0] ERROR {message}")
    err("[ERROR] : SWUPDATE failed [1] Image invalid or corrupted. Not installing ...")
    return 1


def _read(path: Path, selection: Any, board: str, revision: str, verbose: bool) -> Update:
    """Scan the archive, parse sw-description and check it against the board; SwuError says why not."""
    if not path.is_file():
        raise SwuError(f"core/swupdate.c : install_from_file : {path} cannot be opened: No such file or directory")
    try:
        found = list(swu.entries(path))
    except (ImageError, OSError) as exc:
        raise SwuError(f"core/cpio_utils.c : extract_cpio_header : CPIO Format not recognized: {_reason(exc)}") \
            from exc
    if not found or found[0][0].name != "sw-description" or found[0][1] is None:
        raise SwuError("core/stream_interface.c : extract_files : sw-description not found as first entry")
    description = found[0][1]
    for line in ("Found file", "\tfilename sw-description", f"\tsize {len(description)}"):
        _trace(f"[extract_file_to_tmp] : {line}", verbose)
    try:
        desc = swu.parse_description(description.decode("utf-8", "replace"))
    except ImageError as exc:
        raise SwuError(f"parser/parser.c : parse_cfg : {_reason(exc)}") from exc
    software = desc.get("software")
    if not isinstance(software, dict):
        raise SwuError("parser/parser.c : parse_cfg : Missing software group in sw-description")
    chosen = _select(software, selection, board)
    update = _describe(software, chosen, path, found)
    _trace(f"[get_common_fields] : Version {update.version}", verbose)
    if update.hardware and board not in update.hardware and revision not in update.hardware:
        raise SwuError(f"core/parser.c : parse : SW not compatible with hardware: this is {board} revision "
                       f"{revision}, the image accepts {', '.join(update.hardware)}")
    _trace(f"[check_hw_compatibility] : Hardware {board} Revision: {revision}", verbose)
    if not update.images and not any(isinstance(chosen.get(k), list) for k in ("files", "scripts", "bootenv")):
        # An A/B sw-description keeps its images under SET.MODE: without -e there is nothing at the top.
        raise SwuError("parser/parser.c : parse_cfg : Found nothing to install (an A/B image needs -e SET,MODE)")
    names = {entry.name for entry, _ in found}
    for image in update.images:
        name = str(image.get("filename", ""))
        if name and name not in names:
            raise SwuError(f"core/cpio_utils.c : cpio_scan : Image {name} not found in the archive (truncated?)")
        _trace(f"[parse_images] : Found Image: {name} in device : {image.get('device', '')} for handler "
               f"{image.get('type', 'raw')}", verbose)
    return update


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ImageError) else str(exc)


def _select(software: dict[str, Any], selection: Any, board: str) -> dict[str, Any]:
    """The group the -e selection (SET,MODE) names, looked up as SWUpdate does: under the board first."""
    if not isinstance(selection, str) or not selection:
        by_board = software.get(board)
        return by_board if isinstance(by_board, dict) else software
    parts = selection.split(",", 1)
    if len(parts) != 2 or not all(parts):
        raise SwuError(f"core/swupdate.c : parse_image_selector : Incorrect select option format: {selection}")
    for root in (software.get(board), software):
        node = root.get(parts[0]) if isinstance(root, dict) else None
        node = node.get(parts[1]) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    raise SwuError(f"parser/parser.c : parse_cfg : selection '{selection}' not found in sw-description: "
                   "Found nothing to install")


def _describe(software: dict[str, Any], chosen: dict[str, Any], path: Path,
              found: list[tuple[swu.CpioEntry, bytes | None]]) -> Update:
    hardware = software.get("hardware-compatibility", chosen.get("hardware-compatibility", []))
    images = [i for i in chosen.get("images", []) if isinstance(i, dict)] if isinstance(chosen.get("images"), list) \
        else []
    flags = _flags(software, path, found)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return Update(str(software.get("version", chosen.get("version", ""))), str(software.get("description", "")),
                  [str(h) for h in hardware] if isinstance(hardware, list) else [str(hardware)], images,
                  flags.get("boots", True), flags.get("healthy", True), digest.hexdigest(), path.stat().st_size)


def _flags(software: dict[str, Any], path: Path, found: list[tuple[swu.CpioEntry, bytes | None]]) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    group = software.get("siteline-sim")
    if isinstance(group, dict):
        flags.update({k: flag_value(str(v)) for k, v in group.items() if k in ("boots", "healthy")})
    entry = next((e for e, _ in found if e.name == SIM_FLAGS), None)
    if entry is not None and entry.size <= MAX_FLAGS:
        with path.open("rb") as fh:
            fh.seek(entry.offset)
            text = fh.read(entry.size).decode("utf-8", "replace")
        try:
            flags.update(sim_flags(text))
        except BundleError as exc:
            raise SwuError(f"parser/parser.c : parse_cfg : {exc}") from exc
    return flags


def _install(state: DeviceState, update: Update, verbose: bool) -> slots.SlotInfo:
    booted = state.booted_slot()
    target = next(s for s in slots.SLOT_TABLE if s.bootname != booted)
    running = slots.by_bootname(booted)
    for image in update.images:
        if running is not None and image.get("device") == running.device:
            # SWUpdate would overwrite the mounted rootfs; the simulated device refuses rather than lose its state.
            raise SwuError(f"handlers/raw_handler.c : install_raw_image : {running.device} is the running root "
                           "filesystem: select the other copy (-e stable,copyN)")
        _trace(f"[install_single_image] : Found installer for stream {image.get('filename', '')} "
               f"{image.get('type', 'raw')}", verbose)
    _info("SWUPDATE running :  Installation in progress")
    with locked(state.root):
        _write_slot(state, target.bootname, update)
        env = state.read_env_or_default()
        boot.activate(env, target.bootname)
        state.write_env(env)
    _trace("[update_bootloader_env] : Updating bootloader environment", verbose)
    return target


def _write_slot(state: DeviceState, bootname: str, update: Update) -> None:
    def change(table: dict[str, Any]) -> None:
        old = table.get(bootname, {})
        rec = slots.new_slot_record(update.version, iso_time(), boots=update.boots, healthy=update.healthy,
                                    sha256=update.sha256, size=update.size)
        rec["description"] = update.description or rec["description"]
        rec["installed"]["count"] = int((old.get("installed") or {}).get("count", 0)) + 1
        rec["activated"]["count"] = int((old.get("activated") or {}).get("count", 0)) + 1
        table[bootname] = rec

    slots.update(state.root, change)
