"""Replay: run the feature engine over a whole frame of events in log order (vectorized I/O,
compiled per-key loops). Pure: no files, no database; the runners feed it frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.features.kernel import label_replay, window_replay
from modelminder.features.plan import Plan

Array = npt.NDArray[Any]


def ts_micros(series: pl.Series) -> npt.NDArray[np.int64]:
    """Event times as int64 microseconds since the epoch (UTC), from a datetime or int column."""
    if series.dtype == pl.Datetime or isinstance(series.dtype, pl.Datetime):
        series = series.dt.epoch("us")
    return series.cast(pl.Int64).to_numpy()


def _codes(frame: pl.DataFrame, columns: tuple[str, ...] | list[str]) -> npt.NDArray[np.int64]:
    """Dense-enough integer codes such that equal key tuples get equal codes."""
    combined: npt.NDArray[np.int64] | None = None
    for name in columns:
        s = frame.get_column(name)
        c = s.cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64).to_numpy()
        if combined is None:
            combined = c
            continue
        width = int(c.max()) + 1 if len(c) else 1
        if combined.size and int(combined.max()) >= (1 << 62) // width:
            combined = np.unique(combined, return_inverse=True)[1].astype(np.int64)
        combined = combined * width + c
    assert combined is not None  # every group has at least one key (validated)
    return np.ascontiguousarray(combined, dtype=np.int64)


def _segments(codes: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rows grouped by code, log order kept inside each group; and the group boundaries."""
    order = np.argsort(codes, kind="stable").astype(np.int64)
    sorted_codes = codes[order]
    cuts = np.flatnonzero(np.diff(sorted_codes)) + 1
    bounds = np.concatenate(([0], cuts, [len(codes)])).astype(np.int64)
    return order, bounds


def field_env(frame: pl.DataFrame, plan: Plan) -> dict[str, Array]:
    """Columns the expressions read, as NumPy arrays (numbers as float64, text as str)."""
    env: dict[str, Array] = {"ts": ts_micros(frame.get_column("ts"))}
    for name in plan.expression_fields:
        s = frame.get_column(name)
        if plan.schema[name] == "str":
            env[name] = s.cast(pl.String).to_numpy()
        else:
            env[name] = s.cast(pl.Float64).to_numpy()
    return env


def evaluate_computes(plan: Plan, env: dict[str, Array], out: Array) -> None:
    """Evaluate the row expressions in definition order, writing into ``out`` columns."""
    n = out.shape[0]
    for idx, expr in plan.computes:
        local = dict(env)
        for j, name in enumerate(plan.names):
            local[name] = out[:, j]
        out[:, idx] = np.broadcast_to(np.asarray(expr.evaluate(local), np.float64), (n,))


def replay_frame(
    plan: Plan, events: pl.DataFrame, labels: pl.DataFrame | None = None
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

    Returns
    -------
    A frame with ``event_id`` followed by one float64 column per feature, in log order.
    Missing values (an empty window's mean, say) are NaN.
    """
    n = events.height
    out = np.full((n, len(plan.names)), np.nan, dtype=np.float64)
    env = field_env(events, plan)
    ts = env["ts"].astype(np.int64)
    segments: dict[tuple[str, ...], tuple[Array, Array]] = {}
    for g in plan.window_groups:
        order, bounds = segments.setdefault(g.keys, _segments(_codes(events, g.keys)))
        if g.values:
            X = np.column_stack(
                [np.broadcast_to(np.asarray(v.evaluate(env), np.float64), (n,)) for v in g.values]
            )
        else:
            X = np.zeros((n, 0), np.float64)
        if g.categoricals:
            C = np.column_stack([_codes(events, [c]) for c in g.categoricals])
        else:
            C = np.zeros((n, 0), np.int64)
        local_specs = g.specs.copy()
        local_specs[:, 3] = np.arange(len(local_specs))
        local = np.empty((n, len(local_specs)), np.float64)
        window_replay(
            ts[order],
            np.ascontiguousarray(X[order]),
            np.ascontiguousarray(C[order]),
            bounds,
            local_specs,
            g.horizon,
            local,
        )
        out[np.ix_(order, g.specs[:, 3])] = local
    if plan.label_groups:
        _replay_labels(plan, events, labels, ts, out, segments)
    evaluate_computes(plan, env, out)
    data: dict[str, Any] = {"event_id": events.get_column("event_id")}
    for j, name in enumerate(plan.names):
        data[name] = out[:, j]
    return pl.DataFrame(data)


def _replay_labels(
    plan: Plan,
    events: pl.DataFrame,
    labels: pl.DataFrame | None,
    ts: npt.NDArray[np.int64],
    out: Array,
    segments: dict[tuple[str, ...], tuple[Array, Array]],
) -> None:
    value_col = plan.feature_set.label_value
    if labels is None:
        labels = pl.DataFrame(
            {"event_id": [], "known_at": [], value_col: []},
            schema={"event_id": pl.String, "known_at": pl.Int64, value_col: pl.Float64},
        )
    row_of = events.select("event_id").with_row_index("__row")
    joined = labels.select(
        "event_id",
        pl.Series("known_at", ts_micros(labels.get_column("known_at")), dtype=pl.Int64),
        pl.col(value_col).cast(pl.Float64),
    ).join(row_of, on="event_id", how="inner")
    label_rows = joined.get_column("__row").cast(pl.Int64).to_numpy()
    for g in plan.label_groups:
        if g.keys not in segments:
            segments[g.keys] = _segments(_codes(events, g.keys))
        order, bounds = segments[g.keys]
        group_of_row = np.empty(events.height, np.int64)
        group_of_row[order] = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
        lg = group_of_row[label_rows]
        l_ets = ts[label_rows]
        # Labels key by key, in event-time order (ties by known_at for determinism).
        l_order = np.lexsort((joined.get_column("known_at").to_numpy(), l_ets, lg))
        l_bounds = np.searchsorted(lg[l_order], np.arange(len(bounds))).astype(np.int64)
        label_replay(
            ts,
            order,
            bounds,
            np.ascontiguousarray(l_ets[l_order]),
            np.ascontiguousarray(joined.get_column("known_at").to_numpy()[l_order], np.int64),
            np.ascontiguousarray(joined.get_column(value_col).to_numpy()[l_order], np.float64),
            l_bounds,
            g.specs,
            g.horizon,
            out,
        )
