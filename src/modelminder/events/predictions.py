"""The ``predictions`` topic of the log: every prediction served, traceable.

Event id, model version and role (``champion`` decides, ``shadow`` is only recorded), the
features as served, score, decision, reasons and latency. It lives in the log's database so that
an event and its prediction commit together (``with log.transaction(): ...``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelminder.events.log import EventLog
from modelminder.store.sqlite import RowInsert

_INSERT = RowInsert(
    "predictions",
    {
        "event_id": "str", "served_at": "int", "model_version": "str", "role": "str",
        "score": "float", "decision": "str", "latency_us": "int", "features": "str",
        "reasons": "str",
    },
)  # fmt: skip
_COLUMNS = (
    "event_id, served_at, model_version, role, score, decision, latency_us, features, reasons"
)


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
        # By hand: dataclasses.asdict deep-copies every feature value (a third of a request).
        return {
            "event_id": self.event_id, "served_at": self.served_at,
            "model_version": self.model_version, "role": self.role, "score": self.score,
            "decision": self.decision, "latency_us": self.latency_us,
            "features": list(self.features), "reasons": [dict(r) for r in self.reasons],
        }  # fmt: skip


def finite_or_none(values: Sequence[float]) -> list[float | None]:
    """JSON has no NaN: missing feature values are null."""
    return [None if not math.isfinite(v) else float(v) for v in values]


class PredictionTopic:
    """Append and read predictions in ``log``.

    Examples
    --------
    >>> import tempfile
    >>> from modelminder.events.schema import EventSchema
    >>> log = EventLog.open(tempfile.mkdtemp() + "/log.db", EventSchema({"card_id": "str"}))
    >>> topic = PredictionTopic(log)
    >>> topic.append([Prediction("e1", 5, "v1", "champion", 0.9, "block", 120, [1.0, None], [])])
    >>> [p.decision for p in topic.for_event("e1")]
    ['block']
    >>> log.close()
    """

    def __init__(self, log: EventLog) -> None:
        self._db = log.database
        with self._db.tx():
            self._db.fetch(
                'CREATE TABLE IF NOT EXISTS predictions ("offset" INTEGER PRIMARY KEY '
                "AUTOINCREMENT, event_id TEXT NOT NULL, served_at INTEGER NOT NULL, "
                "model_version TEXT NOT NULL, role TEXT NOT NULL, score REAL NOT NULL, "
                "decision TEXT NOT NULL, latency_us INTEGER NOT NULL, features TEXT NOT NULL, "
                "reasons TEXT NOT NULL)"
            )
            self._db.fetch("CREATE INDEX IF NOT EXISTS predictions_event ON predictions(event_id)")

    def append(self, predictions: Sequence[Prediction]) -> None:
        """Append (in the caller's transaction if there is one)."""
        if not predictions:
            return
        with self._db.tx():
            for p in predictions:
                _INSERT.run(
                    self._db,
                    {
                        "event_id": p.event_id, "served_at": p.served_at,
                        "model_version": p.model_version, "role": p.role, "score": p.score,
                        "decision": p.decision, "latency_us": p.latency_us,
                        "features": json.dumps(p.features), "reasons": json.dumps(p.reasons),
                    },
                )  # fmt: skip

    def for_event(self, event_id: str) -> list[Prediction]:
        rows = self._db.fetch(
            f'SELECT {_COLUMNS} FROM predictions WHERE event_id = ? ORDER BY "offset"', [event_id]
        )
        return [_from_row(r) for r in rows]

    def served(self, role: str = "champion") -> list[Prediction]:
        """Every prediction of ``role``, in serving order (for skew checks)."""
        rows = self._db.fetch(
            f'SELECT {_COLUMNS} FROM predictions WHERE role = ? ORDER BY "offset"', [role]
        )
        return [_from_row(r) for r in rows]


def _from_row(r: Sequence[Any]) -> Prediction:
    return Prediction(
        str(r[0]), int(r[1]), str(r[2]), str(r[3]), float(r[4]), str(r[5]), int(r[6]),
        json.loads(r[7]), json.loads(r[8]),
    )  # fmt: skip
