"""The snapshot's JSON shape matches the shipped schema and reads back exactly."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings

from concmon import ConcurrencyMonitor, Snapshot, SnapshotFormatError
from concmon.snapshot import DISTRIBUTIONS, SCHEMA, json_schema
from tests.strategies import snapshots

VALIDATOR = jsonschema.Draft202012Validator(json_schema())


@given(snapshots())
@settings(max_examples=150, deadline=None)
def test_every_snapshot_matches_the_schema_and_round_trips(snapshot: Snapshot) -> None:
    """to_dict() validates against snapshot.schema.json and from_dict() inverts it."""
    data = json.loads(json.dumps(snapshot.to_dict()))
    VALIDATOR.validate(data)
    assert Snapshot.from_dict(data) == snapshot


def test_live_snapshot_has_the_documented_keys() -> None:
    """A real monitor's snapshot carries every documented key, in the schema's shape."""
    monitor = ConcurrencyMonitor()
    monitor.begin("/chat/completions")
    monitor.websocket.begin("/ws")
    with monitor.queued("/chat/completions", source="gate"):
        data = monitor.snapshot().to_dict()
    VALIDATOR.validate(data)
    assert data["schema"] == SCHEMA
    assert data["endpoints"]["/chat/completions"]["active"] == 1
    assert data["websockets"]["/ws"]["active"] == 1
    assert data["queues"]["gate"]["depth"] == 1
    assert data["active"] == 1, "websockets never count as HTTP requests"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schema="other/1"),
        lambda d: d.update(active=-1),
        lambda d: d.update(total="12"),
        lambda d: d.update(endpoints=[]),
        lambda d: d["endpoints"].update({"/a": {"active": True}}),
        lambda d: d.update(timestamp=None),
    ],
)
def test_malformed_mappings_are_rejected_clearly(mutate: object) -> None:
    """from_dict raises SnapshotFormatError (a ValueError) on anything off-shape."""
    monitor = ConcurrencyMonitor()
    monitor.begin("/a")
    data = json.loads(json.dumps(monitor.snapshot().to_dict()))
    mutate(data)  # type: ignore[operator]
    with pytest.raises(SnapshotFormatError):
        Snapshot.from_dict(data)


def test_a_real_snapshot_with_distributions_matches_the_schema() -> None:
    """Finished requests with a head, a first byte and a queue wait: every distribution, the
    rate, the bounds and the responses validate against schema 2 and read back exactly."""
    from concmon.testing import FakeClock

    clock = FakeClock()
    monitor = ConcurrencyMonitor(clock=clock)
    for status in (200, 503):
        ticket = monitor.http.begin("/chat/completions", "POST")
        ticket.waited_before(0.02)
        clock.advance(0.1)
        ticket.respond(status)
        clock.advance(0.2)
        ticket.first_byte()
        clock.advance(1.5)
        ticket.finish()
    monitor.websocket.begin("/ws").finish()
    clock.advance(1.0)
    data = json.loads(json.dumps(monitor.report_snapshot().to_dict()))
    VALIDATOR.validate(data)
    assert data["schema"] == "concmon.snapshot/2"
    stats = data["endpoints"]["/chat/completions"]
    for key in ("duration", "duration_all", "head", "ttfb", "queued_all"):
        assert stats[key]["count"] == 2, key
    assert stats["ttfb"]["p50_ms"] is not None
    assert stats["responses"] == {"POST 2xx ok": 1, "POST 5xx ok": 1}
    assert "ttfb" not in data["websockets"]["/ws"]
    assert len(data["buckets_s"]) + 1 == len(stats["duration"]["buckets"])
    assert Snapshot.from_dict(data).to_dict() == data


def test_a_version_1_snapshot_still_reads_and_version_2_has_its_own_id() -> None:
    """The schema names version 2; a version-1 mapping (no rate, no buckets) still reads."""
    assert json_schema()["$id"] == SCHEMA == "concmon.snapshot/2"
    monitor = ConcurrencyMonitor()
    monitor.begin("/a").finish()
    data = json.loads(json.dumps(monitor.snapshot().to_dict()))
    data["schema"] = "concmon.snapshot/1"
    for stats in data["endpoints"].values():
        for key in ("rate", "responses", *DISTRIBUTIONS, *(f"{n}_all" for n in DISTRIBUTIONS)):
            stats.pop(key, None)
    del data["rate"], data["buckets_s"]
    old = Snapshot.from_dict(data)
    assert old.endpoints["/a"].completed == 1 and old.endpoints["/a"].duration is None
