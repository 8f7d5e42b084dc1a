"""`siteline vault ...`: create, unlock (agent), lock, add, list, export, import, passwd.

Passphrases come from the terminal without echo, or for scripts from environment variables —
never from arguments, which every user on the machine can read in the process list. Without a
terminal and without the variable the command fails at once with a message: it never waits on a
prompt nobody can see. Secret values are never printed; `list` shows names, kinds and dates.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from siteline.core.vault import KINDS, EntryInfo, KdfCost, Vault, VaultError, WrongPassphrase, default_path
from siteline.core.vault import agent as vault_agent
from siteline.core.vault.entries import MAX_VALUE

PASSPHRASE_ENV = "SITELINE_VAULT_PASSPHRASE"          # the vault's passphrase (init, unlock, add, ...)
NEW_PASSPHRASE_ENV = "SITELINE_VAULT_NEW_PASSPHRASE"  # passwd: the new one
EXPORT_PASSPHRASE_ENV = "SITELINE_VAULT_EXPORT_PASSPHRASE"  # export/import: the hand-over file's own
# "ITERATIONS,MEMORY_KIB,LANES" for new vaults: lets the CLI tests run cheap. Real use leaves it unset
# (Argon2id t=3, 256 MiB, 4 lanes: about 0.5 s, see core/vault/crypto.py).
KDF_COST_ENV = "SITELINE_VAULT_KDF_COST"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_WRONG_PASSPHRASE = 0, 1, 2, 5

EPILOG = f"""passphrases: typed at the terminal (no echo), or for scripts from
  {PASSPHRASE_ENV}, {NEW_PASSPHRASE_ENV} (passwd), {EXPORT_PASSPHRASE_ENV} (export/import).
