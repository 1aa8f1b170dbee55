"""Adapters between the event log and the engine: replay, online replay, parity check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.events.log import EventLog
from modelminder.features.online import OnlineEngine
from modelminder.features.plan import Plan
from modelminder.features.replay import replay_frame

# Floats computed by replay and online agree bit for bit (same kernel, same per-key order; a
# window's value depends only on the window's events, so also after a rebuild from the recent
# log). The check still allows this tolerance so that it stays meaningful against the reference.
RTOL = 1e-9
ATOL = 1e-9


def _load(
    log: EventLog, plan: Plan, from_ts: int | None, to_ts: int | None, to_offset: int | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    # Window state needs history before the range: read from (from - horizon). Events older
    # than that can never fall inside a window of an event in range (see kernel docs).
    start = None if from_ts is None else from_ts - plan.max_horizon
    events = log.read("events", from_ts=start, to_ts=to_ts, to_offset=to_offset)
    # Expired labels (serving.waiting) never feed label-aware features, live or replayed.
    labels = log.feature_labels() if plan.label_groups else None
    if labels is None:
        return events, pl.DataFrame(), None
    return events, labels, _label_events(log, plan, events, labels, start, to_ts)


def _label_events(
    log: EventLog,
    plan: Plan,
    events: pl.DataFrame,
    labels: pl.DataFrame,
    since: int | None,
    until: int | None = None,
) -> pl.DataFrame | None:
    """The events of labels over known time that ``events`` lacks (older ones): a label
    received in a window counts whatever its event's age, and is keyed by that event. Only
    labels known in ``(since, until)`` can fall in a window of the events read (``since`` is
    at least one horizon before the first of them; an event before ``until`` counts labels
    known before it)."""
    if not any(g.known for g in plan.label_groups):
        return None
    wanted = labels
    if since is not None:
        wanted = wanted.filter(pl.col("known_at") > since)
    if until is not None:
        wanted = wanted.filter(pl.col("known_at") < until)
    ids = wanted.join(events.select("event_id"), on="event_id", how="anti")
    if ids.height == 0:
        return None
    return log.events_by_id(ids.get_column("event_id").unique().to_list())


def _in_range(events: pl.DataFrame, from_ts: int | None) -> pl.Series:
    if from_ts is None:
        return pl.Series([True] * events.height, dtype=pl.Boolean)
    return events.get_column("ts") >= from_ts


def replay_log(
    log: EventLog,
    plan: Plan,
    *,
    from_ts: int | None = None,
    to_ts: int | None = None,
    to_offset: int | None = None,
) -> pl.DataFrame:
    """Features of the events with time in ``[from_ts, to_ts)`` (and offset <= ``to_offset``),
    in log order.

    Examples
    --------
    >>> import tempfile
    >>> from modelminder.project import init_project, load_project
    >>> root = tempfile.mkdtemp()
    >>> _ = init_project(root, builtin=True)
    >>> project = load_project(root)
    >>> events = pl.DataFrame({
    ...     "event_id": ["e1", "e2"], "ts": ["2026-01-01T10:00:00Z", "2026-01-01T10:30:00Z"],
    ...     "card_id": ["c1", "c1"], "merchant_id": ["m1", "m2"], "amount": [20.0, 35.0],
    ...     "country": ["FR", "FR"], "channel": ["pos", "online"],
    ... })
    >>> with project.open_log() as log:
    ...     _ = log.append_events(events)
    ...     table = replay_log(log, project.plan())
    >>> table.select("event_id", "card_count_1h").rows()
    [('e1', 0.0), ('e2', 1.0)]
    """
    events, labels, label_events = _load(log, plan, from_ts, to_ts, to_offset)
    table = replay_frame(
        plan, events, labels if plan.label_groups else None, label_events=label_events
    )
    return table.filter(_in_range(events, from_ts))


def replay_log_online(
    log: EventLog,
    plan: Plan,
    *,
    from_ts: int | None = None,
    to_ts: int | None = None,
    to_offset: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> pl.DataFrame:
    """The same table, computed by feeding each event through the online path in log order.

    Labels are fed as they become known: before an event at time ``t`` is processed, every
    label with ``known_at`` up to the latest event time seen so far is folded in (with its
    event's key fields and time: that of an event read, or for windows over known time, of
    an older event).
    """
    events, labels, label_events = _load(log, plan, from_ts, to_ts, to_offset)
    engine = OnlineEngine(plan)
    label_queue: list[tuple[int, dict[str, object], float]] = []
    if plan.label_groups and labels.height:
        value = plan.feature_set.label_value
        keyed = events if label_events is None else pl.concat([events, label_events])
        # Ties in known_at in log order, as replay folds them (a stable sort).
        joined = labels.join(keyed, on="event_id", how="inner", maintain_order="left").sort(
            "known_at", maintain_order=True
        )
        label_queue = [
            (int(r["known_at"]), r, float(r[value])) for r in joined.iter_rows(named=True)
        ]
    pos = 0
    high = None
    rows = np.empty((events.height, len(plan.names)), np.float64)
    cols = [c for c in events.columns if c != "offset"]
    for i, rec in enumerate(events.select(cols).iter_rows(named=True)):
        t = int(rec["ts"])
        high = t if high is None else max(high, t)
        while pos < len(label_queue) and label_queue[pos][0] <= high:
            known_at, lrec, val = label_queue[pos]
            engine.add_label(lrec, val, known_at)
            pos += 1
        feats = engine.process(rec)
        rows[i] = [feats[n] for n in plan.names]
        if progress is not None and (i + 1) % 1000 == 0:
            progress(1000)
    data: dict[str, object] = {"event_id": events.get_column("event_id")}
    for j, name in enumerate(plan.names):
        data[name] = rows[:, j]
    return pl.DataFrame(data).filter(_in_range(events, from_ts))


def engine_from_log(log: EventLog, plan: Plan, *, history_us: int | None = None) -> OnlineEngine:
    """An online engine whose state is rebuilt from the log (at server start, say).

    Reads the events with time after ``latest - history_us`` (default: three times the
    largest window plus the allowed lateness) and the labels of those events, and folds them
    in with the compiled replay loops. Any event that can still fall in a window of an event
    arriving no later than the allowed lateness is read, so such events see the same window
    contents as with a full replay, so every feature agrees with it bit for bit (a window's
    sums depend only on its contents, not on where the state's history starts). Windows over
    known time also get the labels received within that history of older events (keyed by
    those events, read by id), on keys with no recent event too.
    """
    latest = log.max_event_ts()
    if latest is None:
        return OnlineEngine(plan)
    history = 3 * plan.max_horizon if history_us is None else history_us
    events = log.read("events", from_ts=latest - history)
    # Expired labels (serving.waiting) never feed label-aware features, live or replayed.
    labels = log.feature_labels() if plan.label_groups else None
    label_events = None
    if labels is not None:
        label_events = _label_events(log, plan, events, labels, latest - history)
    return OnlineEngine.rebuilt(plan, events, labels, label_events=label_events)


@dataclass(frozen=True)
class ParityReport:
    """Mismatches per feature between two feature tables of the same events."""

    events: int
    mismatches: dict[str, int]
    examples: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not any(self.mismatches.values())


def mismatched_rows(
    a: pl.DataFrame, b: pl.DataFrame, names: list[str]
) -> dict[str, npt.NDArray[np.int64]]:
    """Per feature, the rows where two feature tables (same event order) differ beyond the
    stated tolerance. NaN (missing) equals NaN and ``+inf`` equals ``+inf``; an infinity
    against NaN, a finite number or the other infinity is a mismatch."""
    if a.get_column("event_id").to_list() != b.get_column("event_id").to_list():
        raise ValueError("the two tables do not list the same events in the same order")
    return {
        name: np.flatnonzero(
            ~np.isclose(
                a.get_column(name).to_numpy(), b.get_column(name).to_numpy(),
                rtol=RTOL, atol=ATOL, equal_nan=True,
            )
        )
        for name in names
    }  # fmt: skip


def compare_tables(
    a: pl.DataFrame,
    b: pl.DataFrame,
    names: list[str],
    bad: dict[str, npt.NDArray[np.int64]] | None = None,
) -> ParityReport:
    """Compare feature tables row by row (same event order); NaN equals NaN. ``bad``:
    :func:`mismatched_rows` already computed."""
    bad = mismatched_rows(a, b, names) if bad is None else bad
    ids = a.get_column("event_id").to_numpy()
    examples: dict[str, list[str]] = {}
    for name in names:
        x, y = a.get_column(name).to_numpy(), b.get_column(name).to_numpy()
        examples[name] = [f"{ids[i]}: {x[i]!r} vs {y[i]!r}" for i in bad[name][:3]]
    mismatches = {name: len(rows) for name, rows in bad.items()}
    return ParityReport(events=a.height, mismatches=mismatches, examples=examples)
