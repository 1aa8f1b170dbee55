"""What serving records: the prediction log and the API tokens (``<project>/serving.db``).

Every prediction is traceable: event id, model version and role (champion or shadow), the
features as served, score, decision, reasons and latency. Tokens are stored as SHA-256
hashes; the token itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelminder.errors import MinderError
from modelminder.store.sqlite import Database

ROLES = ("service", "reviewer", "admin")
DB_NAME = "serving.db"


@dataclass(frozen=True)
class Prediction:
    event_id: str
    served_at: int
    model_version: str
    role: str  # "champion" or "shadow"
    score: float
    decision: str
    latency_us: int
    features: list[float | None]
    reasons: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "served_at": self.served_at,
            "model_version": self.model_version,
            "role": self.role,
            "score": self.score,
            "decision": self.decision,
            "latency_us": self.latency_us,
            "features": self.features,
            "reasons": self.reasons,
        }


def finite_or_none(values: Sequence[float]) -> list[float | None]:
    """JSON has no NaN: missing feature values are null."""
    return [None if not math.isfinite(v) else float(v) for v in values]


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
                "CREATE TABLE IF NOT EXISTS predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "event_id TEXT NOT NULL, served_at INTEGER NOT NULL, model_version TEXT NOT NULL, "
                "role TEXT NOT NULL, score REAL NOT NULL, decision TEXT NOT NULL, "
                "latency_us INTEGER NOT NULL, features TEXT NOT NULL, reasons TEXT NOT NULL)"
            )
            self._db.fetch("CREATE INDEX IF NOT EXISTS predictions_event ON predictions(event_id)")
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

    # -- predictions ----------------------------------------------------------------------
    def append(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        with self._db.tx():
            for p in predictions:
                self._db.fetch(
                    "INSERT INTO predictions (event_id, served_at, model_version, role, score, "
                    "decision, latency_us, features, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        p.event_id,
                        p.served_at,
                        p.model_version,
                        p.role,
                        p.score,
                        p.decision,
                        p.latency_us,
                        json.dumps(p.features),
                        json.dumps(p.reasons),
                    ],
                )

    def get(self, event_id: str) -> list[Prediction]:
        rows = self._db.fetch(
            "SELECT event_id, served_at, model_version, role, score, decision, latency_us, "
            "features, reasons FROM predictions WHERE event_id = ? ORDER BY id",
            [event_id],
        )
        return [
            Prediction(
                r[0],
                int(r[1]),
                r[2],
                r[3],
                float(r[4]),
                r[5],
                int(r[6]),
                json.loads(r[7]),
                json.loads(r[8]),
            )
            for r in rows
        ]

    def champion_predictions(self) -> list[Prediction]:
        """Every prediction served as the decision (for skew checks), in serving order."""
        ids = [r[0] for r in self._db.fetch("SELECT DISTINCT event_id FROM predictions")]
        out: list[Prediction] = []
        for event_id in ids:
            out += [p for p in self.get(event_id) if p.role == "champion"]
        return sorted(out, key=lambda p: p.served_at)

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
