"""Too little data is refused with the numbers and the remedy, never trained into a model that
scores 0.0 for everything: small validation blocks are merged (and said), a plan that cannot
be scored refuses before the search, a search of NaN scores refuses, and the calibrator never
learns from fewer than its stated minimum of positives."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import TrainingError
from modelminder.model.ensemble import MIN_CALIBRATION_POSITIVES, Calibrator
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.dataset import TrainingSet, build_training_set
from modelminder.training.estimators import make_estimator
from modelminder.training.search import search
from modelminder.training.splits import (
    MIN_VALID_POSITIVES,
    MIN_VALID_ROWS,
    Fold,
    FoldPlan,
    PlanSettings,
    history_days_needed,
    random_kfold,
    sufficient_folds,
    walk_forward,
)
from modelminder.training.train import TrainConfig, train_model

DAY = 86_400_000_000
IntArray = npt.NDArray[np.int64]
DEFAULT = PlanSettings(folds=4, holdout=0.2, embargo="1d", maturity="30d")


def history(
    days: int, per_day: int, positives_per_day: float, *, maturity: int = 30, seed: int = 0
) -> tuple[IntArray, IntArray, IntArray, int]:
    """Rows of ``days`` of history as the default label policy keeps them: events older than
    the maturity, each usable once it matured. Returns ts, known_at, y and the cut-off."""
    rng = np.random.default_rng(seed)
    n = (days - maturity) * per_day
    ts = np.sort(rng.integers(0, (days - maturity) * DAY, n)).astype(np.int64)
    y = (rng.random(n) < positives_per_day / per_day).astype(np.int64)
    return ts, ts + maturity * DAY, y, days * DAY


def check(ts: IntArray, known: IntArray, y: IntArray, cutoff: int, s: PlanSettings) -> FoldPlan:
    plan = walk_forward(
        ts, known, n_folds=s.folds, holdout=s.holdout, embargo_us=int(s.embargo[:-1]) * DAY
    )
    return sufficient_folds(plan, y, ts, known, cutoff=cutoff, settings=s)


def test_72_days_of_simulated_history_are_refused_with_the_numbers_and_the_remedy(
    tmp_path: Path,
) -> None:
    """The case seen in practice: on 72 days the plan fell back to 1-row validation blocks
    with no fraud, and the calibrator fitted on them made a model that scored 0.0."""
    from modelminder.project import init_project, load_project

    world = simulate(WorldConfig(days=72, cards=200, seed=7))  # `minder simulate` defaults
    root = tmp_path / "p"
    init_project(root, builtin=True)
    project = load_project(root)
    with project.open_log() as log:
        log.append_events(world.events)
        log.append_labels(world.labels)
        end = log.max_event_ts()
        assert end is not None
        data = build_training_set(log, project.plan(), cutoff=end + 1, now=end + 1)
    said: list[str] = []
    with pytest.raises(TrainingError) as err:
        train_model(data, TrainConfig(trials=2), progress=said.append)
    # The plan's fallback to the last rows is said, no longer silent...
    assert "note: no point before the holdout had 30% of the rows usable" in "\n".join(said)
    # ...and refused before any model is fitted, with the numbers and the remedy.
    assert not any(line.startswith("parameters") for line in said)
    text = " ".join(str(err.value).split())
    assert "fold 1: 1 row, 0 positives" in text and "together 4 rows, 0 positives" in text
    assert f"at least {MIN_VALID_ROWS} validation rows and {MIN_VALID_POSITIVES} positives" in text
    assert "--maturity 30d, --embargo 1d, --folds 4 and --holdout 0.2" in text
    need = re.search(r"needs about (\d+) days of event history", text)
    assert need and int(need.group(1)) > 90, text  # 30 days to mature, then the plan's
    assert "this data has 72" in text and "a shorter --maturity only if labels" in text


def test_a_fold_with_no_training_rows_names_the_maturity_and_the_days_needed() -> None:
    ts, known, y, cutoff = history(50, 200, 2.0)  # 20 mature days, none usable for 30 days
    with pytest.raises(TrainingError) as err:
        check(ts, known, y, cutoff, DEFAULT)
    text = str(err.value)
    assert text.startswith("fold 1 has no training rows after purging")
    assert "--maturity 30d" in text and "this data has 50." in text
    need = int(re.search(r"needs about (\d+) days", text).group(1))  # type: ignore[union-attr]
    assert need > 50


@pytest.mark.parametrize(
    ("settings_", "per_day", "positives_per_day"),
    [
        (DEFAULT, 200, 2.0),
        (PlanSettings(folds=2, holdout=0.1, embargo="2d", maturity="14d"), 100, 1.0),
        (PlanSettings(folds=5, holdout=0.25, embargo="0d", maturity="30d"), 500, 0.5),
    ],
)
def test_the_days_needed_are_enough_and_not_far_too_many(
    settings_: PlanSettings, per_day: int, positives_per_day: float
) -> None:
    """The estimate agrees with the plan on evenly spread rows: a history of the stated length
    gives every fold its minimum without merging; with half the days after maturity, the plan
    as asked does not fit (merged or refused)."""
    maturity = int(settings_.maturity[:-1]) if settings_.maturity else 0
    need = history_days_needed(
        settings_, delay_days=maturity, rows_per_day=per_day, positives_per_day=positives_per_day
    )
    enough = history(math.ceil(need) + 1, per_day, positives_per_day, maturity=maturity, seed=1)
    plan = check(*enough, settings_)
    assert len(plan.folds) == settings_.folds and not plan.notes
    half = maturity + math.floor((need - maturity) / 2)
    short = history(half, per_day, positives_per_day, maturity=maturity)
    try:
        plan = check(*short, settings_)
    except TrainingError:
        return
    assert len(plan.folds) < settings_.folds  # merged: the plan as asked did not fit


def _plan(ts: IntArray, valid_blocks: list[tuple[int, int]]) -> FoldPlan:
    """Walk-forward folds over day blocks [a, b), each training on everything before it."""
    day = ts // DAY
    folds = [
        Fold(
            f"fold {k + 1}",
            np.flatnonzero(day < a - 1).astype(np.int64),
            np.flatnonzero((day >= a) & (day < b)).astype(np.int64),
            0,
            0,
        )
        for k, (a, b) in enumerate(valid_blocks)
    ]
    return FoldPlan("walk_forward", folds, np.zeros(0, np.int64), 0)


def test_small_validation_blocks_are_merged_and_the_merge_is_said() -> None:
    ts = np.repeat(np.arange(40, dtype=np.int64) * DAY, 50)  # 40 days x 50 rows
    known = ts + DAY
    y = np.zeros(len(ts), np.int64)
    y[::40] = 1  # 1.25 positives a day
    y[(ts >= 31 * DAY) & (ts < 34 * DAY)] = 0  # fold 2 has none
    plan = _plan(ts, [(25, 31), (31, 34), (34, 37), (37, 40)])
    counts = [int(y[f.valid].sum()) for f in plan.folds]
    assert counts[0] >= MIN_VALID_POSITIVES > counts[1] + counts[2] and counts[3] < 5
    merged = sufficient_folds(plan, y, ts, known, cutoff=41 * DAY, settings=DEFAULT)
    assert [f.name for f in merged.folds] == ["fold 1", "folds 2-4"]
    second = merged.folds[1]
    # It validates on the union and trains only on what its first block could train on.
    assert np.array_equal(second.valid, np.sort(np.concatenate([f.valid for f in plan.folds[1:]])))
    assert np.array_equal(second.train, plan.folds[1].train)
    lines = "\n".join(merged.describe(ts))
    assert "validation blocks merged" in lines and "fold 2 (150 rows, 0 positives)" in lines
    assert "2 folds instead of 4" in lines
    # Enough everywhere: the same plan object, untouched.
    y[::10] = 1
    assert sufficient_folds(plan, y, ts, known, cutoff=41 * DAY, settings=DEFAULT) is plan


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(200, 3_000),
    folds=st.integers(1, 5),
    rate=st.sampled_from([0.002, 0.01, 0.05]),
    delay_days=st.integers(0, 30),
    seed=st.integers(0, 10_000),
)
def test_a_checked_plan_meets_the_minimums_and_still_never_trains_on_the_future(
    n: int, folds: int, rate: float, delay_days: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ts = rng.integers(0, 150 * DAY, n).astype(np.int64)
    known = ts + delay_days * DAY
    y = (rng.random(n) < rate).astype(np.int64)
    s = PlanSettings(folds=folds, holdout=0.2, embargo="1d", maturity=f"{delay_days}d")
    plan = walk_forward(ts, known, n_folds=folds, embargo_us=DAY)
    try:
        checked = sufficient_folds(plan, y, ts, known, cutoff=150 * DAY, settings=s)
    except TrainingError as exc:
        assert "this data has" in str(exc).lower()  # the days it has (and needs)
        return
    valid = np.sort(np.concatenate([f.valid for f in checked.folds]))
    assert np.array_equal(valid, np.sort(np.concatenate([f.valid for f in plan.folds])))
    for fold in checked.folds:
        assert len(fold.valid) >= MIN_VALID_ROWS and y[fold.valid].sum() >= MIN_VALID_POSITIVES
        start = ts[fold.valid].min()
        assert (known[fold.train] < start).all() and (ts[fold.train] < start - DAY).all()
        assert 0 < y[fold.train].sum() < len(fold.train)


def test_random_kfold_is_checked_too() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.006).astype(np.int64)  # 12 positives over 4 folds
    ts = np.arange(2_000, dtype=np.int64) * DAY // 20
    with pytest.warns(UserWarning, match="Random k-fold"):
        plan = random_kfold(2_000, y, n_folds=4)
    s = PlanSettings(folds=4, holdout=0.0, embargo="0d", maturity=None, scheme="random")
    merged = sufficient_folds(plan, y, ts, ts, cutoff=int(ts[-1]) + 1, settings=s)
    assert len(merged.folds) < 4
    for fold in merged.folds:
        assert y[fold.valid].sum() >= MIN_VALID_POSITIVES
        assert np.intersect1d(fold.train, fold.valid).size == 0
    with pytest.raises(TrainingError, match=r"fewer --folds \(now 4\) or more data"):
        sufficient_folds(plan, np.where(y == 1, 0, y) | (np.arange(2_000) == 7), ts, ts,
                         cutoff=int(ts[-1]) + 1, settings=s)  # fmt: skip


def test_a_search_whose_every_trial_scores_nan_is_refused() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] > 1.0).astype(np.int64)
    train = np.arange(300, dtype=np.int64)
    valid = np.flatnonzero(y[300:] == 0).astype(np.int64) + 300  # no positive to score
    plan = FoldPlan("walk_forward", [Fold("fold 1", train, valid, 0, 0)], valid[:0], 0)
    with pytest.raises(TrainingError) as err:
        search(make_estimator("logistic"), X, y, plan, trials=2, max_rows=1_000)
    assert "Every one of the 2 search trials scored NaN" in str(err.value)
    assert f"fold 1: {len(valid)} rows, 0 positives" in str(err.value)


def test_the_calibrator_refuses_fewer_positives_than_its_minimum_with_the_numbers() -> None:
    raw = np.linspace(0, 1, 300)
    labels = np.zeros(300, np.int64)
    with pytest.raises(TrainingError, match="300 scores with 0 positives and 300 negatives"):
        Calibrator.fit(raw, labels)  # the model that scored 0.0 for everything
    labels[-(MIN_CALIBRATION_POSITIVES - 1) :] = 1
    with pytest.raises(TrainingError, match=f"needs at least {MIN_CALIBRATION_POSITIVES} of each"):
        Calibrator.fit(raw, labels)
    labels[-MIN_CALIBRATION_POSITIVES:] = 1  # the stated minimum is enough
    assert Calibrator.fit(raw, labels)(np.array([1.0]))[0] > 0.5
    with pytest.raises(TrainingError, match=r"needs finite scores\. Got nan at position 0"):
        Calibrator.fit(np.r_[np.nan, raw[1:]], labels)
    with pytest.raises(TrainingError, match="one label per score"):
        Calibrator.fit(raw, labels[:-1])


def test_a_small_history_trains_on_merged_folds_into_a_model_that_ranks() -> None:
    """Enough validation positives in all, too few in some blocks: training goes on, on
    fewer folds, says so, and the calibrated model does not score everything alike."""
    rng = np.random.default_rng(3)
    n, day = 6_000, DAY
    ts = np.sort(rng.integers(0, 90 * day, n)).astype(np.int64)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(6.5 - 2 * x))).astype(np.int8)
    frame = pl.DataFrame(
        {
            "offset": np.arange(n), "event_id": [f"e{i}" for i in range(n)], "ts": ts,
            "content_hash": np.arange(n, dtype=np.uint64), "label": y,
            "label_known_at": ts + 30 * day, "labelled": y == 1,
            "label_arrived_at": ts + day, "x": x, "noise": rng.normal(size=n),
        }
    )  # fmt: skip
    from modelminder.training.dataset import LabelPolicy

    data = TrainingSet(frame, ["x", "noise"], int(ts.max()) + 30 * day, LabelPolicy(), {})
    said: list[str] = []
    config = TrainConfig(estimator="logistic", trials=0, folds=4, baseline=False)
    result = train_model(data, config, progress=said.append)
    assert any("validation blocks merged" in line for line in said)
    assert len(result.fold_plan.folds) < 4 and len(result.model.members) == len(
        result.fold_plan.folds
    )
    for fold in result.fold_plan.folds:
        assert int(y[fold.valid].sum()) >= MIN_VALID_POSITIVES
    scores = result.model.predict(data.X())
    assert result.model.calibrator is not None and len(np.unique(scores)) > 3
