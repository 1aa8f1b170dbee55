"""Performance alerts do not go blind when the model's out-of-time AUC was not measured (its
holdout held no fraud, as on an adaptive world whose training period saw one pattern): they
fall back to the validation AUC, then to an absolute floor, and say which one they used; with
no reference at all the monitor says so instead of staying silent."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from modelminder.errors import MonitorError
from modelminder.model.card import ModelCard, Scores
from modelminder.monitoring.config import MonitorConfig
from modelminder.monitoring.findings import performance
from modelminder.registry.store import ModelRecord

DAY = 86_400_000_000
MEASURED = Scores(0.93, 0.4, 0.6, 0.01, 20_000.0, 400.0)  # a training estimate with fraud
NO_FRAUD = Scores(rows=6_000.0, positives=0.0)  # AUC NaN: a holdout without fraud


def _record(oot: Scores, validation: Scores) -> ModelRecord:
    card = ModelCard.example()
    scores = replace(card.report.scores, oot=oot, validation=validation)
    meta = replace(card, report=replace(card.report, scores=scores)).to_json()
    return ModelRecord("v7", 0, "accepted", (), "x", meta, "test")


def _served(separation: float, days: int = 6, per_day: int = 5000) -> tuple[pl.DataFrame, ...]:
    """Served scores and their (all known) outcomes, 2% fraud: ``separation`` is how far the
    frauds' log-odds score above the rest (0.25: AUC about 0.57; 3: about 0.97)."""
    rng = np.random.default_rng(5)
    n = days * per_day
    y = (rng.random(n) < 0.02).astype(float)
    score = 1 / (1 + np.exp(-(-4 + separation * y + rng.normal(size=n))))
    ts = np.repeat(np.arange(days) * DAY, per_day) + rng.integers(0, DAY, n)
    ids = [f"e{i}" for i in range(n)]
    part = pl.DataFrame(
        {"event_id": ids, "ts": ts, "window_start": ts // DAY * DAY, "score": score}
    )
    outcome = pl.DataFrame({"event_id": ids, "outcome": y, "outcome_known_at": ts + 30 * DAY})
    return part, outcome


def test_a_model_without_an_out_of_time_auc_is_judged_against_its_validation_auc() -> None:
    part, outcome = _served(separation=0.25)
    notes: list[str] = []
    rows, alerts = performance(
        part, outcome, _record(NO_FRAUD, MEASURED), "v7", MonitorConfig(), notes
    )
    assert len(rows) == 6 and alerts, "a collapsed model must raise performance alerts"
    for a in alerts:
        assert a.kind == "performance" and a.severity == "severe"
        assert a.evidence["reference"] == "validation"
        assert a.evidence["reference_auc"] == 0.93
        assert a.evidence["auc"] < 0.7
        assert "0.930 on validation at training" in a.action
        assert "out-of-time holdout held no fraud" in a.action
        assert "out_of_time_auc" not in a.evidence
    assert notes == [
        "Model v7's out-of-time AUC was not measured at training (its holdout held 0 fraud "
        "among 6,000 events); its measured AUC is judged against 0.930 on validation at "
        "training."
    ]


def test_with_neither_estimate_the_floor_judges_and_a_good_model_passes_it() -> None:
    record = _record(NO_FRAUD, Scores())
    part, outcome = _served(separation=0.25)
    notes: list[str] = []
    _, alerts = performance(part, outcome, record, "v7", MonitorConfig(), notes)
    assert alerts
    for a in alerts:
        assert (a.evidence["reference"], a.evidence["reference_auc"]) == ("floor", 0.75)
        assert a.evidence["auc"] < 0.75 - 3 * a.evidence["standard_error"]
        assert "the floor of 0.750 (perf_floor_auc" in a.action
        assert "worse than the floor allows" in a.action
    assert "judged against the floor of 0.750 (perf_floor_auc)" in notes[0]
    # A model that separates fraud well stays clear of the floor.
    good, good_outcome = _served(separation=3.0)
    assert performance(good, good_outcome, record, "v7", MonitorConfig())[1] == []
    # The floor is a setting: at 0.5 (just above chance) the weak model passes too.
    assert performance(part, outcome, record, "v7", MonitorConfig(perf_floor_auc=0.51))[1] == []


def test_with_no_reference_at_all_the_monitor_says_so() -> None:
    part, outcome = _served(separation=0.25)
    notes: list[str] = []
    rows, alerts = performance(
        part, outcome, _record(NO_FRAUD, Scores()), "v7", MonitorConfig(perf_floor_auc=None), notes
    )
    assert alerts == [] and len(rows) == 6  # the windows are still measured and shown
    [note] = notes
    assert "Model v7" in note and "perf_floor_auc=None" in note
    assert "raises no alert" in note and "Set perf_floor_auc" in note


def test_a_measured_out_of_time_auc_stays_the_reference_and_adds_no_note() -> None:
    part, outcome = _served(separation=0.25)
    notes: list[str] = []
    _, alerts = performance(
        part, outcome, _record(MEASURED, MEASURED), "v7", MonitorConfig(), notes
    )
    assert alerts and notes == []
    for a in alerts:
        assert a.evidence["reference"] == "out_of_time"
        assert a.evidence["reference_auc"] == a.evidence["out_of_time_auc"] == 0.93
        assert "against 0.930 out of time at training: the model no longer separates" in a.action


@pytest.mark.parametrize("floor", [0.5, 1.0, 1.3, -0.2, math.nan, "0.8", True])
def test_a_bad_floor_is_refused_with_its_name_and_value(floor: object) -> None:
    config = MonitorConfig(perf_floor_auc=floor)  # type: ignore[arg-type]
    with pytest.raises(MonitorError, match=r"'perf_floor_auc' must be an AUC above 0\.5") as e:
        config.check()
    assert repr(floor) in str(e.value) and "or None" in str(e.value)
