"""The model registry's schema (``<project>/models/registry.db``), migration by migration.

Tables (owned by :mod:`modelminder.registry.store`): ``models`` and ``alias_history``, both
immutable (triggers refuse UPDATE and DELETE).

1. ``baseline``: the schema of the last release before migrations. That release versioned the
   registry with ``PRAGMA user_version = 1``, which is kept, so that release still opens it.
"""

from __future__ import annotations

from modelminder.store.migrations import Migration
from modelminder.store.sqlite import Database

_BASELINE = (
    """CREATE TABLE IF NOT EXISTS models (
        seq INTEGER PRIMARY KEY,
        version TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
        reasons TEXT NOT NULL,
        checksum TEXT NOT NULL,
        meta TEXT NOT NULL,
        created_by TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS alias_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        alias TEXT NOT NULL,
        version TEXT REFERENCES models(version),
        previous TEXT REFERENCES models(version),
        action TEXT NOT NULL CHECK (action IN ('set', 'clear', 'rollback')),
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        override INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS alias_history_alias ON alias_history(alias, id)",
    *(
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
        for table in ("models", "alias_history")
        for op in ("UPDATE", "DELETE")
    ),
    "PRAGMA user_version = 1",
)


def _baseline(db: Database) -> None:
    for statement in _BASELINE:
        db.fetch(statement)


MIGRATIONS = (Migration(1, "baseline", _baseline),)
