"""Replay: run the feature engine over a whole frame of events in log order.

Columnar preparation (inputs, codes, key segments) is vectorized; the per-key loops are the
compiled step functions of :mod:`modelminder.features.kernel`, run on several threads (each
thread takes whole key segments, so results do not depend on the number of threads). Pure: no
files, no database; the runners feed it frames.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.features.kernel import NO_TIME, label_replay, stable_order, window_replay
from modelminder.features.plan import LabelGroup, Plan
from modelminder.features.rows import RowFn, RowProgram, row_program

Array = npt.NDArray[Any]
IntArray = npt.NDArray[np.int64]


def ts_micros(series: pl.Series) -> IntArray:
    """Event times as int64 microseconds since the epoch (UTC), from a datetime or int column."""
    if isinstance(series.dtype, pl.Datetime):
        series = series.dt.epoch("us")
    return np.ascontiguousarray(series.cast(pl.Int64).to_numpy(), np.int64)


def default_threads() -> int:
    """Threads for replay: ``$MODELMINDER_THREADS``, else the number of CPUs."""
    value = os.environ.get("MODELMINDER_THREADS")
    return max(1, int(value)) if value else max(1, os.cpu_count() or 1)


@dataclass
class Prepared:
    """A frame of events turned into the engine's arrays (shared by replay and rebuild)."""

    plan: Plan
    events: pl.DataFrame
    program: RowProgram
    ts: IntArray
    F: Array  # inputs x rows
    V: Array  # rows x values
    C: IntArray  # rows x categorical codes
    _codes: dict[str, tuple[IntArray, int]] = field(default_factory=dict)
    _segments: dict[tuple[str, ...], tuple[IntArray, IntArray]] = field(default_factory=dict)
    _clock: IntArray | None = None

    @property
    def n(self) -> int:
        return self.events.height

    def codes(self, name: str) -> tuple[IntArray, int]:
        """Integer codes of a column (equal values, equal codes) and one past the largest."""
        if name not in self._codes:
            s = self.events.get_column(name)
            if s.dtype != pl.String:
                s = s.cast(pl.String)
            c = s.cast(pl.Categorical).to_physical().cast(pl.Int64).to_numpy()
            c = np.ascontiguousarray(c, np.int64)
            k = int(c.max()) + 1 if len(c) else 1
            if k > 4 * len(c) + 64:  # sparse global codes: make them dense
                c = np.unique(c, return_inverse=True)[1].astype(np.int64).reshape(-1)
                k = int(c.max()) + 1 if len(c) else 1
            self._codes[name] = (c, k)
        return self._codes[name]

    def segments(self, keys: tuple[str, ...]) -> tuple[IntArray, IntArray]:
        """Rows grouped by key (log order kept inside each key) and the group boundaries."""
        if keys not in self._segments:
            order = np.arange(self.n, dtype=np.int64)
            change = np.zeros(self.n, np.bool_)
            for name in reversed(keys):  # LSD radix: last key first, each pass stable
                c, k = self.codes(name)
                order = stable_order(c, k, order)
            for name in keys:
                c = self.codes(name)[0][order]
                change[1:] |= c[1:] != c[:-1]
            cuts = np.flatnonzero(change[1:]) + 1 if self.n else np.zeros(0, np.int64)
            bounds = np.concatenate(([0], cuts, [self.n])).astype(np.int64)
            self._segments[keys] = (order, bounds)
        return self._segments[keys]

    @property
    def clock(self) -> IntArray:
        """Per row, the latest event time of any earlier row (:data:`NO_TIME` for the first):
        what the online path's clock says when it reaches that event."""
        if self._clock is None:
            before = np.empty(self.n, np.int64)
            if self.n:
                before[0] = NO_TIME
                before[1:] = np.maximum.accumulate(self.ts)[:-1]
            self._clock = before
        return self._clock

    def label_inputs(
        self,
        labels: pl.DataFrame | None,
        group: LabelGroup,
        label_events: pl.DataFrame | None = None,
    ) -> LabelInputs:
        """The group's labels key by key, in order of their time coordinate (see
        :class:`LabelInputs`). A label is keyed by its event: one in the frame, or, for a group
        over known time, one of ``label_events`` (events older than the frame, say). Labels of
        other events are ignored."""
        order, bounds = self.segments(group.keys)
        n_seg = len(bounds) - 1
        if labels is None or labels.height == 0 or self.n == 0:
            empty = np.zeros(0, np.int64)
            return LabelInputs(empty, empty, np.zeros(0), np.zeros(n_seg + 1, np.int64), [])
        value_col = self.plan.feature_set.label_value
        given = labels.select(
            "event_id",
            pl.Series("known_at", ts_micros(labels.get_column("known_at")), dtype=pl.Int64),
            pl.col(value_col).cast(pl.Float64).alias("__value"),
        )
        if group.known:
            return self._known_label_inputs(given, group, label_events)
        row_of = self.events.select("event_id").with_row_index("__row")
        joined = given.join(row_of, on="event_id", how="inner")
        label_rows = joined.get_column("__row").cast(pl.Int64).to_numpy()
        known = joined.get_column("known_at").to_numpy()
        group_of_row = np.empty(self.n, np.int64)
        group_of_row[order] = np.repeat(np.arange(n_seg), np.diff(bounds))
        lg = group_of_row[label_rows]
        l_ets = self.ts[label_rows]
        # Labels key by key, in event-time order (ties by known_at, for determinism).
        l_order = np.lexsort((known, l_ets, lg))
        l_bounds = np.searchsorted(lg[l_order], np.arange(n_seg + 1)).astype(np.int64)
        return LabelInputs(
            np.ascontiguousarray(l_ets[l_order], np.int64),
            np.ascontiguousarray(known[l_order], np.int64),
            np.ascontiguousarray(joined.get_column("__value").to_numpy()[l_order], np.float64),
            l_bounds,
            [],
        )

    def _known_label_inputs(
        self, given: pl.DataFrame, group: LabelGroup, label_events: pl.DataFrame | None
    ) -> LabelInputs:
        """:meth:`label_inputs` of a group over known time: keyed by the labelled event's key
        fields (the event need not be in the frame), in ``known_at`` order."""
        keys = list(group.keys)
        order, bounds = self.segments(group.keys)
        n_seg = len(bounds) - 1
        lookup = self.events.select("event_id", *keys)
        if label_events is not None and label_events.height:
            lookup = pl.concat(
                [lookup, label_events.select("event_id", *keys)], how="vertical_relaxed"
            ).unique("event_id", keep="first", maintain_order=True)
        keyed = given.join(lookup, on="event_id", how="inner", maintain_order="left").drop_nulls(
            keys
        )
        # The segment of each label's key; keys with labels but no events in the frame get
        # segments of their own after the frame's (a rebuilt state keeps them).
        seg_keys = self.events.select(keys)[order[bounds[:-1]]].with_row_index("__seg")
        keyed = keyed.join(seg_keys, on=keys, how="left", maintain_order="left")
        missing = keyed.filter(pl.col("__seg").is_null())
        extra = missing.select(keys).unique(maintain_order=True)
        if extra.height:
            numbered = extra.with_row_index("__extra").with_columns(
                (pl.col("__extra") + n_seg).cast(pl.Int64)
            )
            keyed = keyed.join(numbered, on=keys, how="left", maintain_order="left").with_columns(
                pl.coalesce(pl.col("__seg").cast(pl.Int64), pl.col("__extra")).alias("__seg")
            )
        seg = keyed.get_column("__seg").cast(pl.Int64).to_numpy()
        known = keyed.get_column("known_at").to_numpy()
        # Key by key, by known_at; ties in the order given (the log's), as they arrive live.
        l_order = np.lexsort((np.arange(len(seg)), known, seg))
        l_bounds = np.searchsorted(seg[l_order], np.arange(n_seg + extra.height + 1))
        extra_keys: list[Any] = (
            extra.get_column(keys[0]).to_list() if len(keys) == 1 else list(extra.iter_rows())
        )
        known_sorted = np.ascontiguousarray(known[l_order], np.int64)
        return LabelInputs(
            known_sorted,
            known_sorted,
            np.ascontiguousarray(keyed.get_column("__value").to_numpy()[l_order], np.float64),
            l_bounds.astype(np.int64),
            extra_keys,
        )


