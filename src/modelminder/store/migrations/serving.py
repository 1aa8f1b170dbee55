"""The serving store's schema (``<project>/serving.db``), migration by migration.

Tables (owned by :mod:`modelminder.serving.store`): ``tokens`` (API tokens, hashed).

1. ``baseline``: the schema of the last release before migrations; a ``tokens`` table from
   before revocation existed gets its ``revoked_at`` column.
"""

from __future__ import annotations

from modelminder.store.migrations import Migration
from modelminder.store.sqlite import Database


def _baseline(db: Database) -> None:
    db.fetch(
        "CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, role TEXT NOT NULL, "
        "created_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s','now') AS INTEGER)))"
    )
    if "revoked_at" not in {str(r[1]) for r in db.fetch("PRAGMA table_info(tokens)")}:
        db.fetch("ALTER TABLE tokens ADD COLUMN revoked_at INTEGER")


MIGRATIONS = (Migration(1, "baseline", _baseline),)
