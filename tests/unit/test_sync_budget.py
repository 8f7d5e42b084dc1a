"""The data budget's decisions and the byte counts the sync charges against it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from siteline.core.outbox.budget import decide, held_count, next_month_start
from siteline.core.outbox.link import SyncConfigError, connect_bytes, parse_url, publish_bytes
from siteline.core.outbox.model import Priority

NOV = datetime(2026, 11, 27, 10, 0, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 31, 23, 59, tzinfo=UTC).timestamp()


def test_no_budget_holds_nothing() -> None:
    assert decide(10**12, None, 0.9, NOV).max_priority is None
    assert not decide(10**12, 0, 0.9, NOV).holds


def test_below_the_threshold_everything_goes() -> None:
    d = decide(89 * 10**6, 100 * 10**6, 0.9, NOV)
    assert d.max_priority is None
    assert d.message == ""


def test_near_the_end_low_items_are_held_and_the_message_says_until_when() -> None:
    d = decide(90 * 10**6, 100 * 10**6, 0.9, NOV)
    assert d.max_priority == Priority.NORMAL
    assert d.message == ("Data budget 90% used (90.0 of 100.0 MB this month): telemetry is held until 1 Dec 2026 "
                         "or the budget is raised; audit and job results still go.")


def test_over_the_budget_only_high_items_go() -> None:
    d = decide(101 * 10**6, 100 * 10**6, 0.9, NOV)
    assert d.max_priority == Priority.HIGH
    assert "used up" in d.message
    assert "only audit records and job results" in d.message


def test_the_count_restarts_on_the_first_of_next_month_in_utc() -> None:
    assert next_month_start(NOV) == datetime(2026, 12, 1, tzinfo=UTC)
    assert next_month_start(DEC) == datetime(2027, 1, 1, tzinfo=UTC)


def test_held_count_counts_what_the_decision_keeps_back() -> None:
    waiting = {0: 3, 1: 5, 2: 100}
    assert held_count(waiting, decide(0, None, 0.9, NOV)) == 0
    assert held_count(waiting, decide(95, 100_000, 0.0, NOV)) == 100
    assert held_count(waiting, decide(100_000, 100_000, 0.9, NOV)) == 105


@pytest.mark.parametrize(("v5", "tls", "expected"), [
    (False, False, 1 + 1 + 2 + 5 + 2 + 100 + 4),
    (True, False, 1 + 1 + 2 + 5 + 2 + 1 + 100 + 4),
    (False, True, 1 + 1 + 2 + 5 + 2 + 100 + 4 + 2 * 22),
])
def test_publish_bytes_count_the_mqtt_framing(v5: bool, tls: bool, expected: int) -> None:
    assert publish_bytes("a/b/c", 100, v5, tls) == expected


def test_publish_bytes_grow_the_length_field_for_big_payloads() -> None:
    small, big = publish_bytes("t", 100, False, False), publish_bytes("t", 20_000, False, False)
    assert big - small == 19_900 + 2  # remaining length: 1 byte below 128, 3 bytes from 16,384


def test_connect_bytes_include_the_subscriptions_and_a_tls_estimate() -> None:
    plain = connect_bytes("siteline-tech1-0123abcd", "tech1", "pw", False, [], False)
    assert 40 < plain < 80
    assert connect_bytes("siteline-tech1-0123abcd", "tech1", "pw", False, ["a/b", "c/d"], False) > plain + 10
    assert connect_bytes("siteline-tech1-0123abcd", "tech1", "pw", False, [], True) > plain + 1000


def test_plain_mqtt_is_refused_unless_allowed() -> None:
    with pytest.raises(SyncConfigError) as err:
        parse_url("mqtt://broker.example", allow_plain=False)
    assert "unencrypted" in err.value.message
    assert "--plain-ok" in err.value.hint
    assert "allow_plain" in err.value.hint
    assert parse_url("mqtt://broker.example", allow_plain=True).port == 1883
    ep = parse_url("mqtts://broker.example", allow_plain=False)
    assert (ep.host, ep.port, ep.tls) == ("broker.example", 8883, True)


@pytest.mark.parametrize("url", ["http://x", "mqtts://", "mqtts://host:99999", "garbage"])
def test_bad_urls_are_refused_with_words(url: str) -> None:
    with pytest.raises(SyncConfigError):
        parse_url(url, allow_plain=True)
