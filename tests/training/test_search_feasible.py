"""The search does not pick a configuration the gate would reject when another one passes its
rules on the validation folds, and records which trials were infeasible and why."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from modelminder.events.outcomes import LabelPolicy
from modelminder.training.dataset import TrainingSet
from modelminder.training.estimators import FitData, LogisticEstimator
from modelminder.training.gate import GateRules
from modelminder.training.search import SearchResult, search
from modelminder.training.splits import FoldPlan, walk_forward
from modelminder.training.train import TrainConfig, train_model

DAY = 86_400_000_000
# Trial k tries CANDIDATES[k % 2]; the first (also the defaults) uses a feature whose fraud
# pattern disappears in the last fold (fraudsters moved on), the second only the stable one.
CANDIDATES = ({"features": "both"}, {"features": "stable"})


class _Columns:
    def __init__(self, member: Any, cols: list[int]) -> None:
        self.member, self.cols = member, cols

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.member.predict(X[:, self.cols]), np.float64)


class FixedCandidates:
    """Logistic regression on the stable feature, or on both; fixed candidates, no knobs."""

    name = "candidates"

    def default_params(self) -> dict[str, Any]:
        return dict(CANDIDATES[0])

    def suggest(self, trial: Any) -> dict[str, Any]:
        return dict(CANDIDATES[trial.number % len(CANDIDATES)])

    def fit(self, data: FitData, params: dict[str, Any], *, seed: int) -> _Columns:
        cols = [0, 1] if params["features"] == "both" else [0]
        sub = FitData(data.X[:, cols], data.y, data.weight, data.X_valid[:, cols], data.y_valid)
        return _Columns(LogisticEstimator().fit(sub, {"C": 1.0}, seed=seed), cols)


def _fading_world() -> tuple[np.ndarray, np.ndarray, FoldPlan]:
    rng = np.random.default_rng(0)
    n = 12_000
    ts = np.sort(rng.integers(0, 100 * DAY, n))
    plan = walk_forward(ts, ts, n_folds=3, holdout=0.2, embargo_us=0)
    last_fold_starts = ts[plan.folds[-1].valid].min()
    stable, fading = rng.normal(size=n), rng.normal(size=n)
    strength = np.where(ts < last_fold_starts, 3.0, 0.0)
    logit = -4.0 + 1.5 * stable + strength * fading
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return np.column_stack([stable, fading]), y, plan


def _search(rules: GateRules, trials: int = 4) -> SearchResult:
    X, y, plan = _fading_world()
    return search(FixedCandidates(), X, y, plan, trials=trials, max_rows=100_000, rules=rules)


LOOSE = GateRules(min_oot_auc=0.5)  # isolate the last-fold rule


def test_a_configuration_that_fails_the_last_fold_is_not_picked() -> None:
    result = _search(LOOSE)
    first = result.trials[0]
    assert first["params"] == {"features": "both"}
    # It scores best on average, thanks to the two folds before the pattern faded ...
    assert first["score"] > result.score + 0.1
    # ... but collapses on the last, most production-like fold: infeasible.
    assert first["feasible"] is False and first["broken_rules"] == ["last_fold"]
    [why] = first["infeasible_because"]
    assert why.startswith("last fold AUC 0.") and "below the earlier folds" in why
    assert result.params == {"features": "stable"}
    assert result.picked_feasible
    assert result.summary().startswith("search: 2 of 4 trials infeasible (2 with the last fold")


def test_without_the_rules_the_search_would_have_picked_the_fading_configuration() -> None:
    everything_goes = GateRules(min_oot_auc=0.0, gap_floor_auc=1.0, must_beat_baseline=False)
    result = _search(everything_goes)
    assert result.params == {"features": "both"}
    assert result.infeasible == 0
    assert "all 4 trials met the gate's rules" in result.summary()


def test_trial_history_records_feasibility_of_every_trial() -> None:
    result = _search(LOOSE)
    assert [t["number"] for t in result.trials] == [0, 1, 2, 3]
    assert [t["feasible"] for t in result.trials] == [False, True, False, True]
    for t in result.trials:
        assert len(t["fold_auc"]) == 3 and len(t["fold_average_precision"]) == 3
        assert bool(t["infeasible_because"]) == (not t["feasible"])
    saved = result.to_json()
    assert saved["infeasible_trials"] == 2 and saved["picked_feasible"] is True
    assert saved["picked_trial"] == 1 and saved["summary"] == result.summary()


def test_when_no_trial_is_feasible_the_best_is_picked_and_the_summary_says_so() -> None:
    result = _search(GateRules(min_oot_auc=0.99))
    assert result.infeasible == 4 and not result.picked_feasible
    assert result.params == {"features": "both"}  # the best-scoring one
    summary = result.summary()
    assert summary.startswith("search: NO trial was feasible, all 4 broke a gate rule")
    assert "4 with a fold's validation AUC below min_oot_auc 0.99" in summary
    assert "expect the gate to reject it" in summary


def test_a_validation_ap_below_the_baselines_is_infeasible() -> None:
    X, y, plan = _fading_world()
    result = search(
        FixedCandidates(), X, y, plan, trials=2, max_rows=100_000, rules=LOOSE, baseline_ap=0.95
    )
    stable = result.trials[1]
    assert stable["params"] == {"features": "stable"} and "baseline" in stable["broken_rules"]
    assert any("< the baseline's 0.950" in r for r in stable["infeasible_because"])


@pytest.fixture(scope="module")
def small_set() -> TrainingSet:
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(3 - 2 * x))).astype(np.int8)
    ts = np.sort(rng.integers(0, 120 * DAY, n))
    frame = pl.DataFrame(
        {
            "offset": np.arange(n), "event_id": [f"e{i}" for i in range(n)], "ts": ts,
            "content_hash": np.arange(n, dtype=np.uint64), "label": y,
            "label_known_at": ts + 30 * DAY, "labelled": y == 1, "label_arrived_at": ts + DAY,
            "x": x, "noise": rng.normal(size=n),
        }
    )  # fmt: skip
    return TrainingSet(frame, ["x", "noise"], int(ts.max()) + 1, LabelPolicy(), {})


def test_training_reports_the_searchs_feasibility_in_the_progress_and_the_report(
    small_set: TrainingSet,
) -> None:
    lines: list[str] = []
    result = train_model(
        small_set, TrainConfig(estimator="logistic", trials=3, folds=3), progress=lines.append
    )
    search_lines = [line for line in lines if line.startswith("search: ")]
    assert search_lines == [result.search.summary()]
    saved = result.report.details["search"]
    assert saved["summary"] == result.search.summary()
    assert len(saved["trials"]) == 3 and all("feasible" in t for t in saved["trials"])
    assert saved["picked_trial"] == result.search.picked
