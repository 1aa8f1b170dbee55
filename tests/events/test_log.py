from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from modelminder.clock import SimulatedClock
from modelminder.errors import LogError, SchemaError
from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema

SCHEMA = EventSchema({"card_id": "str", "amount": "float"})


def _events(ids: list[str], amounts: list[float] | None = None) -> pl.DataFrame:
    n = len(ids)
    return pl.DataFrame(
        {
            "event_id": ids,
            "ts": [
                dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i) for i in range(n)
            ],
            "card_id": [f"c{i % 2}" for i in range(n)],
            "amount": amounts if amounts is not None else [float(i) for i in range(n)],
        }
    )


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    with EventLog.open(tmp_path / "log.db", SCHEMA) as opened:
        yield opened


def test_append_is_idempotent_and_says_so(log: EventLog) -> None:
    first = log.append_events(_events(["a", "b", "c"]))
    assert (first.inserted, first.duplicates) == (3, 0)
    again = log.append_events(_events(["a", "b", "c"]))
    assert (again.inserted, again.duplicates) == (0, 3)
    assert "already in the log" in again.summary()
    assert log.count("events") == 3


def test_offsets_increase_in_arrival_order(log: EventLog) -> None:
    log.append_events(_events(["a", "b"]))
    log.append_events(_events(["c", "a", "d"]))
    frame = log.read("events")
    assert frame.get_column("event_id").to_list() == ["a", "b", "c", "d"]
    offs = frame.get_column("offset").to_list()
    assert offs == sorted(offs) and len(set(offs)) == 4


@pytest.mark.parametrize(
    ("column", "values", "needle"),
    [
        ("amount", [1.0, float("nan"), 2.0], "field 'amount' must be a finite number"),
        ("amount", [1.0, float("inf"), 2.0], "finite number"),
        ("amount", ["1", "x", "2"], "field 'amount' must be float; got 'x'"),
        ("card_id", ["a", None, "b"], "field 'card_id' is missing"),
        ("ts", ["2026-01-01T00:00:00Z", "yesterday", "2026-01-01T00:00:00Z"], "ISO-8601"),
    ],
)
def test_a_bad_row_rejects_the_whole_batch(
    log: EventLog, column: str, values: list[object], needle: str
) -> None:
    batch = _events(["a", "b", "c"]).with_columns(pl.Series(column, values))
    with pytest.raises(SchemaError, match="row 1") as err:
        log.append_events(batch)
    assert needle in str(err.value)
    assert "'b'" in str(err.value)  # names the event
    assert log.count("events") == 0


def test_missing_and_unknown_columns_are_named(log: EventLog) -> None:
    with pytest.raises(SchemaError, match="'amount'"):
        log.append_events(_events(["a"]).drop("amount"))
    with pytest.raises(SchemaError, match=r"unknown column.*'extra'"):
        log.append_events(_events(["a"]).with_columns(extra=pl.lit(1)))
    assert log.count("events") == 0


def test_labels_backfill_vs_live_known_at(log: EventLog) -> None:
    label_ts = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    lab = pl.DataFrame(
        {"event_id": ["a"], "is_fraud": [1.0], "label_ts": [label_ts], "source": ["chargeback"]}
    )
    log.append_labels(lab)
    received = int(dt.datetime(2026, 1, 9, tzinfo=dt.UTC).timestamp() * 1e6)
    log.append_labels(lab.with_columns(source=pl.lit("review")), received_at_us=received)
    frame = log.read("labels")
    lts = int(label_ts.timestamp() * 1e6)
    assert frame.get_column("known_at").to_list() == [lts, received]
    # A live label stamped after its arrival is known from its label_ts.
    early = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1e6)
    log.append_labels(lab.with_columns(source=pl.lit("manual")), received_at_us=early)
    assert log.read("labels").get_column("known_at").to_list()[-1] == lts


def test_read_by_offset_and_time_range(log: EventLog) -> None:
    log.append_events(_events([f"e{i}" for i in range(10)]))
    by_off = log.read("events", from_offset=3, to_offset=5)
    assert by_off.get_column("event_id").to_list() == ["e2", "e3", "e4"]
    t0 = int(dt.datetime(2026, 1, 1, 0, 2, tzinfo=dt.UTC).timestamp() * 1e6)
    by_time = log.read("events", from_ts=t0, to_ts=t0 + 3 * 60_000_000)
    assert by_time.get_column("event_id").to_list() == ["e2", "e3", "e4"]


