"""Calibration keeps the ranking: the calibrated scores order events exactly as the raw scores
do (so average precision, AUC and the top of the review queue do not change), stay as well
calibrated as the isotonic step map they replace, and models saved with the step map still
score as they did."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from modelminder.errors import ArtifactError
from modelminder.metrics import auc, average_precision, calibration_error, recall_at_alert_rate
from modelminder.model.ensemble import Calibrator, Ensemble, SklearnMember

ECE_TOLERANCE = 0.005  # how much worse than the isotonic step map calibration may get


def lightgbm_like(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores shaped like a bagged LightGBM model's: three members, each a sum of 40
    three-leaf trees on binned features, averaged as probabilities. Events that share leaves
    share a score exactly; the rest are crowded together (about half of the distinct scores
    lie within 1e-6 of their neighbour). The members are over-confident, so calibration has
    work to do. About 3.5% positives."""
    x = rng.normal(size=(n, 4))
    beta = np.array([1.4, 0.9, 0.5, 0.0])
    y = (rng.random(n) < 1 / (1 + np.exp(4.6 - x @ beta))).astype(np.int8)
    trees = np.random.default_rng(99)  # the same model for every sample
    p = np.zeros(n)
    for _member in range(3):
        z = np.full(n, -4.5)
        for _tree in range(40):
            f = int(trees.integers(0, 4))
            cuts = np.sort(trees.normal(size=2))
            centers = np.array([cuts[0] - 0.8, cuts.mean(), cuts[1] + 0.8])
            values = 0.15 * beta[f] * centers + trees.normal(scale=0.01, size=3)
            z += values[np.searchsorted(cuts, x[:, f])]
        p += 1 / (1 + np.exp(-z))
    return p / 3, y


@pytest.fixture(scope="module")
def fitted() -> tuple[Calibrator, IsotonicRegression, np.ndarray, np.ndarray]:
    """The calibrator and the old step map, fitted on 50,000 scores; 50,000 held-out ones."""
    rng = np.random.default_rng(0)
    raw, y = lightgbm_like(rng, 50_000)
    held_raw, held_y = lightgbm_like(rng, 50_000)
    distinct = np.unique(raw)
    assert len(distinct) > 40_000 and np.sum(np.diff(distinct) < 1e-6) > 20_000  # crowded
    step = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
    return Calibrator.fit(raw, y), step, held_raw, held_y


def test_calibrated_scores_rank_events_exactly_as_raw_scores(
    fitted: tuple[Calibrator, IsotonicRegression, np.ndarray, np.ndarray],
) -> None:
    cal, step, raw, _ = fitted
    calibrated = cal(raw)
    distinct = np.unique(raw)
    assert np.all(np.diff(cal(distinct)) > 0)  # a strictly increasing map on these scores
    assert len(np.unique(calibrated)) == len(distinct)  # ties only where raw scores tie
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable"))
    # The top of the review queue keeps its order; the step map flattened it into a few ties.
    top = np.argsort(-raw, kind="stable")[:300]
    assert len(np.unique(calibrated[top])) == len(np.unique(raw[top])) > 290
    assert len(np.unique(step.predict(raw)[top])) < 30


def test_calibration_error_stays_as_low_as_the_isotonic_step_map(
    fitted: tuple[Calibrator, IsotonicRegression, np.ndarray, np.ndarray],
) -> None:
    cal, step, raw, y = fitted
    ece_raw = calibration_error(y, raw)
    ece_step = calibration_error(y, step.predict(raw))
    ece = calibration_error(y, cal(raw))
    assert ece <= ece_step + ECE_TOLERANCE, (ece, ece_step)
    assert ece < ece_raw / 3, (ece, ece_raw)  # it still calibrates: raw is far off
    # And per 20 bins of the held-out scores, not only on average.
    assert (
        calibration_error(y, cal(raw), bins=20)
        <= calibration_error(y, step.predict(raw), bins=20) + ECE_TOLERANCE
    )


def test_ranking_metrics_of_calibrated_scores_equal_the_raw_ones(
    fitted: tuple[Calibrator, IsotonicRegression, np.ndarray, np.ndarray],
) -> None:
    cal, step, raw, y = fitted
    calibrated = cal(raw)
    assert average_precision(y, calibrated) == average_precision(y, raw)
    assert auc(y, calibrated) == auc(y, raw)
    assert recall_at_alert_rate(y, calibrated) == recall_at_alert_rate(y, raw)
    # What the step map cost (the loss this change removes).
    assert average_precision(y, step.predict(raw)) < average_precision(y, raw) - 0.005


