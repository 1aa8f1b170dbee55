"""The review sample: two-phase propensities (queued x reviewed before the budget ran out),
chargebacks of expired items, unsure verdicts; and the drift and disagreement policies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from modelminder.events.log import EventLog
from modelminder.events.predictions import Prediction
from modelminder.events.schema import EventSchema
from modelminder.project import ReviewConfig
from modelminder.review.policies import DriftTarget, draw
from modelminder.review.queue import DAY_US, ReviewQueue
from modelminder.review.sample import review_sample

NOW = 1_780_000_000_000_000 - 1_780_000_000_000_000 % DAY_US + 3_600_000_000  # 01:00 UTC
CFG = ReviewConfig(exploration_rate=0.0, uncertain_rate=1.0, uncertain_band=0.05,
                   overlap_rate=0.0, daily_budget=1000)  # fmt: skip


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    with EventLog.open(tmp_path / "log.db", EventSchema({"card_id": "str"})) as lg:
        yield lg


def _fill(queue: ReviewQueue, n: int, score: float = 0.81, decision: str = "block") -> None:
    served = [Prediction(f"e{i}", NOW, "v1", "champion", score, decision, 0, [0.0], [])
              for i in range(n)]  # fmt: skip
    queue.consider(served, {p.event_id: {"ts": NOW} for p in served}, now=NOW)


def test_propensity_is_queued_times_the_priority_sample_share(log: EventLog) -> None:
    queue = ReviewQueue(log, CFG)
    served = [
        Prediction(f"e{i}", NOW, "v1", "champion", s, "review", 0, [0.0], [])
        for i, s in enumerate([0.19, 0.2, 0.21, 0.22, 0.78, 0.79, 0.8, 0.81, 0.18, 0.17])
    ]
    queue.consider(served, {p.event_id: {"ts": NOW} for p in served}, now=NOW)
    order = queue.items(now=NOW, limit=100)  # claim order
    for item in order[:6]:  # six reviewed; the four others stay open
        claimed = queue.claim("ann", now=NOW + 1)
        assert claimed.item_id == item.item_id  # the queue's own order
        queue.label(claimed.item_id, "ann", "legit", now=NOW + 2)
    sample = review_sample(queue, now=NOW + 3)
    tau = max(i.order for i in order[6:])
    expected = {i.event_id: i.propensity * min(1.0, i.priority / tau) for i in order[:6]}
    got = dict(sample.items.select("event_id", "propensity").iter_rows())
    assert got == pytest.approx(expected)
    assert (sample.queued, sample.by_review, sample.unobserved, sample.outside) == (10, 6, 4, 0)
    assert all(p < 1.0 for p in got.values())  # nobody was sure to be reviewed


def test_a_day_reviewed_in_full_keeps_the_queue_probability(log: EventLog) -> None:
    queue = ReviewQueue(log, CFG)
    _fill(queue, 3)
    for _ in range(3):
        item = queue.claim("ann", now=NOW + 1)
        queue.label(item.item_id, "ann", "fraud", now=NOW + 2)
    sample = review_sample(queue, now=NOW + 3)
    assert sample.items.get_column("propensity").to_list() == [1.0, 1.0, 1.0]
    assert sample.items.get_column("label").to_list() == [1, 1, 1]


def test_chargebacks_enter_above_the_threshold_and_unsure_is_counted(log: EventLog) -> None:
    queue = ReviewQueue(log, CFG)
    _fill(queue, 6)
    order = queue.items(now=NOW, limit=100)
    top, unsure, low = order[0], order[1], order[-1]
    log.append_label_rows(  # chargebacks arrive for the best and the worst item
        [{"event_id": e.event_id, "is_fraud": 1.0, "label_ts": NOW + 5, "source": "chargeback"}
         for e in (top, low)],
        received_at_us=NOW + 5,
    )  # fmt: skip
    item = queue.claim("ann", now=NOW + 6)
    assert item.item_id == unsure.item_id  # the top item expired: nobody needs to review it
    queue.label(item.item_id, "ann", "unsure", now=NOW + 7)
    sample = review_sample(queue, now=NOW + 8)
    assert sample.items.select("event_id", "label", "source").rows() == [(top.event_id, 1, "other")]
    assert (sample.unsure, sample.outside, sample.unobserved) == (1, 1, 3)


def test_drift_and_disagreement_policies_queue_with_their_rates(log: EventLog) -> None:
    cfg = ReviewConfig(exploration_rate=0.0, uncertain_rate=0.0, drift_rate=0.5,
                       disagreement_rate=0.5, overlap_rate=0.0)  # fmt: skip
    queue = ReviewQueue(log, cfg)
    queue.drift_targets = (DriftTarget("amount", 0, 0.0, 100.0),)
    served = [
        Prediction(
            f"e{i}", NOW, "v1", "champion", 0.1, "approve", 0, [500.0 if i % 2 else 50.0], []
        )
        for i in range(400)
    ]
    shadow = {p.event_id: "review" if i % 3 == 0 else "approve" for i, p in enumerate(served)}
    queue.consider(served, {p.event_id: {"ts": NOW} for p in served}, now=NOW, shadow=shadow)
    items = {i.event_id: i for i in queue.items(now=NOW, limit=1000)}
    for i, p in enumerate(served):
        drifted, differs = i % 2 == 1, i % 3 == 0
        chosen = (drifted and draw(p.event_id, "drift") < 0.5) or (
            differs and draw(p.event_id, "disagreement") < 0.5
        )
        assert (p.event_id in items) == chosen
        if chosen:
            expected = 1.0 - (1.0 - 0.5 * drifted) * (1.0 - 0.5 * differs)
            assert items[p.event_id].propensity == pytest.approx(expected)
            assert ("drift" in items[p.event_id].reasons) <= drifted
    assert {"drift", "disagreement"} <= {r for i in items.values() for r in i.reasons}


def test_the_overlap_sample_goes_to_a_second_reviewer_and_agreement_is_reported(
    log: EventLog,
) -> None:
    cfg = ReviewConfig(exploration_rate=0.0, overlap_rate=1.0, daily_budget=100)
    queue = ReviewQueue(log, cfg)
    _fill(queue, 2)
    first = queue.claim("ann", now=NOW)
    queue.label(first.item_id, "ann", "fraud", now=NOW + 1)
    assert queue.get(first.item_id, now=NOW + 2).status == "open"  # waits for a second look
    again = queue.claim("ann", now=NOW + 2)
    assert again.item_id != first.item_id  # ann never gets her own item back
    queue.label(again.item_id, "ann", "fraud", now=NOW + 3)
    second = queue.claim("bob", now=NOW + 4)
    queue.label(second.item_id, "bob", "legit", now=NOW + 5)
    assert queue.get(second.item_id, now=NOW + 6).status == "closed"
    agreement = queue.stats(now=NOW + 6)["agreement"]
    assert agreement == {"items": 1, "agreeing": 0, "rate": 0.0}
    labels = log.read("labels").filter(pl.col("event_id") == second.event_id)
    assert labels.select("revision", "reviewer").rows() == [(0, "ann"), (1, "bob")]
