"""One contract for every estimator ``make_estimator`` knows: shapes, determinism, safe
round-trips with identical scores, and refusal of bad input.

The estimators: ``lightgbm``, ``logistic``, ``mlp`` (by name) and the scikit-learn classifiers
whose fitted internals the model files admit (``modelminder.model.ensemble.TRUSTED_TYPES``
names them). A new estimator joins :data:`ESTIMATORS` and inherits every test.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier

from modelminder.errors import TrainingError
from modelminder.metrics import auc
from modelminder.model.ensemble import MEMBER_TYPES, Calibrator, Ensemble
from modelminder.training.estimators import FitData, make_estimator

FloatArray = npt.NDArray[np.float64]
FEATURES = ["amount", "velocity", "distance", "noise"]

# name -> what make_estimator is given. Small settings keep the suite fast; the contract does
# not depend on them.
ESTIMATORS: dict[str, Callable[[], Any]] = {
    "lightgbm": lambda: "lightgbm",
    "logistic": lambda: "logistic",
    "mlp": lambda: "mlp",
    "random_forest": lambda: RandomForestClassifier(n_estimators=20, min_samples_leaf=5),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=20, min_samples_leaf=5),
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=5),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=20, max_depth=2),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=20),
    "k_neighbors": lambda: KNeighborsClassifier(n_neighbors=15),
    "gaussian_nb": lambda: GaussianNB(),
    "sklearn_mlp": lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=300),
    "calibrated_logistic": lambda: CalibratedClassifierCV(LogisticRegression(), cv=3),
}
# Fewer epochs than the MLP's default (20) keep the suite fast; the contract holds for any.
PARAMS: dict[str, dict[str, Any]] = {"mlp": {"epochs": 5}}
# Estimators whose own optimizer may stop before it converges on this small data (a warning,
# which the suite otherwise treats as an error; it says nothing about the contract).
CONVERGENCE = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def world(n: int, seed: int) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """``n`` rows where the first three features carry the signal and 5% of values miss."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES)))
    logit = -2.5 + 1.5 * X[:, 0] + 1.0 * X[:, 1] - 0.8 * X[:, 2]
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    X[rng.random(X.shape) < 0.05] = np.nan
    return X, y


X_TRAIN, Y_TRAIN = world(600, 0)
X_VALID, Y_VALID = world(300, 1)
X_TEST, Y_TEST = world(400, 2)
DATA = FitData.of(X_TRAIN, Y_TRAIN, X_valid=X_VALID, y_valid=Y_VALID)


def estimator(name: str) -> Any:
    return make_estimator(ESTIMATORS[name]())


def params(name: str) -> dict[str, Any]:
    return {**estimator(name).default_params(), **PARAMS.get(name, {})}


def fit(name: str, seed: int) -> Any:
    return estimator(name).fit(DATA, params(name), seed=seed)


@cache
def fitted(name: str, seed: int = 0) -> Any:
    """A member fitted once per (estimator, seed) for the tests that only read it."""
    return fit(name, seed)


def test_the_data_has_both_classes_in_every_part() -> None:
    for y in (Y_TRAIN, Y_VALID, Y_TEST):
        assert 0.05 < y.mean() < 0.4


@CONVERGENCE
@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_gives_a_member_with_one_probability_per_row(name: str) -> None:
    member = fitted(name)
    scores = member.predict(X_TEST)
    assert scores.shape == (len(X_TEST),) and scores.dtype == np.float64
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    # Rows with missing values are scored too (5% of the values above are NaN).
    assert np.isnan(X_TEST).any(axis=1).sum() > 50
    # It learned the signal: a user would notice a member that did not.
    assert auc(Y_TEST, scores) > 0.75
    assert member.predict(X_TEST[:1]).shape == (1,)
    assert member.kind in MEMBER_TYPES and isinstance(member, MEMBER_TYPES[member.kind])


