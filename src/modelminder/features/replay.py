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

from modelminder.features.kernel import label_replay, stable_order, window_replay
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

    def label_inputs(
        self, labels: pl.DataFrame | None, group: LabelGroup
    ) -> tuple[IntArray, IntArray, Array, IntArray]:
        """The group's labels key by key in event-time order: (event ts, known_at, value,
        per-segment bounds). Labels of events not in the frame are ignored."""
        value_col = self.plan.feature_set.label_value
        order, bounds = self.segments(group.keys)
        if labels is None or labels.height == 0:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0), np.zeros(len(bounds), np.int64)
        row_of = self.events.select("event_id").with_row_index("__row")
        joined = labels.select(
            "event_id",
            pl.Series("known_at", ts_micros(labels.get_column("known_at")), dtype=pl.Int64),
            pl.col(value_col).cast(pl.Float64),
        ).join(row_of, on="event_id", how="inner")
        label_rows = joined.get_column("__row").cast(pl.Int64).to_numpy()
        known = joined.get_column("known_at").to_numpy()
        group_of_row = np.empty(self.n, np.int64)
        group_of_row[order] = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
        lg = group_of_row[label_rows]
        l_ets = self.ts[label_rows]
        # Labels key by key, in event-time order (ties by known_at, for determinism).
        l_order = np.lexsort((known, l_ets, lg))
        l_bounds = np.searchsorted(lg[l_order], np.arange(len(bounds))).astype(np.int64)
        return (
            np.ascontiguousarray(l_ets[l_order], np.int64),
            np.ascontiguousarray(known[l_order], np.int64),
            np.ascontiguousarray(joined.get_column(value_col).to_numpy()[l_order], np.float64),
            l_bounds,
        )


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
        by label-aware features. Labels of events not in ``events`` are ignored.
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
        inputs = prep.label_inputs(labels, lg)
        tasks.append(
            partial(label_replay, prep.ts, order, bounds, *inputs, lg.specs, lg.horizon, out)
        )
    _run(tasks, workers)
    _rows_in_parallel(prep.program.computes, prep.F, out, n, workers)
    columns = [events.get_column("event_id")]
    columns += [pl.Series(name, out[j]) for j, name in enumerate(plan.names)]
    return pl.DataFrame(columns)
