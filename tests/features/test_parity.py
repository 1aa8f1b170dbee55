"""Replay == online (one by one and in micro-batches) == the plain reference, per feature."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelminder.events.outcomes import first_known
from modelminder.features.online import OnlineEngine
from modelminder.features.plan import compile_plan
from modelminder.features.reference import reference_features
from modelminder.features.replay import replay_frame

from .featuresets import every_kind
from .strategies import SCHEMA, streams

# Documented tolerance between the engine and the reference (floats summed in another order).
RTOL, ATOL = 1e-7, 1e-6
EVENT_COLUMNS = {
    "event_id": pl.String,
    "ts": pl.Int64,
    "card": pl.String,
    "merch": pl.String,
    "amount": pl.Float64,
}


LABEL_COLUMNS = {
    "event_id": pl.String,
    "known_at": pl.Int64,
    "is_fraud": pl.Float64,
    "source": pl.String,
}


def _frames(
    events: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events, and the labels that label-aware features count (each event's first known, as
    the log gives them: :func:`first_known`)."""
    ev = pl.DataFrame(events, schema=EVENT_COLUMNS)
    lab = first_known(pl.DataFrame(labels, schema=LABEL_COLUMNS))
    return ev, lab


class _LiveLabels:
    """Labels fed to an engine as they become known, the first known of each event only (the
    service skips an event whose label is already counted, whatever the later one says)."""

    def __init__(self, events: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
        self.by_id = {e["event_id"]: e for e in events}
        # In known_at order; ties in log order (a stable sort), as they would arrive.
        self.pending = sorted(labels, key=lambda lab: lab["known_at"])
        self.counted: set[str] = set()

    def feed(self, engine: OnlineEngine, high: int) -> None:
        while self.pending and self.pending[0]["known_at"] <= high:
            lab = self.pending.pop(0)
            if lab["event_id"] not in self.counted:
                self.counted.add(lab["event_id"])
                engine.add_label(self.by_id[lab["event_id"]], lab["is_fraud"], lab["known_at"])


def _online(
    plan: Any, events: list[dict[str, Any]], labels: list[dict[str, Any]], cuts: list[int]
) -> np.ndarray:
    """Feed events in micro-batches cut at ``cuts``; labels arrive as they become known."""
    engine = OnlineEngine(plan)
    live = _LiveLabels(events, labels)
    rows: list[np.ndarray] = []
    high: int | None = None
    bounds = [0, *sorted(set(cuts)), len(events)]
    for a, b in itertools.pairwise(bounds):
        if a >= b:
            continue
        chunk = events[a:b]
        for e in chunk:
            high = e["ts"] if high is None else max(high, e["ts"])
        # Labels known by the time the batch arrives; the known_at filter does the rest.
        assert high is not None
        live.feed(engine, high)
        frame = pl.DataFrame(chunk, schema=EVENT_COLUMNS)
        rows.append(engine.process_frame(frame).drop("event_id").to_numpy())
    return np.vstack(rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=streams(),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    lateness=st.sampled_from(["1h", "1d"]),
)
def test_replay_equals_online_and_reference(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]], cuts: list[int], lateness: str
) -> None:
    events, labels = data
    plan = compile_plan(every_kind(lateness), SCHEMA)
    ev, lab = _frames(events, labels)
    replayed = replay_frame(plan, ev, lab).drop("event_id").to_numpy()
    online = _online(plan, events, labels, cuts)
    # Same kernel, same per-key sequence: bit-for-bit equal, counts and floats alike.
    np.testing.assert_array_equal(replayed, online)
    counted = lab.to_dicts()
    ref = pl.DataFrame(reference_features(plan, events, counted)).select(plan.names).to_numpy()
    np.testing.assert_allclose(replayed, ref, rtol=RTOL, atol=ATOL, equal_nan=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=streams(),
    split=st.integers(0, 60),
    threads=st.integers(1, 3),
    recent_only=st.booleans(),
)
def test_rebuilt_state_continues_exactly_like_live_state(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    split: int,
    threads: int,
    recent_only: bool,
) -> None:
    """Restart: state rebuilt in bulk from the first events (and the labels known by then)
    serves the rest exactly as replay of the whole log does, with any number of threads.

    ``recent_only`` rebuilds, as a server start does, from the events of the last three
    horizons only: windows over known time still count the labels of older events (given
    with those events' keys), also on keys that have no recent event."""
    events, labels = data
    plan = compile_plan(every_kind(), SCHEMA)
    ev, lab = _frames(events, labels)
    whole = replay_frame(plan, ev, lab, threads=threads).drop("event_id").to_numpy()
    k = min(split, len(events))
    high = max((e["ts"] for e in events[:k]), default=None)
    first = {e["event_id"] for e in events[:k]}
    # A rebuild reads the labels of logged events that are known by then: the first known of
    # each (first_known over what the log holds); the others follow live, skipped if their
    # event is counted already.
    known = [x for x in labels if x["event_id"] in first and x["known_at"] <= (high or 0)]
    rebuild_labels = first_known(pl.DataFrame(known, schema=LABEL_COLUMNS))
    live = _LiveLabels(events, [x for x in labels if x not in known])
    live.counted = set(rebuild_labels.get_column("event_id").to_list())
    recent, older = ev.head(k), None
    if recent_only and high is not None:
        is_recent = pl.col("ts") >= high - 3 * plan.max_horizon
        recent, older = ev.head(k).filter(is_recent), ev.head(k).filter(~is_recent)
    engine = OnlineEngine.rebuilt(plan, recent, rebuild_labels, label_events=older)
    rows = []
    for e in events[k:]:
        high = e["ts"] if high is None else max(high, e["ts"])
        live.feed(engine, high)
        feats = engine.process(e)
        rows.append([feats[n] for n in plan.names])
    if rows:
        np.testing.assert_array_equal(whole[k:], np.array(rows))


