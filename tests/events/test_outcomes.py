"""The one label-outcome rule, at its edges (maturity boundary, label known exactly at the
cut-off, several labels, the two policies)."""

from __future__ import annotations

import polars as pl
import pytest

from modelminder.errors import TrainingError
from modelminder.events.outcomes import OUTCOME_COLUMNS, LabelPolicy, outcomes

DAY = 86_400_000_000
MATURITY = LabelPolicy(maturity="10d")
EXCLUDE = LabelPolicy("exclude", "10d")


def _labels(*rows: tuple[str, float, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "is_fraud": [r[1] for r in rows],
            "known_at": [r[2] for r in rows],
        },
        schema={"event_id": pl.String, "is_fraud": pl.Float64, "known_at": pl.Int64},
    )


def _one(ts: int, labels: pl.DataFrame, policy: LabelPolicy, as_of: int) -> dict[str, object]:
    events = pl.DataFrame({"event_id": ["e"], "ts": [ts]})
    out = outcomes(events, labels, policy, as_of=as_of, value="is_fraud")
    assert tuple(out.columns) == OUTCOME_COLUMNS
    return out.row(0, named=True)


def test_maturity_boundary_is_inclusive() -> None:
    none = _labels()
    at = _one(0, none, MATURITY, as_of=10 * DAY)
    before = _one(0, none, MATURITY, as_of=10 * DAY - 1)
    assert (at["outcome"], at["usable"], at["outcome_known_at"]) == (0, True, 10 * DAY)
    assert (before["outcome"], before["usable"]) == (None, False)


def test_label_known_exactly_at_as_of_counts_and_one_after_does_not() -> None:
    labels = _labels(("e", 1.0, 5 * DAY))
    assert _one(0, labels, MATURITY, as_of=5 * DAY)["outcome"] == 1
    assert _one(0, labels, MATURITY, as_of=5 * DAY - 1)["outcome"] is None


def test_early_positive_is_evidence_for_monitors_but_not_usable_for_training() -> None:
    row = _one(0, _labels(("e", 1.0, 2 * DAY)), MATURITY, as_of=3 * DAY)
    assert row["outcome"] == 1 and row["outcome_known_at"] == 2 * DAY
    assert row["usable"] is False  # immature: its unlabelled peers would be left out


def test_late_positive_after_maturity_is_usable_from_its_arrival() -> None:
    row = _one(0, _labels(("e", 1.0, 15 * DAY)), MATURITY, as_of=20 * DAY)
    assert (row["outcome"], row["usable"], row["usable_from"]) == (1, True, 15 * DAY)
    neg = _one(0, _labels(("e", 0.0, 15 * DAY)), MATURITY, as_of=20 * DAY)
    assert neg["usable_from"] == 10 * DAY  # a negative was usable once it matured


def test_latest_known_label_wins_and_first_arrival_dates_the_outcome() -> None:
    labels = _labels(("e", 1.0, 2 * DAY), ("e", 0.0, 4 * DAY))
    row = _one(0, labels, MATURITY, as_of=30 * DAY)
    assert (row["outcome"], row["outcome_known_at"], row["label_arrived_at"]) == (
        0,
        2 * DAY,
        4 * DAY,
    )
    # As of day 3 only the first was known.
    assert _one(0, labels, MATURITY, as_of=3 * DAY)["outcome"] == 1


def test_equal_known_times_resolve_by_log_order() -> None:
    labels = _labels(("e", 1.0, 2 * DAY), ("e", 0.0, 2 * DAY))
    assert _one(0, labels, MATURITY, as_of=30 * DAY)["outcome"] == 0


def test_exclude_uses_only_labelled_events_whatever_their_age() -> None:
    none = _labels()
    old = _one(0, none, EXCLUDE, as_of=100 * DAY)
    assert (old["outcome"], old["usable"]) == (None, False)
    young = _one(0, _labels(("e", 1.0, DAY)), EXCLUDE, as_of=2 * DAY)
    assert (young["outcome"], young["usable"], young["usable_from"]) == (1, True, DAY)


def test_policy_refuses_unknown_names() -> None:
    with pytest.raises(TrainingError, match="must be one of negative_after_maturity, exclude"):
        LabelPolicy("positive")
