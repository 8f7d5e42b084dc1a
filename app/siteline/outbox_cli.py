"""`siteline outbox status|list|export|import|retry|sync` and `siteline note SITE DEVICE TEXT`.

    siteline outbox status --json       # {"pending": 3, "sent": 10, "failed": 0, "bytes_this_month": ...}
    siteline outbox export /media/usb/site-a.jsonl.gz
    siteline note site-a gw1 "replaced the antenna cable"

Everything here works offline: it reads and writes the local outbox only (``sync`` is the one command
that talks to the control plane; the sync module does that).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from siteline.core.errors import SitelineError
from siteline.core.outbox.handcarry import iso
from siteline.core.outbox.model import InvalidItemError, Item, OutboxError, Priority, State
from siteline.core.outbox.store import Outbox

EXIT_OK, EXIT_PARTLY, EXIT_USAGE, EXIT_OUTBOX = 0, 1, 2, 6
EPILOG = """exit codes:
  0  ok
  1  import: some lines were refused (listed on stderr); the others were imported
  2  usage: a bad argument, item or file name
  6  outbox error: the disk is full, the outbox is from a newer Siteline, or it cannot be read
The outbox lives in Siteline's data folder (SITELINE_HOME/data when SITELINE_HOME is set)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``outbox`` and its actions on the ``siteline`` command's subparsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    outbox = sub.add_parser("outbox", help="what waits to reach the control plane; hand-carry files",
                            epilog=EPILOG, formatter_class=fmt)
    actions = outbox.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="items waiting, sent, failed; data used this month", epilog=EPILOG,
                                formatter_class=fmt)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    listing = actions.add_parser("list", help="items, newest first", epilog=EPILOG, formatter_class=fmt)
    listing.add_argument("--state", choices=[s.value for s in State], help="only items in this state")
    listing.add_argument("--limit", type=_positive, default=50, help="at most N items (default 50)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    export = actions.add_parser("export", help="write waiting and failed items to a file to carry",
                                epilog=EPILOG, formatter_class=fmt)
    export.add_argument("file", type=Path)
    imp = actions.add_parser("import", help="add the items of a hand-carry file (twice adds nothing)",
                             epilog=EPILOG, formatter_class=fmt)
    imp.add_argument("file", type=Path)
    retry = actions.add_parser("retry", help="send failed items again", epilog=EPILOG, formatter_class=fmt)
    retry.add_argument("ids", nargs="*", help="item ids (default: every failed item)")
    sync = actions.add_parser("sync", help="send what is waiting to the control plane, then exit")
    from siteline import sync_cli

    sync_cli.add_sync_arguments(sync)
    for parser in (status, listing, export, imp, retry, sync):
        parser.set_defaults(handler=run)