def test_reopening_with_other_fields_is_refused(tmp_path: Path) -> None:
    EventLog.open(tmp_path / "l.db", SCHEMA).close()
    with pytest.raises(Exception, match="was created for event fields"):
        EventLog.open(tmp_path / "l.db", EventSchema({"card_id": "str"}))


# -- audit topic ----------------------------------------------------------------------------
def test_audit_records_append_in_order_with_json_payloads(tmp_path: Path) -> None:
    clock = SimulatedClock(1_000)
    with EventLog.open(tmp_path / "log.db", SCHEMA, clock=clock) as lg:
        first = lg.append_audit("alias_changed", "alice", {"version": "v2", "previous": None})
        clock.advance_to(2_000)
        second = lg.append_audit("alias_changed", "bob", {"version": "v1"})
        third = lg.append_audit("model_registered", "job", {"n": 1}, ts_us=1_500)
        assert first < second < third
        frame = lg.read("audit")
        assert frame.schema == pl.Schema(
            {
                "offset": pl.Int64,
                "ts": pl.Int64,
                "kind": pl.String,
                "actor": pl.String,
                "payload": pl.String,
            }
        )
        assert frame.get_column("offset").to_list() == [first, second, third]
        assert frame.get_column("ts").to_list() == [1_000, 2_000, 1_500]
        assert frame.get_column("actor").to_list() == ["alice", "bob", "job"]
        assert json.loads(frame.get_column("payload")[0]) == {"previous": None, "version": "v2"}
        assert lg.count("audit") == 3
        assert lg.offset_of_nth(2, "audit") == second
        by_time = lg.read("audit", from_ts=1_500, to_ts=2_000)
        assert by_time.get_column("kind").to_list() == ["model_registered"]


def test_audit_defaults_to_the_wall_clock(log: EventLog) -> None:
    before = time.time_ns() // 1000
    log.append_audit("alias_changed", "alice", {})
    after = time.time_ns() // 1000
    assert before <= log.read("audit").get_column("ts")[0] <= after


def test_audit_is_a_separate_topic(log: EventLog) -> None:
    log.append_audit("alias_changed", "alice", {"x": 1})
    assert log.read("audit", from_offset=5).height == 0
    assert log.read("audit", from_offset=5).columns == ["offset", "ts", "kind", "actor", "payload"]
    log.append_events(_events(["a", "b"]))
    assert log.read("events").get_column("offset").to_list() == [1, 2]
    assert (log.count("events"), log.count("labels"), log.count("audit")) == (2, 0, 1)


@pytest.mark.parametrize(
    ("args", "kwargs", "needle"),
    [
        (("", "alice", {}), {}, "'kind' must be a non-empty string"),
        (("alias_changed", " ", {}), {}, "'actor' must be a non-empty string"),
        (("alias_changed", "alice", ["v1"]), {}, "must be a mapping"),
        (("alias_changed", "alice", {"auc": float("nan")}), {}, "not JSON-serializable"),
        (("alias_changed", "alice", {"t": dt.datetime(2026, 1, 1)}), {}, "not JSON-serializable"),
        (("alias_changed", "alice", {}), {"ts_us": 1.5}, "'ts_us' .* must be an int"),
    ],
)
def test_bad_audit_records_are_refused(
    log: EventLog, args: tuple[Any, ...], kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(SchemaError, match=needle):
        log.append_audit(*args, **kwargs)
    assert log.count("audit") == 0


def test_unknown_topics_name_the_topics(log: EventLog) -> None:
    for call in (log.read, log.count, lambda t: log.offset_of_nth(1, t)):
        with pytest.raises(
            LogError, match=r"Unknown topic 'audits'. Topics: events, labels, audit"
        ):
            call("audits")


def test_a_log_from_before_the_audit_topic_gets_it_on_open(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "old.db", SCHEMA) as lg:
        lg.append_events(_events(["a"]))
        lg._fetch("DROP TABLE audit")  # what a log written by an older version looks like:
        for table in ("schema_version", "alert_events"):  # no migrations, no alert events
            lg._fetch(f"DROP TABLE {table}")
    with EventLog.open(tmp_path / "old.db", SCHEMA) as lg:
        assert lg.append_audit("alias_changed", "alice", {}) == 1
        assert lg.count("events") == 1
