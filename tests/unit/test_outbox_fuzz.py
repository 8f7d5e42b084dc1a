"""Garbage never crashes the outbox: random payloads and random hand-carry files give typed errors only."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siteline.core.outbox import handcarry
from siteline.core.outbox.handcarry import HandCarryError, read_file
from siteline.core.outbox.model import InvalidItemError, canonical_payload

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=12) | st.integers(), json_values, max_size=5))
def test_any_payload_is_canonical_text_or_a_typed_refusal(payload: dict[object, object]) -> None:
    try:
        text = canonical_payload(payload)
    except InvalidItemError:
        return
    assert json.loads(text) == json.loads(canonical_payload(json.loads(text)))


HEADER = {"format": "siteline-outbox", "version": 1, "exported": "2026-11-27T09:00:00.000000Z"}
line_objects = st.dictionaries(
    st.sampled_from(["id", "kind", "site", "device", "created", "priority", "payload", "payload_sha256",
                     "vault_refs", "x"]),
    json_values, max_size=10,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line_objects | st.binary(max_size=60), max_size=6), st.integers(-2, 8))
def test_random_hand_carry_files_never_crash(tmp_path: Path, lines: list[object], count: int) -> None:
    out = tmp_path / "fuzz.gz"
    body = [json.dumps({**HEADER, "count": count}).encode()]
    body += [x.replace(b"\n", b" ") if isinstance(x, bytes) else json.dumps(x).encode() for x in lines]
    out.write_bytes(gzip.compress(b"\n".join(body) + b"\n"))
    try:
        parsed = read_file(out)
    except HandCarryError:
        return
    assert len(parsed.items) + len(parsed.rejected) == count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_random_bytes_are_refused(tmp_path: Path, data: bytes) -> None:
    out = tmp_path / "fuzz.gz"
    out.write_bytes(data)
    with contextlib.suppress(HandCarryError):
        read_file(out)


def test_a_gzip_bomb_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handcarry, "MAX_TOTAL_BYTES", 10_000)
    out = tmp_path / "bomb.gz"
    row = json.dumps({"id": "x", "pad": "a" * 1000})
    out.write_bytes(gzip.compress((json.dumps({**HEADER, "count": 100}) + "\n" + (row + "\n") * 100).encode()))
    with pytest.raises(HandCarryError, match="unpacks to more than"):
        read_file(out)
