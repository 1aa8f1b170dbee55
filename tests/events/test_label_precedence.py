"""Label precedence, defined once (events.outcomes) and followed by the log and the features.

* outcomes: the highest-ranked source wins (a chargeback outranks a review), then the latest
  known, then the latest logged -- so a reviewer's correction replaces their first verdict;
* label-aware features: each event's first known label, once;
* the log: a correction is a new row (the next revision), a re-sent label changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
import polars as pl
from hypothesis import given, settings

from modelminder.events.log import EventLog
from modelminder.events.outcomes import first_known, known_labels
from modelminder.events.schema import EventSchema

SCHEMA = EventSchema({"card_id": "str"})


def _labels(rows: list[tuple[str, float, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["event_id", "is_fraud", "known_at", "source"], orient="row")


def test_a_chargeback_outranks_a_review_whatever_the_order() -> None:
    review_first = _labels([("a", 0.0, 1, "review"), ("a", 1.0, 5, "chargeback")])
    review_last = _labels([("a", 1.0, 1, "chargeback"), ("a", 0.0, 5, "review")])
    for labels in (review_first, review_last):
        won = known_labels(labels, 9, "is_fraud").row(0, named=True)
        assert won["value"] == 1.0 and won["first_known_at"] == 1
    # Before the chargeback is known, the review is all there is.
    assert known_labels(review_first, 3, "is_fraud").get_column("value").to_list() == [0.0]


def test_a_correction_replaces_the_first_verdict() -> None:
    labels = _labels([("a", 1.0, 1, "review"), ("a", 0.0, 4, "review")])
    assert known_labels(labels, 9, "is_fraud").get_column("value").to_list() == [0.0]
    assert known_labels(labels, 2, "is_fraud").get_column("value").to_list() == [1.0]


def test_features_count_the_first_known_label_once() -> None:
    labels = _labels([("a", 0.0, 7, "review"), ("a", 1.0, 3, "chargeback"), ("b", 1.0, 5, "x")])
    assert first_known(labels).select("event_id", "known_at").rows() == [("a", 3), ("b", 5)]


LABELS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([0.0, 1.0]),
        st.integers(0, 5),
        st.sampled_from(["review", "chargeback", "report"]),
    ),
    max_size=12,
)


@given(LABELS, st.integers(0, 6))
@settings(max_examples=200, deadline=None)
def test_the_rules_match_their_definition(
    rows: list[tuple[str, float, int, str]], as_of: int
) -> None:
    labels = _labels(rows) if rows else _labels([]).cast({"known_at": pl.Int64})
    won = {r["event_id"]: r["value"] for r in known_labels(labels, as_of, "is_fraud").to_dicts()}
    expected = {}
    for order, (e, v, k, s) in enumerate(rows):
        if k <= as_of:
            key = (s != "review", k, order)
            if e not in expected or key > expected[e][0]:
                expected[e] = (key, v)
    assert won == {e: v for e, (_, v) in expected.items()}
    first = {r["event_id"]: r["known_at"] for r in first_known(labels).to_dicts()}
    earliest: dict[str, int] = {}
    for e, _, k, _ in rows:
        earliest[e] = min(earliest.get(e, k), k)
    assert first == earliest


def test_the_log_keeps_corrections_and_ignores_resends(tmp_path: Path) -> None:
    with EventLog.open(tmp_path / "log.db", SCHEMA) as log:
        row = {"event_id": "a", "is_fraud": 1.0, "label_ts": 10, "source": "review",
               "reviewer": "ann"}  # fmt: skip
        assert log.append_label_rows([row, row], received_at_us=10) == [True, False]
        fixed = row | {"is_fraud": 0.0, "revision": 1, "reviewer": "bob", "note": "receipt"}
        assert log.append_label_rows([fixed], received_at_us=20) == [True]
        stored = log.read("labels").select("is_fraud", "revision", "reviewer", "note").rows()
        assert stored == [(1.0, 0, "ann", ""), (0.0, 1, "bob", "receipt")]
        # Features count the first known label; the outcome is the correction.
        assert log.feature_labels().get_column("revision").to_list() == [0]
        assert known_labels(log.read("labels"), 30, "is_fraud").get_column("value").to_list() == [
            0.0
        ]
