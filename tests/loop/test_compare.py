"""The paired comparison of two models on the same labelled rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import MinderError
from modelminder.loop.compare import Comparison, compare
from modelminder.metrics import auc, recall_at_alert_rate


def _world(n: int = 30_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.02).astype(int)
    weak = y * 0.6 + rng.random(n)
    strong = y * 1.6 + rng.random(n)
    return y, weak, strong


def test_a_clearly_better_candidate_has_an_interval_above_zero() -> None:
    y, weak, strong = _world()
    c = compare(y, weak, strong, block="test", alert_rate=0.05)
    for metric in ("recall_at_alert_rate", "auc"):
        d = c.get(metric)
        assert d.low > 0 and d.delta > 0, (metric, d)
        assert c.better(metric, 0.0) and not c.worse(metric, 0.0)
    # The point values are the metrics themselves.
    assert c.get("auc").champion == pytest.approx(auc(y, weak))
    assert c.get("recall_at_alert_rate").candidate == pytest.approx(
        recall_at_alert_rate(y, strong, 0.05)
    )


def test_a_worse_candidate_is_worse_and_never_better() -> None:
    y, weak, strong = _world(seed=1)
    c = compare(y, strong, weak, block="test", alert_rate=0.05)
    assert c.worse("recall_at_alert_rate", 0.05) and c.worse("auc", 0.05)
    assert not c.better("recall_at_alert_rate", 0.0) and not c.better("auc", 0.0)


def test_the_same_model_is_not_better_than_itself() -> None:
    y, weak, _ = _world(seed=2)
    c = compare(y, weak, weak, block="test")
    for d in c.differences:
        if not math.isnan(d.delta):
            assert d.delta == 0.0
    assert not c.better("auc", 0.0) and not c.worse("auc", 0.0)


def test_too_few_frauds_give_no_interval_and_no_verdict() -> None:
    y, weak, strong = _world(n=300, seed=3)  # about 6 frauds
    c = compare(y, weak, strong, block="small")
    assert c.positives < 10
    assert math.isnan(c.get("recall_at_alert_rate").low)
    assert not c.better("recall_at_alert_rate", 0.0) and not c.worse("recall_at_alert_rate", 0.0)
    assert "too few frauds" in c.get("auc").describe()


def test_the_interval_covers_the_truth_about_as_often_as_stated() -> None:
    # Two models whose true AUC difference is known by construction (a huge population):
    # DeLong's 90% interval, on 60 independent blocks, covers it in most of them.
    rng = np.random.default_rng(4)
    big_y, big_a, big_b = _world(n=400_000, seed=5)
    truth = auc(big_y, big_b) - auc(big_y, big_a)
    covered = 0
    for _ in range(60):
        rows = rng.choice(len(big_y), 10_000, replace=False)
        d = compare(big_y[rows], big_a[rows], big_b[rows], block="b", boot=0).get("auc")
        covered += d.low <= truth <= d.high
    assert covered >= 48  # 90% nominal: 54 expected; 48 leaves room for chance


@given(st.integers(0, 2**32 - 1))
@settings(max_examples=25, deadline=None)
def test_swapping_the_models_mirrors_the_result(seed: int) -> None:
    y, weak, strong = _world(n=5_000, seed=seed % 1000)
    a = compare(y, weak, strong, block="x", seed=1).get("auc")
    b = compare(y, strong, weak, block="x", seed=1).get("auc")
    if math.isnan(a.low):
        assert math.isnan(b.low)
        return
    assert b.delta == pytest.approx(-a.delta)
    assert b.low == pytest.approx(-a.high) and b.high == pytest.approx(-a.low)


def test_json_round_trip() -> None:
    y, weak, strong = _world(n=2_000, seed=6)
    c = compare(y, weak, strong, block="round trip", ap_boot=20)
    again = Comparison.from_json(c.to_json())
    assert again.block == c.block and again.positives == c.positives
    for d1, d2 in zip(c.differences, again.differences, strict=True):
        assert d1.metric == d2.metric
        for k in ("champion", "candidate", "delta", "low", "high"):
            v1, v2 = getattr(d1, k), getattr(d2, k)
            assert (math.isnan(v1) and math.isnan(v2)) or v1 == v2


def test_bad_input_is_refused_by_name() -> None:
    with pytest.raises(MinderError, match="1-D arrays of equal length"):
        compare([0, 1], [0.1], [0.2, 0.3], block="x")
    with pytest.raises(MinderError, match="0/1 labels"):
        compare([0, 2], [0.1, 0.2], [0.2, 0.3], block="x")
    with pytest.raises(MinderError, match="finite scores"):
        compare([0, 1], [0.1, math.nan], [0.2, 0.3], block="x")
    with pytest.raises(MinderError, match="'confidence'"):
        compare([0, 1], [0.1, 0.2], [0.2, 0.3], block="x", confidence=1.5)
