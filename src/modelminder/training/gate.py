"""The gate: rules a model must pass before it may become champion.

A model that fails is still registered, as *rejected*, with the reasons; promoting it needs an
explicit, recorded override. Rules (all configurable in :class:`GateRules`):

* ``overfitting`` -- **the lab estimate holds in production**: the purged walk-forward
  validation AUC may exceed the out-of-time AUC by at most the tolerance
  ``max(gap_floor_auc, gap_z * sqrt(se_validation**2 + se_oot**2))`` (Hanley-McNeil standard
  errors, :func:`auc_standard_error`). A validation estimate that falls short out of time
  by more than its own uncertainty is what "will disappoint in production" means. An
  out-of-time (or validation) AUC that cannot be measured -- no fraud in the holdout --
  **fails** this rule, and the message says so: an estimate that cannot be checked has
  not been shown to hold (the ``out_of_time`` rule fails on it too);
* ``out_of_time`` -- the out-of-time AUC is at least ``min_oot_auc``;
* ``leakage`` -- no leakage findings (a single feature that is too good to be true, a feature
  that changes when later events are removed, an event in both training and validation);
* ``beats_baseline`` -- the model beats the simple baseline (logistic regression, same folds)
  on the out-of-time average precision by at least ``baseline_margin``; a tie is accepted
  within ``gap_z`` bootstrap standard errors of the paired difference, at most
  ``baseline_tie`` (0.02) below the baseline: on an easy problem (one fraud pattern that a
  linear model separates) both score alike, and refusing the model for noise would leave no
  champion, while a model clearly below the baseline is still refused.

Information, not a rule: ``in_sample_gap``, the train-vs-validation AUC gap. Boosted trees
score about 1.0 on their own training rows whatever the problem, so on a problem whose best
achievable AUC is 0.8 a rule on this gap would reject every boosted model (it rejected one whose
out-of-time score matched its validation estimate: in-sample 1.000, validation 0.894,
out-of-time 0.901). The verdict still prints it, and says when it exceeds ``max_gap_auc``.

Why ``gap_z = 2`` and ``gap_floor_auc = 0.02``: the rule is one-sided (only a validation
estimate *above* production is a problem), so z = 2 falsely rejects about 2% of honest models
if the standard errors were exact. They are not: Hanley-McNeil treats every positive as
independent, but fraud comes in bursts per card, so the real uncertainty is larger -- and on a
large holdout (1.75M events) the standard errors shrink to ~0.003, where ordinary drift between
the validation period and the holdout (a change in the fraud mix moves AUC by ~0.01) would
reject sound models. The floor keeps that drift-sized difference from counting as overfitting;
a larger shortfall is one a fraud team notices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelminder.errors import TrainingError
from modelminder.metrics import auc_standard_error
from modelminder.model.card import Check, GuardReport, Scores, Verdict

__all__ = [
    "Check",
    "GateRules",
    "Verdict",
    "auc_standard_error",
    "auc_tolerance",
    "judge",
    "scores_standard_error",
]


@dataclass(frozen=True)
class GateRules:
    """The gate's thresholds (validated on creation).

    Parameters
    ----------
    max_gap_auc
        The in-sample (train-vs-validation) AUC gap above which the verdict's information line
        calls it large. Information only since issue 13 (kept, so code that sets it still runs).
    min_oot_auc
        Smallest acceptable out-of-time AUC.
    gap_floor_auc
        Smallest tolerance of the lab-vs-production rule, in AUC.
    gap_z
        Standard errors of tolerance of the lab-vs-production rule (and of the search's
        last-fold rule and the validation trend finding).
    require_no_leakage, must_beat_baseline, baseline_margin
        The leakage and baseline rules.
    """

    max_gap_auc: float = 0.10
    min_oot_auc: float = 0.70
    require_no_leakage: bool = True
    must_beat_baseline: bool = True
    baseline_margin: float = 0.0
    gap_floor_auc: float = 0.02
    gap_z: float = 2.0
    baseline_tie: float = 0.02  # beats_baseline accepts a tie this close (within 2 SE)

    def __post_init__(self) -> None:
        for name in (
            "max_gap_auc", "min_oot_auc", "baseline_margin", "gap_floor_auc", "baseline_tie"
        ):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise TrainingError(
                    f"Gate rule '{name}' must be a number in [0, 1]. Got {value!r}."
                )
        z = self.gap_z
        if isinstance(z, bool) or not isinstance(z, int | float) or not 0.0 < z <= 10.0:
            raise TrainingError(
                f"Gate rule 'gap_z' must be a number of standard errors in (0, 10], like 2. "
                f"Got {z!r}."
            )


def scores_standard_error(s: Scores) -> float:
    """Hanley-McNeil standard error of ``s.auc`` from its row and positive counts."""
    positives = int(s.positives)
    return auc_standard_error(s.auc, positives, int(s.rows) - positives)


def auc_tolerance(se_a: float, se_b: float, rules: GateRules) -> float:
    """How far one AUC may fall below another before it counts: ``max(gap_floor_auc,
    gap_z * sqrt(se_a**2 + se_b**2))`` (the floor alone when an error is NaN).

    Examples
    --------
    >>> round(auc_tolerance(0.03, 0.04, GateRules()), 3)  # 2 x 0.05
    0.1
    >>> auc_tolerance(0.001, 0.001, GateRules())  # large sets: the floor
    0.02
    """
    combined = math.hypot(se_a, se_b)
    if math.isnan(combined):
        return rules.gap_floor_auc
    return max(rules.gap_floor_auc, rules.gap_z * combined)


def _lab_vs_production(s: Scores, o: Scores, rules: GateRules) -> Check:
    """Validation (``s``) against out-of-time (``o``); see the module docstring."""
    v, oot = s.auc, o.auc
    if math.isnan(v) or math.isnan(oot):
        which, bad = ("out-of-time", o) if math.isnan(oot) else ("validation", s)
        message = (
            f"{which} AUC is not measurable ({int(bad.positives):,} positives in "
            f"{int(bad.rows):,} rows), so the validation AUC {v:.3f} cannot be checked against "
            f"the out-of-time AUC {oot:.3f}: fails (hold out a longer period with --holdout, or "
            "wait for more labels)"
        )
        return Check("overfitting", v - oot, rules.gap_floor_auc, False, message)
    se_v, se_o = scores_standard_error(s), scores_standard_error(o)
    tol = auc_tolerance(se_v, se_o, rules)
    gap = v - oot
    how = (
        f"tolerance {tol:.3f} = max(floor {rules.gap_floor_auc:.3f}, {rules.gap_z:g} x "
        f"combined SE {math.hypot(se_v, se_o):.3f})"
    )
    if gap <= tol:
        message = (
            f"validation AUC {v:.3f} vs out-of-time AUC {oot:.3f}: lab-vs-production gap "
            f"{gap:+.3f} ({how})"
        )
        return Check("overfitting", gap, tol, True, message)
    message = (
        f"validation AUC {v:.3f} is {gap:.3f} above the out-of-time AUC {oot:.3f} ({how}): the "
        "lab estimate does not hold out of time"
    )
    return Check("overfitting", gap, tol, False, message)


def _in_sample(report: GuardReport, rules: GateRules) -> Check:
    gap = report.gap.auc
    if math.isnan(gap):
        text = "in-sample AUC gap not measurable"
    elif gap > rules.max_gap_auc:
        text = (
            f"in-sample (train-vs-validation) AUC gap {gap:.3f} is above {rules.max_gap_auc:.3f}: "
            "the model fits its training rows much better than new ones (usual for boosted "
            "trees; not a rule -- the lab-vs-production check decides)"
        )
    else:
        text = f"in-sample (train-vs-validation) AUC gap {gap:.3f}"
    return Check("in_sample_gap", gap, rules.max_gap_auc, True, text, informational=True)


def judge(report: GuardReport, rules: GateRules) -> Verdict:
    """Apply ``rules`` to a guard report (see :mod:`modelminder.training.report`).

    Examples
    --------
    >>> from dataclasses import replace
    >>> from modelminder.model.card import ModelCard, ScoreSet
    >>> report = ModelCard.example().report  # AUC 0.900 everywhere, 20 positives in 1000
    >>> judge(report, GateRules()).summary()  # doctest: +ELLIPSIS
    'PASSED: validation AUC 0.900 vs out-of-time AUC 0.900: lab-vs-production gap +0.000 ...'
    >>> judge(report, GateRules(min_oot_auc=0.95)).reasons
    ['out-of-time AUC 0.900 (min 0.950)']
    >>> s = report.scores
    >>> worse = replace(report, scores=ScoreSet(s.train, s.validation, replace(s.oot, auc=0.7)))
    >>> judge(worse, GateRules(min_oot_auc=0.6)).reasons  # doctest: +ELLIPSIS
    ['validation AUC 0.900 is 0.200 above the out-of-time AUC 0.700 (tolerance 0.1...']
    """
    s = report.scores
    checks: list[Check] = [_lab_vs_production(s.validation, s.oot, rules)]
    oot = s.oot.auc
    checks.append(
        Check(
            "out_of_time",
            oot,
            rules.min_oot_auc,
            not math.isnan(oot) and oot >= rules.min_oot_auc,
            f"out-of-time AUC {oot:.3f} (min {rules.min_oot_auc:.3f})",
        )
    )
    if rules.require_no_leakage:
        leaks = [f for f in report.findings if f.kind == "leakage"]
        checks.append(
            Check(
                "leakage",
                float(len(leaks)),
                0.0,
                not leaks,
                "no leakage findings"
                if not leaks
                else "leakage: " + "; ".join(f.message for f in leaks),
            )
        )
    if rules.must_beat_baseline and s.baseline_oot is not None:
        mine = s.oot.average_precision
        base = s.baseline_oot.average_precision
        # The paired difference's bootstrap standard error on the holdout (training.train):
        # a model that only ties the baseline within that noise is not refused for it.
        se = float((report.details.get("baseline_gap") or {}).get("se", 0.0) or 0.0)
        slack = min(rules.gap_z * se, rules.baseline_tie) if math.isfinite(se) else 0.0
        ok = not math.isnan(mine) and (
            math.isnan(base) or mine >= base + rules.baseline_margin - slack
        )
        noise = (
            f"; a tie within {slack:.3f} is accepted (min of {rules.gap_z:g} x {se:.3f} standard "
            f"error of the difference and {rules.baseline_tie:.3f})"
            if se
            and math.isfinite(se)
            and not math.isnan(base)
            and mine < base + rules.baseline_margin  # only when the tie was needed
            else ""
        )
        checks.append(
            Check(
                "beats_baseline",
                mine - base if not math.isnan(base) else math.nan,
                rules.baseline_margin,
                ok,
                f"out-of-time average precision {mine:.3f} vs baseline {base:.3f}{noise}"
                + ("" if ok else " (does not beat the logistic baseline)"),
            )
        )
    checks.append(_in_sample(report, rules))
    return Verdict(all(c.passed for c in checks), tuple(checks))
