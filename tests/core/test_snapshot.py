"""The snapshot's JSON shape matches the shipped schema and reads back exactly."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings

from concmon import ConcurrencyMonitor, Snapshot, SnapshotFormatError
from concmon.snapshot import SCHEMA, json_schema
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
