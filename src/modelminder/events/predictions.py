"""The ``predictions`` topic of the log: every prediction served, traceable.

Event id, model version and role (``champion`` decides, ``shadow`` is only recorded), the
features as served, score, decision, reasons and latency. It lives in the log's database so that
an event and its prediction commit together (``with log.transaction(): ...``).

Served values are stored as JSON, which has no NaN and no infinity. The stored form of a
feature vector (and of a reason's ``value``) is a JSON array of:

* a number -- a finite value, written by Python's ``repr`` (shortest round trip, so it reads
  back bit for bit);
* ``null`` -- missing (NaN, e.g. the mean of an empty window);
* the strings ``"Infinity"`` and ``"-Infinity"`` -- ``+inf`` and ``-inf`` (a sum that
  overflowed, a ratio over a subnormal mean), which are values, not missing.

Rows written before infinities were kept hold numbers and ``null`` only, and read as they did.
Why strings: Python's ``json`` writes (and reads) the bare tokens ``Infinity``/``NaN``, and
reads ``1e999`` as ``inf``, but polars' ``str.json_decode`` refuses all three (not JSON, or a
number out of range); both read a string, and both turn ``"Infinity"``/``"-Infinity"`` into
the float exactly (``float(s)``; polars casts the array decoded as strings). The same strings
are what the HTTP API sends (``GET /v1/predictions/{event_id}``), so a served ``inf`` never
turns into ``null`` on its way out.
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
    features: list[float | None]  # None = missing; ±inf as served (see served_features)
    reasons: list[dict[str, Any]]  # JSON-ready: a reason's value is a json_value

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies every feature value (a third of a request).
        return {
            "event_id": self.event_id, "served_at": self.served_at,
            "model_version": self.model_version, "role": self.role, "score": self.score,
            "decision": self.decision, "latency_us": self.latency_us,
            "features": list(self.features), "reasons": [dict(r) for r in self.reasons],
        }  # fmt: skip


INFINITY = "Infinity"
NEG_INFINITY = "-Infinity"
_INFINITIES = {INFINITY: math.inf, NEG_INFINITY: -math.inf}


def served_features(values: Sequence[float]) -> list[float | None]:
    """A served feature vector as kept in a :class:`Prediction`: missing (NaN) is None, every
    other value (``±inf`` included) stays a float.

    Examples
    --------
    >>> served_features([1.5, float("nan"), float("-inf")])
    [1.5, None, -inf]
    """
    return [None if math.isnan(v) else float(v) for v in values]


def json_value(value: float | str | None) -> float | str | None:
    """The stored (and HTTP) JSON form of one served value: a number, None (missing, NaN) or
    ``"Infinity"``/``"-Infinity"`` (which are also taken as given: the form is idempotent).

    Examples
    --------
    >>> [json_value(v) for v in (2.0, None, float("nan"), float("inf"), float("-inf"))]
    [2.0, None, None, 'Infinity', '-Infinity']
    """
    if isinstance(value, str):
        return INFINITY if from_json_value(value) == math.inf else NEG_INFINITY
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return INFINITY if value > 0 else NEG_INFINITY
    return float(value)


def from_json_value(value: Any) -> float | None:
    """Read back :func:`json_value` (and rows written before infinities were kept)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return _INFINITIES[value]
        except KeyError:
            raise LogError(
                f"A stored served value is the string {value!r}; only numbers, null, "
                f"{INFINITY!r} and {NEG_INFINITY!r} are written. The predictions table was "
                "edited by something other than modelminder."
            ) from None
    return float(value)


def features_json(values: Sequence[float | None]) -> str:
    """The stored form of a served feature vector (see the module docstring).

    Examples
    --------
    >>> features_json([1.0, None, float("inf"), float("nan")])
    '[1.0,null,"Infinity",null]'
    >>> features_from_json(features_json([float("-inf"), 0.1]))
    [-inf, 0.1]
    """
    # Hot path (one call per prediction): dump as is, and convert value by value only when an
    # infinity (or a NaN) made Python write its non-JSON tokens -- rare.
    text = json.dumps(values, separators=_COMPACT)
    if "Infinity" not in text and "NaN" not in text:
        return text
    return json.dumps([json_value(v) for v in values], separators=_COMPACT, allow_nan=False)


def features_from_json(text: str) -> list[float | None]:
    """Read back :func:`features_json`."""
    return [from_json_value(v) for v in json.loads(text)]


def _reasons_json(reasons: Sequence[dict[str, Any]]) -> str:
    # Reasons stay in their JSON form (a value is a number, None or "Infinity"/"-Infinity"),
    # in memory as in the log: they go out in HTTP answers as they are.
    return json.dumps(
        [r | {"value": json_value(r["value"])} if "value" in r else r for r in reasons],
        separators=_COMPACT,
    )


def decode_features(texts: pl.Series) -> pl.Series:
    """Stored feature vectors (JSON text) as lists of float64, NaN for missing, ``±inf`` kept.

    Rows with an infinity (a JSON string) are decoded as strings and cast, the rest as
    numbers directly (polars reads the strings ``"Infinity"``/``"-Infinity"`` as ``±inf``).

    Examples
    --------
    >>> decode_features(pl.Series(["[1.5,null]", '["-Infinity",2.0]'])).to_list()
    [[1.5, nan], [-inf, 2.0]]
    """
    special = texts.str.contains('"', literal=True)
    if not special.any():
        lists = texts.str.json_decode(pl.List(pl.Float64))
    else:
        t, s, empty = pl.col("t"), pl.col("s"), pl.lit("[]")
        as_strings = pl.when(s).then(t).otherwise(empty).str.json_decode(pl.List(pl.String))
        as_numbers = pl.when(s).then(empty).otherwise(t).str.json_decode(pl.List(pl.Float64))
        lists = (
            pl.DataFrame({"t": texts, "s": special})
            .select(
                pl.when(s)
                .then(as_strings.list.eval(pl.element().cast(pl.Float64)))
                .otherwise(as_numbers)
            )
            .to_series()
        )
    return lists.list.eval(pl.element().fill_null(float("nan"))).alias(texts.name)


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
        # The predictions table is created with the log (store.migrations.log).
        self._db = log.database
        self._fields = dict(log.schema.fields)

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
                        "features": features_json(p.features),
                        "reasons": _reasons_json(p.reasons),
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
        missing, ``±inf`` as served), and the events' own ``event_fields``.
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
            out = out.with_columns(decode_features(out.get_column("features")))
        return out


def _from_row(r: Sequence[Any]) -> Prediction:
    return Prediction(
        str(r[0]), int(r[1]), str(r[2]), str(r[3]), float(r[4]), str(r[5]), int(r[6]),
        features_from_json(r[7]), json.loads(r[8]),
    )  # fmt: skip
