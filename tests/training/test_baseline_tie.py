"""The baseline rule accepts a tie within the noise, and only a close one."""

from __future__ import annotations

from dataclasses import replace

from modelminder.model.card import ModelCard, Scores
from modelminder.training.gate import GateRules, judge


def _report(mine: float, base: float, se: float | None):  # type: ignore[no-untyped-def]
    report = ModelCard.example().report
    oot = report.scores.oot
    scores = replace(
        report.scores,
        oot=replace(oot, average_precision=mine),
        baseline_oot=Scores.of({**oot.to_json(), "average_precision": base}),
    )
    details = {} if se is None else {"baseline_gap": {"se": se, "boot": 200}}
    return replace(report, scores=scores, details=details)


def _check(report):  # type: ignore[no-untyped-def]
    return next(c for c in judge(report, GateRules()).checks if c.name == "beats_baseline")


def test_a_tie_within_the_noise_passes_and_says_so() -> None:
    # The first model of an adaptive world whose training saw one pattern: 0.880 vs 0.894.
    check = _check(_report(0.880, 0.894, se=0.012))
    assert check.passed and "tie within 0.020 is accepted" in check.message


def test_a_model_clearly_below_the_baseline_is_refused_however_noisy() -> None:
    # 25 frauds in the holdout: the standard error is large, but 0.12 below is not a tie.
    check = _check(_report(0.276, 0.396, se=0.112))
    assert not check.passed and "does not beat the logistic baseline" in check.message


def test_without_a_measured_standard_error_the_rule_is_strict() -> None:
    assert not _check(_report(0.880, 0.894, se=None)).passed
    assert _check(_report(0.90, 0.894, se=None)).passed


def _findings(feature: str, *, audited: bool, label_aware: list[str], median_days: float):  # type: ignore[no-untyped-def]
    from modelminder.training.report import findings

    report = {
        "single_feature": [{"feature": feature, "auc": 0.998}],
        "time_travel": {"checked_events": 500, "mismatched_features": []} if audited else None,
        "label_aware": label_aware,
        "duplicates": {"same_event_id": 0, "same_content": 0},
        "label_delay": {"positives": 100, "median_days": median_days},
        "gap": {"auc": 0.01, "trend_per_fold": 0.0},
    }
    return [f["kind"] for f in findings(report, 10_000)]


def test_a_too_good_feature_is_leakage_only_when_nothing_clears_it() -> None:
    # An event feature (amount, when all fraud is big-ticket) the audit cleared: a warning.
    assert _findings("amount_log", audited=True, label_aware=[], median_days=2.5) == ["warning"]
    # No audit ran: leakage.
    assert _findings("amount_log", audited=False, label_aware=[], median_days=2.5) == ["leakage"]
    # A label feature whose labels arrive days later: a warning; at the event's time: leakage.
    aware = ["merchant_chargebacks_7d"]
    assert _findings(aware[0], audited=True, label_aware=aware, median_days=2.5) == ["warning"]
    assert _findings(aware[0], audited=True, label_aware=aware, median_days=0.0) == ["leakage"]
