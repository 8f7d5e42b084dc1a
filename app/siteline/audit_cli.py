"""`siteline audit verify|list`: check and read the audit trail without a vault, without changing anything.

    siteline audit verify [--db PATH] [--json]
    siteline audit list [--device D] [--limit N] [--json] [--db PATH]

The trail lives in the outbox file; both commands open it read-only (a missing file is an empty trail).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from siteline.core.audit import AuditRecord, AuditUnreadable, VerifyResult
from siteline.core.audit_verify import read_records, verify_file

EXIT_OK, EXIT_BROKEN, EXIT_DAMAGED_KEPT, EXIT_UNREADABLE = 0, 3, 4, 6
EPILOG = """exit codes:
  0  the trail is intact (or empty: nothing recorded yet) and no damaged outbox is kept beside it
  3  the trail is broken: a record was changed, removed or added; the first bad one is named
  4  the trail in the file is intact, but a damaged outbox was set aside beside it
     (outbox.sqlite3.damaged-*): the trail restarted there, and its earlier records are in that
     file; keep it and give it to support (3 wins when the trail is broken as well)
  6  the file cannot be read (not a Siteline outbox, damaged, no permission)
No vault is needed: the trail holds no secrets."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit`` with its ``verify`` and ``list`` subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", type=Path,
                        help="the outbox file holding the trail (default: this user's outbox)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    audit = sub.add_parser("audit", help="check or list the tamper-evident audit trail",
                           description="The audit trail: every action that changed a device or Siteline's trust, "
                           "hash-chained.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.set_defaults(handler=run, audit_command=None)
    actions = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    verify = actions.add_parser("verify", parents=[common],
                                help="check the hash chain (exit 0 intact, 3 broken, 4 a damaged outbox kept)",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.set_defaults(handler=run)
    listing = actions.add_parser("list", parents=[common], help="the newest records first")
    listing.add_argument("--device", help="one device's records only")
    listing.add_argument("--limit", type=int, default=50, help="at most this many records (default 50)")
    listing.set_defaults(handler=run)


def _db(args: argparse.Namespace) -> Path:
    if getattr(args, "db", None) is not None:
        return Path(args.db)
    from siteline.core.outbox.store import default_path

    return default_path()


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "audit_command", None)
    if command not in ("verify", "list"):
        print("siteline audit: say what to do: verify or list (see siteline audit --help)", file=sys.stderr)
        return 2
    path = _db(args)
    try:
        if command == "verify":
            return _verify(path, args.json)
        return _list(path, args.device, args.limit, args.json)
    except AuditUnreadable as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _verify(path: Path, as_json: bool) -> int:
    result: VerifyResult = verify_file(path)
    code = EXIT_BROKEN if not result.ok else EXIT_DAMAGED_KEPT if result.damaged else EXIT_OK
    if as_json:
        print(json.dumps({"ok": result.ok, "count": result.count, "first_bad_seq": result.first_bad_seq,
                          "reason": result.reason, "last": _when(result.last_ts) if result.last_ts else None,
                          "db": str(path), "damaged": [str(p) for p in result.damaged]}))
        return code
    _print_verify(path, result)
    if result.damaged:
        print(_damaged_warning(result.damaged), file=sys.stderr)
    return code


def _damaged_warning(damaged: tuple[Path, ...]) -> str:
    files = "\n".join(f"  {p}" for p in damaged)
    return (f"siteline: WARNING: {len(damaged)} damaged outbox file{'s were' if len(damaged) > 1 else ' was'} set "
            f"aside beside this one, so the audit trail restarted after {'them' if len(damaged) > 1 else 'it'}; "
            f"the earlier records are in:\n{files}\nDo not delete {'them' if len(damaged) > 1 else 'it'}: keep "
            "the files as they are and give them to support or your team lead (they are not repaired here).")


def _print_verify(path: Path, result: VerifyResult) -> None:
    if result.ok and result.damaged:
        print(f"audit trail RESTARTED: {result.count} records intact in {path.name}, which was started anew "
              f"when a damaged outbox was set aside; the earlier part of the trail is in the damaged file")
    elif result.ok and result.count == 0:
        print(f"audit trail intact: 0 records (nothing recorded yet in {path})")
    elif result.ok:
        print(f"audit trail intact: {result.count} records, last at {_when(result.last_ts)}")
    else:
        print(f"audit trail BROKEN at record {result.first_bad_seq}: {result.reason}.")
        print(f"{result.count} records before it are intact. Keep the file {path} as it is and compare it with "
              "the copy the control plane received.", file=sys.stderr)


def _list(path: Path, device: str | None, limit: int, as_json: bool) -> int:
    records = read_records(path, device, limit=max(0, limit))
    if as_json:
        print(json.dumps([r.as_json() for r in records], ensure_ascii=False))
        return EXIT_OK
    if not records:
        print("no audit records" + (f" for {device}" if device else ""))
    for record in records:
        print(_line(record))
    return EXIT_OK


def _line(record: AuditRecord) -> str:
    detail = record.detail if record.detail != "{}" else ""
    return (f"{_when(record.ts)}  #{record.seq:<5} {record.technician}  {record.site}/{record.device}  "
            f"{record.action}  {record.result}  {detail}").rstrip()


def main(argv: list[str] | None = None) -> int:
    """``python -m siteline.audit_cli verify|list ...``: the same as ``siteline audit ...``."""
    parser = argparse.ArgumentParser(prog="siteline")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
