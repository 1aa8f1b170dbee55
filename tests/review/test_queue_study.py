"""The real queue, end to end, with simulated reviewers: are the corrected numbers right?

On the simulated card-fraud world a stand-in model scores every event; the real
:class:`~modelminder.review.queue.ReviewQueue` (SQLite log) queues them with its policies (a
2% exploration sample, must-review for blocks, the uncertain band); simulated reviewers claim
items in the queue's own order until the daily budget is spent and label them with errors
(sensitivity 0.92, specificity 0.99); most frauds also get a chargeback a few days later,
which expires items still waiting and outranks a review. :func:`review_sample` turns what
happened into propensities and :func:`estimate_review_metrics` into recall over all traffic.

``python -m tests.review.test_queue_study 100`` prints the numbers in docs/review-estimates.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import polars as pl
import pytest

from modelminder.events.log import EventLog
from modelminder.events.predictions import Prediction
from modelminder.events.schema import EventSchema
from modelminder.project import ReviewConfig
from modelminder.review.estimate import ReviewerAccuracy, estimate_review_metrics
from modelminder.review.queue import DAY_US, ReviewError, ReviewQueue
from modelminder.review.sample import review_sample
from modelminder.sim.world import WorldConfig, simulate

from .test_estimate import stand_in_score

SENSITIVITY, SPECIFICITY = 0.92, 0.99
THRESHOLDS = (0.5, 0.8)  # the stand-in model's review and block thresholds


@dataclass(frozen=True)
class Run:
    true_recall: float
    naive: tuple[float, float, float]
    corrected: tuple[float, float, float]
    reviewed: int
    expired_used: int
    outside: int
    queued: int
    traffic: int


def run(seed: int, *, budget: int = 180, days: int = 10, cards: int = 1500) -> Run:
    world = simulate(WorldConfig(days=days, cards=cards, seed=seed, schedule="steady"))
    events = world.events.join(world.truth, on="event_id", maintain_order="left")
    truth = events.get_column("is_fraud").to_numpy().astype(int)
    score = stand_in_score(events)  # large amounts, abroad, online: recall about 0.47
    decision = np.where(score >= 0.8, "block", np.where(score >= 0.5, "review", "approve"))
    ts = events.get_column("ts").dt.epoch("us").to_numpy()
    ids = events.get_column("event_id").to_list()
    rng = np.random.default_rng(50_000 + seed)
    # Chargebacks: 70% of frauds, 1 to 10 days after the event.
    charged = (truth == 1) & (rng.random(len(ids)) < 0.7)
    cb_at = ts + (rng.uniform(1.0, 10.0, len(ids)) * DAY_US).astype(np.int64)
    wrong = rng.random(len(ids)) < np.where(truth == 1, 1 - SENSITIVITY, 1 - SPECIFICITY)
    verdict = np.where(wrong, 1 - truth, truth)
    index = {e: k for k, e in enumerate(ids)}
    cfg = ReviewConfig(exploration_rate=0.02, uncertain_rate=0.3, uncertain_band=0.05,
                       overlap_rate=0.0, daily_budget=budget, exploration_share=0.35,
                       lease="15m")  # fmt: skip
    with TemporaryDirectory() as tmp:
        log = EventLog.open(Path(tmp) / "log.db", EventSchema({"card_id": "str"}))
        try:
            queue = ReviewQueue(log, cfg, THRESHOLDS)
            first = int(ts.min()) - int(ts.min()) % DAY_US
            sent = np.zeros(len(ids), bool)
            for d in range(days + 1):
                start, end = first + d * DAY_US, first + (d + 1) * DAY_US
                today = np.flatnonzero((ts >= start) & (ts < end))
                served = [
                    Prediction(ids[k], int(ts[k]), "v1", "champion", float(score[k]),
                               str(decision[k]), 0, [], [])
                    for k in today
                ]  # fmt: skip
                rows = {ids[k]: {"ts": int(ts[k])} for k in today}
                for hour in range(24):  # served in hourly batches
                    batch = [p for p in served if (p.served_at - start) // 3_600_000_000 == hour]
                    if batch:
                        queue.consider(batch, rows, now=batch[-1].served_at)
                due = np.flatnonzero(charged & ~sent & (cb_at < end))
                sent[due] = True
                if len(due):
                    log.append_labels(
                        pl.DataFrame({
                            "event_id": [ids[k] for k in due], "is_fraud": [1.0] * len(due),
                            "label_ts": [int(cb_at[k]) for k in due],
                            "source": ["chargeback"] * len(due),
                        }).with_columns(pl.from_epoch("label_ts", "us"))
                    )  # fmt: skip
                at = end - 3_600_000_000  # the reviewers work the last hour of the day
                for _ in range(budget):
                    try:
                        item = queue.claim("sim", now=at)
                    except ReviewError:
                        break
                    k = index[item.event_id]
                    queue.label(item.item_id, "sim", "fraud" if verdict[k] else "legit", now=at)
                    at += 1
            now = first + (days + 1) * DAY_US
            sample = review_sample(queue, now=now)
        finally:
            log.close()
    flagged = decision != "approve"
    est = estimate_review_metrics(
        sample.items, reviewer_accuracy=ReviewerAccuracy(SENSITIVITY, SPECIFICITY)
    )
    naive = estimate_review_metrics(sample.items).recall.naive
    r = est.recall.corrected
    return Run(
        float(np.sum(flagged & (truth == 1)) / np.sum(truth)),
        (naive.value, naive.low, naive.high),
        (r.value, r.low, r.high),
        sample.by_review,
        sample.by_other_source,
        sample.outside,
        sample.queued,
        len(ids),
    )


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return [run(seed) for seed in range(3)]  # ~20 s each; the doc's study has 60 seeds


def test_corrected_recall_covers_the_truth_and_naive_does_not(runs: list[Run]) -> None:
    covered = sum(r.corrected[1] <= r.true_recall <= r.corrected[2] for r in runs)
    naive_covered = sum(r.naive[1] <= r.true_recall <= r.naive[2] for r in runs)
    assert covered >= 2, runs  # 95% intervals (57 of 60 seeds in the doc's study)
    assert naive_covered == 0, runs
    assert all(r.naive[0] > r.true_recall + 0.2 for r in runs)  # biased upward, far
    # The budget bit: items were left unreviewed, and chargebacks entered the sample.
    assert all(r.reviewed < r.queued for r in runs)
    assert all(r.expired_used > 0 for r in runs)


if __name__ == "__main__":  # python -m tests.review.test_queue_study [seeds]
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    done = []
    for s in range(seeds):
        done.append(run(s))
        print(s, done[-1], flush=True)
    cov = np.mean([r.corrected[1] <= r.true_recall <= r.corrected[2] for r in done])
    ncov = np.mean([r.naive[1] <= r.true_recall <= r.naive[2] for r in done])
    bias = np.mean([r.corrected[0] - r.true_recall for r in done])
    nbias = np.mean([r.naive[0] - r.true_recall for r in done])
    width = np.mean([r.corrected[2] - r.corrected[1] for r in done])
    print(
        f"seeds {seeds}: corrected covers {cov:.0%}, mean error {bias:+.3f}, mean width "
        f"{width:.3f}; naive covers {ncov:.0%}, mean error {nbias:+.3f}"
    )