@CONVERGENCE
@pytest.mark.parametrize("name", ESTIMATORS)
def test_the_same_seed_gives_identical_scores(name: str) -> None:
    a, b = fitted(name, seed=3), fit(name, seed=3)  # two separate fits
    assert np.array_equal(a.predict(X_TEST), b.predict(X_TEST))


@CONVERGENCE
@pytest.mark.parametrize("name", ESTIMATORS)
def test_a_member_loads_from_its_bytes_with_identical_scores(name: str) -> None:
    member = fitted(name)
    again = MEMBER_TYPES[member.kind].from_bytes(member.to_bytes())
    assert type(again) is type(member)
    assert np.array_equal(again.predict(X_TEST), member.predict(X_TEST))


@CONVERGENCE
@pytest.mark.parametrize("name", ESTIMATORS)
def test_an_ensemble_loads_from_its_files_with_identical_scores(name: str) -> None:
    est = estimator(name)
    model = Ensemble(FEATURES, [fitted(name, 0), fitted(name, 1)], est.name, params(name))
    model.calibrator = Calibrator.fit(model.raw(X_VALID), Y_VALID)
    again = Ensemble.from_files(model.to_files())
    assert np.array_equal(again.predict(X_TEST), model.predict(X_TEST))
    assert again.estimator == est.name and again.params == model.params
    with pytest.raises(ValueError, match="expects 4 features"):
        again.predict(X_TEST[:, :3])


def _bad(**change: Any) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "X": X_TRAIN[:40],
        "y": np.r_[np.zeros(30, np.int64), np.ones(10, np.int64)],
        "weight": np.ones(40),
        "X_valid": X_VALID[:10],
        "y_valid": Y_VALID[:10],
    }
    parts.update(change)
    return parts


y40 = np.r_[np.zeros(30), np.ones(10)]
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "a NaN label": (_bad(y=np.r_[y40[:3], np.nan, y40[4:]]), "must be 0 or 1. Got nan at row 3"),
    "a label that is not 0/1": (_bad(y=np.r_[y40[:-1], 2.0]), "Got 2.0 at row 39"),
    "text labels": (_bad(y=np.array(["yes"] * 40)), "training labels 'y' must be numbers"),
    "a single class": (_bad(y=np.zeros(40)), "is negative (0): a classifier needs both classes"),
    "too few labels": (_bad(y=y40[:39]), "one value per row (40). Got shape (39,)"),
    "1-D features": (_bad(X=X_TRAIN[:40, 0]), "2-D array (rows x features). Got shape (40,)"),
    "no rows": (_bad(X=X_TRAIN[:0], y=y40[:0], weight=np.ones(0)), "must have rows"),
    "validation with other columns": (_bad(X_valid=X_VALID[:10, :3]), "training features' 4"),
    "a NaN validation label": (
        _bad(y_valid=np.r_[np.nan, Y_VALID[1:10]]),
        "validation labels 'y_valid' must be 0 or 1. Got nan at row 0",
    ),
    "a negative weight": (_bad(weight=np.r_[np.ones(39), -1.0]), "Got -1.0 at row 39"),
    "an infinite weight": (_bad(weight=np.r_[np.inf, np.ones(39)]), "Got inf at row 0"),
    "zero weights": (_bad(weight=np.zeros(40)), "must not all be 0"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_with_a_message_naming_it(case: str) -> None:
    """Refused once, before any estimator sees it: the same message for every estimator."""
    parts, needle = BAD[case]
    for name in ESTIMATORS:
        est = estimator(name)
        with pytest.raises(TrainingError) as err:
            est.fit(FitData(**parts), est.default_params(), seed=0)
        assert needle in str(err.value), (name, str(err.value))


def test_unknown_estimators_and_non_classifiers_are_refused() -> None:
    with pytest.raises(TrainingError, match=r"Unknown estimator 'xgboost'\. Allowed: lightgbm"):
        make_estimator("xgboost")
    with pytest.raises(TrainingError, match=r"needs fit\(\) and predict_proba\(\)"):
        make_estimator(object())
