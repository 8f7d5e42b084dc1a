"""`siteline image verify FILE --sig F [--key K]` and `siteline keys add|list|remove`.

image verify checks only the detached signature of FILE (any format), made by
`openssl dgst -sha256 -sign` (RSA, ECDSA P-256/P-384) or `openssl pkeyutl -sign -rawin` (Ed25519): with --key
against that public key alone, trusted or not; without, against the trusted keys. keys manages the trusted-keys
store; a key is trusted only when added here, after its fingerprint was shown.

exit codes:
  0  ok: the signature holds / the store action was done
  2  usage: a bad option
  3  refused: bad, truncated or missing signature, unknown or unsupported key, unreadable file, no confirmation
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from siteline.core.images.signature import SignatureRefused, load_key_file, verify_detached
from siteline.core.images.trusted_keys import KeyStoreError, TrustedKeys

EXIT_OK, EXIT_USAGE, EXIT_REFUSED = 0, 2, 3
EPILOG = __doc__[__doc__.index("exit codes:"):] if __doc__ else ""
Sub = argparse._SubParsersAction  # argparse has no public name for it


def add_image_parser(sub: Sub[argparse.ArgumentParser]) -> Sub[argparse.ArgumentParser]:
    """`siteline image` with its `verify` action; returns the image sub-actions so others add import/info."""
    image = sub.add_parser("image", help="check update images", epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="check a file's detached signature", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Checks only the detached signature of FILE, whatever its format.")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--sig", required=True, metavar="F", help="the detached signature (e.g. update.sig)")
    verify.add_argument("--key", metavar="K", help="check against this public key only (PEM or DER), trusted or "
                        "not; default: the trusted keys")
    verify.set_defaults(handler=verify_main)
    return actions


def add_keys_parser(sub: Sub[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="the keys update images must be signed by", epilog=EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="trust a public key (shows its fingerprint and asks)", epilog=EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("pem", metavar="PEM", help="the public key file (PEM or DER)")
    add.add_argument("--name", required=True, metavar="N", help="a short name, e.g. ops-2026")
    add.add_argument("--yes", action="store_true", help="do not ask (you checked the fingerprint another way)")
    add.set_defaults(handler=keys_add_main)
    listing = actions.add_parser("list", help="the trusted keys")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=keys_list_main)
    remove = actions.add_parser("remove", help="stop trusting a key", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    remove.add_argument("key", metavar="NAME|FINGERPRINT")
    remove.set_defaults(handler=keys_remove_main)


def add_parsers(sub: Sub[argparse.ArgumentParser]) -> Sub[argparse.ArgumentParser]:
    """`image verify` and `keys ...`; returns the `image` sub-actions (for `image import|info`)."""
    image_actions = add_image_parser(sub)
    from siteline.image_import_cli import add_import_parser
    from siteline.image_info_cli import add_info_parser

    add_info_parser(image_actions)
    add_import_parser(image_actions)  # import, list, remove: the image library
    add_keys_parser(sub)
    return image_actions


def _refuse(reason: str) -> int:
    print(f"siteline: refused: {reason}", file=sys.stderr)
    return EXIT_REFUSED


def verify_main(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.key:
        verdict = verify_detached(path, Path(args.sig), Path(args.key))
    else:
        verdict = TrustedKeys().verify_trusted(path, Path(args.sig))
    if not verdict.ok:
        return _refuse(f"{args.file}: {verdict.reason}")
    print(f"{args.file}: {verdict.describe()}")
    return EXIT_OK


def keys_add_main(args: argparse.Namespace, confirm: Callable[[str], bool] | None = None) -> int:
    try:
        loaded = load_key_file(Path(args.pem))
    except SignatureRefused as exc:
        return _refuse(f"cannot trust {args.pem}: {exc}")
    store = TrustedKeys()
    try:
        same = store.find(loaded.fingerprint)
        if same is not None:
            print(f"already trusted as '{same.name}' ({same.fingerprint}): nothing changed")
            return EXIT_OK
        print(f"key {args.pem}: {loaded.fingerprint} ({loaded.algorithm})")
        if not args.yes and not (confirm or _ask)(f"Trust this key as '{args.name}' for update images? [y/N] "):
            return _refuse("the key was not added: no confirmation (check the fingerprint, then answer y or "
                           "pass --yes)")
        result = store.add(Path(args.pem).read_bytes(), args.name)
    except (KeyStoreError, OSError) as exc:
        return _refuse(str(exc))
    print(result.message)
    if result.audit_detail is not None:
        record_audit("trusted-key-added", result.audit_detail)
    return EXIT_OK


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False  # no terminal: nobody can have checked the fingerprint
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


def record_audit(action: str, detail: dict[str, Any]) -> None:
    """The key is already trusted: a trail that cannot be written is a warning (cli_audit), not a failure."""
    from siteline.cli_audit import record_for

    record_for("-", "-", action, detail)


def keys_list_main(args: argparse.Namespace) -> int:
    try:
        keys = TrustedKeys().entries()
    except KeyStoreError as exc:
        return _refuse(str(exc))
    if args.json:
        print(json.dumps([k.as_json() for k in keys], indent=2))
    elif not keys:
        print("no trusted keys (add one: siteline keys add PEM --name N)")
    for key in [] if args.json else keys:
        print(f"{key.name}\t{key.fingerprint}\t{key.algorithm}")
    return EXIT_OK


def keys_remove_main(args: argparse.Namespace) -> int:
    try:
        gone = TrustedKeys().remove(args.key)
    except KeyStoreError as exc:
        return _refuse(str(exc))
    print(f"no longer trusted: '{gone.name}' ({gone.fingerprint})")
    return EXIT_OK
