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
from dataclasses import asdict, dataclass, field
from typing import Any

from modelminder.errors import TrainingError


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


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    passed: bool
    message: str


@dataclass(frozen=True)
class Verdict:
    passed: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}

    def summary(self) -> str:
        if self.passed:
            return "PASSED: " + "; ".join(c.message for c in self.checks)
        return "REJECTED: " + "; ".join(self.reasons)


def judge(report: dict[str, Any], rules: GateRules) -> Verdict:
    """Apply ``rules`` to a guard report (see :mod:`modelminder.training.report`)."""
    s = report["scores"]
    checks: list[Check] = []
    gap = report["gap"]["auc"]
    checks.append(
        Check(
            "overfitting",
            gap,
            rules.max_gap_auc,
            not math.isnan(gap) and gap <= rules.max_gap_auc,
            f"train-vs-validation AUC gap {gap:.3f} (max {rules.max_gap_auc:.3f})",
        )
    )
    oot = s["oot"]["auc"]
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
        leaks = [f for f in report["findings"] if f["kind"] == "leakage"]
        checks.append(
            Check(
                "leakage",
                float(len(leaks)),
                0.0,
                not leaks,
                "no leakage findings"
                if not leaks
                else "leakage: " + "; ".join(f["message"] for f in leaks),
            )
        )
    if rules.must_beat_baseline and s.get("baseline_oot") is not None:
        mine = s["oot"]["average_precision"]
        base = s["baseline_oot"]["average_precision"]
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
    return Verdict(all(c.passed for c in checks), checks)
