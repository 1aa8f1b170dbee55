"""The review sample: which queued items enter the selection-corrected metrics, and with
what probability.

An item's outcome can be known because a reviewer labelled it or because a label came by
another route (a chargeback expired the item); the label-outcome rule decides which wins
(:func:`modelminder.events.outcomes.known_labels`: a chargeback outranks a review, a
correction replaces the first verdict). Whether a queued item got a verdict before the budget
ran out is not random -- reviewers take items in priority-sampling order
(:func:`~.policies.order_key`, ``q = priority / u``) -- so the probability that enters the
estimate is two-phase::

    propensity = P(queued) * min(1, priority / tau_day)

where ``tau_day`` is the largest key among the items of the same stream (exploration-only or
targeted: each has its share of the budget) queued that day whose outcome is still unknown
(never reviewed, skipped, still leased): every item with a key above it had its outcome
observed, which is exactly a priority sample of the day's queue with threshold ``tau_day``
(Duffield, Lund and Thorup 2007). A day whose every item was observed has ``tau = 0`` and its
items keep ``P(queued)``. Observed items with a key at or below ``tau`` (an earlier item
reviewed before a higher-keyed one arrived) are left out of the corrected
numbers and counted as ``outside``; items a reviewer marked ``unsure`` are reviewed without a
label, counted as ``unsure`` (the estimate assumes they are like the rest of their day).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from modelminder.events.outcomes import known_labels
from modelminder.review.queue import DAY_US, ReviewQueue


@dataclass(frozen=True)
class ReviewSample:
    """The corrected metrics' input (``items``: ``event_id, flagged, label, propensity,
    source``) and what was left out, by cause."""

    items: pl.DataFrame
    queued: int
    by_review: int  # items whose outcome came from a review
    by_other_source: int  # ... from another source (e.g. an expired item's chargeback)
    unsure: int
    outside: int
    unobserved: int


def review_sample(
    queue: ReviewQueue, *, now: int, labels: pl.DataFrame | None = None
) -> ReviewSample:
    """The sample of ``queue`` as of ``now`` (see the module docstring); ``labels`` is the
    log's labels topic when the caller has read it already (else it is read here)."""
    found = queue.items(now=now, limit=2**62)
    log = queue.log
    value = log.schema.label
    schema = {"event_id": pl.String, "flagged": pl.Boolean, "label": pl.Int8,
              "propensity": pl.Float64, "source": pl.String}  # fmt: skip
    if not found:
        return ReviewSample(pl.DataFrame(schema=schema), 0, 0, 0, 0, 0, 0)
    ids = [i.event_id for i in found]
    labels = (log.read("labels") if labels is None else labels).filter(
        pl.col("event_id").is_in(ids)
    )
    known = known_labels(labels, now, value).rename({"value": "label"})
    winners = (
        labels.filter(pl.col("known_at") <= now)
        .join(known.select("event_id", "label"), on="event_id")
        .filter(pl.col(value) == pl.col("label"))
        .group_by("event_id")
        .agg((pl.col("source") != "review").any().alias("other"))
    )
    outcome = {r[0]: int(r[1] > 0.5) for r in known.select("event_id", "label").iter_rows()}
    other = dict(winners.iter_rows())
    unsure = {i.item_id for i in found if i.status == "closed" and i.event_id not in outcome}
    tau: dict[tuple[int, str], float] = {}
    for i in found:
        if i.event_id not in outcome and i.item_id not in unsure:
            key = (i.created_at // DAY_US, i.stream)
            tau[key] = max(tau.get(key, 0.0), i.order)
    rows = []
    outside = 0
    for i in found:
        if i.event_id not in outcome:
            continue
        t = tau.get((i.created_at // DAY_US, i.stream), 0.0)
        if t > 0.0 and i.order <= t:
            outside += 1
            continue
        second = 1.0 if t == 0.0 else min(1.0, i.priority / t)
        rows.append(
            (i.event_id, i.decision != "approve", outcome[i.event_id], i.propensity * second,
             "other" if other.get(i.event_id) else "review")
        )  # fmt: skip
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    by_other = int((frame.get_column("source") == "other").sum())
    unobserved = sum(1 for i in found if i.event_id not in outcome and i.item_id not in unsure)
    return ReviewSample(
        frame, len(found), frame.height - by_other, by_other, len(unsure), outside, unobserved
    )
