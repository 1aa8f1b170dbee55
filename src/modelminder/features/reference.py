"""The plain reference implementation of the feature semantics: slow, obvious, quadratic.

It states the semantics in code and exists to check the engine (differential tests and
``minder check-parity --reference``). For event ``e`` (key ``k``, time ``t``, position ``i`` in
the log) a window feature over ``w`` aggregates the events ``j < i`` of key ``k`` with
``t - w < t_j <= t`` and ``t_j > M - h``, where ``M`` is the largest event time of key ``k``
among events ``j < i`` and ``h`` is the group's retention horizon (largest window plus allowed
lateness); the last condition only ever bites for events later than the allowed lateness.

A label window over ``w`` counts the labels given (the caller passes each event's counted
label: :meth:`modelminder.events.log.EventLog.feature_labels`) whose labelled event has key
``k`` and with ``known_at < t``, and

* over event time: whose event time ``t_e`` has ``t - w < t_e <= t`` and ``t_e > M - h``
  (``M`` and ``h`` as above, of the label group);
* over known time: with ``t - w < known_at`` and ``known_at > G - h``, where ``G`` is the
  largest event time of *any* key among events ``j < i`` (a known time ages with the whole
  stream); again the last condition only bites for events later than the allowed lateness
  behind the newest event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelminder.features.dsl import Compute, LabelWindow, Window
from modelminder.features.expr import Expr
from modelminder.features.plan import Plan


def _value(
    plan: Plan, expr: Expr, event: Mapping[str, Any], row: Mapping[str, float] | None = None
) -> float:
    """Evaluate ``expr`` for one event; names found in ``row`` are earlier features."""
    features = row or {}
    env: dict[str, Any] = {"ts": np.array([event["ts"]], np.int64)}
    for name in expr.names():
        if name == "ts":
            continue
        if name in features:
            env[name] = np.array([features[name]], np.float64)
        elif plan.schema[name] == "str":
            env[name] = np.array([event[name]], dtype=object).astype(str)
        else:
            env[name] = np.array([event[name]], np.float64)
    return float(np.asarray(expr.evaluate(env), np.float64).reshape(-1)[0])


def _horizon(plan: Plan, keys: tuple[str, ...]) -> int:
    return next(g.horizon for g in plan.window_groups if g.keys == keys)


def _label_horizon(plan: Plan, keys: tuple[str, ...], known: bool) -> int:
    return next(g.horizon for g in plan.label_groups if g.keys == keys and g.known == known)


def reference_features(
    plan: Plan,
    events: Sequence[Mapping[str, Any]],
    labels: Sequence[Mapping[str, Any]] = (),
    label_events: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, float]]:
    """Features of every event (dicts with ``event_id``, ``ts`` and fields, in log order).

    ``labels`` are dicts with ``event_id``, ``known_at`` and the label value column;
    ``label_events`` the events of labels that are not among ``events`` (only windows over
    known time count those).
    """
    by_id = {e["event_id"]: e for e in events}
    older = {e["event_id"]: e for e in label_events if e["event_id"] not in by_id}
    value_col = plan.feature_set.label_value
    results: list[dict[str, float]] = []
    for i, e in enumerate(events):
        t = e["ts"]
        row: dict[str, float] = {}
        for feat in plan.feature_set.features:
            if isinstance(feat, Window):
                row[feat.name] = _window(plan, feat, events, i, t)
            elif isinstance(feat, LabelWindow):
                ids = {**older, **by_id} if feat.over_known else by_id
                row[feat.name] = _label_window(plan, feat, events, i, t, labels, ids, value_col)
            elif isinstance(feat, Compute):
                row[feat.name] = _value(plan, feat.expr, e, row)
        results.append(row)
    return results


def _earlier_same_key(
    events: Sequence[Mapping[str, Any]], i: int, keys: tuple[str, ...]
) -> list[Mapping[str, Any]]:
    key = tuple(events[i][k] for k in keys)
    return [events[j] for j in range(i) if tuple(events[j][k] for k in keys) == key]


def _window(plan: Plan, feat: Window, events: Sequence[Mapping[str, Any]], i: int, t: int) -> float:
    earlier = _earlier_same_key(events, i, feat.keys)
    horizon = _horizon(plan, feat.keys)
    floor = max((x["ts"] for x in earlier), default=t) - horizon
    inside = [x for x in earlier if t - feat.window_us < x["ts"] <= t and x["ts"] > floor]
    kind = feat.agg.kind
    if kind == "count":
        return float(len(inside))
    if kind == "since_last":
        return (t - max(x["ts"] for x in inside)) / 1e6 if inside else math.nan
    if kind == "distinct":
        assert feat.agg.field is not None
        return float(len({x[feat.agg.field] for x in inside}))
    assert feat.agg.value is not None  # value aggregations are validated to have one
    vals = [_value(plan, feat.agg.value, x) for x in inside]
    vals = [v for v in vals if not math.isnan(v)]
    if kind == "sum":
        return float(sum(vals))
    if not vals:
        return math.nan
    if kind == "mean":
        return sum(vals) / len(vals)
    if kind == "min":
        return min(vals)
    if kind == "max":
        return max(vals)
    if kind == "std":
        if len(vals) < 2:
            return math.nan
        m = sum(vals) / len(vals)
        return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    raise ValueError(kind)


def _label_window(
    plan: Plan,
    feat: LabelWindow,
    events: Sequence[Mapping[str, Any]],
    i: int,
    t: int,
    labels: Sequence[Mapping[str, Any]],
    by_id: Mapping[Any, Mapping[str, Any]],
    value_col: str,
) -> float:
    key = tuple(events[i][k] for k in feat.keys)
    horizon = _label_horizon(plan, feat.keys, feat.over_known)
    if feat.over_known:
        latest = max((x["ts"] for x in events[:i]), default=None)
    else:
        latest = max((x["ts"] for x in _earlier_same_key(events, i, feat.keys)), default=None)
    floor = -math.inf if latest is None else latest - horizon
    total = 0.0
    n = 0
    for lab in labels:
        ev = by_id.get(lab["event_id"])
        if ev is None or tuple(ev[k] for k in feat.keys) != key:
            continue
        # The time the window is over: when the label became known, or its event's time.
        at = lab["known_at"] if feat.over_known else ev["ts"]
        if lab["known_at"] < t and t - feat.window_us < at <= t and at > floor:
            n += 1
            total += float(lab[value_col])
    return float(n) if feat.agg.kind == "label_count" else total
