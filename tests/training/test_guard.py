"""The gate refuses what would disappoint in production, and passes a sound model."""

from __future__ import annotations

import polars as pl
import pytest
from sklearn.dummy import DummyClassifier

from modelminder.training.dataset import TrainingSet
from modelminder.training.gate import GateRules
from modelminder.training.train import TrainConfig, train_model

from .conftest import Fixture

FAST = {"trials": 0, "folds": 3, "max_train_rows": 30_000}
OVERFIT = {
    "num_leaves": 512,
    "min_child_samples": 1,
    "lambda_l1": 0.0,
    "lambda_l2": 0.0,
    "feature_fraction": 1.0,
    "learning_rate": 0.3,
    "max_rounds": 300,
    "early_stopping": False,
}


def _failed(result: object) -> set[str]:
    return {c.name for c in result.verdict.checks if not c.passed}  # type: ignore[attr-defined]


def _tiny(data: TrainingSet, rows: int = 15_000) -> TrainingSet:
    """A small sample spread over the whole period (tiny data, same time span)."""
    frame = data.frame.sample(rows, seed=1).sort("offset")
    return TrainingSet(frame, data.feature_names, data.cutoff, data.policy, data.counts)


def test_a_sound_model_passes_and_its_validation_estimate_holds(trained_world: Fixture) -> None:
    with trained_world.log() as log:
        result = train_model(
            trained_world.data, TrainConfig(**FAST), log=log, plan=trained_world.plan()
        )
    s = result.report.scores
    assert result.verdict.passed, result.verdict.summary()
    assert s.oot.auc > 0.9
    # The purged walk-forward estimate is close to what happens out of time.
    assert abs(s.validation.auc - s.oot.auc) < 0.03
    assert s.baseline_oot is not None
    assert s.oot.average_precision > s.baseline_oot.average_precision
    assert result.report.details["time_travel"]["checked_events"] > 1000
    assert result.report.details["time_travel"]["mismatched_features"] == []
    assert result.report.details["duplicates"] == {"same_event_id": 0, "same_content": 0}
    assert [f for f in result.report.findings if f.kind == "leakage"] == []
    # The shipped model is the calibrated ensemble of the fold models.
    assert len(result.model.members) == 3 and result.model.calibrator is not None


def test_a_leaky_feature_is_refused(trained_world: Fixture) -> None:
    """A feature computed from the label itself (as a post-hoc 'chargeback' field would be)."""
    data = trained_world.data
    noise = pl.Series(range(data.n)).cast(pl.Float64) % 7 / 100
    frame = data.frame.with_columns(chargeback_flag=pl.col("label").cast(pl.Float64) + noise)
    leaky = TrainingSet(
        frame, [*data.feature_names, "chargeback_flag"], data.cutoff, data.policy, data.counts
    )
    result = train_model(leaky, TrainConfig(**FAST))
    assert not result.verdict.passed
    assert "leakage" in _failed(result)
    assert any("chargeback_flag" in r and "too good" in r for r in result.verdict.reasons)


def test_an_overfitted_configuration_is_refused(trained_world: Fixture) -> None:
    """Very deep trees, no regularization, no early stopping, tiny data. What refuses it is what
    production would see (it loses to the baseline out of time); its in-sample gap is reported
    as information, not a reason."""
    tiny = _tiny(trained_world.data)
    overfit = train_model(tiny, TrainConfig(trials=0, folds=3, params=OVERFIT))
    assert not overfit.verdict.passed
    assert "beats_baseline" in _failed(overfit)
    assert "in_sample_gap" not in _failed(overfit)
    assert "[information: in-sample (train-vs-validation) AUC gap" in overfit.verdict.summary()
    # The same data with the default regularized configuration is fine, and fits its training
    # rows less tightly.
    sound = train_model(tiny, TrainConfig(trials=0, folds=3))
    assert sound.verdict.passed, sound.verdict.summary()
    assert sound.report.gap.auc < overfit.report.gap.auc


def test_a_model_worse_than_the_baseline_is_refused(trained_world: Fixture) -> None:
    rules = GateRules(min_oot_auc=0.0, gap_floor_auc=1.0)  # isolate the baseline rule
    config = TrainConfig(estimator=DummyClassifier(strategy="stratified"), **FAST)
    result = train_model(trained_world.data, config, rules)
    assert _failed(result) == {"beats_baseline"}
    assert "does not beat the logistic baseline" in result.verdict.summary()


def test_search_uses_its_budget_and_never_sees_the_holdout(trained_world: Fixture) -> None:
    result = train_model(trained_world.data, TrainConfig(trials=3, folds=3, max_train_rows=20_000))
    assert len(result.search.trials) == 3
    hold = set(result.fold_plan.holdout.tolist())
    for fold in result.fold_plan.folds:
        assert hold.isdisjoint(fold.train.tolist()) and hold.isdisjoint(fold.valid.tolist())


def test_random_kfold_is_only_an_explicit_warned_option(trained_world: Fixture) -> None:
    with pytest.warns(UserWarning, match="Random k-fold ignores time"):
        result = train_model(trained_world.data, TrainConfig(scheme="random", **FAST))
    assert result.report.scheme == "random"


def test_the_mlp_with_dropout_is_guarded_and_saved_safely(trained_world: Fixture) -> None:
    from modelminder.model.ensemble import Ensemble, MLPMember

    config = TrainConfig(
        estimator="mlp", trials=0, folds=3, max_train_rows=20_000, params={"epochs": 4}
    )
    result = train_model(trained_world.data, config)
    assert all(isinstance(m, MLPMember) for m in result.model.members)
    assert result.report.scores.oot.auc > 0.8
    assert {c.name for c in result.verdict.checks} >= {"overfitting", "leakage", "out_of_time"}
    X = trained_world.data.X()[:500]
    again = Ensemble.from_files(result.model.to_files())
    assert (again.predict(X) == result.model.predict(X)).all()


def test_probabilities_are_calibrated_out_of_time(trained_world: Fixture) -> None:
    result = train_model(trained_world.data, TrainConfig(**FAST))
    # Scores are probabilities: mean |observed fraud rate - mean score| over score deciles.
    assert result.report.scores.oot.calibration_error < 0.01


def test_stacking_is_kept_only_if_it_helps_out_of_time(trained_world: Fixture) -> None:
    from modelminder.model.ensemble import Ensemble

    result = train_model(trained_world.data, TrainConfig(stack=True, **FAST))
    info = result.report.details["stacking"]
    assert set(info) >= {"kept", "oot_ap_stacked", "oot_ap_bagged"}
    best = max(info["oot_ap_stacked"], info["oot_ap_bagged"])
    assert result.report.scores.oot.average_precision == best
    assert (result.model.stack is not None) == info["kept"]
    X = trained_world.data.X()[:300]
    again = Ensemble.from_files(result.model.to_files())
    assert (again.predict(X) == result.model.predict(X)).all()
