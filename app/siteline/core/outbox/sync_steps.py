"""The sync loop's vocabulary: its states and status, what a drain returns, its error, and the tally of acks
and failures waiting to be written to the outbox. Kept apart from :mod:`siteline.core.outbox.sync` so that
module holds the loop only; everything here is re-exported there."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from siteline.core.errors import AuthError, SitelineError
from siteline.core.mqtt_client import MqttSettingsError
from siteline.core.outbox.envelope import EnvelopeError, ItemLike
from siteline.core.outbox.link import SyncConfigError
from siteline.core.outbox.settings import SettingsError
from siteline.core.outbox.store import OutboxError

SUSPECT_DROPS = 3  # in flight at this many drops in a row: the item backs off so the others go


class SyncState(StrEnum):
    OFFLINE = "offline"
    CONNECTING = "connecting"
    SYNCING = "syncing"
    IDLE = "idle"
    HELD = "held"
    NOT_CONFIGURED = "not-configured"
    ERROR = "error"


@dataclass(frozen=True)
class SyncStatus:
    state: SyncState
    waiting: int
    bytes_this_month: int
    budget: int | None
    message: str
    last_ack: float | None


@dataclass(frozen=True)
class DrainResult:
    """``failed``: items marked failed for good during the drain (the broker refused them, or the outbox row
    no longer matches its hash); ``failures``: why, as (reason, count), most frequent first."""

    sent: int
    bytes: int
    seconds: float
    held: int
    failed: int = 0
    failures: tuple[tuple[str, int], ...] = ()


class SyncError(SitelineError):
    """A sync could not finish; ``kind`` is unreachable, auth, config, outbox or timeout (the CLI's exit code)."""

    def __init__(self, message: str, hint: str = "", kind: str = "unreachable") -> None:
        super().__init__(message, hint)
        self.kind = kind


NOT_CONFIGURED = SyncStatus(SyncState.NOT_CONFIGURED, 0, 0, None, "The control plane is not set up.", None)


@dataclass
class Tally:
    """Acks and failures waiting to be written to the outbox, and what this syncer sent and failed so far."""

    acked: list[str] = field(default_factory=list)
    acked_bytes: int = 0
    since: float = 0.0
    failures: dict[tuple[str, bool], list[str]] = field(default_factory=dict)
    refused_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    failed: int = 0
    failed_reasons: dict[str, int] = field(default_factory=dict)

    def fail(self, ids: tuple[str, ...] | list[str], reason: str, permanent: bool) -> None:
        self.failures.setdefault((reason, permanent), []).extend(ids)

    def invalid(self, item: ItemLike, reason: str) -> None:
        """An item that cannot be sent as it is (its payload no longer matches its hash): failed for good, with
        the reason, when the tally is next written; the rest of the outbox goes on."""
        self.fail([item.id], reason, True)

    def failing(self) -> set[str]:
        """Ids whose failure is not written yet: still 'pending' in the file, not to be sent again meanwhile."""
        return {i for ids in self.failures.values() for i in ids}

    def written_failed(self, ids: list[str], reason: str) -> None:
        self.failed += len(ids)
        self.failed_reasons[reason] = self.failed_reasons.get(reason, 0) + len(ids)

    def failures_since(self, before: dict[str, int]) -> tuple[tuple[str, int], ...]:
        counts = {r: n - before.get(r, 0) for r, n in self.failed_reasons.items() if n > before.get(r, 0)}
        return tuple(sorted(counts.items(), key=lambda rn: -rn[1]))


def count_drop(oldest: tuple[str, ...], drops: dict[str, int], retry_at: dict[str, float]) -> None:
    """The link dropped with ``oldest`` the oldest in flight: the one the broker was reading. Oldest at several
    drops in a row, it may be what makes the broker hang up (too big for a 3.1.1 broker's limit, say): it
    waits, with a growing back-off (``retry_at``, monotonic), so that the items behind it still go."""
    for item_id in oldest:
        n = drops[item_id] = drops.get(item_id, 0) + 1
        if n >= SUSPECT_DROPS:
            retry_at[item_id] = time.monotonic() + min(300.0, 2.0 ** (n - SUSPECT_DROPS + 1))
    if len(drops) > 100_000:  # a bound on memory for a link that drops forever
        drops.clear()


def sync_error(exc: SitelineError) -> SyncError:
    """Any error of the sync's parts as a SyncError whose kind the CLI turns into its exit code."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, AuthError):
        return SyncError(exc.message, exc.hint, "auth")
    if isinstance(exc, SyncConfigError | MqttSettingsError | SettingsError | EnvelopeError):
        return SyncError(exc.message, exc.hint, "config")
    if isinstance(exc, OutboxError):
        return SyncError(exc.message, exc.hint, "outbox")
    return SyncError(exc.message, exc.hint, "unreachable")  # TransportError, and anything else on the way
