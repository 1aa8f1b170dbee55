"""Replay == online bit for bit when values mix magnitudes, up to the admitted range and beyond.

The event schema admits floats with ``|x| <= 1e15``. Within that range sums, means and standard
deviations must not depend on how the events reached the engine: replay with any number of
threads, the online path with any micro-batching, and an online engine restarted from the
recent log (:func:`~modelminder.logreplay.engine_from_log` reads the last three horizons)
must give the same bits. Beyond the range (``±1e308``) sums overflow to ``±inf``; the same
``inf`` on every path, and only in the windows that hold the overflowing values.
"""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction
from typing import Any

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelminder.features.dsl import FeatureSet, Window, count, mean, std, sum_
from modelminder.features.online import OnlineEngine
from modelminder.features.plan import Plan, compile_plan
from modelminder.features.replay import replay_frame

from .featuresets import every_kind
from .strategies import CENTS, SCHEMA, SECOND, streams
from .test_parity import EVENT_COLUMNS, _frames, _LiveLabels, _online

BOUND = 1e15  # the largest magnitude the event schema admits for a float field
ADMITTED = st.one_of(
    st.sampled_from(
        [BOUND, -BOUND, 0.01, 123.45, BOUND - 0.125, -(BOUND - 0.25), 2.0**49 + 0.5, 5e-324]
    ),
    st.floats(-BOUND, BOUND, allow_nan=False),
    CENTS,
)
BEYOND = st.one_of(
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 2.0**60, -(2.0**60), 0.01]),
    ADMITTED,
)


def _restarted(
    plan: Plan, events: list[dict[str, Any]], labels: list[dict[str, Any]], k: int
) -> np.ndarray:
    """Features of ``events[k:]`` served by an engine rebuilt, as at a server start, from the
    logged events of the last three horizons before the restart (and the labels known then:
    windows over known time also count those of older events, keyed by them), then fed
    live."""
    high = max((e["ts"] for e in events[:k]), default=0)
    recent = [e for e in events[:k] if e["ts"] >= high - 3 * plan.max_horizon]
    older = [e for e in events[:k] if e["ts"] < high - 3 * plan.max_horizon]
    logged = {e["event_id"] for e in events[:k]}
    known = [x for x in labels if x["event_id"] in logged and x["known_at"] <= high]
    rebuild_labels = _frames([], known)[1]
    live = _LiveLabels(events, [x for x in labels if x not in known])
    live.counted = set(rebuild_labels.get_column("event_id").to_list())
    engine = OnlineEngine.rebuilt(
        plan,
        pl.DataFrame(recent, schema=EVENT_COLUMNS),
        rebuild_labels,
        label_events=pl.DataFrame(older, schema=EVENT_COLUMNS),
    )
    rows = []
    for e in events[k:]:
        high = max(high, e["ts"])
        live.feed(engine, high)
        rows.append(engine.process_vector(e))
    return np.array(rows).reshape(-1, len(plan.names))


def _check_every_path_agrees(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    cuts: list[int],
    threads: int,
    split: int,
    lateness: str,
) -> None:
    events, labels = data
    plan = compile_plan(every_kind(lateness), SCHEMA)
    ev, lab = _frames(events, labels)
    replayed = replay_frame(plan, ev, lab, threads=threads).drop("event_id").to_numpy()
    one_thread = replay_frame(plan, ev, lab, threads=1).drop("event_id").to_numpy()
    np.testing.assert_array_equal(replayed, one_thread)
    np.testing.assert_array_equal(replayed, _online(plan, events, labels, cuts))
    k = min(split, len(events))
    np.testing.assert_array_equal(replayed[k:], _restarted(plan, events, labels, k))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=streams(amounts=ADMITTED),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    threads=st.integers(1, 3),
    split=st.integers(0, 60),
    lateness=st.sampled_from(["1h", "1d"]),
)
def test_every_path_agrees_bit_for_bit_on_admitted_magnitudes(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    cuts: list[int],
    threads: int,
    split: int,
    lateness: str,
) -> None:
    """Equal timestamps, late events and bursts come from the stream strategy; amounts mix
    ``±1e15`` with cents and any other admitted float."""
    _check_every_path_agrees(data, cuts, threads, split, lateness)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=streams(amounts=BEYOND),
    cuts=st.lists(st.integers(0, 60), max_size=6),
    threads=st.integers(1, 3),
    split=st.integers(0, 60),
)
def test_overflow_beyond_the_range_is_the_same_inf_on_every_path(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    cuts: list[int],
    threads: int,
    split: int,
) -> None:
    _check_every_path_agrees(data, cuts, threads, split, "1d")


# -- accuracy: a window's value depends on what is in the window, not on the key's past --------

DAY = 86_400 * SECOND
T0 = 1_700_000_000 * SECOND
ONE_KEY = FeatureSet(
    "one_key",
    [
        Window("n_1d", count(), by="card", window="1d"),
        Window("sum_1d", sum_("amount"), by="card", window="1d"),
        Window("mean_1d", mean("amount"), by="card", window="1d"),
        Window("std_1d", std("amount"), by="card", window="1d"),
    ],
    allowed_lateness="1h",
)


