"""Errors a user can meet, each carrying what happened and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class SitelineError(Exception):
    """Base for every error Siteline shows to a person.

    ``message`` says what happened in plain words; ``hint`` says what to do next.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


class TargetError(SitelineError):
    """A target URL that cannot be understood."""


class TransportError(SitelineError):
    """The device could not be reached or the link broke."""


class AuthError(TransportError):
    """The device refused the credentials."""


@dataclass(frozen=True)
class HostKeyProblem:
    """What a person needs to decide about a host key, in plain data (no SSH library types).

    ``host`` is the name the key is pinned under (``10.0.0.5%ops@bastion:22`` behind a bastion);
    pass it, with ``port`` and ``offered_key``, to ``KnownHosts.pin`` (an unknown key the user
    accepted) or ``KnownHosts.replace`` (a changed key the user explicitly replaced).
    """

    kind: Literal["unknown", "changed"]
    host: str
    port: int
    display_name: str  # as OpenSSH writes it: ``host`` on port 22, else ``[host]:port``
    offered_fingerprint: str  # ``SHA256:...`` as ``ssh-keygen -lf`` prints it
    offered_key: str  # OpenSSH public key text: ``ssh-ed25519 AAAA...``
    pinned_fingerprints: tuple[str, ...]
    known_hosts_path: str


class HostKeyError(TransportError):
    """The device's SSH host key is unknown or changed; ``problem`` has the details for a dialog."""

    def __init__(self, message: str, hint: str = "", problem: HostKeyProblem | None = None) -> None:
        super().__init__(message, hint)
        self.problem = problem


class CommandTimeout(TransportError):  # noqa: N818 (reads better at the raise site)
    """A command did not finish in time."""


class ParseError(SitelineError):
    """A device printed something a parser could not turn into a typed result."""
