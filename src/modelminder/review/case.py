"""The case view: an event's entity (e.g. its card) and that entity's other recent events,
each with what was served for it and every label it has, for the reviewer deciding on one.

The entity is the key of the feature plan's first window group (for the built-in card
features, ``card_id``): the key the features aggregate over first, so its events are the
history the model read. Reads only; a reviewer who labels several of them appends one label
per event (:meth:`~modelminder.review.queue.ReviewQueue.label` or the labels door).

The log has no index on entity fields, so the history is read from a time window around the
event (``around_us`` either side, through the index on ``ts``), not from all time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelminder.errors import LogError
from modelminder.events.log import EventLog
from modelminder.events.predictions import Prediction, PredictionTopic
from modelminder.features.plan import LabelGroup, Plan, WindowGroup
from modelminder.store.sqlite import quote_name

DAY_US = 86_400_000_000


@dataclass(frozen=True)
class LabelSeen:
    """One label of an event: its value (1 = positive), source and when it became true."""

    value: float
    source: str
    label_ts: int


@dataclass(frozen=True)
class PastEvent:
    """One event of the entity: its fields, the champion's prediction (None when it was not
    scored) and its labels, oldest first."""

    event_id: str
    ts: int
    fields: Mapping[str, Any]
    served: Prediction | None
    labels: tuple[LabelSeen, ...]


def entity_keys(plan: Plan) -> tuple[str, ...]:
    """The fields naming an event's entity: the first window group's key (see the module
    docstring); ``()`` when the feature set aggregates over no key.

    Examples
    --------
    >>> from modelminder.features.cardfraud import CARD_EVENT_FIELDS, card_fraud_features
    >>> from modelminder.features.plan import compile_plan
    >>> entity_keys(compile_plan(card_fraud_features(), CARD_EVENT_FIELDS))
    ('card_id',)
    """
    groups: list[WindowGroup | LabelGroup] = [*plan.window_groups, *plan.label_groups]
    for group in groups:
        if group.keys:
            return tuple(group.keys)
    return ()


def history(
    log: EventLog,
    predictions: PredictionTopic,
    event_id: str,
    keys: Sequence[str],
    *,
    limit: int = 20,
    around_us: int = 30 * DAY_US,
) -> list[PastEvent]:
    """The other events of ``event_id``'s entity (same values of ``keys``) within
    ``around_us`` of its time, newest first, at most ``limit``. Empty when the event is not
    logged or ``keys`` is empty."""
    fields = dict(log.schema.fields)
    unknown = [k for k in keys if k not in fields]
    if unknown:
        raise LogError(f"Events have no field {unknown[0]!r}; fields: {', '.join(fields)}.")
    found = log.events_by_id([event_id])
    if found.height == 0 or not keys:
        return []
    event = found.row(0, named=True)
    names = ["event_id", "ts", *fields]
    match = " AND ".join(f"{quote_name(k)} = ?" for k in keys)
    rows = log.database.fetch(
        f"SELECT {', '.join(quote_name(n) for n in names)} FROM events "
        f"WHERE ts >= ? AND ts <= ? AND {match} AND event_id != ? "
        'ORDER BY ts DESC, "offset" DESC LIMIT ?',
        [
            int(event["ts"]) - around_us, int(event["ts"]) + around_us,
            *[event[k] for k in keys], event_id, max(0, int(limit)),
        ],
    )  # fmt: skip
    events = [dict(zip(names, r, strict=True)) for r in rows]
    labels = labels_of(log, [str(e["event_id"]) for e in events])
    return [
        PastEvent(
            event_id=str(e["event_id"]),
            ts=int(e["ts"]),
            fields={n: _typed(e[n], fields[n]) for n in fields},
            served=_champion(predictions.for_event(str(e["event_id"]))),
            labels=tuple(labels.get(str(e["event_id"]), ())),
        )
        for e in events
    ]


def labels_of(log: EventLog, event_ids: Sequence[str]) -> dict[str, list[LabelSeen]]:
    """Every label of each of ``event_ids`` (all sources), in the order they were logged."""
    out: dict[str, list[LabelSeen]] = {}
    ids = [str(i) for i in event_ids]
    for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
        chunk = ids[start : start + 500]
        rows = log.database.fetch(
            f"SELECT event_id, {quote_name(log.schema.label)}, source, label_ts FROM labels "
            f'WHERE event_id IN ({", ".join("?" for _ in chunk)}) ORDER BY "offset"',
            chunk,
        )
        for event_id, value, source, label_ts in rows:
            out.setdefault(str(event_id), []).append(
                LabelSeen(float(value), str(source), int(label_ts))
            )
    return out


def _champion(served: Sequence[Prediction]) -> Prediction | None:
    return next((p for p in served if p.role == "champion"), None)


def _typed(value: Any, kind: str) -> Any:
    # SQLite keeps booleans as 0/1 integers.
    return bool(value) if kind == "bool" and value is not None else value
