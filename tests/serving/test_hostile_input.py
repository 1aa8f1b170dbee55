"""Hostile and unlucky input on the live path (issue 10): implausible times, lax labels,
oversized fields, and labels for events that never come. Each is refused with a 422 (or a
409) in the JSON envelope naming the field, and nothing is written."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelminder.clock import SimulatedClock
from modelminder.logreplay import engine_from_log
from modelminder.project import Project, init_project, load_project
from modelminder.serving.app import create_app
from modelminder.serving.service import Service

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
NOW_US = int(NOW.timestamp() * 1_000_000)
DAY_US = 86_400_000_000


def _project(root: Path, **serving: str | int) -> Project:
    """A built-in card-fraud project with ``[serving]`` settings changed in its minder.toml."""
    init_project(root, builtin=True)
    config = root / "minder.toml"
    text = config.read_text()
    for key, value in serving.items():
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {shown}", text)
        assert n == 1, key
    config.write_text(text)
    return load_project(root)


def _event(i: int, **change: Any) -> dict[str, Any]:
    ts = (NOW - dt.timedelta(minutes=i)).isoformat()
    return {"event_id": f"e{i}", "ts": ts, "card_id": "c1", "merchant_id": "m1",
            "amount": 10.0, "country": "US", "channel": "online"} | change  # fmt: skip


def _label(event_id: str, **change: Any) -> dict[str, Any]:
    return {"event_id": event_id, "is_fraud": 1, "label_ts": NOW.isoformat(),
            "source": "bank"} | change  # fmt: skip


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Service, TestClient, SimulatedClock]]:
    clock = SimulatedClock(NOW_US)
    service = Service(_project(tmp_path, max_waiting_labels=5, label_wait="2d"), clock=clock)
    with TestClient(create_app(service, open_access=True)) as client:
        yield service, client, clock
    service.close()


def _refused(r: Any, status: int, *needles: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"type", "message"}
    for needle in needles:
        assert needle in error["message"], error["message"]


def test_an_event_from_year_one_is_refused_and_the_bound_is_configurable(
    live: tuple[Service, TestClient, SimulatedClock], tmp_path: Path
) -> None:
    service, client, _ = live
    r = client.post("/v1/events", json={"events": [_event(1, ts="0001-01-01T00:00:00Z")]})
    _refused(r, 422, "field 'ts' is more than 365d before the server's clock",
             "[serving].max_event_age", "Nothing was written")  # fmt: skip
    assert service.log.count("events") == 0
    five_years = (NOW - dt.timedelta(days=5 * 365)).isoformat()
    r = client.post("/v1/events", json={"events": [_event(1, ts=five_years)]})
    assert r.status_code == 422
    other = Service(
        _project(tmp_path / "wide", max_event_age="3650d"), clock=SimulatedClock(NOW_US)
    )
    try:
        assert other.ingest([_event(1, ts=five_years)])["appended"] == 1
    finally:
        other.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"is_fraud": True}, "is_fraud"),
        ({"is_fraud": "1"}, "is_fraud"),
        ({"is_fraud": 0.5}, "is_fraud"),
        ({"source": ""}, "source"),
        ({"source": "s" * 65}, "source"),
        ({"event_id": "x" * 1_000_000}, "event_id"),
    ],
)
def test_lax_or_oversized_labels_are_refused(
    live: tuple[Service, TestClient, SimulatedClock], change: dict[str, Any], field: str
) -> None:
    service, client, _ = live
    r = client.post("/v1/labels", json={"labels": [_label("e1") | change]})
    _refused(r, 422, field)
    assert service.log.count("labels") == 0


@pytest.mark.parametrize("field", ["source", "label_ts", "event_id"])
def test_a_lone_surrogate_in_a_label_is_a_422_naming_the_field(
    live: tuple[Service, TestClient, SimulatedClock], field: str
) -> None:
    service, client, _ = live
    label = _label("e1")
    label[field] = "SURROGATE"
    body = json.dumps({"labels": [label]}).replace("SURROGATE", "\\ud800")
    r = client.post("/v1/labels", content=body, headers={"content-type": "application/json"})
    _refused(r, 422, field)
    assert service.log.count("labels") == 0


def test_conflicting_labels_in_one_batch_are_refused_naming_both_rows(
    live: tuple[Service, TestClient, SimulatedClock],
) -> None:
    service, client, _ = live
    r = client.post("/v1/labels", json={"labels": [_label("e1"), _label("e1", is_fraud=0)]})
    _refused(r, 422, "rows 0 and 1 give different labels for event_id 'e1' from source 'bank'")
    assert service.log.count("labels") == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [({"event_id": " "}, "event_id"), ({"event_id": "x" * 129}, "event_id"),
     ({"card_id": "c" * 1_000_000}, "card_id"), ({"amount": 1e308}, "amount"),
     ({"amount": 2**60}, "amount")],
)  # fmt: skip
def test_blank_ids_huge_text_and_extreme_amounts_are_refused(
    live: tuple[Service, TestClient, SimulatedClock], change: dict[str, Any], field: str
) -> None:
    service, client, _ = live
    _refused(client.post("/v1/events", json={"events": [_event(1, **change)]}), 422, field)
    assert service.log.count("events") == 0


def test_labels_waiting_for_their_events_are_bounded_and_expire_in_replay_too(
    live: tuple[Service, TestClient, SimulatedClock],
) -> None:
    service, client, clock = live
    assert client.post("/v1/events", json={"events": [_event(0)]}).status_code == 200
    orphans = [_label(f"o{i}") for i in range(5)]
    assert client.post("/v1/labels", json={"labels": orphans}).json()["appended"] == 5
    # The room is full: more orphans are refused whole, nothing written...
    r = client.post("/v1/labels", json={"labels": [_label("o5"), _label("e0")]})
    _refused(r, 409, "5 labels already wait", "max_waiting_labels", "Nothing was written")
    assert service.log.count("labels") == 5
    # ... but a label for a logged event never waits, so it is never refused for this.
    assert client.post("/v1/labels", json={"labels": [_label("e0")]}).json()["appended"] == 1
    # An event arriving gets its waiting label (the room has one place again).
    assert client.post("/v1/events", json={"events": [_event(3, event_id="o0")]}).status_code == 200
    assert len(service._waiting) == 4
    assert client.post("/v1/labels", json={"labels": [_label("o5")]}).status_code == 200
    # After label_wait (2 days) the waiting labels expire, recorded in the log...
    clock.advance_to(NOW_US + 3 * DAY_US)
    assert client.post("/v1/labels", json={"labels": [_label("o6")]}).status_code == 200
    assert len(service._waiting) == 1 and service._waiting.expired == 5
    expired = service.log.read("labels").height - service.log.feature_labels().height
    assert expired == 5
    # ... so an event arriving after its label expired is not labelled in the live state,
    # and a replay (the engine rebuilt from the log) agrees feature by feature.
    late = _event(0, event_id="o1", ts=dt.datetime.fromtimestamp(
        (NOW_US + 3 * DAY_US) / 1e6, dt.UTC).isoformat())  # fmt: skip
    assert client.post("/v1/events", json={"events": [late]}).status_code == 200
    probe = _event(0, event_id="probe", ts=late["ts"])
    rows = service.validate([probe])
    live_vector = service.engine.process_vector(dict(rows[0]))
    rebuilt = engine_from_log(service.log, service.plan)
    replayed = rebuilt.process_vector(dict(rows[0]))
    assert np.array_equal(replayed, live_vector, equal_nan=True), (replayed, live_vector)
    # Restarting keeps the room as it was: o6 waits, the expired stay expired.
    again = Service(service.project, clock=clock)
    try:
        assert len(again._waiting) == 1
    finally:
        again.close()