@settings(max_examples=40, deadline=None)
@given(data=streams(max_events=40))
def test_replay_of_a_prefix_agrees_with_replay_of_the_whole(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """Features of event i never depend on events after it in the log."""
    events, labels = data
    plan = compile_plan(every_kind(), SCHEMA)
    ev, lab = _frames(events, labels)
    whole = replay_frame(plan, ev, lab).drop("event_id").to_numpy()
    k = len(events) // 2
    part = replay_frame(plan, ev.head(k), lab).drop("event_id").to_numpy()
    label_free = [
        i
        for i, n in enumerate(plan.names)
        if "frauds" not in n and "labels" not in n and n != "fraud_rate"
    ]
    np.testing.assert_array_equal(whole[:k][:, label_free], part[:, label_free])


def test_counts_see_only_earlier_arrivals_and_ties_by_log_order() -> None:
    """Point-in-time: same-time events count in log order; a later-stamped earlier arrival
    is not seen; a late arrival sees what is in its window."""
    plan = compile_plan(every_kind(), SCHEMA)
    s = 1_000_000
    base = 1_700_000_000 * s
    events = [
        {"event_id": "a", "ts": base, "card": "c", "merch": "m", "amount": 1.0},
        {"event_id": "b", "ts": base, "card": "c", "merch": "m", "amount": 2.0},  # tie
        {"event_id": "c", "ts": base + 600 * s, "card": "c", "merch": "m", "amount": 3.0},
        {"event_id": "d", "ts": base + 300 * s, "card": "c", "merch": "m", "amount": 4.0},  # late
    ]
    ev, lab = _frames(events, [])
    out = replay_frame(plan, ev, lab)
    assert out.get_column("n_1h").to_list() == [0.0, 1.0, 2.0, 2.0]
    assert out.get_column("sum_1h").to_list() == [0.0, 1.0, 3.0, 3.0]


def test_label_counts_only_when_known_before_the_event() -> None:
    plan = compile_plan(every_kind(), SCHEMA)
    s = 1_000_000
    base = 1_700_000_000 * s
    events = [
        {"event_id": "a", "ts": base, "card": "c1", "merch": "m", "amount": 1.0},
        {"event_id": "b", "ts": base + 100 * s, "card": "c2", "merch": "m", "amount": 1.0},
        {"event_id": "c", "ts": base + 200 * s, "card": "c3", "merch": "m", "amount": 1.0},
    ]
    labels = [{"event_id": "a", "known_at": base + 100 * s, "is_fraud": 1.0}]
    ev, lab = _frames(events, labels)
    out = replay_frame(plan, ev, lab)
    # known_at == t of event b: not known *before* b; known before c.
    assert out.get_column("merch_frauds_1d").to_list() == [0.0, 0.0, 1.0]


def test_online_state_is_bounded_by_the_largest_window() -> None:
    plan = compile_plan(every_kind("1h"), SCHEMA)
    engine = OnlineEngine(plan)
    s = 1_000_000
    for i in range(3000):  # one hot card, an event every 5 minutes for ~10 days
        engine.process(
            {"event_id": f"e{i}", "ts": i * 300 * s, "card": "hot", "merch": "m", "amount": 1.0}
        )
    # Largest window is 3d (pair_seen_3d) + 1h lateness = 876 five-minute slots.
    assert engine.max_key_size() <= 3 * 288 + 12 + 1