exit codes: 0 ok, 1 vault error, 2 usage or no terminal to ask on, 5 wrong passphrase"""


class NoTerminal(VaultError):  # noqa: N818
    pass


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    vault = sub.add_parser("vault", help="the encrypted store of passwords and keys", epilog=EPILOG,
                           formatter_class=fmt)
    vault.add_argument("--vault", metavar="FILE", type=Path, help="vault file (default: the user's)")
    vault.set_defaults(handler=run, vault_action=None)
    actions = vault.add_subparsers(dest="vault_action", metavar="ACTION")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help_text, epilog=EPILOG, formatter_class=fmt)

    init = add("init", "create a new vault")
    init.add_argument("--keyring", action="store_true", help="let the OS keyring hold the key (no passphrase)")
    unlock = add("unlock", "unlock for other siteline commands: a background agent holds the key until idle")
    unlock.add_argument("--minutes", type=float, default=15.0, help="lock after this many idle minutes (default 15)")
    add("lock", "lock now: the agent forgets the key and exits")
    add("status", "where the vault is, how it is protected, whether it is unlocked")
    put = add("add", "add or replace a secret (value from the terminal, or from stdin when piped)")
    put.add_argument("name", help="e.g. device/SITE/DEVICE/password, control-plane/password")
    put.add_argument("--kind", choices=KINDS, default="password")
    put.add_argument("--note", default="", help="a note shown in lists (not secret)")
    put.add_argument("--replace", action="store_true", help="replace an existing entry of that name")
    remove = add("remove", "delete a secret")
    remove.add_argument("name")
    show = add("list", "list entries: names, kinds, dates (never values)")
    show.add_argument("--json", action="store_true")
    export = add("export", "write entries to a file encrypted under a separate export passphrase")
    export.add_argument("file", type=Path)
    export.add_argument("--names", nargs="+", metavar="NAME", help="only these entries (default: all)")
    imp = add("import", "add the entries of an export file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--overwrite", action="store_true", help="replace entries that exist (default: keep them)")
    add("passwd", "change the vault's passphrase")


def run(args: argparse.Namespace) -> int:
    action = args.vault_action
    if action is None:
        print("siteline: say what to do, e.g. siteline vault list (siteline vault -h for all)", file=sys.stderr)
        return EXIT_USAGE
    path: Path = args.vault or default_path()
    try:
        return int(_ACTIONS[action](args, path))
    except WrongPassphrase as exc:
        return _fail(EXIT_WRONG_PASSPHRASE, exc)
    except NoTerminal as exc:
        return _fail(EXIT_USAGE, exc)
    except VaultError as exc:
        return _fail(EXIT_ERROR, exc)
    except KeyboardInterrupt:
        print("\nsiteline: cancelled; the vault is unchanged", file=sys.stderr)
        return 130


def _fail(code: int, exc: BaseException) -> int:
    print(f"siteline: {exc}", file=sys.stderr)
    return code


# ---- asking for passphrases and values
def _terminal() -> bool:
    """Can getpass talk to a person? It opens /dev/tty; when that fails it would read stdin, which we forbid."""
    if os.name != "posix":
        return sys.stdin.isatty()
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def ask(prompt: str, env: str, *, confirm: bool = False) -> str:
    from_env = os.environ.get(env)
    if from_env is not None:
        return from_env
    if not _terminal():
        raise NoTerminal("no terminal to ask for the passphrase on", f"for scripts, set {env}")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Again: ") != first:
        raise VaultError("the two entries differ; nothing was changed", "try again")
    return first


def _read_value(name: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value for {name}: ")
        if getpass.getpass("Again: ") != value:
            raise VaultError("the two entries differ; nothing was saved", "try again")
    else:
        value = sys.stdin.read(MAX_VALUE + 2)
        value = value.removesuffix("\n").removesuffix("\r")  # `echo secret |` adds a newline nobody means
    if not value:
        raise VaultError("the value is empty; nothing was saved",
                         "type it at the prompt, or pipe it: printf %s SECRET | siteline vault add NAME")
    return value


def _unlocked(path: Path) -> Vault:
    vault = Vault.open(path)
    if not vault.exists:
        raise VaultError(f"there is no vault at {path}", "create one: siteline vault init")
    if vault.problem is not None:  # say so before asking for a passphrase that cannot help
        raise vault.problem
    vault.unlock(None if vault.uses_keyring else ask(f"Passphrase for {path}: ", PASSPHRASE_ENV))
    return vault


def _technician() -> str:
    try:
        from siteline.core.outbox.envelope import default_technician
        from siteline.core.outbox.settings import load_settings

        settings = load_settings()
        return settings.technician if settings is not None and settings.technician else default_technician()
    except Exception:  # unreadable settings or no outbox package: the OS user, as the sync would use
        return getpass.getuser()


def _audit(action: str, detail: dict[str, Any]) -> None:
    """Record a vault action in the audit trail. The vault change is already done: a trail that cannot be
    written is reported on stderr, not turned into a failure that would suggest nothing happened."""
    try:
        from siteline.core.audit import AuditTrail
        from siteline.core.outbox.store import Outbox

        with Outbox.open() as outbox:
            AuditTrail(outbox, _technician()).record(action, device="-", site="-", detail=detail)
    except Exception as exc:
        print(f"siteline: warning: the audit trail could not record {action}: {exc}", file=sys.stderr)


def _refs(names: list[str]) -> list[str]:
    return [f"vault:{name}" for name in names]  # references only: the trail is kept in clear


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the actions
def _init(args: argparse.Namespace, path: Path) -> int:
    if path.exists():
        raise VaultError(f"a vault already exists at {path}; it was not changed", "unlock it, or pass --vault FILE")
    if args.keyring:
        Vault.create(path, use_keyring=True)
    else:
        Vault.create(path, ask("New vault passphrase: ", PASSPHRASE_ENV, confirm=True), cost=_cost_from_env())
    _audit("vault-created", {"path": str(path), "protection": "keyring" if args.keyring else "passphrase"})
    print(f"siteline: vault created at {path}" + (" (key in the OS keyring)" if args.keyring else ""))
    return EXIT_OK


def _cost_from_env() -> KdfCost | None:
    text = os.environ.get(KDF_COST_ENV)
    if not text:
        return None
    try:
        cost = KdfCost(*(int(part) for part in text.split(",")))
    except (TypeError, ValueError):
        cost = KdfCost(0)
    if not cost.valid():
        raise NoTerminal(f"{KDF_COST_ENV} is not ITERATIONS,MEMORY_KIB,LANES within limits", f"unset {KDF_COST_ENV}")
    return cost


def _unlock(args: argparse.Namespace, path: Path) -> int:
    if args.minutes <= 0:
        raise NoTerminal("--minutes must be more than 0", "e.g. --minutes 15")
    info = vault_agent.start_agent(_unlocked(path), args.minutes * 60)
    print(f"siteline: vault unlocked for other siteline commands (agent pid {info.pid}); it locks after "
          f"{args.minutes:g} idle minutes, or now with: siteline vault lock")
    return EXIT_OK


def _lock(args: argparse.Namespace, path: Path) -> int:
    stopped = vault_agent.stop_agent(path)
    print("siteline: vault locked" if stopped else "siteline: the vault was not unlocked (no agent running)")
    return EXIT_OK


def _status(args: argparse.Namespace, path: Path) -> int:
    vault = Vault.open(path)
    if not vault.exists:
        print(f"vault: {path} (none yet: siteline vault init)")
        return EXIT_OK
    if vault.problem is not None:
        print(f"vault: {path}")
        raise vault.problem
    info = vault_agent.agent_info(path)
    print(f"vault: {path}\nprotected by: {'the OS keyring' if vault.uses_keyring else 'a passphrase'}")
    print(f"agent: pid {info.pid}, locks in {info.expires_in / 60:.1f} idle minutes" if info else "agent: not running")
    return EXIT_OK


def _add(args: argparse.Namespace, path: Path) -> int:
    value = _read_value(args.name)  # first: a piped value must not be mistaken for anything else
    vault = _unlocked(path)
    if args.name in vault.names() and not args.replace:
        raise VaultError(f"{args.name} already exists; it was not changed", "add --replace to replace it")
    vault.put(args.name, value, kind=args.kind, note=args.note)
    print(f"siteline: saved {args.name} ({args.kind})")
    return EXIT_OK


def _remove(args: argparse.Namespace, path: Path) -> int:
    vault = _unlocked(path)
    try:
        vault.delete(args.name)
    except KeyError:
        raise VaultError(f"there is no entry {args.name}", "see siteline vault list") from None
    print(f"siteline: removed {args.name}")
    return EXIT_OK


def _list(args: argparse.Namespace, path: Path) -> int:
    entries: list[EntryInfo] | None = vault_agent.agent_entries(path)  # no prompt while the agent runs
    if entries is None:
        entries = _unlocked(path).entries()
    if args.json:
        rows = [{"name": e.name, "kind": e.kind, "created": _iso(e.created), "updated": _iso(e.updated),
                 "note": e.note} for e in entries]
        print(json.dumps({"vault": str(path), "entries": rows}, indent=2))
        return EXIT_OK
    if not entries:
        print("(the vault is empty: siteline vault add NAME)")
    width = max((len(e.name) for e in entries), default=4)
    for e in entries:
        print(f"{e.name:<{width}}  {e.kind:<14}  {_iso(e.updated)}  {e.note}".rstrip())
    return EXIT_OK


def _export(args: argparse.Namespace, path: Path) -> int:
    vault = _unlocked(path)
    passphrase = ask("Passphrase for the export file (give it to your colleague separately): ",
                     EXPORT_PASSPHRASE_ENV, confirm=True)
    count = vault.export_to(args.file, passphrase, names=args.names)
    _audit("vault-exported", {"file": str(args.file), "entries": _refs(args.names or vault.names())})
    print(f"siteline: exported {count} entries to {args.file}")
    return EXIT_OK


def _import(args: argparse.Namespace, path: Path) -> int:
    vault = _unlocked(path)
    summary = vault.import_from(args.file, ask("Export file passphrase: ", EXPORT_PASSPHRASE_ENV),
                                overwrite=args.overwrite)
    _audit("vault-imported", {"file": str(args.file), "added": _refs(summary.added),
                              "replaced": _refs(summary.replaced), "kept": _refs(summary.skipped)})
    print(f"siteline: added {len(summary.added)}, replaced {len(summary.replaced)}, "
          f"kept {len(summary.skipped)} existing")
    for label, names in (("added", summary.added), ("replaced", summary.replaced), ("kept", summary.skipped)):
        for name in names:
            print(f"  {label}: {name}")
    return EXIT_OK


def _passwd(args: argparse.Namespace, path: Path) -> int:
    vault = Vault.open(path)
    if not vault.exists:
        raise VaultError(f"there is no vault at {path}", "create one: siteline vault init")
    if vault.problem is not None:
        raise vault.problem
    old = ask(f"Current passphrase for {path}: ", PASSPHRASE_ENV)
    new = ask("New passphrase: ", NEW_PASSPHRASE_ENV, confirm=True)
    vault.change_passphrase(old, new)
    print("siteline: passphrase changed; every entry was re-encrypted under a new key")
    if vault.agent_stopped:
        print("siteline: the vault agent was stopped (it held the old key); run siteline vault unlock again")
    return EXIT_OK


_ACTIONS = {"init": _init, "unlock": _unlock, "lock": _lock, "status": _status, "add": _add, "remove": _remove,
            "list": _list, "export": _export, "import": _import, "passwd": _passwd}


def main(argv: list[str] | None = None) -> int:
    """`python -m siteline.vault_cli vault ...`: the vault commands alone (siteline.cli registers the same)."""
    parser = argparse.ArgumentParser(prog="siteline")
    add_parsers(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
