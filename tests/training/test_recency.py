"""Recency weights: with a half-life, older training rows weigh less, and a retrained model
follows what the recent rows say."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from modelminder.errors import MinderError
from modelminder.events.outcomes import LabelPolicy
from modelminder.training.dataset import TrainingSet
from modelminder.training.search import Recency, sample_rows
from modelminder.training.train import TrainConfig, train_model

DAY = 86_400_000_000


def test_a_row_one_half_life_old_counts_half() -> None:
    ts = np.array([0, 10, 20, 25, 30]) * DAY
    r = Recency(ts, cutoff=30 * DAY, half_life_us=10 * DAY)
    assert r.factor(np.arange(5)).tolist() == pytest.approx([0.125, 0.25, 0.5, 2**-0.5, 1.0])
    w = r.weights(np.arange(5))
    # What a fit sees keeps the ratios, scaled to average 1.
    assert (w / w[-1]).tolist() == pytest.approx([0.125, 0.25, 0.5, 2**-0.5, 1.0])
    assert float(w.mean()) == pytest.approx(1.0)


def test_rows_many_half_lives_before_the_cut_off_do_not_underflow() -> None:
    # A fold that ends 3 years before the cut-off, with a 1-hour half-life.
    ts = np.array([0, 3_600_000_000])
    w = Recency(ts, cutoff=3 * 365 * DAY, half_life_us=3_600_000_000).weights(np.arange(2))
    assert np.all(np.isfinite(w)) and w[1] / w[0] == pytest.approx(2.0)


def test_recency_is_composed_with_the_negative_subsampling_weights() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    y = (rng.random(n) < 0.02).astype(np.int64)
    ts = np.sort(rng.integers(0, 60 * DAY, n))
    r = Recency(ts, cutoff=60 * DAY, half_life_us=15 * DAY)
    rows, w = sample_rows(np.arange(n), y, 5_000, np.random.default_rng(1), r)
    _, plain = sample_rows(np.arange(n), y, 5_000, np.random.default_rng(1))
    ratio = w / plain  # the recency part alone
    expected = r.factor(rows) / r.factor(rows).mean()
    assert ratio == pytest.approx(expected)
    # Negatives are subsampled (weighted up), and the older of two rows of a class weighs less.
    neg = rows[y[rows] == 0]
    assert plain[y[rows] == 0][0] > 1.0
    assert w[rows == neg[0]][0] < w[rows == neg[-1]][0]


@pytest.mark.parametrize("bad", ["-3d", "30x", "0d", ""])
def test_a_bad_half_life_is_refused_naming_the_field_and_the_value(bad: str) -> None:
    with pytest.raises(MinderError, match=r"'recency_half_life' \(--recency-half-life\)") as err:
        TrainConfig(recency_half_life=bad)
    assert repr(bad) in str(err.value) and "like '15m', '1h', '7d'" in str(err.value)


def _changing_world() -> TrainingSet:
    """200 days; until day 90 fraud follows x1, from day 90 it follows x2."""
    rng = np.random.default_rng(1)
    n = 8000
    ts = np.sort(rng.integers(0, 200 * DAY, n))
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    logit = -3 + 2 * np.where(ts >= 90 * DAY, x2, x1)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    frame = pl.DataFrame(
        {
            "offset": np.arange(n), "event_id": [f"e{i}" for i in range(n)], "ts": ts,
            "content_hash": np.arange(n, dtype=np.uint64), "label": y,
            "label_known_at": ts + DAY, "labelled": y == 1, "label_arrived_at": ts + DAY,
            "x1": x1, "x2": x2,
        }
    )  # fmt: skip
    return TrainingSet(frame, ["x1", "x2"], int(ts.max()) + 1, LabelPolicy(), {})


def test_with_a_half_life_the_retrained_model_follows_the_recent_relationship() -> None:
    data = _changing_world()
    probes = np.array([[2.0, 0.0], [0.0, 2.0]])  # high x1 only; high x2 only
    results = {}
    for half_life in (None, "7d"):
        config = TrainConfig(estimator="logistic", trials=0, folds=3, recency_half_life=half_life)
        results[half_life] = train_model(data, config)
    # The last fold's model trains on 90 days of the old pattern and ~30 of the new one.
    old_x1, old_x2 = results[None].model.members[-1].predict(probes)
    new_x1, new_x2 = results["7d"].model.members[-1].predict(probes)
    assert old_x1 > old_x2  # unweighted, the old pattern wins
    assert new_x2 > new_x1  # weighted by recency, the recent one does
    # Which shows where it matters: on the most recent validation fold and out of time.
    last = {k: r.report.details["folds"][-1]["valid"]["auc"] for k, r in results.items()}
    assert last["7d"] > last[None] + 0.1
    assert results["7d"].report.scores.oot.auc > results[None].report.scores.oot.auc
    assert results["7d"].report.details["recency_half_life"] == "7d"