def add_note_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``note SITE DEVICE TEXT``."""
    note = sub.add_parser("note", help="record a technician note (kept in the outbox and the audit trail)",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    note.add_argument("site")
    note.add_argument("device")
    note.add_argument("text")
    note.set_defaults(handler=run)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("give a number above 0")
    return value


def run(args: argparse.Namespace) -> int:
    action = "note" if args.command == "note" else str(args.outbox_command)
    if action == "sync":
        return _sync(args)
    try:
        with Outbox.open() as outbox:
            if outbox.recovered_from is not None:
                print(f"siteline: the outbox file was damaged; it was kept as {outbox.recovered_from} and a new, "
                      "empty outbox started. Send the kept file to support.", file=sys.stderr)
            return _ACTIONS[action](outbox, args)
    except InvalidItemError as exc:
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OutboxError, SitelineError) as exc:  # SitelineError: the audit trail refused the note's record
        print(f"siteline: {exc}", file=sys.stderr)
        return EXIT_OUTBOX


def _sync(args: argparse.Namespace) -> int:
    from siteline.sync_cli import sync_command

    return sync_command(args)


def _budget() -> int | None:
    try:
        from siteline.core.outbox.settings import load_settings

        settings = load_settings()
    except Exception:  # no or unreadable settings: no budget to show; `outbox sync` reports settings errors
        return None
    return None if settings is None else settings.monthly_budget_bytes


def _status(outbox: Outbox, args: argparse.Namespace) -> int:
    st, budget = outbox.status(), _budget()
    by = {p.name.lower(): st.pending_by_priority.get(int(p), 0) for p in Priority}
    if args.json:
        print(json.dumps({
            "pending": st.pending, "sent": st.sent, "failed": st.failed, "bytes_this_month": st.bytes_this_month,
            "month": st.month, "budget_bytes": budget,
            "oldest_pending": None if st.oldest_pending is None else iso(st.oldest_pending),
            "pending_by_priority": by, "path": str(outbox.path),
            "recovered_from": None if outbox.recovered_from is None else str(outbox.recovered_from),
        }))
        return EXIT_OK
    oldest = "" if st.oldest_pending is None else f", oldest from {iso(st.oldest_pending)}"
    print(f"Outbox {outbox.path}")
    print(f"  waiting: {st.pending} (high {by['high']}, normal {by['normal']}, low {by['low']}){oldest}")
    print(f"  sent: {st.sent}")
    hint = " (send them again: siteline outbox retry)" if st.failed else ""
    print(f"  failed: {st.failed}{hint}")
    of = f" of a {_size(budget)} budget" if budget else ""
    print(f"  data this month ({st.month}): {_size(st.bytes_this_month)}{of}")
    return EXIT_OK


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _as_json(item: Item) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "site": item.site, "device": item.device, "created": iso(item.created),
            "priority": item.priority, "state": item.state.value, "attempts": item.attempts,
            "last_error": item.last_error, "sent_at": None if item.sent_at is None else iso(item.sent_at),
            "payload_sha256": item.payload_sha256, "vault_refs": list(item.vault_refs), "payload": item.payload_obj()}


def _list(outbox: Outbox, args: argparse.Namespace) -> int:
    found = outbox.items(State(args.state) if args.state else None, limit=args.limit)
    if args.json:
        print(json.dumps([_as_json(i) for i in found], ensure_ascii=False))
        return EXIT_OK
    for i in found:
        error = f"  {i.last_error[:60]}" if i.last_error else ""
        print(f"{iso(i.created)[:19]}Z  {i.id}  {i.kind:<14} {i.site}/{i.device}  {i.state.value:<7} "
              f"tries {i.attempts}{error}")
    if not found:
        print("No items.")
    return EXIT_OK


def _export(outbox: Outbox, args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.parent.is_dir():
        print(f"siteline: the folder {path.parent} does not exist; give a file in an existing folder.",
              file=sys.stderr)
        return EXIT_USAGE
    count = outbox.export(path)
    print(f"Wrote {count} items (waiting and failed) to {path}. On a machine with a network: "
          f"siteline outbox import {path.name}")
    return EXIT_OK


def _import(outbox: Outbox, args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"siteline: {path} is not a file; give the path of an exported .jsonl.gz file.", file=sys.stderr)
        return EXIT_USAGE
    result = outbox.import_file(path)
    print(f"Imported {result.added} items from {path} ({result.duplicates} were already here).")
    for reason in result.rejected:
        print(f"siteline: refused {reason}", file=sys.stderr)
    return EXIT_PARTLY if result.rejected else EXIT_OK


def _retry(outbox: Outbox, args: argparse.Namespace) -> int:
    moved = outbox.retry(args.ids or None)
    print(f"{moved} failed items will be sent again at the next sync.")
    return EXIT_OK


def _note(outbox: Outbox, args: argparse.Namespace) -> int:
    from siteline.core.audit import AuditTrail
    from siteline.core.keep import save_note
    from siteline.core.outbox.settings import current_technician

    note = save_note(outbox, AuditTrail(outbox, current_technician()), args.site, args.device, args.text)
    print(f"Note saved for {args.site}/{args.device} (id {note.id}); it reaches the control plane at the next sync.")
    return EXIT_OK


_ACTIONS = {"status": _status, "list": _list, "export": _export, "import": _import, "retry": _retry, "note": _note}


def main(argv: list[str] | None = None) -> int:
    """``python -m siteline.outbox_cli ...``: the same commands without the rest of ``siteline``."""
    parser = argparse.ArgumentParser(prog="siteline", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parsers(sub)
    add_note_parser(sub)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
