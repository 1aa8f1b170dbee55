"""Guarded training, start to finish: folds, search, fold models, calibration, report, gate.

:func:`train_model` takes a :class:`~modelminder.training.dataset.TrainingSet` and returns the
model (the bagged fold models, calibrated), the guard report, the gate's verdict and the
reference statistics the monitors will compare live data with. Registering it is the caller's
job (``minder train`` does it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.durations import parse_duration
from modelminder.errors import TrainingError
from modelminder.events.log import EventLog
from modelminder.features.plan import Plan
from modelminder.metrics import average_precision, scores
from modelminder.model.card import Finding, Gap, GuardReport, Scores, ScoreSet
from modelminder.model.ensemble import Calibrator, Ensemble
from modelminder.model.reference import Reference
from modelminder.training import report as rep
from modelminder.training.dataset import TrainingSet
from modelminder.training.estimators import Estimator, FitData, make_estimator
from modelminder.training.gate import GateRules, Verdict, judge
from modelminder.training.search import (
    Recency,
    SearchResult,
    fit_folds,
    fold_scores,
    mean_ap,
    sample_rows,
    search,
)
from modelminder.training.splits import (
    SCHEMES,
    FoldPlan,
    PlanSettings,
    random_kfold,
    sufficient_folds,
    walk_forward,
)

FloatArray = npt.NDArray[np.float64]
Array = npt.NDArray[Any]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """Options of a guarded training run (validated on creation)."""

    estimator: str | Any = "lightgbm"
    trials: int = 10
    folds: int = 4
    holdout: float = 0.2
    embargo: str = "1d"
    scheme: str = "walk_forward"
    max_train_rows: int = 300_000
    seed: int = 0
    params: dict[str, Any] | None = None  # fixed parameters: no search
    baseline: bool = True
    # Also try a stack of the model and the logistic baseline; kept only if it scores better
    # on the out-of-time holdout.
    stack: bool = False
    # Weigh training rows by recency: a row this old at the cut-off (e.g. "30d") counts half,
    # one twice as old a quarter (None: every row counts the same). For retraining on a
    # drifting problem.
    recency_half_life: str | None = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise TrainingError(
                f"'scheme' must be one of {', '.join(SCHEMES)}. Got {self.scheme!r}."
            )
        if not isinstance(self.trials, int) or self.trials < 0:
            raise TrainingError(f"'trials' must be a whole number >= 0. Got {self.trials!r}.")
        if not isinstance(self.max_train_rows, int) or self.max_train_rows < 100:
            raise TrainingError(
                f"'max_train_rows' must be a whole number >= 100. Got {self.max_train_rows!r}."
            )
        parse_duration(self.embargo, what="'embargo'", allow_zero=True)
        if self.recency_half_life is not None:
            parse_duration(self.recency_half_life, what=_HALF_LIFE)
        make_estimator(self.estimator)  # raises on an unknown name

    @property
    def embargo_us(self) -> int:
        return parse_duration(self.embargo, what="'embargo'", allow_zero=True)

    def recency(self, data: TrainingSet) -> Recency | None:
        """The recency weights of ``data``'s rows (age from its cut-off), or None."""
        if self.recency_half_life is None:
            return None
        half_life = parse_duration(self.recency_half_life, what=_HALF_LIFE)
        return Recency(data.ts(), data.cutoff, half_life)


_HALF_LIFE = "'recency_half_life' (--recency-half-life)"


@dataclass
class TrainResult:
    model: Ensemble
    report: GuardReport
    verdict: Verdict
    fold_plan: FoldPlan
    search: SearchResult
    reference: Reference | None = None

    @property
    def metrics(self) -> ScoreSet:
        return self.report.scores


def make_fold_plan(data: TrainingSet, config: TrainConfig) -> FoldPlan:
    ts, known = data.ts(), data.known_at()
    wf = walk_forward(
        ts, known, n_folds=config.folds, holdout=config.holdout, embargo_us=config.embargo_us
    )
    if config.scheme == "random":
        return random_kfold(
            data.n, data.y(), n_folds=config.folds, holdout_rows=wf.holdout, seed=config.seed
        )
    return wf


