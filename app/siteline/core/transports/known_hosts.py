"""Siteline's pinned SSH host keys: one OpenSSH-format known_hosts file, and the check a handshake runs.

Reading is forgiving (a damaged line is skipped, never fatal). Writing either appends one line
(:meth:`KnownHosts.pin`, after the user accepted an unknown key) or rewrites the file atomically
(:meth:`KnownHosts.replace`, after the user explicitly replaced a changed key), keeping every other
host's line byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.public_key import get_default_public_key_algs

from siteline.core.atomic import write_atomic
from siteline.core.errors import HostKeyError, HostKeyProblem, TransportError

log = logging.getLogger(__name__)


def host_pattern(host: str, port: int) -> str:
    """The name OpenSSH writes in known_hosts: ``host`` on port 22, else ``[host]:port``.

    Lower-cased as OpenSSH does: ``GW1.example`` and ``gw1.example`` are one host with one pin,
    so a differently typed name can never skip the pin and trust a new key.
    """
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def bare_host(host: str) -> str:
    """``[::1]`` (URL form) to ``::1`` (what sockets and known_hosts want)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def fingerprint(key: asyncssh.SSHKey) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -lf`` prints it."""
    return str(key.get_fingerprint("sha256"))


def public_key_text(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 AAAA...`` without a comment (a comment in a pin would be someone else's words)."""
    algorithm, data = key.export_public_key("openssh").decode().split()[:2]
    return f"{algorithm} {data}"


def _hashed_match(entry: str, name: str) -> bool:
    """OpenSSH's HashKnownHosts form: ``|1|base64(salt)|base64(hmac_sha1(salt, name))``."""
    parts = entry.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except ValueError:
        return False
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), want)


def _names_match(names_field: str, name: str) -> list[bool]:
    """For each comma-separated name of a line, whether it is ``name`` (plain or hashed)."""
    return [n == name or _hashed_match(n, name) for n in names_field.split(",")]


