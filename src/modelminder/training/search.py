"""Regularization search: optuna over an estimator's knobs, scored by the purged folds.

Every trial fits one model per fold (trained on the fold's purged training rows, stopped early
on its validation rows where supported) and scores the mean average precision on the
validation rows. The holdout is never seen. The trial budget bounds the cost.

Feasibility
-----------
A configuration the gate would reject is not worth picking when another one would pass. The
gate judges the out-of-time holdout, which the search must never see (that would leak), so
each trial is checked against the gate's rules *on the validation folds* (:func:`feasibility`):

* ``fold_auc`` -- every fold's validation AUC is at least ``min_oot_auc`` (each fold, like the
  holdout, is a period the model will face);
* ``last_fold`` -- the last fold, the most production-like one, is not below the earlier folds
  by more than the gate's tolerance (the gate's lab-vs-production rule, one step back in time;
  walk-forward plans only);
* ``baseline`` -- the mean validation average precision is at least the logistic baseline's on
  the same folds (plus ``baseline_margin``), when the caller measured it.

Feasible trials rank first, then by score; a trial that breaks a rule is recorded as
infeasible with the reasons (:attr:`SearchResult.trials`). Optuna is told an infeasible trial's
score minus 1 (average precision lies in [0, 1]), so TPE learns to avoid that region too
(optuna's ``constraints_func`` is deprecated in optuna 5 and its replacement does not exist in
the 3.x releases we support). When no trial is feasible, the best-scoring one is picked and
:meth:`SearchResult.summary` says so.

A search whose every trial scored NaN (no validation fold could be scored) is refused with a
:class:`~modelminder.errors.TrainingError`: its "best" parameters would be an arbitrary pick.
The fold plan's own check (:func:`~modelminder.training.splits.sufficient_folds`) stops that
case before the search starts; this is the last line.

Recency weights
---------------
:class:`Recency` weighs a training row ``age = cutoff - ts`` old by ``0.5 ** (age /
half_life)``, multiplied into the negative-subsampling weights of :func:`sample_rows`, for
every fit (search trials, fold models, the baseline, the learning curve).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelminder.errors import TrainingError
from modelminder.metrics import auc, average_precision
from modelminder.training.estimators import Estimator, FitData
from modelminder.training.gate import GateRules
from modelminder.training.report import fold_rows, last_fold_shortfall
from modelminder.training.splits import FoldPlan

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Array = npt.NDArray[Any]

RULE_TEXT = {
    "fold_auc": "a fold's validation AUC below min_oot_auc",
    "last_fold": "the last fold below the earlier folds beyond the tolerance",
    "baseline": "validation average precision below the logistic baseline's",
}
"""What each in-search rule name means (the summary counts trials per rule)."""


@dataclass(frozen=True)
class Recency:
    """Recency weights for retraining: a row ``age = cutoff - ts`` old counts
    ``0.5 ** (age / half_life)`` (a row one half-life old counts half).

    Examples
    --------
    >>> day = 86_400_000_000
    >>> r = Recency(np.array([0, 20 * day, 30 * day]), 30 * day, 10 * day)
    >>> r.factor(np.arange(3)).tolist()
    [0.125, 0.5, 1.0]
    >>> w = r.weights(np.arange(3)); (w / w[-1]).tolist(), float(w.mean())
    ([0.125, 0.5, 1.0], 1.0)
    """

    ts: IntArray
    cutoff: int
    half_life_us: int

    def factor(self, rows: Array) -> FloatArray:
        """``0.5 ** (age / half_life)`` of ``rows`` (an age below 0 counts as 0)."""
        age = np.maximum(self.cutoff - self.ts[rows], 0).astype(np.float64)
        return np.exp2(-age / self.half_life_us)

    def weights(self, rows: Array) -> FloatArray:
        """:meth:`factor` of ``rows`` rescaled to mean 1.

        Only the ratios between rows matter to a fit; the scale would change how strongly the
        regularization acts (LightGBM's leaf minimums, logistic C), and a fold that ends many
        half-lives before the cut-off would underflow to weights of 0. So the exponent is
        taken relative to the newest row, then the factors are scaled to average 1.
        """
        if len(rows) == 0:
            return np.ones(0, np.float64)
        age = np.maximum(self.cutoff - self.ts[rows], 0).astype(np.float64) / self.half_life_us
        rel = np.exp2(-(age - age.min()))
        return np.asarray(rel / rel.mean(), np.float64)


@dataclass(frozen=True)
class Feasibility:
    """Whether one trial's fold scores meet the gate's rules (see the module docstring)."""

    feasible: bool
    broken: tuple[str, ...] = ()  # rule names, keys of RULE_TEXT
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchResult:
    params: dict[str, Any]
    score: float  # mean validation average precision of the picked trial
    trials: list[dict[str, Any]]
    picked: int | None = None  # optuna's number of the picked trial (None: no search)
    rules: GateRules = field(default_factory=GateRules)

    @property
    def infeasible(self) -> int:
        """How many trials broke an in-search rule."""
        return sum(1 for t in self.trials if not t.get("feasible", True))

    @property
    def picked_feasible(self) -> bool:
        return any(t["number"] == self.picked and t.get("feasible", True) for t in self.trials)

    def summary(self) -> str:
        """One line for the progress output and the report: how many trials were infeasible,
        why, and which one was picked."""
        n = len(self.trials)
        if n == 0 or self.picked is None:
            return "no search: fixed or default parameters"
        counts = Counter(rule for t in self.trials for rule in t.get("broken_rules", ()))
        why = "; ".join(
            f"{c} with {RULE_TEXT[r]}"
            + (f" {self.rules.min_oot_auc:.2f}" if r == "fold_auc" else "")
            for r, c in counts.items()
        )
        picked = f"trial {self.picked + 1} (validation AP {self.score:.4f})"
        if self.infeasible == 0:
            return f"search: all {n} trials met the gate's rules on the validation folds; " + (
                f"picked {picked}"
            )
        if self.picked_feasible:
            return (
                f"search: {self.infeasible} of {n} trials infeasible ({why}); picked the best "
                f"feasible one, {picked}"
            )
        return (
            f"search: NO trial was feasible, all {n} broke a gate rule on the validation folds "
            f"({why}); picked the best-scoring one anyway, {picked}: expect the gate to reject "
            "it (more data, more --trials, or another estimator may help)"
        )

    def to_json(self) -> dict[str, Any]:
        """What the guard report keeps under ``details["search"]``."""
        return {
            "trials": self.trials,
            "best_validation_ap": self.score,
            "picked_trial": self.picked,
            "picked_feasible": self.picked_feasible if self.trials else None,
            "infeasible_trials": self.infeasible,
            "summary": self.summary(),
        }


def sample_rows(
    idx: Array,
    y: Array,
    max_rows: int,
    rng: np.random.Generator,
    recency: Recency | None = None,
) -> tuple[Array, FloatArray]:
    """Keep every positive and a uniform share of negatives, weighted by the inverse share,
    so that at most ``max_rows`` rows are used (sums and probabilities stay unbiased); with
    ``recency``, each weight is multiplied by the row's recency weight.

    Examples
    --------
    >>> day = 86_400_000_000
    >>> y = np.array([0, 0, 1, 0]); r = Recency(np.arange(4) * day, 4 * day, day)
    >>> rows, w = sample_rows(np.arange(4), y, 10, np.random.default_rng(0), r)
    >>> (w / w[-1]).tolist()  # each day older counts half
    [0.125, 0.25, 0.5, 1.0]
    """
    if len(idx) <= max_rows:
        rows, w = idx, np.ones(len(idx), np.float64)
    else:
        pos = idx[y[idx] == 1]
        neg = idx[y[idx] == 0]
        keep = max(1, max_rows - len(pos))
        rate = min(1.0, keep / max(len(neg), 1))
        chosen = neg[rng.random(len(neg)) < rate]
        rows = np.sort(np.concatenate([pos, chosen]))
        w = np.where(y[rows] == 1, 1.0, 1.0 / rate).astype(np.float64)
    if recency is not None:
        w = w * recency.weights(rows)
    return rows, w


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
    recency: Recency | None = None,
) -> tuple[list[Any], FloatArray, list[dict[str, Any]]]:
    """One model per fold (trained on its sampled training rows, weighted by ``recency`` when
    given, stopped early on its validation rows); out-of-fold raw scores (NaN outside
    validation); per-fold scores."""
    rng = np.random.default_rng(seed)
    members = []
    oof = np.full(len(y), np.nan)
    folds = []
    for k, fold in enumerate(plan.folds):
        rows, w = sample_rows(fold.train, y, max_rows, rng, recency)
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


def fold_scores(y: Array, oof: FloatArray, plan: FoldPlan) -> list[dict[str, Any]]:
    """Validation AUC, average precision, rows and positives of each fold, in time order."""
    out = []
    for f in plan.folds:
        yv, pv = y[f.valid], oof[f.valid]
        out.append(
            {
                "name": f.name,
                "auc": auc(yv, pv),
                "average_precision": average_precision(yv, pv),
                "rows": len(yv),
                "positives": int(np.sum(yv)),
            }
        )
    return out


def mean_ap(folds: Sequence[Mapping[str, Any]]) -> float:
    """Mean validation average precision over the folds that could be scored (NaN if none)."""
    finite = [float(f["average_precision"]) for f in folds]
    finite = [v for v in finite if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def cv_score(
    est: Estimator,
    X: FloatArray,
    y: Array,
    plan: FoldPlan,
    params: dict[str, Any],
    *,
    max_rows: int,
    seed: int,
    recency: Recency | None = None,
) -> float:
    """Mean validation average precision over the folds for ``params``."""
    _, oof, _ = fit_folds(
        est, X, y, plan, params, max_rows=max_rows, seed=seed, train_scores=False,
        recency=recency,
    )  # fmt: skip
    return mean_ap(fold_scores(y, oof, plan))


def feasibility(
    folds: Sequence[Mapping[str, Any]],
    rules: GateRules,
    *,
    baseline_ap: float | None = None,
    in_time: bool = True,
) -> Feasibility:
    """The in-search version of the gate's rules on one trial's fold scores (see the module
    docstring); ``in_time`` is False for random k-fold (no last fold in time).

    Examples
    --------
    >>> folds = [{"name": f"fold {k}", "auc": a, "average_precision": 0.4, "positives": 50,
    ...           "rows": 5000} for k, a in enumerate((0.95, 0.94, 0.80), 1)]
    >>> feasibility(folds, GateRules(), baseline_ap=0.3).reasons  # doctest: +ELLIPSIS
    ('last fold AUC 0.800 is 0.145 below the earlier folds (0.945; tolerance 0.082)',)
    >>> feasibility(folds[:2], GateRules(min_oot_auc=0.945)).broken
    ('fold_auc',)
    """
    broken: list[str] = []
    reasons: list[str] = []
    scored = [f for f in folds if not math.isnan(float(f["auc"]))]
    if not scored:
        broken.append("fold_auc")
        reasons.append("no validation fold could be scored (AUC NaN in every fold)")
    else:
        worst = min(scored, key=lambda f: float(f["auc"]))
        if float(worst["auc"]) < rules.min_oot_auc:
            broken.append("fold_auc")
            reasons.append(
                f"{worst['name']} AUC {float(worst['auc']):.3f} < min_oot_auc "
                f"{rules.min_oot_auc:.3f}"
            )
    last = last_fold_shortfall(folds, rules) if in_time else None
    if last is not None and last["drop"] > last["tolerance"]:
        broken.append("last_fold")
        reasons.append(
            f"last fold AUC {last['last']:.3f} is {last['drop']:.3f} below the earlier folds "
            f"({last['earlier']:.3f}; tolerance {last['tolerance']:.3f})"
        )
    if rules.must_beat_baseline and baseline_ap is not None and not math.isnan(baseline_ap):
        mine = mean_ap(folds)
        if math.isnan(mine) or mine < baseline_ap + rules.baseline_margin:
            broken.append("baseline")
            reasons.append(
                f"validation average precision {mine:.3f} < the baseline's {baseline_ap:.3f}"
                + (f" + margin {rules.baseline_margin:.3f}" if rules.baseline_margin else "")
            )
    return Feasibility(not broken, tuple(broken), tuple(reasons))


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
    rules: GateRules | None = None,
    baseline_ap: float | None = None,
    recency: Recency | None = None,
) -> SearchResult:
    """Best feasible parameters of ``trials`` optuna trials (TPE, seeded); defaults when
    ``trials`` is 0. ``rules`` (default :class:`GateRules`) and ``baseline_ap`` (the
    baseline's mean validation average precision on ``plan``) decide feasibility."""
    rules = rules or GateRules()
    if trials <= 0:
        params = est.default_params()
        return SearchResult(params, math.nan, [], rules=rules)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # The first trial is the estimator's defaults, so search can only improve on them.
    fixed = ("max_rounds", "early_stopping", "epochs")
    study.enqueue_trial({k: v for k, v in est.default_params().items() if k not in fixed})
    records: dict[int, dict[str, Any]] = {}
    in_time = plan.scheme != "random"

    def objective(trial: Any) -> float:
        params = est.suggest(trial)
        _, oof, _ = fit_folds(
            est, X, y, plan, params, max_rows=max_rows, seed=seed, train_scores=False,
            recency=recency,
        )  # fmt: skip
        folds = fold_scores(y, oof, plan)
        score = mean_ap(folds)
        feas = feasibility(folds, rules, baseline_ap=baseline_ap, in_time=in_time)
        records[trial.number] = {
            "number": trial.number,
            "score": score,
            "params": params,
            "feasible": feas.feasible,
            "broken_rules": list(feas.broken),
            "infeasible_because": list(feas.reasons),
            "fold_auc": [f["auc"] for f in folds],
            "fold_average_precision": [f["average_precision"] for f in folds],
        }
        if progress is not None:
            progress(trial.number + 1, score)
        value = score if not math.isnan(score) else 0.0
        return value if feas.feasible else value - 1.0

    study.optimize(objective, n_trials=trials)
    if all(math.isnan(r["score"]) for r in records.values()):
        counts = ", ".join(
            f"{f.name}: {len(f.valid):,} rows, {int(y[f.valid].sum()):,} positives"
            for f in plan.folds
        )
        raise TrainingError(
            f"Every one of the {trials} search trials scored NaN: no validation fold could be "
            f"scored (average precision needs positives and negatives; {counts}). Use more "
            "history, fewer --folds, or a shorter --maturity if labels really arrive sooner."
        )
    history = [records[t.number] for t in study.trials if t.number in records]
    # Feasible first, then the score; the earliest trial wins a tie.
    best = max(
        history,
        key=lambda r: (r["feasible"], r["score"] if not math.isnan(r["score"]) else -math.inf),
    )
    return SearchResult(best["params"], float(best["score"]), history, best["number"], rules)
