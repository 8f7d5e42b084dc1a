"""Errors a user can meet, each carrying what happened and what to do about it."""

from __future__ import annotations


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


class HostKeyError(TransportError):
    """The device's SSH host key is unknown or changed."""


class CommandTimeout(TransportError):  # noqa: N818 (reads better at the raise site)
    """A command did not finish in time."""


class ParseError(SitelineError):
    """A device printed something a parser could not turn into a typed result."""