def _parse_key(key_text: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_public_key(key_text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise TransportError(
            f"'{key_text[:40]}' is not an OpenSSH public key: {exc}.", "Pass the key as 'ssh-ed25519 AAAA...'."
        ) from exc


class KnownHosts:
    """Siteline's pinned SSH host keys in one OpenSSH-format file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise TransportError(
                f"Cannot read the known-hosts file {self.path}: {exc}.", "Check the file's permissions."
            ) from exc

    def keys_for(self, host: str, port: int) -> list[asyncssh.SSHKey]:
        name = host_pattern(host, port)
        found: list[asyncssh.SSHKey] = []
        for line in self._read().decode("utf-8", errors="replace").splitlines():
            fields = line.split()
            if len(fields) < 3 or fields[0].startswith(("#", "@")):
                continue  # comments and markers: @revoked / @cert-authority are not pins
            if not any(_names_match(fields[0], name)):
                continue
            with contextlib.suppress(asyncssh.KeyImportError, ValueError):
                found.append(asyncssh.import_public_key(f"{fields[1]} {fields[2]}"))
        return found

    def add(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Pin ``key`` for ``host``:``port`` (see :meth:`pin`)."""
        self.pin(host, port, public_key_text(key))

    def pin(self, host: str, port: int, key_text: str) -> None:
        """Trust ``key_text`` (``ssh-ed25519 AAAA...``) for ``host``:``port``: append one line, fsynced.

        Nothing is written when that key is already pinned for that host.
        """
        key = _parse_key(key_text)
        if any(k == key for k in self.keys_for(host, port)):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = self._read()
        lead = b"\n" if old and not old.endswith(b"\n") else b""  # never glue our line to a torn last one
        line = f"{host_pattern(host, port)} {public_key_text(key)}\n".encode()
        with self.path.open("ab") as fh:
            fh.write(lead + line)
            fh.flush()
            os.fsync(fh.fileno())

    def replace(self, host: str, port: int, key_text: str) -> None:
        """Make ``key_text`` the only key pinned for ``host``:``port``; the file is rewritten atomically.

        Every line naming that host (plain or hashed) loses that name; a line left with no name goes.
        Other hosts' lines, comments and markers stay byte-identical.
        """
        key = _parse_key(key_text)
        name = host_pattern(host, port)
        kept: list[bytes] = []
        for raw in self._read().splitlines(keepends=True):
            kept.extend(_without_name(raw, name))
        if kept and not kept[-1].endswith(b"\n"):
            kept[-1] += b"\n"
        kept.append(f"{name} {public_key_text(key)}\n".encode())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644
        write_atomic(self.path, b"".join(kept), mode=mode)
        log.warning("replaced the pinned host key of %s in %s with %s", name, self.path, fingerprint(key))


def _without_name(raw: bytes, name: str) -> list[bytes]:
    """``raw`` unchanged, or with ``name`` dropped from its host list ([] when no name is left)."""
    fields = raw.split()
    if len(fields) < 3 or fields[0].startswith((b"#", b"@")):
        return [raw]
    entries = fields[0].split(b",")
    hits = [e.decode("utf-8", errors="replace") == name or _hashed_match(e.decode("latin-1"), name) for e in entries]
    if not any(hits):
        return [raw]
    rest = [e for e, hit in zip(entries, hits, strict=True) if not hit]
    if not rest:
        return []
    # Another host shares this line: keep its pin, only without our name.
    start = raw.index(fields[0])
    return [raw[:start] + b",".join(rest) + raw[start + len(fields[0]) :]]


class HostKeyCheck:
    """What happened to one host's key during a handshake, so the error can name both fingerprints."""

    def __init__(self, store: KnownHosts, host: str, port: int, accept_new: bool, via: str = "") -> None:
        # Behind a bastion the same private address exists at many sites: pin it under the jump
        # chain (as OpenSSH's HostKeyAlias would), or site B's box looks like an attack on site A's.
        if via:
            host = f"{host}%{via}"
        self.store, self.host, self.port, self.accept_new = store, host, port, accept_new
        self.pinned = store.keys_for(host, port)
        self.offered: asyncssh.SSHKey | None = None

    def trusted(self, _host: str, _addr: str, _port: int | None) -> tuple[list[asyncssh.SSHKey], list[Any], list[Any]]:
        # asyncssh's known_hosts callable: the pinned keys for this host, no CAs, nothing revoked.
        return self.pinned, [], []

    def host_key_algs(self) -> list[str] | tuple[()]:
        """Key types to ask the device for: the pinned ones first, then every other (``()``: asyncssh's default).

        asyncssh alone would offer only the pinned types; a device reinstalled with another key type
        would then hang up in the handshake and look unreachable instead of "key changed".
        """
        if not self.pinned:
            return ()
        first = [alg for key in self.pinned for alg in key.sig_algorithms]
        rest = [alg for alg in get_default_public_key_algs() if alg not in first]
        return [alg.decode() for alg in dict.fromkeys(first + rest)]

    def validate(self, key: asyncssh.SSHKey) -> bool:
        """Called by asyncssh only for a key that is not pinned."""
        self.offered = key
        if self.pinned or not self.accept_new:
            return False
        self.store.add(self.host, self.port, key)
        log.warning(
            "first contact with %s: trusting its host key %s and pinning it in %s",
            host_pattern(self.host, self.port), fingerprint(key), self.store.path,
        )
        return True

    def problem(self) -> HostKeyProblem:
        offered = self.offered
        return HostKeyProblem(
            kind="changed" if self.pinned else "unknown",
            host=self.host,
            port=self.port,
            display_name=host_pattern(self.host, self.port),
            offered_fingerprint=fingerprint(offered) if offered else "",
            offered_key=public_key_text(offered) if offered else "",
            pinned_fingerprints=tuple(fingerprint(k) for k in self.pinned),
            known_hosts_path=str(self.store.path),
        )

    def error(self) -> HostKeyError:
        problem = self.problem()
        name = problem.display_name
        new = problem.offered_fingerprint or "no key of the pinned type"
        if problem.kind == "unknown":
            return HostKeyError(
                f"The SSH host key of {name} ({new}) is not known yet.",
                "Check the fingerprint with the device's owner, then accept it.",
                problem,
            )
        old = ", ".join(problem.pinned_fingerprints)
        return HostKeyError(
            f"The SSH host key of {name} has CHANGED: pinned {old}, now offered {new}. "
            "This may be an attack (someone between you and the device) or the device was reinstalled.",
            f"Do not continue until the device's owner confirms the new key; then replace the pinned key for "
            f"{name} in {self.store.path} and connect again.",
            problem,
        )
