"""The event log's schema (``<project>/minder.db``), migration by migration.

Tables and their owners: ``log_meta``, ``events``, ``labels``, ``label_expiry`` and ``audit``
(:mod:`modelminder.events.log`), ``predictions`` (:mod:`modelminder.events.predictions`),
``alert_events`` (:mod:`modelminder.monitoring.alerts`). Every table is append-only except
``log_meta``.

1. ``baseline``: the schema of the last release before migrations (the ``events`` table has
   one column per declared event field).
2. ``alerts_as_events``: the mutable ``alerts`` table (one row per alert, updated in place)
   becomes the append-only ``alert_events`` topic (one row per change of an alert's state; the
   state is the fold of its events). Each existing row becomes one event holding the alert's
   last state, stamped with the time it was first raised (its updates were overwritten then).
3. ``review_queue``: ``review_items`` (one row per served event selected for human review,
   with its reasons and the probability it was selected with) and ``review_events`` (claims,
   releases, skips, labels, expiries: an item's state is the fold of its events). Both are
   append-only (:mod:`modelminder.review.queue`).
4. ``label_corrections``: a label is identified by ``(event_id, source, revision)`` instead of
   ``(event_id, source)``, so a correction from the same source (a reviewer changing a verdict)
   is a new row with the next revision, never an overwrite; ``reviewer`` and ``note`` say who
   gave a review label and why (empty for other sources). Existing labels are revision 0.
5. ``review_overlap``: ``review_items.reviews_needed`` -- 2 for the overlap sample that two
   reviewers label independently (their agreement), else 1.
6. ``loop_lock``: leases that keep two retraining loops from working at once
   (:mod:`modelminder.loop.lock`); one row per lock name, taken or renewed by a conditional
   upsert. It is the only table besides ``log_meta`` whose rows change: a lease is a claim on
   the present, not a record (the loop's decisions are audit records).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from modelminder.store.migrations import Migration
from modelminder.store.sqlite import Database, quote_name

SQL_TYPES = {"str": "TEXT", "float": "REAL", "int": "INTEGER", "bool": "INTEGER"}


def migrations(fields: Mapping[str, str], label: str = "is_fraud") -> tuple[Migration, ...]:
    """The log's migrations, for a log of events with ``fields`` (name -> ``str``, ``float``,
    ``int`` or ``bool``) and labels whose value column is ``label``. They shape only a new
    log's ``events`` and ``labels`` tables; an existing log keeps its own (the event log
    refuses to open it with other fields or another label)."""
    return (
        Migration(1, "baseline", lambda db: _baseline(db, fields, label)),
        Migration(2, "alerts_as_events", _alerts_as_events),
        Migration(3, "review_queue", _review_queue),
        Migration(4, "label_corrections", _label_corrections),
        Migration(5, "review_overlap", _review_overlap),
        Migration(6, "loop_lock", _loop_lock),
    )


def _label_column(label: str) -> str:
    # The default is written bare, exactly as logs made before [events].label existed have
    # it (so a new log's schema text equals an upgraded one's); other names are quoted.
    return label if label == "is_fraud" else quote_name(label)


def _baseline(db: Database, fields: Mapping[str, str], label: str) -> None:
    # A log made before migrations may lack the tables added after it shipped (label_expiry,
    # audit, predictions and alerts appeared over time; alerts.open later still): create only
    # what is missing. The statements are those of that release, so both paths give one schema.
    db.fetch("CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT)")
    if not db.fetch("SELECT 1 FROM log_meta WHERE key = 'event_fields'"):
        cols = "".join(f", {quote_name(n)} {SQL_TYPES[t]} NOT NULL" for n, t in fields.items())
        db.fetch(
            'CREATE TABLE events ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
            f"event_id TEXT NOT NULL UNIQUE, ts INTEGER NOT NULL{cols})"
        )
        db.fetch("CREATE INDEX events_ts ON events(ts)")
        db.fetch(
            'CREATE TABLE labels ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
            f"event_id TEXT NOT NULL, {_label_column(label)} REAL NOT NULL, "
            "label_ts INTEGER NOT NULL, "
            "known_at INTEGER NOT NULL, source TEXT NOT NULL, UNIQUE(event_id, source))"
        )
        db.fetch(
            "INSERT INTO log_meta(key, value) VALUES ('event_fields', ?)",
            [json.dumps(dict(fields))],
        )
    db.fetch(
        "CREATE TABLE IF NOT EXISTS label_expiry (event_id TEXT NOT NULL, "
        "source TEXT NOT NULL, expired_at INTEGER NOT NULL, "
        "PRIMARY KEY (event_id, source))"
    )
    db.fetch(
        'CREATE TABLE IF NOT EXISTS audit ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
        "ts INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, "
        "payload TEXT NOT NULL)"
    )
    db.fetch("CREATE INDEX IF NOT EXISTS audit_ts ON audit(ts)")
    db.fetch(
        # No AUTOINCREMENT: nothing is ever deleted, so rowids only grow, and the extra
        # sqlite_sequence write per prediction is saved.
        'CREATE TABLE IF NOT EXISTS predictions ("offset" INTEGER PRIMARY KEY, '
        "event_id TEXT NOT NULL, served_at INTEGER NOT NULL, "
        "model_version TEXT NOT NULL, role TEXT NOT NULL, score REAL NOT NULL, "
        "decision TEXT NOT NULL, latency_us INTEGER NOT NULL, features TEXT NOT NULL, "
        "reasons TEXT NOT NULL)"
    )
    db.fetch("CREATE INDEX IF NOT EXISTS predictions_event ON predictions(event_id)")
    db.fetch(
        'CREATE TABLE IF NOT EXISTS alerts ("offset" INTEGER PRIMARY KEY, key TEXT NOT '
        "NULL UNIQUE, raised_at INTEGER NOT NULL, kind TEXT NOT NULL, severity TEXT NOT "
        "NULL, subject TEXT NOT NULL, model_version TEXT NOT NULL, window_start INTEGER "
        "NOT NULL, window_end INTEGER NOT NULL, count INTEGER NOT NULL, evidence TEXT "
        "NOT NULL, action TEXT NOT NULL, open INTEGER NOT NULL DEFAULT 1)"
    )
    if "open" not in {str(r[1]) for r in db.fetch("PRAGMA table_info(alerts)")}:
        db.fetch("ALTER TABLE alerts ADD COLUMN open INTEGER NOT NULL DEFAULT 1")


_ALERT_COLUMNS = (
    "key, kind, severity, subject, model_version, window_start, window_end, count, evidence, "
    "action, open"
)


def _alerts_as_events(db: Database) -> None:
    db.fetch(
        'CREATE TABLE IF NOT EXISTS alert_events ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
        "recorded_at INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, "
        "severity TEXT NOT NULL, subject TEXT NOT NULL, model_version TEXT NOT NULL, "
        "window_start INTEGER NOT NULL, window_end INTEGER NOT NULL, count INTEGER NOT NULL, "
        "evidence TEXT NOT NULL, action TEXT NOT NULL, open INTEGER NOT NULL)"
    )
    db.fetch('CREATE INDEX IF NOT EXISTS alert_events_key ON alert_events(key, "offset")')
    for op in ("UPDATE", "DELETE"):
        db.fetch(
            f"CREATE TRIGGER IF NOT EXISTS alert_events_no_{op.lower()} BEFORE {op} ON "
            "alert_events BEGIN SELECT RAISE(ABORT, 'alert_events rows are immutable: append "
            "a new state instead'); END"
        )
    # In the old table's offset order, which is the order read() lists alerts of one window.
    db.fetch(
        f"INSERT INTO alert_events (recorded_at, {_ALERT_COLUMNS}) "
        f'SELECT raised_at, {_ALERT_COLUMNS} FROM alerts ORDER BY "offset"'
    )
    db.fetch("DROP TABLE alerts")


def _immutable(db: Database, table: str) -> None:
    for op in ("UPDATE", "DELETE"):
        db.fetch(
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable: append instead'); END"
        )


def _review_queue(db: Database) -> None:
    db.fetch(
        "CREATE TABLE IF NOT EXISTS review_items (item_id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "event_id TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, ts INTEGER NOT NULL, "
        "model_version TEXT NOT NULL, score REAL NOT NULL, decision TEXT NOT NULL, "
        "reasons TEXT NOT NULL, propensity REAL NOT NULL, priority REAL NOT NULL)"
    )
    db.fetch(
        'CREATE TABLE IF NOT EXISTS review_events ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
        "item_id INTEGER NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, "
        "reviewer TEXT NOT NULL, lease_until INTEGER, verdict TEXT, note TEXT NOT NULL)"
    )
    db.fetch('CREATE INDEX IF NOT EXISTS review_events_item ON review_events(item_id, "offset")')
    _immutable(db, "review_items")
    _immutable(db, "review_events")


def _label_corrections(db: Database) -> None:
    # SQLite cannot change a UNIQUE constraint in place: the table is rebuilt, offsets kept.
    # The label column is the log's own (the log refuses a configuration naming another).
    columns = [str(r[1]) for r in db.fetch("PRAGMA table_info(labels)")]
    if "revision" in columns:  # already in this shape
        return
    fixed = ("offset", "event_id", "label_ts", "known_at", "source")
    (label,) = [c for c in columns if c not in fixed]
    col = _label_column(label)
    db.fetch("ALTER TABLE labels RENAME TO labels_before_4")
    db.fetch(
        'CREATE TABLE labels ("offset" INTEGER PRIMARY KEY AUTOINCREMENT, '
        f"event_id TEXT NOT NULL, {col} REAL NOT NULL, label_ts INTEGER NOT NULL, "
        "known_at INTEGER NOT NULL, source TEXT NOT NULL, revision INTEGER NOT NULL DEFAULT 0, "
        "reviewer TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', "
        "UNIQUE(event_id, source, revision))"
    )
    db.fetch(
        f'INSERT INTO labels ("offset", event_id, {col}, label_ts, known_at, source) '
        f'SELECT "offset", event_id, {col}, label_ts, known_at, source FROM labels_before_4 '
        'ORDER BY "offset"'
    )
    db.fetch("DROP TABLE labels_before_4")


def _review_overlap(db: Database) -> None:
    if "reviews_needed" not in {str(r[1]) for r in db.fetch("PRAGMA table_info(review_items)")}:
        db.fetch("ALTER TABLE review_items ADD COLUMN reviews_needed INTEGER NOT NULL DEFAULT 1")


def _loop_lock(db: Database) -> None:
    db.fetch(
        "CREATE TABLE IF NOT EXISTS loop_lock (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
        "acquired_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
    )
