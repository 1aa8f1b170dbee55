"""The gate: rules a model must pass before it may become champion.

A model that fails is still registered, as *rejected*, with the reasons; promoting it needs an
explicit, recorded override. Rules (all configurable):

* the train-vs-validation AUC gap is at most ``max_gap_auc`` (overfitting; boosted trees
  score close to 1.0 in-sample, so the default allows 0.10);
* the out-of-time AUC is at least ``min_oot_auc``;
* no leakage findings (a single feature that is too good to be true, a feature that changes
  when later events are removed, an event in both training and validation);
* the model beats the simple baseline (logistic regression, same folds) on the out-of-time
  average precision by at least ``baseline_margin``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelminder.errors import TrainingError
from modelminder.model.card import Check, GuardReport, Verdict

__all__ = ["Check", "GateRules", "Verdict", "judge"]


@dataclass(frozen=True)
class GateRules:
    max_gap_auc: float = 0.10
    min_oot_auc: float = 0.70
    require_no_leakage: bool = True
    must_beat_baseline: bool = True
    baseline_margin: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_gap_auc", "min_oot_auc", "baseline_margin"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise TrainingError(
                    f"Gate rule '{name}' must be a number in [0, 1]. Got {value!r}."
                )


def judge(report: GuardReport, rules: GateRules) -> Verdict:
    """Apply ``rules`` to a guard report (see :mod:`modelminder.training.report`).

    Examples
    --------
    >>> from modelminder.model.card import ModelCard
    >>> report = ModelCard.example().report
    >>> judge(report, GateRules()).summary()  # doctest: +ELLIPSIS
    'PASSED: train-vs-validation AUC gap 0.020 (max 0.100); out-of-time AUC 0.900 ...'
    >>> judge(report, GateRules(min_oot_auc=0.95)).reasons
    ['out-of-time AUC 0.900 (min 0.950)']
    """
    s = report.scores
    checks: list[Check] = []
    gap = report.gap.auc
    checks.append(
        Check(
            "overfitting",
            gap,
            rules.max_gap_auc,
            not math.isnan(gap) and gap <= rules.max_gap_auc,
            f"train-vs-validation AUC gap {gap:.3f} (max {rules.max_gap_auc:.3f})",
        )
    )
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
        ok = not math.isnan(mine) and (math.isnan(base) or mine >= base + rules.baseline_margin)
        checks.append(
            Check(
                "beats_baseline",
                mine - base if not math.isnan(base) else math.nan,
                rules.baseline_margin,
                ok,
                f"out-of-time average precision {mine:.3f} vs baseline {base:.3f}"
                + ("" if ok else " (does not beat the logistic baseline)"),
            )
        )
    return Verdict(all(c.passed for c in checks), tuple(checks))
