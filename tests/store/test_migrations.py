"""Schema migrations: applied once, in order, atomically; a database from the future is refused
before anything is written; databases from before migrations are adopted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelminder.errors import MinderError
from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema
from modelminder.monitoring.alerts import AlertLog
from modelminder.registry import Registry
from modelminder.serving.store import ServingStore
from modelminder.store.migrations import Migration, SchemaTooNew, migrate, schema_version
from modelminder.store.migrations import log as log_schema
from modelminder.store.sqlite import Database

SCHEMA = EventSchema({"card_id": "str", "amount": "float"})


def _db(path: Path) -> Database:
    return Database(path, pragmas=("journal_mode=WAL",))


def _objects(path: Path) -> set[tuple[Any, ...]]:
    db = _db(path)
    try:
        return {tuple(r) for r in db.fetch("SELECT type, name, tbl_name, sql FROM sqlite_master")}
    finally:
        db.close()


def _create(sql: str) -> Callable[[Database], None]:
    return lambda db: db.execute(sql)


def test_migrations_apply_once_in_order_and_record_their_names(tmp_path: Path) -> None:
    steps = [Migration(1, "t", _create("CREATE TABLE t (x INTEGER)"))]
    db = _db(tmp_path / "x.db")
    try:
        assert migrate(db, steps, what="the test database") == 1
        assert migrate(db, steps, what="the test database") == 1  # nothing left to do
        steps.append(Migration(2, "u", _create("CREATE TABLE u (y INTEGER)")))
        assert migrate(db, steps, what="the test database") == 2
        assert db.fetch("SELECT version, name FROM schema_version ORDER BY version") == [
            (1, "t"),
            (2, "u"),
        ]
    finally:
        db.close()


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    def broken(db: Database) -> None:
        db.execute("CREATE TABLE v (z INTEGER)")
        raise RuntimeError("disk on fire")

    db = _db(tmp_path / "x.db")
    try:
        migrate(db, [Migration(1, "t", _create("CREATE TABLE t (x INTEGER)"))], what="it")
        steps = [
            Migration(1, "t", _create("CREATE TABLE t (x INTEGER)")),
            Migration(2, "u", _create("CREATE TABLE u (y INTEGER)")),
            Migration(3, "v", broken),
        ]
        with pytest.raises(RuntimeError, match="disk on fire"):
            migrate(db, steps, what="it")
        assert schema_version(db) == 1
        tables = {r[0] for r in db.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"t", "schema_version"}  # neither u nor v: one transaction
    finally:
        db.close()


def test_migrations_must_be_numbered_from_one(tmp_path: Path) -> None:
    db = _db(tmp_path / "x.db")
    try:
        with pytest.raises(ValueError, match=r"numbered 1, 2, \.\.\. in order. Got \[2\]"):
            migrate(db, [Migration(2, "t", _create("CREATE TABLE t (x INTEGER)"))], what="it")
    finally:
        db.close()


def _open_log(root: Path) -> Any:
    return EventLog.open(root / "minder.db", SCHEMA)


def _open_registry(root: Path) -> Any:
    return Registry.open(root)


def _open_serving(root: Path) -> Any:
    return ServingStore.open(root)


@pytest.mark.parametrize(
    ("opener", "file", "what"),
    [
        (_open_log, "minder.db", "the event log"),
        (_open_registry, "models/registry.db", "the model registry"),
        (_open_serving, "serving.db", "the serving store"),
    ],
)
def test_a_database_from_a_newer_modelminder_is_refused_untouched(
    tmp_path: Path, opener: Callable[[Path], Any], file: str, what: str
) -> None:
    opener(tmp_path).close()
    path = tmp_path / file
    db = _db(path)
    try:
        current = schema_version(db)
        # What a future version would do: a migration this code does not know.
        db.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)", [99, "future"])
        db.execute("CREATE TABLE from_the_future (x INTEGER)")
        objects = db.fetch("SELECT type, name, sql FROM sqlite_master ORDER BY name")
    finally:
        db.close()
    with pytest.raises(SchemaTooNew) as caught:
        opener(tmp_path)
    assert isinstance(caught.value, MinderError)  # the CLI prints it and exits 2
    message = str(caught.value)
    assert f"The schema of {what} at {path} is at version 99" in message
    assert f"knows versions up to {current}" in message
    assert "Upgrade modelminder" in message and "nothing was changed" in message
    db = _db(path)
    try:
        assert db.fetch("SELECT type, name, sql FROM sqlite_master ORDER BY name") == objects
        assert schema_version(db) == 99
    finally:
        db.close()


def test_a_log_older_than_the_last_release_is_brought_to_the_current_schema(
    tmp_path: Path,
) -> None:
    """A log from before audit, label expiry, predictions and the alerts' open flag existed."""
    path = tmp_path / "minder.db"
    db = _db(path)
    try:
        for sql in (
            "CREATE TABLE log_meta (key TEXT PRIMARY KEY, value TEXT)",
            "INSERT INTO log_meta VALUES ('event_fields', "
            """'{"card_id": "str", "amount": "float"}')""",
            'CREATE TABLE events ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
            "event_id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL, "
            '"card_id" TEXT NOT NULL, "amount" REAL NOT NULL)',
            "CREATE INDEX events_ts ON events(ts)",
            'CREATE TABLE labels ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
            "event_id TEXT NOT NULL, is_fraud REAL NOT NULL, label_ts INTEGER NOT NULL, "
            "known_at INTEGER NOT NULL, source TEXT NOT NULL, UNIQUE(event_id, source))",
            "INSERT INTO events (event_id, ts, card_id, amount) VALUES ('e1', 5, 'c1', 9.5)",
            'CREATE TABLE alerts ("offset" INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, '
            "raised_at INTEGER NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, "
            "subject TEXT NOT NULL, model_version TEXT NOT NULL, window_start INTEGER NOT NULL, "
            "window_end INTEGER NOT NULL, count INTEGER NOT NULL, evidence TEXT NOT NULL, "
            "action TEXT NOT NULL)",
            "INSERT INTO alerts VALUES (1, 'volume|events|v1|0', 3, 'volume', 'warn', 'events', "
            """'v1', 0, 10, 1, '{"rows": 4}', 'Look at the source.')""",
        ):
            db.execute(sql)
    finally:
        db.close()
    with EventLog.open(path, SCHEMA) as log:
        assert schema_version(log.database) == len(log_schema.migrations({}))
        assert log.count("events") == 1
        assert log.append_audit("alias_changed", "alice", {}, ts_us=1) == 1
        log.expire_labels([("e9", "bank")], at_us=7)
        [alert] = AlertLog(log).read()
        assert (alert.subject, alert.evidence, alert.open) == ("events", {"rows": 4}, True)
    fresh_path = tmp_path / "fresh.db"
    EventLog.open(fresh_path, SCHEMA).close()
    assert _objects(path) == _objects(fresh_path)


def test_the_field_check_still_names_both_field_lists(tmp_path: Path) -> None:
    EventLog.open(tmp_path / "minder.db", SCHEMA).close()
    with pytest.raises(MinderError, match=r"created for event fields .*card_id.*but the config"):
        EventLog.open(tmp_path / "minder.db", EventSchema({"card_id": "str"}))
