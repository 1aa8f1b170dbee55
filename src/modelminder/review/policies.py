"""Which served events a human should look at, and with what probability.

Each policy gives an event a probability of being queued (0 when it does not apply):

* ``must_review`` -- the model blocked it: probability 1;
* ``uncertain`` -- its score is within ``uncertain_band`` of a decision threshold:
  ``uncertain_rate``;
* ``exploration`` -- every event: ``exploration_rate``. This random sample of all traffic is
  what lets review-based metrics be corrected for selection (:mod:`.estimate`).

The policies draw independently; an event is queued if any draw selects it, so its inclusion
probability is ``1 - prod(1 - p_i)`` -- recorded with the item, exactly. The draws are a hash
of the event id and the policy's name, not a random generator: the same event gets the same
decision whenever it is considered (a retry, a replay), and a test can recompute them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from modelminder.project import ReviewConfig

POLICIES = ("must_review", "uncertain", "exploration")
# Priority weights: must-review first, then uncertain, then exploration; within a reason,
# the closer the score is to 0.5, the more a review teaches.
_WEIGHT = {"must_review": 3.0, "uncertain": 2.0, "exploration": 1.0}


def draw(event_id: str, policy: str) -> float:
    """A uniform number in [0, 1) fixed by ``(event_id, policy)``.

    Examples
    --------
    >>> draw("e1", "exploration") == draw("e1", "exploration") != draw("e1", "uncertain")
    True
    """
    digest = hashlib.blake2b(f"{policy}\x00{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Selection:
    """Why an event was queued and the probability it had of being queued."""

    reasons: tuple[str, ...]
    propensity: float
    priority: float


def select(
    event_id: str,
    score: float,
    decision: str,
    thresholds: tuple[float, ...],
    config: ReviewConfig,
) -> Selection | None:
    """The selection of one served event, or None when no policy selected it.

    Examples
    --------
    >>> cfg = ReviewConfig(exploration_rate=0.0, uncertain_rate=1.0, uncertain_band=0.05)
    >>> select("e1", 0.93, "block", (0.2, 0.8), cfg)
    Selection(reasons=('must_review',), propensity=1.0, priority=3.2604)
    >>> select("e2", 0.22, "review", (0.2, 0.8), cfg).reasons
    ('uncertain',)
    >>> select("e3", 0.5, "review", (0.2, 0.8), cfg) is None
    True
    """
    rates = {
        "must_review": 1.0 if decision == "block" else 0.0,
        "uncertain": config.uncertain_rate
        if any(abs(score - t) <= config.uncertain_band for t in thresholds)
        else 0.0,
        "exploration": config.exploration_rate,
    }
    chosen = tuple(p for p in POLICIES if rates[p] > 0.0 and draw(event_id, p) < rates[p])
    if not chosen:
        return None
    miss = 1.0
    for p in POLICIES:
        miss *= 1.0 - rates[p]
    informative = 4.0 * score * (1.0 - score)  # 1 at 0.5, 0 at 0 or 1
    priority = max(_WEIGHT[r] for r in chosen) + round(informative, 4)
    return Selection(chosen, 1.0 - miss, priority)