def test_outputs_are_probabilities_and_the_tie_break_moves_none_by_more_than_1e_6(
    fitted: tuple[Calibrator, IsotonicRegression, np.ndarray, np.ndarray],
) -> None:
    cal, _, raw, _ = fitted
    probes = np.r_[raw, np.linspace(-2.0, 3.0, 1001)]
    out = cal(probes)
    assert np.all((out >= 0.0) & (out <= 1.0))
    # The same knots without the tie-break: what the map is calibrated to.
    plain = np.interp(probes, cal.x, cal.y)
    assert np.max(np.abs(out - plain)) <= 1e-6


@settings(max_examples=150, deadline=None)
@given(
    raw=st.lists(st.floats(-1e3, 1e3), min_size=10, max_size=120),
    extra=st.lists(st.integers(0, 1), min_size=110, max_size=110),
    inside=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40),
    outside=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=40),
)
def test_the_map_is_strictly_increasing_on_the_fitted_range_and_never_decreases(
    raw: list[float], extra: list[int], inside: list[float], outside: list[float]
) -> None:
    labels = ([0, 1] * 5 + extra)[: len(raw)]
    cal = Calibrator.fit(np.array(raw), np.array(labels))
    lo, hi = min(raw), max(raw)
    # Inside the fitted range: strictly increasing for scores further apart than the stated
    # resolution (1e-9 of the span, with a margin), and never decreasing for closer ones.
    x = np.sort(lo + (hi - lo) * np.array(inside))
    x = x[(x >= lo) & (x <= hi)]
    y = cal(x)
    apart = np.diff(x) > 1e-8 * (cal.hi - cal.lo)
    assert np.all(np.diff(y)[apart] > 0), (x, y)
    assert np.all(np.diff(y) >= 0)
    # Anywhere (beyond the fitted range too): never decreasing, always a probability.
    z = np.sort(np.r_[np.array(outside), x])
    out = cal(z)
    assert np.all(np.diff(out) >= 0) and np.all((out >= 0.0) & (out <= 1.0)), (z, out)


def _model() -> tuple[Ensemble, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 2))
    y = (rng.random(400) < 1 / (1 + np.exp(2 - 2 * X[:, 0]))).astype(int)
    model = Ensemble(["a", "b"], [SklearnMember(LogisticRegression().fit(X, y))], "logistic", {})
    model.calibrator = Calibrator.fit(model.raw(X), y)
    return model, X


def test_a_saved_model_scores_the_same_after_loading() -> None:
    model, X = _model()
    files = model.to_files()
    doc = json.loads(files["model.json"])
    assert doc["format"] == 2 and doc["calibrator"]["kind"] == "centered_isotonic"
    again = Ensemble.from_files(files)
    assert np.array_equal(again.predict(X), model.predict(X))


def test_a_model_saved_with_the_isotonic_step_map_still_scores_as_before() -> None:
    """A format-1 artifact (registered before this change) keeps serving its old scores."""
    model, X = _model()
    raw = model.raw(X)
    step = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        raw, model.raw(X) > 0.5
    )
    files = model.to_files()
    doc = json.loads(files["model.json"])
    doc["format"] = 1
    doc["calibrator"] = {"x": step.X_thresholds_.tolist(), "y": step.y_thresholds_.tolist()}
    old = Ensemble.from_files(files | {"model.json": json.dumps(doc).encode()})
    assert np.array_equal(old.predict(X), step.predict(raw))
    assert len(np.unique(old.predict(X))) < len(np.unique(model.predict(X)))  # still its ties
    # Saved again, it stays a step map.
    assert np.array_equal(Ensemble.from_files(old.to_files()).predict(X), step.predict(raw))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 3}, "has format 3; this modelminder reads formats 1, 2"),
        (
            {"calibrator": {"kind": "platt", "x": [0.0], "y": [0.0]}},
            "Unknown calibrator kind 'platt'",
        ),
        (
            {
                "calibrator": {
                    "kind": "centered_isotonic",
                    "x": [0.5, 0.1],
                    "y": [0.0, 1.0],
                    "tie_break": 1e-6,
                    "lo": 0.0,
                    "hi": 1.0,
                }
            },
            "strictly increasing",
        ),
    ],
)
def test_an_artifact_this_code_cannot_read_is_refused_by_name(
    change: dict[str, object], message: str
) -> None:
    model, _ = _model()
    files = model.to_files()
    doc = json.loads(files["model.json"]) | change
    with pytest.raises(ArtifactError, match=message):
        Ensemble.from_files(files | {"model.json": json.dumps(doc).encode()})


def test_a_calibrator_fitted_on_one_repeated_score_still_orders_new_scores() -> None:
    cal = Calibrator.fit(np.full(20, 0.3), np.array([0, 1] * 10))
    out = cal(np.array([0.1, 0.3, 0.5]))
    assert np.all(np.diff(out) > 0)
    assert math.isclose(float(out[1]), 0.5, abs_tol=1e-6)  # the rate of the one block