@dataclass(frozen=True)
class LabelInputs:
    """A label group's labels as the compiled loops take them: per label its time coordinate
    (the labelled event's time, or ``known_at`` for a group over known time), ``known_at`` and
    value, key by key in coordinate order; segment ``g`` is ``bounds[g]:bounds[g + 1]`` (the
    frame's key segments first, then ``extra_keys``: keys with labels but no events)."""

    coord: IntArray
    known_at: IntArray
    value: Array
    bounds: IntArray
    extra_keys: list[Any]

    @property
    def arrays(self) -> tuple[IntArray, IntArray, Array, IntArray]:
        return self.coord, self.known_at, self.value, self.bounds


def _run(tasks: list[Callable[[], object]], workers: int) -> None:
    """Run tasks on ``workers`` threads (the compiled loops release the GIL)."""
    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(task) for task in tasks]:
                future.result()
    else:
        for task in tasks:
            task()


def _rows_in_parallel(fn: RowFn, a: Array, b: Array, n: int, workers: int) -> None:
    """Run a row program over ``n`` rows, split in contiguous blocks."""
    edges = np.linspace(0, n, workers + 1).astype(int)
    _run([partial(fn, a, b, int(lo), int(hi)) for lo, hi in itertools.pairwise(edges)], workers)


def prepare(plan: Plan, events: pl.DataFrame, *, threads: int | None = None) -> Prepared:
    """Turn ``events`` (columns ``event_id``, ``ts`` and the fields read) into engine arrays."""
    program = row_program(plan)
    n = events.height
    ts = ts_micros(events.get_column("ts"))
    F = program.inputs_from_frame(events, ts)
    V = np.empty((n, max(len(plan.values), 1)), np.float64)
    _rows_in_parallel(program.values, F, V, n, threads or default_threads())
    prep = Prepared(plan, events, program, ts, F, V, np.zeros((n, 1), np.int64))
    if plan.categoricals:
        prep.C = np.ascontiguousarray(
            np.column_stack([prep.codes(name)[0] for name in plan.categoricals]), np.int64
        )
    return prep


