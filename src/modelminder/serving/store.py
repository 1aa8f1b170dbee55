"""The API tokens (``<project>/serving.db``), stored as SHA-256 hashes; a token itself is
shown once, when created. Predictions are a topic of the log
(:mod:`modelminder.events.predictions`). The tables are created and upgraded by
:mod:`modelminder.store.migrations.serving`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from modelminder.errors import MinderError
from modelminder.store.migrations import migrate
from modelminder.store.migrations.serving import MIGRATIONS
from modelminder.store.sqlite import Database

ROLES = ("service", "reviewer", "admin")
ID_CHARS = 12  # a token's public id: the first hex digits of its hash
DB_NAME = "serving.db"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: its public id (a prefix of its hash), role and times (UTC seconds)."""

    id: str
    role: str
    created_at: int
    revoked_at: int | None


class ServingStore:
    """The serving database. Examples
    --------
    >>> import tempfile
    >>> with ServingStore.open(Path(tempfile.mkdtemp())) as store:
    ...     token = store.create_token("service")
    ...     before = store.role_of(token), store.role_of("nope")
    ...     _ = store.revoke(store.tokens()[0].id)
    ...     before, store.role_of(token), store.has_tokens()
    (('service', None), None, True)
    """

    def __init__(self, root: Path) -> None:
        self.path = root / DB_NAME
        self._db = Database(
            self.path, pragmas=("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000")
        )
        try:
            migrate(self._db, MIGRATIONS, what="the serving store")
        except BaseException:
            self._db.close()
            raise

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
        """The role of a valid token; None for an unknown or revoked one. Asked per request,
        so a token revoked by another process stops working at once."""
        rows = self._db.fetch(
            "SELECT role FROM tokens WHERE hash = ? AND revoked_at IS NULL", [_hash(token)]
        )
        return str(rows[0][0]) if rows else None

    def has_tokens(self) -> bool:
        """Whether any token was ever created (revoked ones count: revoking every token does
        not reopen a server)."""
        return bool(self._db.fetch("SELECT 1 FROM tokens LIMIT 1"))

    def tokens(self) -> list[TokenInfo]:
        """Every token, oldest first (ids only: the tokens themselves are not stored)."""
        rows = self._db.fetch(
            "SELECT hash, role, created_at, revoked_at FROM tokens ORDER BY rowid"
        )
        return [
            TokenInfo(str(h)[:ID_CHARS], str(r), int(c), None if v is None else int(v))
            for h, r, c, v in rows
        ]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke the token whose id (from :meth:`tokens`) is ``token_id``."""
        if (
            not isinstance(token_id, str)
            or len(token_id) != ID_CHARS
            or not all(c in "0123456789abcdef" for c in token_id)
        ):
            raise MinderError(
                f"A token id is {ID_CHARS} hex digits as shown by 'minder tokens list'. "
                f"Got {token_id!r}."
            )
        with self._db.tx():
            self._db.fetch(
                "UPDATE tokens SET revoked_at = CAST(strftime('%s','now') AS INTEGER) "
                "WHERE substr(hash, 1, ?) = ? AND revoked_at IS NULL",
                [ID_CHARS, token_id],
            )
        found = [t for t in self.tokens() if t.id == token_id]
        if not found:
            raise MinderError(f"No token has id {token_id!r}. List them with: minder tokens list.")
        return found[0]


def token_id(token: str) -> str:
    """The public id of ``token`` (as listed by :meth:`ServingStore.tokens`)."""
    return _hash(token)[:ID_CHARS]


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
