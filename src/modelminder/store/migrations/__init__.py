"""Versioned schema migrations: one numbered list per database, applied in order.

Owns
----
The table definitions of every modelminder database, one module per database:
:mod:`.log` (the event log, ``<project>/minder.db``), :mod:`.registry` (the model registry,
``<project>/models/registry.db``) and :mod:`.serving` (API tokens, ``<project>/serving.db``).
The package that uses a table owns its rows and its queries; it never creates or alters a
table itself, it calls :func:`migrate` when it opens its database.

Promises
--------
* Each database records the migrations applied to it in a ``schema_version`` table (one row
  per migration: ``version, name``); its version is the highest row.
* :func:`migrate` applies the missing migrations in one write transaction, together with their
  ``schema_version`` rows: a crash leaves the database at its old version or at the new one,
  never in between. Two processes opening the same file at once migrate it once (the version
  is read again under the write lock).
* A database whose version is higher than the code knows (written by a newer modelminder) is
  refused with :class:`SchemaTooNew` before anything is written.
* A database with no ``schema_version`` table is at version 0: new (empty), or written by a
  release from before migrations existed. Migration 1 of each database brings both to the same
  first versioned schema: it creates only what is missing and adds the columns that older
  releases lacked, so a project folder made by those releases opens and is upgraded in place.

Never: drops a column or a row that a reader still needs without converting it first (a
migration that changes a table's form copies its rows into the new form in the same
transaction), or runs DDL outside :func:`migrate`.

Only SQLite exists today; the scaled mode's PostgreSQL will get its own list per database
(same version numbers, same ``schema_version`` table), since DDL differs between the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelminder.errors import MinderError
from modelminder.store.sqlite import Database

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
)


class SchemaTooNew(MinderError):
    """The database was written by a newer modelminder, whose tables this one does not know.
    Upgrade modelminder to open it (nothing was changed), or use a copy made before the newer
    version touched it."""


@dataclass(frozen=True)
class Migration:
    """One numbered step of a database's schema: ``apply`` runs inside the transaction that
    records it, on the database's connection."""

    version: int
    name: str
    apply: Callable[[Database], None]


def schema_version(db: Database) -> int:
    """The version of the schema of ``db``: its highest applied migration, 0 if none.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> db = Database(Path(tempfile.mkdtemp()) / "x.db", pragmas=())
    >>> steps = [Migration(1, "t", lambda d: d.execute("CREATE TABLE t (x INTEGER)"))]
    >>> schema_version(db), migrate(db, steps, what="the test database"), schema_version(db)
    (0, 1, 1)
    >>> db.close()
    """
    if not db.fetch("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"):
        return 0
    return int(db.fetch("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0])


def migrate(db: Database, migrations: Sequence[Migration], *, what: str) -> int:
    """Bring ``db`` to the last of ``migrations`` (numbered 1, 2, ... in order); its version.

    ``what`` names the database in errors, e.g. ``"the event log"``. Raises
    :class:`SchemaTooNew` if ``db`` is newer than the last migration.
    """
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise ValueError(
            f"The migrations of {what} must be numbered 1, 2, ... in order. "
            f"Got {[m.version for m in migrations]}."
        )
    latest = len(migrations)
    current = schema_version(db)  # the common case: already current, no write lock taken
    _refuse_newer(db, current, latest, what)
    if current == latest:
        return latest
    with db.tx():
        db.fetch(_VERSION_TABLE)
        current = schema_version(db)  # another process may have migrated in the meantime
        _refuse_newer(db, current, latest, what)
        for step in migrations[current:]:
            step.apply(db)
            db.fetch(
                "INSERT INTO schema_version (version, name) VALUES (?, ?)",
                [step.version, step.name],
            )
    return latest


def _refuse_newer(db: Database, current: int, latest: int, what: str) -> None:
    if current > latest:
        raise SchemaTooNew(
            f"The schema of {what} at {db.path} is at version {current}, but this modelminder "
            f"knows versions up to {latest}: a newer modelminder wrote it. Upgrade modelminder "
            "(pip install -U modelminder) to open it; nothing was changed."
        )