def _learning_curve(
    est: Estimator,
    X: FloatArray,
    y: Array,
    plan: FoldPlan,
    params: dict[str, Any],
    cfg: TrainConfig,
    recency: Recency | None = None,
) -> list[dict[str, float]]:
    """Validation AP of the last fold when trained on the most recent 25/50/100% of its rows."""
    fold = plan.folds[-1]
    points = []
    rng = np.random.default_rng(cfg.seed)
    for share in (0.25, 0.5, 1.0):
        recent = fold.train[int(len(fold.train) * (1 - share)) :]
        if len(recent) < 50 or not 0 < int(y[recent].sum()) < len(recent):
            continue
        rows, w = sample_rows(recent, y, cfg.max_train_rows, rng, recency)
        fit_data = FitData(X[rows], y[rows], w, X[fold.valid], y[fold.valid])
        m = est.fit(fit_data, params, seed=cfg.seed)
        points.append(
            {
                "share": share,
                "rows": float(len(recent)),
                "valid_average_precision": average_precision(
                    y[fold.valid], m.predict(X[fold.valid])
                ),
            }
        )
    return points


def label_aware(plan: Plan) -> list[str]:
    """The features that read labels: label windows and what is computed from them."""
    from modelminder.features.dsl import Compute, LabelWindow

    aware: list[str] = []
    for f in plan.feature_set.features:
        if isinstance(f, LabelWindow) or (isinstance(f, Compute) and f.expr.names() & {*aware}):
            aware.append(f.name)
    return aware


def time_travel_audit(
    log: EventLog, plan: Plan, data: TrainingSet, *, sample: int = 20_000
) -> dict[str, Any]:
    """Replay the log only up to a cut offset and check the features of the events before the
    cut are unchanged: a feature that differs depends on data after its event."""
    from modelminder.logreplay import replay_log

    lo, hi = data.offsets()
    cut = lo + (hi - lo) // 2
    from_ts = int(data.ts().min())
    prefix = replay_log(log, plan, from_ts=from_ts, to_ts=data.cutoff, to_offset=cut)
    mine = data.frame.filter(data.frame.get_column("offset") <= cut)
    both = mine.select("event_id", *data.feature_names).join(
        prefix, on="event_id", how="inner", suffix="__prefix"
    )
    if both.height > sample:
        both = both.sample(sample, seed=0)
    mismatched = []
    for name in data.feature_names:
        a = both.get_column(name).to_numpy()
        b = both.get_column(f"{name}__prefix").to_numpy()
        if not np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True):
            mismatched.append(name)
    return {"cut_offset": cut, "checked_events": both.height, "mismatched_features": mismatched}


