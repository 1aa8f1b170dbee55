"""The online path: the same kernel as replay, one event at a time against live per-key state.

:class:`OnlineEngine` keeps, per entity key, only what the largest window (plus the allowed
lateness) can still need. It does no I/O: serving, ``minder replay --online`` and the stream
runner are adapters that feed it events and labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.features.kernel import (
    END,
    META_LEN,
    START,
    label_insert,
    label_query,
    window_online,
)
from modelminder.features.plan import Plan
from modelminder.features.replay import evaluate_computes, ts_micros

Array = npt.NDArray[Any]
_INITIAL_CAPACITY = 8


class _WindowState:
    """Buffers of one key of one window group (layout documented in ``kernel``)."""

    __slots__ = ("C", "P0", "P1", "P2", "X", "meta", "shift", "ts")

    def __init__(self, nv: int, nc: int, cap: int = _INITIAL_CAPACITY) -> None:
        self.ts = np.zeros(cap, np.int64)
        self.X = np.zeros((cap, nv), np.float64)
        self.C = np.zeros((cap, nc), np.int64)
        self.P0 = np.zeros((cap + 1, nv), np.float64)
        self.P1 = np.zeros((cap + 1, nv), np.float64)
        self.P2 = np.zeros((cap + 1, nv), np.float64)
        self.meta = np.zeros(META_LEN, np.int64)
        self.shift = np.zeros(nv, np.float64)

    def make_room(self) -> None:
        """Ensure one free slot. Values are moved verbatim, so results do not change."""
        start, end = int(self.meta[START]), int(self.meta[END])
        cap = len(self.ts)
        if end < cap:
            return
        live = end - start
        new_cap = cap if live < cap // 2 else cap * 2
        ts = np.zeros(new_cap, np.int64)
        ts[:live] = self.ts[start:end]
        X = np.zeros((new_cap, self.X.shape[1]), np.float64)
        X[:live] = self.X[start:end]
        C = np.zeros((new_cap, self.C.shape[1]), np.int64)
        C[:live] = self.C[start:end]
        prefixes = []
        for P in (self.P0, self.P1, self.P2):
            Q = np.zeros((new_cap + 1, P.shape[1]), np.float64)
            Q[: live + 1] = P[start : end + 1]
            prefixes.append(Q)
        self.ts, self.X, self.C = ts, X, C
        self.P0, self.P1, self.P2 = prefixes
        self.meta[START] = 0
        self.meta[END] = live

    @property
    def size(self) -> int:
        return int(self.meta[END] - self.meta[START])


class _LabelState:
    """Labels of one key of one label group, sorted by the labelled event's time."""

    __slots__ = ("ka", "meta", "ts", "v")

    def __init__(self, cap: int = _INITIAL_CAPACITY) -> None:
        self.ts = np.zeros(cap, np.int64)
        self.ka = np.zeros(cap, np.int64)
        self.v = np.zeros(cap, np.float64)
        self.meta = np.zeros(META_LEN, np.int64)

    def make_room(self) -> None:
        start, end = int(self.meta[START]), int(self.meta[END])
        cap = len(self.ts)
        if end < cap:
            return
        live = end - start
        new_cap = cap if live < cap // 2 else cap * 2
        for name in ("ts", "ka", "v"):
            old = getattr(self, name)
            new = np.zeros(new_cap, old.dtype)
            new[:live] = old[start:end]
            setattr(self, name, new)
        self.meta[START] = 0
        self.meta[END] = live


