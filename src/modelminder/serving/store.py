"""The API tokens (``<project>/serving.db``), stored as SHA-256 hashes; a token itself is
shown once, when created. Predictions are a topic of the log
(:mod:`modelminder.events.predictions`).
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from modelminder.errors import MinderError
from modelminder.store.sqlite import Database

ROLES = ("service", "reviewer", "admin")
DB_NAME = "serving.db"


class ServingStore:
    """The serving database. Examples
    --------
    >>> import tempfile
    >>> with ServingStore.open(Path(tempfile.mkdtemp())) as store:
    ...     token = store.create_token("service")
    ...     store.role_of(token), store.role_of("nope")
    ('service', None)
    """

    def __init__(self, root: Path) -> None:
        self.path = root / DB_NAME
        self._db = Database(
            self.path, pragmas=("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000")
        )
        with self._db.tx():
            self._db.fetch(
                "CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, role TEXT NOT NULL, "
                "created_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s','now') AS INTEGER)))"
            )

    @classmethod
    def open(cls, root: Path) -> ServingStore:
        if not Path(root).is_dir():
            raise MinderError(f"Project folder {root} does not exist.")
        return cls(Path(root))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ServingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- tokens ---------------------------------------------------------------------------
    def create_token(self, role: str) -> str:
        """A new token for ``role`` (shown once; only its hash is stored)."""
        if role not in ROLES:
            raise MinderError(f"Unknown role {role!r}. Allowed: {', '.join(ROLES)}.")
        token = f"mm_{role}_{secrets.token_urlsafe(24)}"
        with self._db.tx():
            self._db.fetch("INSERT INTO tokens (hash, role) VALUES (?, ?)", [_hash(token), role])
        return token

    def role_of(self, token: str) -> str | None:
        rows = self._db.fetch("SELECT role FROM tokens WHERE hash = ?", [_hash(token)])
        return str(rows[0][0]) if rows else None

    def has_tokens(self) -> bool:
        return bool(self._db.fetch("SELECT 1 FROM tokens LIMIT 1"))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