def _features(amounts: list[tuple[int, float]]) -> tuple[pl.DataFrame, np.ndarray]:
    """Replay of one card's events (time, amount); also checks the online path agrees."""
    plan = compile_plan(ONE_KEY, SCHEMA)
    events = [
        {"event_id": f"e{i}", "ts": t, "card": "c", "merch": "m", "amount": a}
        for i, (t, a) in enumerate(amounts)
    ]
    replayed = replay_frame(plan, pl.DataFrame(events, schema=EVENT_COLUMNS))
    online = _online(plan, events, [], [])
    np.testing.assert_array_equal(replayed.drop("event_id").to_numpy(), online)
    return replayed, online


def test_a_large_amount_long_gone_does_not_blur_later_sums() -> None:
    """A card that once spent 1e15 (more than a day ago) then spends cents: the day's sum is
    the cents' sum. Before, the key's prefix sums kept the 1e15 and the sum came out in steps
    of 0.125 (the spacing of floats near 1e15)."""
    cents = [0.01, 123.45, 0.07, 19.99, 5.0]
    amounts = [(T0, BOUND), *((T0 + 2 * DAY + i * SECOND, a) for i, a in enumerate(cents))]
    out, _ = _features([*amounts, (T0 + 2 * DAY + 10 * SECOND, 0.0)])
    last = out.row(-1, named=True)
    assert last["n_1d"] == len(cents)
    exact = math.fsum(cents)
    assert abs(last["sum_1d"] - exact) <= 4 * len(cents) * 2**-53 * exact
    assert abs(last["mean_1d"] - exact / len(cents)) <= 1e-12 * exact
    assert math.isclose(last["std_1d"], statistics.stdev(cents), rel_tol=1e-12)


def test_std_near_the_bound_is_accurate_whatever_came_first() -> None:
    """Amounts just below 1e15 a quarter apart, after a first event of one cent: the spread is
    0.25-ish, not cancellation noise of squares near 1e30."""
    near = [BOUND - 0.25 * i for i in (0, 1, 3, 2, 0)]
    amounts = [(T0, 0.01), *((T0 + 2 * DAY + i * SECOND, a) for i, a in enumerate(near))]
    out, _ = _features([*amounts, (T0 + 2 * DAY + 10 * SECOND, 0.0)])
    last = out.row(-1, named=True)
    exact = math.sqrt(statistics.variance([Fraction(a) for a in near]))
    assert math.isclose(last["std_1d"], exact, rel_tol=1e-9)
    assert math.isclose(last["mean_1d"], statistics.fmean(near), rel_tol=1e-15)


def test_inf_from_overflow_stays_in_the_windows_that_hold_it() -> None:
    """Two amounts of 1e308 overflow the day's sum to +inf (on every path); once they have
    left the window, sums are finite and exact again (before, the key's prefix sums held inf
    and every later window read inf - inf = NaN)."""
    amounts = [(T0 + i * SECOND, a) for i, a in enumerate([1e308, 1e308, 1.0, 5.0])]
    later = [(T0 + 2 * DAY + i * SECOND, a) for i, a in enumerate([2.5, 0.5, 0.0])]
    out, _ = _features([*amounts, *later])
    sums = out.get_column("sum_1d").to_list()
    assert sums[:4] == [0.0, 1e308, math.inf, math.inf]
    assert sums[-3:] == [0.0, 2.5, 3.0]
    assert out.get_column("mean_1d").to_list()[-1] == 1.5


def test_threads_and_micro_batches_do_not_change_a_bit_on_a_hot_key() -> None:
    """A hot key: thousands of events, amounts from cents to 1e15, many late by minutes."""
    rng = np.random.default_rng(3)
    n = 3000
    ts = T0 + np.cumsum(rng.integers(0, 120, n)) * SECOND - rng.choice([0, 0, 0, 300], n) * SECOND
    mags = rng.choice([0.01, 1.0, 1e6, 1e12, BOUND], n) * rng.uniform(-1, 1, n)
    events = [
        {"event_id": f"e{i}", "ts": int(t), "card": "hot", "merch": f"m{i % 7}", "amount": a}
        for i, (t, a) in enumerate(zip(ts, mags, strict=True))
    ]
    plan = compile_plan(every_kind("1h"), SCHEMA)
    ev = pl.DataFrame(events, schema=EVENT_COLUMNS)
    replayed = replay_frame(plan, ev, threads=2).drop("event_id").to_numpy()
    cuts = list(itertools.accumulate(rng.integers(1, 400, 20).tolist()))
    np.testing.assert_array_equal(replayed, _online(plan, events, [], cuts))
    np.testing.assert_array_equal(replayed[n // 2 :], _restarted(plan, events, [], n // 2))
