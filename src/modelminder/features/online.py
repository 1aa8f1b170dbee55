"""The online path: the same kernel as replay, one event at a time against live per-key state.

:class:`OnlineEngine` keeps, per entity key, only what the largest window (plus the allowed
lateness) can still need. It does no I/O: serving, ``minder replay --online`` and the stream
runner are adapters that feed it events and labels. Per event it makes three compiled calls:
the row program's values, :func:`~modelminder.features.state.online_step` for every group, and
the row program's computed features.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.features import state as live
from modelminder.features.plan import Plan
from modelminder.features.replay import prepare, ts_micros
from modelminder.features.rows import row_program

Array = npt.NDArray[Any]
# (key fields, how to read an event's key, key -> slot)
_KeyTable = tuple[tuple[str, ...], "Callable[[Mapping[str, Any]], Any]", dict[Any, int]]


def _spec_tables(plan: Plan) -> tuple[Array, ...]:
    def stack(specs: list[Array]) -> Array:
        return np.ascontiguousarray(np.vstack([np.zeros((0, 4), np.int64), *specs]), np.int64)

    def ints(values: list[int]) -> Array:
        return np.asarray(values, dtype=np.int64).reshape(-1)

    wg, lg = plan.window_groups, plan.label_groups
    return (
        stack([g.specs for g in wg]),
        ints(np.cumsum([0] + [len(g.specs) for g in wg]).tolist()),
        ints([g.horizon for g in wg]),
        ints([g.tile for g in wg]),
        ints([g.value_offset for g in wg]),
        ints([len(g.values) for g in wg]),
        ints([g.cat_offset for g in wg]),
        ints([len(g.categoricals) for g in wg]),
        stack([g.specs for g in lg]),
        ints(np.cumsum([0] + [len(g.specs) for g in lg]).tolist()),
        ints([g.horizon for g in lg]),
        ints([int(g.known) for g in lg]),
    )


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
        self.program = row_program(plan)
        self._state = live.new_state(*_spec_tables(plan))
        self._F = np.zeros((max(len(self.program.inputs), 1), 1), np.float64)
        self._V = np.zeros((1, max(len(plan.values), 1)), np.float64)
        self._C = np.zeros((1, max(len(plan.categoricals), 1)), np.int64)
        self._out = np.zeros((len(plan.names), 1), np.float64)
        self._wslots = np.zeros(max(len(plan.window_groups), 1), np.int64)
        self._lslots = np.zeros(max(len(plan.label_groups), 1), np.int64)
        # Per group: how to read the entity key of an event, and key -> slot.
        self._wkeys: list[_KeyTable] = [
            (g.keys, _key_reader(g.keys), {}) for g in plan.window_groups
        ]
        self._lkeys: list[_KeyTable] = [
            (g.keys, _key_reader(g.keys), {}) for g in plan.label_groups
        ]
        # Distinct counts only need equality, so any consistent interning works.
        self._categoricals: list[tuple[str, dict[Any, int]]] = [
            (name, {}) for name in plan.categoricals
        ]
        self._next_code = [0] * len(plan.categoricals)
        self._write_inputs = self.program.event_writer(self._F)
        self._online = self.program.online
        self._names = list(plan.names)

    # -- events ---------------------------------------------------------------------------
    def process(self, event: Mapping[str, Any]) -> dict[str, float]:
        """Features of ``event`` as of just before it, then fold it into the state."""
        return dict(zip(self._names, self._compute(event).tolist(), strict=True))

    def process_vector(self, event: Mapping[str, Any]) -> Array:
        """Like :meth:`process`, as a float64 vector in ``plan.names`` order (a copy)."""
        return self._compute(event).copy()

    def process_frame(self, events: pl.DataFrame) -> pl.DataFrame:
        """Feed a micro-batch row by row (in order); same output shape as replay."""
        ts = ts_micros(events.get_column("ts"))
        rows = np.empty((len(self.plan.names), events.height), np.float64)
        cols = [c for c in events.columns if c != "ts"]
        for i, rec in enumerate(events.select(cols).iter_rows(named=True)):
            rec["ts"] = int(ts[i])
            rows[:, i] = self._compute(rec)
        columns = [events.get_column("event_id")]
        columns += [pl.Series(name, rows[j]) for j, name in enumerate(self.plan.names)]
        return pl.DataFrame(columns)

    def _compute(self, event: Mapping[str, Any]) -> Array:
        """Features of one event (a view of the engine's output buffer)."""
        t = int(event["ts"])
        self._write_inputs(event, t)
        C = self._C
        for j, (name, table) in enumerate(self._categoricals):
            value = event[name]
            code = table.get(value)
            if code is None:
                code = table[value] = self._next_code[j]
                self._next_code[j] += 1
            C[0, j] = code
        st = self._state
        wslots = self._wslots
        for g, (_, read_key, slots) in enumerate(self._wkeys):
            key = read_key(event)
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = live.add_window_slot(st, g)
            wslots[g] = slot
        if self._lkeys:
            self._label_slots(event)
        self._online(st, wslots, self._lslots, t, self._F, self._V, C, self._out)
        return self._out[:, 0]

    def _label_slots(self, event: Mapping[str, Any]) -> None:
        lslots = self._lslots
        for g, (_, read_key, slots) in enumerate(self._lkeys):
            key = read_key(event)
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = live.add_label_slot(self._state)
            lslots[g] = slot

    # -- labels ---------------------------------------------------------------------------
    def add_label(self, event: Mapping[str, Any], value: float, known_at: int) -> None:
        """Fold in a label of ``event`` (its key fields and ``ts``), known from ``known_at``.

        Label-aware features count it only for events with time after ``known_at`` (and,
        over known time, before ``known_at + window``). Give each event's counted label once
        (the log's rule: the first known); this adds, it never replaces.
        """
        if not self._lkeys:
            return
        self._label_slots(event)
        live.add_label(self._state, self._lslots, int(event["ts"]), int(known_at), float(value))

    # -- bulk rebuild ---------------------------------------------------------------------
    @classmethod
    def rebuilt(
        cls,
        plan: Plan,
        events: pl.DataFrame,
        labels: pl.DataFrame | None = None,
        *,
        label_events: pl.DataFrame | None = None,
    ) -> OnlineEngine:
        """An engine whose state is what feeding ``events`` (in log order) and ``labels``
        would leave, built by the compiled replay loops instead of event by event.

        ``label_events``: the events of labels whose events are not in ``events`` (see
        :func:`~modelminder.features.replay.replay_frame`); windows over known time count
        such labels, also on keys that have no event in ``events``.
        """
        engine = cls(plan)
        if events.height == 0:
            return engine
        prep = prepare(plan, events)
        st = engine._state
        live.set_clock(st, int(prep.ts.max()))
        for g, (keys, _, table) in enumerate(engine._wkeys):
            order, bounds = prep.segments(keys)
            first = live.rebuild_window_group(st, g, prep.ts, prep.V, prep.C, order, bounds)
            table.update(zip(_segment_keys(events, keys, order, bounds), itertools.count(first)))
        for g, (keys, _, table) in enumerate(engine._lkeys):
            order, bounds = prep.segments(keys)
            inputs = prep.label_inputs(labels, plan.label_groups[g], label_events)
            first = live.rebuild_label_group(
                st, g, prep.ts, prep.clock, order, bounds, *inputs.arrays
            )
            segment_keys = _segment_keys(events, keys, order, bounds) + inputs.extra_keys
            table.update(zip(segment_keys, itertools.count(first)))
        for j, (name, table) in enumerate(engine._categoricals):
            codes = prep.codes(name)[0]
            pairs = pl.DataFrame({"v": events.get_column(name), "c": codes}).unique("v")
            table.update(pairs.iter_rows())
            engine._next_code[j] = int(codes.max()) + 1
        return engine

    # -- introspection --------------------------------------------------------------------
    def max_key_size(self) -> int:
        """Largest number of entries retained for any one key of any window group."""
        return int(live.max_window_size(self._state))

    def max_label_key_size(self) -> int:
        """Largest number of labels retained for any one key of any label group."""
        return int(live.max_label_size(self._state))


def _key_reader(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    """Read an event's key: the value for one key field, a tuple of values for several."""
    return operator.itemgetter(*keys)


def _segment_keys(
    events: pl.DataFrame, keys: tuple[str, ...], order: Array, bounds: Array
) -> list[Any]:
    """The key of each segment, in the engine's key form (a value, or a tuple of values)."""
    first_rows = events.select(keys)[order[bounds[:-1]]]
    if len(keys) == 1:
        return first_rows.get_column(keys[0]).to_list()
    return list(first_rows.iter_rows())
