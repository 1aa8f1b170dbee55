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

import polars as pl

from modelminder.errors import LogError
from modelminder.events.log import EventLog
from modelminder.store.sqlite import RowInsert

_COMPACT = (",", ":")
_INSERT = RowInsert(
    "predictions",
    {
        "event_id": "str", "served_at": "int", "model_version": "str", "role": "str",
        "score": "float", "decision": "str", "latency_us": "int", "features": "str",
        "reasons": "str",
    },
)  # fmt: skip
_POLARS = {"str": pl.String, "float": pl.Float64, "int": pl.Int64, "bool": pl.Boolean}
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
        self._fields = dict(log.schema.fields)
        with self._db.tx():
            self._db.fetch(
                # No AUTOINCREMENT: nothing is ever deleted, so rowids only grow, and the extra
                # sqlite_sequence write per prediction is saved.
                'CREATE TABLE IF NOT EXISTS predictions ("offset" INTEGER PRIMARY KEY, '
                "event_id TEXT NOT NULL, served_at INTEGER NOT NULL, "
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
                        "features": json.dumps(p.features, separators=_COMPACT),
                        "reasons": json.dumps(p.reasons, separators=_COMPACT),
                    },
                )  # fmt: skip

    def for_event(self, event_id: str) -> list[Prediction]:
        rows = self._db.fetch(
            f'SELECT {_COLUMNS} FROM predictions WHERE event_id = ? ORDER BY "offset"', [event_id]
        )
        return [_from_row(r) for r in rows]

    def frame(
        self,
        role: str = "champion",
        *,
        from_ts: int | None = None,
        to_ts: int | None = None,
        features: bool = True,
        event_fields: Sequence[str] = (),
    ) -> pl.DataFrame:
        """Predictions of ``role`` for events with time in ``[from_ts, to_ts)``, columnar, in
        serving order: ``event_id, ts`` (event time), ``served_at, model_version, score,
        decision``, with ``features`` the ``features`` as served (a list of floats, NaN =
        missing), and the events' own ``event_fields``.
        An event served twice (a retry cannot be, but a restored log could) keeps its first
        prediction."""
        where: list[str] = ["p.role = ?"]
        params: list[Any] = [role]
        if from_ts is not None:
            where.append("e.ts >= ?")
            params.append(int(from_ts))
        if to_ts is not None:
            where.append("e.ts < ?")
            params.append(int(to_ts))
        cols = "p.event_id, e.ts, p.served_at, p.model_version, p.score, p.decision"
        for name in event_fields:
            if name not in self._fields:
                raise LogError(f"Events have no field {name!r}; fields: {', '.join(self._fields)}.")
            cols += f', e."{name}"'  # a schema field name: a checked identifier
        sql = (
            f"SELECT {cols}{', p.features' if features else ''} FROM predictions p "
            f"JOIN events e ON e.event_id = p.event_id WHERE {' AND '.join(where)} "
            'ORDER BY p."offset"'
        )
        out = pl.DataFrame(self._db.arrow(sql, params))
        if out.height == 0:
            out = pl.DataFrame(
                schema={
                    "event_id": pl.String, "ts": pl.Int64, "served_at": pl.Int64,
                    "model_version": pl.String, "score": pl.Float64, "decision": pl.String,
                    **({"features": pl.String} if features else {}),
                    **{name: _POLARS[self._fields[name]] for name in event_fields},
                }
            )  # fmt: skip
        out = out.unique("event_id", keep="first", maintain_order=True)
        if features:
            # JSON null (a missing value as served) becomes NaN, as in the feature matrix.
            out = out.with_columns(
                pl.col("features")
                .str.json_decode(pl.List(pl.Float64))
                .list.eval(pl.element().fill_null(float("nan")))
            )
        return out


def _from_row(r: Sequence[Any]) -> Prediction:
    return Prediction(
        str(r[0]), int(r[1]), str(r[2]), str(r[3]), float(r[4]), str(r[5]), int(r[6]),
        json.loads(r[7]), json.loads(r[8]),
    )  # fmt: skip
