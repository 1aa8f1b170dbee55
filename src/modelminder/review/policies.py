"""Which served events a human should look at, with what probability, and in what order.

Each policy gives an event a probability of being queued (0 when it does not apply):

* ``must_review`` -- the model blocked it: probability 1;
* ``uncertain`` -- its score is within ``uncertain_band`` of a decision threshold:
  ``uncertain_rate``;
* ``disagreement`` -- the shadow model decided otherwise than the champion:
  ``disagreement_rate``;
* ``drift`` -- one of its features lies where an open drift alert points (outside the
  training's central range of the drifted feature, :class:`DriftTarget`): ``drift_rate``;
* ``exploration`` -- every event: ``exploration_rate``. This random sample of all traffic is
  what lets review-based metrics be corrected for selection (:mod:`.estimate`).

The policies draw independently; an event is queued if any draw selects it, so its inclusion
probability is ``1 - prod(1 - p_i)`` -- recorded with the item, exactly. The draws are a hash
of the event id and the policy's name, not a random generator: the same event gets the same
decision whenever it is considered (a retry, a replay), and a test can recompute them.

**Priority** is the expected value of a review: a weight for the most urgent reason times the
score's uncertainty (``4 s (1 - s)``, plus 0.05 so a confident score still counts) times the
event's value (``[review].value_field``, e.g. the amount; 1 when unset). Reviewers take items
in *priority-sampling* order, highest ``priority / u`` first with ``u`` a fixed uniform draw
per event (Duffield, Lund and Thorup's priority sampling): valuable items come first, yet every
item has a known chance of being reviewed before the budget runs out -- ``min(1, priority /
tau)`` for the day's threshold ``tau`` -- which :mod:`.sample` uses to keep the estimates
unbiased.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from modelminder.project import ReviewConfig

POLICIES = ("must_review", "uncertain", "disagreement", "drift", "exploration")
# How much more a review of each reason is worth than a random one (before uncertainty and
# value): blocked customers first, then what teaches the model most.
WEIGHT = {
    "must_review": 1000.0, "uncertain": 10.0, "disagreement": 10.0, "drift": 5.0,
    "exploration": 1.0,
}  # fmt: skip


def draw(event_id: str, policy: str) -> float:
    """A uniform number in (0, 1) fixed by ``(event_id, policy)``.

    Examples
    --------
    >>> draw("e1", "exploration") == draw("e1", "exploration") != draw("e1", "uncertain")
    True
    """
    digest = hashlib.blake2b(f"{policy}\x00{event_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


@dataclass(frozen=True)
class DriftTarget:
    """Where an open drift alert points: served values of feature ``index`` (``feature``)
    outside ``[low, high]``, the training's central range."""

    feature: str
    index: int
    low: float
    high: float

    def hit(self, features: Sequence[float | None]) -> bool:
        v = features[self.index] if self.index < len(features) else None
        return v is not None and math.isfinite(v) and not self.low <= v <= self.high


@dataclass(frozen=True)
class Candidate:
    """A served champion prediction, with what the policies look at."""

    event_id: str
    score: float
    decision: str
    value: float = 1.0  # the event's value_field (e.g. amount)
    shadow_decision: str | None = None
    drifted: bool = False  # in the region of an open drift alert


@dataclass(frozen=True)
class Selection:
    """Why an event was queued, the probability it had of being queued, and the expected
    value of reviewing it."""

    reasons: tuple[str, ...]
    propensity: float
    priority: float


def rates(c: Candidate, thresholds: tuple[float, ...], config: ReviewConfig) -> dict[str, float]:
    """Each policy's probability of selecting ``c``."""
    near = any(abs(c.score - t) <= config.uncertain_band for t in thresholds)
    differs = c.shadow_decision is not None and c.shadow_decision != c.decision
    return {
        "must_review": 1.0 if c.decision == "block" else 0.0,
        "uncertain": config.uncertain_rate if near else 0.0,
        "disagreement": config.disagreement_rate if differs else 0.0,
        "drift": config.drift_rate if c.drifted else 0.0,
        "exploration": config.exploration_rate,
    }


def select(c: Candidate, thresholds: tuple[float, ...], config: ReviewConfig) -> Selection | None:
    """The selection of one served event, or None when no policy selected it.

    Examples
    --------
    >>> cfg = ReviewConfig(exploration_rate=0.0, uncertain_rate=1.0, uncertain_band=0.05)
    >>> select(Candidate("e1", 0.93, "block"), (0.2, 0.8), cfg)
    Selection(reasons=('must_review',), propensity=1.0, priority=310.4)
    >>> select(Candidate("e2", 0.22, "review", value=20.0), (0.2, 0.8), cfg).priority
    147.28
    >>> select(Candidate("e3", 0.5, "review"), (0.2, 0.8), cfg) is None
    True
    """
    p = rates(c, thresholds, config)
    chosen = tuple(r for r in POLICIES if p[r] > 0.0 and draw(c.event_id, r) < p[r])
    if not chosen:
        return None
    miss = 1.0
    for r in POLICIES:
        miss *= 1.0 - p[r]
    uncertainty = 0.05 + 4.0 * c.score * (1.0 - c.score)
    value = c.value if math.isfinite(c.value) and c.value > 0.01 else 0.01
    priority = max(WEIGHT[r] for r in chosen) * uncertainty * value
    return Selection(chosen, 1.0 - miss, round(priority, 6))


def order_key(event_id: str, priority: float) -> float:
    """The priority-sampling key: reviewers take the highest first."""
    return priority / draw(event_id, "order")