def monitor_reference(
    X: FloatArray,
    data: TrainingSet,
    rows: npt.NDArray[np.int64],
    scores_: FloatArray,
    log: EventLog | None,
    keys: Sequence[str] = (),
) -> Reference:
    """What the drift monitors compare live data with: the features and the
    out-of-sample scores of ``rows`` (time order), plus the event's low-cardinality text
    fields (at most 50 distinct values; entity keys are not categories)."""
    categorical: dict[str, list[Any]] = {}
    if log is not None:
        ids = data.frame.get_column("event_id").gather(rows)
        events = log.events_by_id(ids.to_list())
        events = pl.DataFrame({"event_id": ids}).join(events, on="event_id", how="left")
        for name, kind in log.schema.fields.items():
            if kind == "str" and name not in keys and events.get_column(name).n_unique() <= 50:
                categorical[name] = events.get_column(name).to_list()
    matrix = np.column_stack([X[rows], scores_])
    # One calibration chunk per day the rows cover: chunks as long as a (daily) window
    # measure the day-to-day variation a stable stream really has.
    ts = data.ts()[rows]
    days = int((ts.max() - ts.min()) // 86_400_000_000) + 1 if len(ts) else 1
    return Reference.build(
        matrix, [*data.feature_names, "score"], categorical, chunks=max(2, min(days, 60))
    )


def _try_stack(
    model: Ensemble,
    b_members: list[Any],
    X: FloatArray,
    y: Array,
    oof: FloatArray,
    b_oof: FloatArray,
    valid_rows: Array,
    hold: Array,
    say: Progress,
) -> tuple[Ensemble, dict[str, Any]]:
    """Fit a logistic stack of the model and the baseline on the out-of-fold scores; keep it
    only if it beats the bagged model's average precision on the out-of-time holdout."""
    from sklearn.linear_model import LogisticRegression

    from modelminder.model.ensemble import Stack, logit

    Z = np.column_stack([logit(oof[valid_rows]), logit(b_oof[valid_rows])])
    meta = LogisticRegression(max_iter=1000).fit(Z, y[valid_rows])
    n = len(model.members)
    stack = Stack(
        [(0, n), (n, n + len(b_members))],
        [float(w) for w in meta.coef_[0]],
        float(meta.intercept_[0]),
    )
    stacked = Ensemble(
        model.feature_names, [*model.members, *b_members], model.estimator, model.params,
        stack=stack,
    )  # fmt: skip
    stacked.calibrator = Calibrator.fit(meta.predict_proba(Z)[:, 1], y[valid_rows])
    mine = average_precision(y[hold], model.predict(X[hold]))
    theirs = average_precision(y[hold], stacked.predict(X[hold]))
    kept = not math.isnan(theirs) and theirs > mine
    say(
        f"stacking with the baseline: out-of-time AP {theirs:.4f} vs {mine:.4f} bagged -> "
        + ("kept" if kept else "discarded")
    )
    info = {"kept": kept, "oot_ap_stacked": theirs, "oot_ap_bagged": mine, "coef": stack.coef}
    return (stacked if kept else model), info


def train_model(
    data: TrainingSet,
    config: TrainConfig | None = None,
    rules: GateRules | None = None,
    *,
    log: EventLog | None = None,
    plan: Plan | None = None,
    progress: Progress | None = None,
    on_trial: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train, guard and judge a model on ``data`` (see the module docstring).

    ``progress`` receives a line per stage; ``on_trial(done, total, score)`` follows the
    search (for a progress bar).

    Examples
    --------
    A training set is usually built from the log (:func:`~modelminder.training.dataset.
    build_training_set`); here, 4,000 synthetic rows over 120 days where ``x`` predicts the
    label and ``noise`` does not:

    >>> from modelminder.events.outcomes import LabelPolicy
    >>> rng = np.random.default_rng(0); n = 4000; day = 86_400_000_000
    >>> x = rng.normal(size=n)
    >>> y = (rng.random(n) < 1 / (1 + np.exp(3 - 2 * x))).astype(np.int8)
    >>> ts = np.sort(rng.integers(0, 120 * day, n))
    >>> frame = pl.DataFrame({
    ...     "offset": np.arange(n), "event_id": [f"e{i}" for i in range(n)], "ts": ts,
    ...     "content_hash": np.arange(n, dtype=np.uint64), "label": y,
    ...     "label_known_at": ts + 30 * day, "labelled": y == 1,
    ...     "label_arrived_at": ts + day, "x": x, "noise": rng.normal(size=n)})
    >>> data = TrainingSet(frame, ["x", "noise"], int(ts.max()) + 1, LabelPolicy(), {})
    >>> result = train_model(data, TrainConfig(estimator="logistic", trials=0, folds=3))
    >>> result.verdict.passed, result.report.scheme, len(result.model.members)
    (True, 'walk_forward', 3)
    >>> bool(result.report.scores.oot.auc > 0.85)
    True
    """
    cfg = config or TrainConfig()
    rules = rules or GateRules()
    say = progress or (lambda _msg: None)
    X, y = data.X(), data.y()
    fold_plan = make_fold_plan(data, cfg)
    say("fold plan (" + fold_plan.scheme + "):\n  " + "\n  ".join(fold_plan.describe(data.ts())))
    say("  " + data.maturity_note())
    # Refuses too little data with the numbers and the remedy; merges small validation blocks.
    maturity = None if data.policy.unlabeled == "exclude" else data.policy.maturity
    checked = sufficient_folds(
        fold_plan, y, data.ts(), data.known_at(), cutoff=data.cutoff,
        settings=PlanSettings(cfg.folds, cfg.holdout, cfg.embargo, maturity, cfg.scheme),
    )  # fmt: skip
    if checked is not fold_plan:
        say("fold plan, merged:\n  " + "\n  ".join(checked.describe(data.ts())))
    fold_plan = checked
    est = make_estimator(cfg.estimator)
    recency = cfg.recency(data)
    if recency is not None:
        say(f"recency weights: a row {cfg.recency_half_life} older counts half")
    # The baseline is fitted first: its validation average precision is one of the search's
    # feasibility rules (never its holdout score: the search must not see the holdout).
    b_members: list[Any] = []
    b_model: Ensemble | None = None
    b_oof: FloatArray | None = None
    baseline_ap = None
    if cfg.baseline and est.name != "logistic":
        say("baseline: logistic regression on the same folds")
        base = make_estimator("logistic")
        b_members, b_oof, _ = fit_folds(
            base, X, y, fold_plan, base.default_params(), max_rows=cfg.max_train_rows,
            seed=cfg.seed, recency=recency,
        )  # fmt: skip
        baseline_ap = mean_ap(fold_scores(y, b_oof, fold_plan))
    if cfg.params is not None:
        found = SearchResult({**est.default_params(), **cfg.params}, math.nan, [], rules=rules)
    else:
        found = search(
            est, X, y, fold_plan, trials=cfg.trials, max_rows=cfg.max_train_rows, seed=cfg.seed,
            progress=lambda i, s: (
                on_trial(i, cfg.trials, s)
                if on_trial is not None
                else say(f"trial {i}/{cfg.trials}: validation AP {s:.4f}")
            ),
            rules=rules, baseline_ap=baseline_ap, recency=recency,
        )  # fmt: skip
        if found.trials:
            say(found.summary())
    say(f"parameters: {found.params}")
    members, oof, folds = fit_folds(
        est, X, y, fold_plan, found.params, max_rows=cfg.max_train_rows, seed=cfg.seed,
        recency=recency,
    )  # fmt: skip
    valid_rows = np.flatnonzero(~np.isnan(oof))
    model = Ensemble(data.feature_names, members, est.name, found.params)
    model.calibrator = Calibrator.fit(oof[valid_rows], y[valid_rows])
    hold = fold_plan.holdout
    oot = scores(y[hold], model.predict(X[hold])) if len(hold) else scores(y[:0], oof[:0])
    train_scores = {k: float(np.nanmean([f["train"][k] for f in folds])) for k in folds[0]["train"]}
    all_scores: dict[str, Any] = {
        "train": train_scores,
        "validation": scores(y[valid_rows], oof[valid_rows]),
        "oot": oot,
        "baseline_oot": None,
    }
    if b_members and len(hold):
        b_model = Ensemble(data.feature_names, b_members, "logistic", {})
        all_scores["baseline_oot"] = scores(y[hold], b_model.predict(X[hold]))
    stacking = None
    if cfg.stack and b_members and b_oof is not None and len(hold):
        model, stacking = _try_stack(model, b_members, X, y, oof, b_oof, valid_rows, hold, say)
        all_scores["oot"] = scores(y[hold], model.predict(X[hold]))
    say("report: learning curve, single-feature scores, audits")
    labelled = data.frame.get_column("labelled").to_numpy()
    details: dict[str, Any] = {
        "folds": folds,
        "learning_curve": _learning_curve(est, X, y, fold_plan, found.params, cfg, recency),
        "single_feature": rep.single_feature_section(X, y, data.feature_names, valid_rows),
        "time_travel": time_travel_audit(log, plan, data) if log and plan else None,
        "label_aware": label_aware(plan) if plan else [],
        "label_delay": rep.label_delay_section(
            data.ts(),
            data.frame.get_column("label_arrived_at").fill_null(0).to_numpy(),
            y,
            labelled,
            data.policy.maturity_us,
        ),
        "duplicates": rep.duplicates_section(
            data.frame.get_column("event_id").to_numpy(),
            data.frame.get_column("content_hash").to_numpy(),
            [(f.train, f.valid) for f in fold_plan.folds]
            + ([(np.concatenate([f.train for f in fold_plan.folds]), hold)] if len(hold) else []),
        ),
        "search": found.to_json(),
        "validation_trend": rep.validation_trend(
            folds, rules, in_time=fold_plan.scheme != "random"
        ),
        "recency_half_life": cfg.recency_half_life,
        "stacking": stacking,
        "baseline_gap": (
            rep.paired_ap_se(y[hold], model.predict(X[hold]), b_model.predict(X[hold]), cfg.seed)
            if b_model is not None and len(hold)
            else None
        ),
        "data": data.to_meta(),
    }
    gap = rep.gap_section(folds)
    base = all_scores["baseline_oot"]
    report = GuardReport(
        fold_plan.scheme,
        tuple(fold_plan.describe(data.ts())),
        ScoreSet(
            Scores.of(all_scores["train"]),
            Scores.of(all_scores["validation"]),
            Scores.of(all_scores["oot"]),
            None if base is None else Scores.of(base),
        ),
        Gap.from_json(gap),
        tuple(
            Finding(f["kind"], f["message"]) for f in rep.findings({**details, "gap": gap}, data.n)
        ),
        details=details,
    )
    verdict = judge(report, rules)
    report = replace(report, verdict=verdict)
    # The reference is the out-of-time holdout: the latest rows, scored out of sample, as the
    # live data will be. Too small a holdout falls back to the validated rows' OOF scores.
    if len(hold) >= 1000:
        ref_rows, ref_scores = hold, model.predict(X[hold])
    else:
        ref_rows, ref_scores = valid_rows, oof[valid_rows]
    keys = sorted({k for g in plan.window_groups for k in g.keys}) if plan else []
    reference = monitor_reference(X, data, np.asarray(ref_rows), ref_scores, log, keys)
    model.info = {"verdict": verdict.passed}
    return TrainResult(model, report, verdict, fold_plan, found, reference)
