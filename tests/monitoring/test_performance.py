"""Measured and estimated performance per window."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.metrics import auc, average_precision
from modelminder.monitoring.performance import expected, measure


def test_the_estimate_is_the_expectation_over_labels_drawn_from_the_scores() -> None:
    """CBPE's premise: with calibrated scores, the estimate equals the mean of the measured
    metric over label draws (checked by Monte Carlo, ties included)."""
    rng = np.random.default_rng(0)
    p = np.round(rng.beta(0.5, 5, size=3000), 2)  # rounded: many ties, as isotonic maps give
    est = expected(p, 0.3)
    draws = [(rng.random(len(p)) < p).astype(int) for _ in range(300)]
    assert abs(est["auc"] - np.mean([auc(y, p) for y in draws])) < 0.003
    assert abs(est["average_precision"] - np.mean([average_precision(y, p) for y in draws])) < 0.005
    flagged = p >= 0.3
    assert math.isclose(
        est["precision"], np.mean([y[flagged].mean() for y in draws]), abs_tol=0.005
    )


def test_concept_drift_separates_measured_from_estimated() -> None:
    """Same scores, but the world changed: the estimate does not see it, the labels do."""
    rng = np.random.default_rng(1)
    p = rng.beta(0.5, 8, size=5000)
    calibrated = (rng.random(len(p)) < p).astype(float)
    shuffled = rng.permutation(calibrated)  # labels no longer follow the scores
    before, after = measure(p, calibrated, 0.2), measure(p, shuffled, 0.2)
    assert before.est_auc == after.est_auc  # the estimate reads scores only
    assert before.auc > 0.8 and abs(after.auc - 0.5) < 0.05
    assert abs(before.auc - before.est_auc) < 0.03 and after.est_auc - after.auc > 0.3


def test_unknown_outcomes_lower_coverage_and_few_positives_give_nan() -> None:
    s = np.array([0.9, 0.1, 0.2, 0.3])
    w = measure(s, np.array([1.0, 0.0, np.nan, np.nan]), 0.5)
    assert (w.rows, w.known, w.coverage) == (4, 2, 0.5)
    assert math.isnan(w.auc)  # one positive is not enough to read an AUC
    assert w.to_dict()["auc"] is None  # JSON has no NaN
    empty = measure(np.array([]), np.array([]), 0.5)
    assert empty.rows == 0 and math.isnan(empty.coverage)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=60))
def test_the_estimate_is_order_free_and_bounded(scores: list[float]) -> None:
    p = np.array(scores)
    a, b = expected(p, 0.5), expected(p[::-1].copy(), 0.5)
    for key in a:
        assert (math.isnan(a[key]) and math.isnan(b[key])) or math.isclose(
            a[key], b[key], rel_tol=1e-9, abs_tol=1e-12
        )
    if "auc" in a:
        assert -1e-9 <= a["auc"] <= 1 + 1e-9