class OnlineEngine:
    """Compute features for live events, one at a time, and fold each into the state.

    Examples
    --------
    >>> from modelminder.features.dsl import FeatureSet, Window, count
    >>> from modelminder.features.plan import compile_plan
    >>> fs = FeatureSet("t", [Window("n_1h", count(), by="card_id", window="1h")])
    >>> engine = OnlineEngine(compile_plan(fs, {"card_id": "str"}))
    >>> engine.process({"event_id": "a", "ts": 0, "card_id": "c1"})
    {'n_1h': 0.0}
    >>> engine.process({"event_id": "b", "ts": 60_000_000, "card_id": "c1"})
    {'n_1h': 1.0}
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._windows: list[dict[tuple[Any, ...], _WindowState]] = [{} for _ in plan.window_groups]
        self._labels: list[dict[tuple[Any, ...], _LabelState]] = [{} for _ in plan.label_groups]
        # Distinct counts only need equality, so any consistent interning works.
        self._intern: dict[str, dict[Any, int]] = {}
        self._out = np.full((1, len(plan.names)), np.nan, np.float64)

    # -- events ---------------------------------------------------------------------------
    def process(self, event: Mapping[str, Any]) -> dict[str, float]:
        """Features of ``event`` as of just before it, then fold it into the state."""
        row = self._compute(event)
        return dict(zip(self.plan.names, row.tolist(), strict=True))

    def process_frame(self, events: pl.DataFrame) -> pl.DataFrame:
        """Feed a micro-batch row by row (in order); same output shape as replay."""
        ts = ts_micros(events.get_column("ts"))
        rows = np.empty((events.height, len(self.plan.names)), np.float64)
        cols = [c for c in events.columns if c != "ts"]
        for i, rec in enumerate(events.select(cols).iter_rows(named=True)):
            rec["ts"] = int(ts[i])
            rows[i] = self._compute(rec)
        data: dict[str, Any] = {"event_id": events.get_column("event_id")}
        for j, name in enumerate(self.plan.names):
            data[name] = rows[:, j]
        return pl.DataFrame(data)

    def _compute(self, event: Mapping[str, Any]) -> Array:
        plan = self.plan
        out = self._out
        out.fill(np.nan)
        t = int(event["ts"])
        env: dict[str, Array] = {"ts": np.array([t], np.int64)}
        for name in plan.expression_fields:
            value = event[name]
            if plan.schema[name] == "str":
                env[name] = np.array([value], dtype=object).astype(str)
            else:
                env[name] = np.array([value], np.float64)
        for gi, g in enumerate(plan.window_groups):
            key = tuple(event[k] for k in g.keys)
            states = self._windows[gi]
            st = states.get(key)
            if st is None:
                st = states[key] = _WindowState(len(g.values), len(g.categoricals))
            st.make_room()
            x = np.array([[float(v.evaluate(env)[0]) for v in g.values]], np.float64)
            c = np.array(
                [[self._code(name, event[name]) for name in g.categoricals]], np.int64
            ).reshape(1, len(g.categoricals))
            x = x.reshape(1, len(g.values))
            window_online(
                t,
                x,
                c,
                st.ts,
                st.X,
                st.C,
                st.P0,
                st.P1,
                st.P2,
                st.meta,
                st.shift,
                g.specs,
                g.horizon,
                out,
                0,
            )
        for li, lg in enumerate(plan.label_groups):
            key = tuple(event[k] for k in lg.keys)
            lstates = self._labels[li]
            ls = lstates.get(key)
            if ls is None:
                ls = lstates[key] = _LabelState()
            label_query(t, ls.ts, ls.ka, ls.v, ls.meta, lg.specs, lg.horizon, out, 0)
        evaluate_computes(plan, env, out)
        return out[0].copy()

    def _code(self, field: str, value: Any) -> int:
        table = self._intern.setdefault(field, {})
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        return code

    # -- labels ---------------------------------------------------------------------------
    def add_label(self, event: Mapping[str, Any], value: float, known_at: int) -> None:
        """Fold in a label of ``event`` (its key fields and ``ts``), known from ``known_at``.

        Label-aware features count it only for events with time after ``known_at``.
        """
        ets = int(event["ts"])
        for li, lg in enumerate(self.plan.label_groups):
            key = tuple(event[k] for k in lg.keys)
            lstates = self._labels[li]
            ls = lstates.get(key)
            if ls is None:
                ls = lstates[key] = _LabelState()
            ls.make_room()
            label_insert(ets, int(known_at), float(value), ls.ts, ls.ka, ls.v, ls.meta, lg.horizon)

    # -- introspection --------------------------------------------------------------------
    def max_key_size(self) -> int:
        """Largest number of entries retained for any one key of any window group."""
        return max((s.size for states in self._windows for s in states.values()), default=0)
