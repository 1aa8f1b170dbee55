"""Regularization search: optuna over an estimator's knobs, scored by the purged folds.

Every trial fits one model per fold (trained on the fold's purged training rows, stopped early
on its validation rows where supported) and scores the mean average precision on the
validation rows. The holdout is never seen. The trial budget bounds the cost.

A search whose every trial scored NaN (no validation fold could be scored) is refused with a
:class:`~modelminder.errors.TrainingError`: its "best" parameters would be an arbitrary pick.
The fold plan's own check (:func:`~modelminder.training.splits.sufficient_folds`) stops that
case before the search starts; this is the last line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelminder.errors import TrainingError
from modelminder.metrics import average_precision
from modelminder.training.estimators import Estimator, FitData
from modelminder.training.report import fold_rows
from modelminder.training.splits import FoldPlan

FloatArray = npt.NDArray[np.float64]
Array = npt.NDArray[Any]


@dataclass(frozen=True)
class SearchResult:
    params: dict[str, Any]
    score: float  # mean validation average precision of the best trial
    trials: list[dict[str, Any]]


def sample_rows(
    idx: Array, y: Array, max_rows: int, rng: np.random.Generator
) -> tuple[Array, FloatArray]:
    """Keep every positive and a uniform share of negatives, weighted by the inverse share,
    so that at most ``max_rows`` rows are used (sums and probabilities stay unbiased)."""
    if len(idx) <= max_rows:
        return idx, np.ones(len(idx), np.float64)
    pos = idx[y[idx] == 1]
    neg = idx[y[idx] == 0]
    keep = max(1, max_rows - len(pos))
    rate = min(1.0, keep / max(len(neg), 1))
    chosen = neg[rng.random(len(neg)) < rate]
    rows = np.sort(np.concatenate([pos, chosen]))
    w = np.where(y[rows] == 1, 1.0, 1.0 / rate)
    return rows, w.astype(np.float64)


def fit_folds(
    est: Estimator,
    X: FloatArray,
    y: Array,
    plan: FoldPlan,
    params: dict[str, Any],
    *,
    max_rows: int,
    seed: int,
    train_scores: bool = True,
) -> tuple[list[Any], FloatArray, list[dict[str, Any]]]:
    """One model per fold (trained on its sampled training rows, stopped early on its
    validation rows); out-of-fold raw scores (NaN outside validation); per-fold scores."""
    rng = np.random.default_rng(seed)
    members = []
    oof = np.full(len(y), np.nan)
    folds = []
    for k, fold in enumerate(plan.folds):
        rows, w = sample_rows(fold.train, y, max_rows, rng)
        data = FitData(X[rows], y[rows], w, X[fold.valid], y[fold.valid])
        member = est.fit(data, params, seed=seed + k)
        members.append(member)
        oof[fold.valid] = member.predict(X[fold.valid])
        if not train_scores:
            continue
        seen = rows if len(rows) <= 50_000 else rng.choice(rows, 50_000, replace=False)
        folds.append(
            fold_rows(fold.name, y[seen], member.predict(X[seen]), y[fold.valid], oof[fold.valid])
        )
    return members, oof, folds


def cv_score(
    est: Estimator,
    X: FloatArray,
    y: Array,
    plan: FoldPlan,
    params: dict[str, Any],
    *,
    max_rows: int,
    seed: int,
) -> float:
    """Mean validation average precision over the folds for ``params``."""
    _, oof, _ = fit_folds(est, X, y, plan, params, max_rows=max_rows, seed=seed, train_scores=False)
    values = [average_precision(y[f.valid], oof[f.valid]) for f in plan.folds]
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def search(
    est: Estimator,
    X: FloatArray,
    y: Array,
    plan: FoldPlan,
    *,
    trials: int,
    max_rows: int,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> SearchResult:
    """Best parameters of ``trials`` optuna trials (TPE, seeded); defaults when ``trials`` is 0."""
    if trials <= 0:
        params = est.default_params()
        return SearchResult(params, math.nan, [])
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # The first trial is the estimator's defaults, so search can only improve on them.
    fixed = ("max_rounds", "early_stopping", "epochs")
    study.enqueue_trial({k: v for k, v in est.default_params().items() if k not in fixed})
    chosen: dict[int, dict[str, Any]] = {}
    scored: list[float] = []  # as computed, NaN included (optuna is told 0.0 for a NaN)

    def objective(trial: Any) -> float:
        params = est.suggest(trial)
        chosen[trial.number] = params
        score = cv_score(est, X, y, plan, params, max_rows=max_rows, seed=seed)
        scored.append(score)
        if progress is not None:
            progress(trial.number + 1, score)
        return score if not math.isnan(score) else 0.0

    study.optimize(objective, n_trials=trials)
    if all(math.isnan(s) for s in scored):
        counts = ", ".join(
            f"{f.name}: {len(f.valid):,} rows, {int(y[f.valid].sum()):,} positives"
            for f in plan.folds
        )
        raise TrainingError(
            f"Every one of the {trials} search trials scored NaN: no validation fold could be "
            f"scored (average precision needs positives and negatives; {counts}). Use more "
            "history, fewer --folds, or a shorter --maturity if labels really arrive sooner."
        )
    history = [
        {"number": t.number, "score": t.value, "params": chosen.get(t.number, {})}
        for t in study.trials
    ]
    return SearchResult(chosen[study.best_trial.number], float(study.best_value), history)