def _chunks(bounds: IntArray, parts: int) -> list[tuple[int, int]]:
    """Split segments into about ``parts`` runs of similar row counts."""
    n_seg = len(bounds) - 1
    if n_seg <= 0:
        return []
    targets = np.linspace(0, bounds[-1], parts + 1)[1:-1]
    cuts: list[int] = []
    if n_seg > 1:
        cuts = [int(c) for c in np.unique(np.searchsorted(bounds, targets).clip(1, n_seg - 1))]
    edges = [0, *cuts, n_seg]
    return [(a, b) for a, b in itertools.pairwise(edges) if a < b]


def replay_frame(
    plan: Plan,
    events: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    *,
    label_events: pl.DataFrame | None = None,
    threads: int | None = None,
) -> pl.DataFrame:
    """Compute every feature for every event of ``events`` (which must be in log order).

    Parameters
    ----------
    plan:
        The compiled feature set.
    events:
        Columns ``event_id``, ``ts`` and the fields the features read, in log (offset) order.
    labels:
        Columns ``event_id``, ``known_at`` and the feature set's label value column; needed only
        by label-aware features. Labels of events not in ``events`` are ignored, except by
        windows over known time when their event is in ``label_events``.
    label_events:
        Events (columns ``event_id`` and the key fields) of labels whose events are not in
        ``events`` -- older ones, say: a label received today of an event from two months ago
        counts in a window over known time. Only their keys are read.
    threads:
        Worker threads (default :func:`default_threads`); the result does not depend on it.

    Returns
    -------
    A frame with ``event_id`` followed by one float64 column per feature, in log order.
    Missing values (an empty window's mean, say) are NaN.
    """
    workers = threads or default_threads()
    prep = prepare(plan, events, threads=workers)
    n = prep.n
    out = np.empty((len(plan.names), n), np.float64)
    tasks: list[Callable[[], object]] = []
    for g in plan.window_groups:
        order, bounds = prep.segments(g.keys)
        for lo, hi in _chunks(bounds, 4 * workers):
            tasks.append(
                partial(
                    window_replay,
                    prep.ts,
                    prep.V,
                    g.value_offset,
                    len(g.values),
                    prep.C,
                    g.cat_offset,
                    len(g.categoricals),
                    order,
                    bounds,
                    lo,
                    hi,
                    g.specs,
                    g.horizon,
                    g.tile,
                    out,
                )
            )
    for lg in plan.label_groups:
        order, bounds = prep.segments(lg.keys)
        inputs = prep.label_inputs(labels, lg, label_events).arrays
        tasks.append(
            partial(
                label_replay,
                prep.ts,
                prep.clock,
                order,
                bounds,
                *inputs,
                lg.specs,
                lg.horizon,
                lg.known,
                out,
            )
        )
    _run(tasks, workers)
    _rows_in_parallel(prep.program.computes, prep.F, out, n, workers)
    columns = [events.get_column("event_id")]
    columns += [pl.Series(name, out[j]) for j, name in enumerate(plan.names)]
    return pl.DataFrame(columns)
