"""Champion against candidate on the same events: a paired comparison with an interval.

Both models score the same rows (the same features, as they were or would have been served),
so their difference is measured on the same luck. For each metric the result is the
candidate's value minus the champion's, with a two-sided interval at ``confidence``:

* ``recall_at_alert_rate``: each model alerts on its own top ``alert_rate`` share of the
  block's scores (the operating point a fraud team runs); the positives are resampled
  (paired bootstrap, ``boot`` replicates), each replicate's difference being the mean of
  ``hit_candidate - hit_champion`` over them. The alert thresholds are held at the block's
  own (the interval is about which frauds each model catches, not about where the cut lands).
* ``auc``: DeLong's paired test (placement values), a normal interval.
* ``average_precision``: a stratified paired bootstrap of the rows (positives and negatives
  resampled separately, so every replicate keeps the block's class counts).

A block with fewer than ``MIN_POSITIVES`` positives gives no interval (NaN): too few frauds
to tell two models apart, and the caller says so rather than deciding on noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from modelminder.errors import MinderError
from modelminder.metrics import auc, average_precision

FloatArray = npt.NDArray[np.float64]
METRICS = ("recall_at_alert_rate", "auc", "average_precision")
MIN_POSITIVES = 10
_NUMBERS = ("champion", "candidate", "delta", "low", "high")


@dataclass(frozen=True)
class Difference:
    """One metric of both models on the same block, and candidate minus champion."""

    metric: str
    champion: float
    candidate: float
    delta: float
    low: float  # NaN: no interval (too few positives)
    high: float

    def describe(self) -> str:
        if math.isnan(self.delta):
            return "not measurable (no labelled fraud in the block)"
        if math.isnan(self.low):
            return f"{self.candidate - self.champion:+.3f} (no interval: too few frauds)"
        return f"{self.delta:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


@dataclass(frozen=True)
class Comparison:
    """The candidate against the champion on one block of labelled events."""

    block: str  # what the rows are, e.g. "out-of-time 2026-03-01..2026-03-14"
    rows: int
    positives: int
    confidence: float
    alert_rate: float
    differences: tuple[Difference, ...]

    def get(self, metric: str) -> Difference:
        for d in self.differences:
            if d.metric == metric:
                return d
        raise MinderError(f"No {metric!r} in this comparison; it has {', '.join(METRICS)}.")

    def better(self, metric: str, margin: float) -> bool:
        """The candidate is better by ``margin`` and the interval's low end is above zero."""
        d = self.get(metric)
        return not math.isnan(d.low) and d.low > 0.0 and d.delta >= margin

    def worse(self, metric: str, margin: float) -> bool:
        """The candidate is worse by more than ``margin``, clear of the noise (the interval's
        high end is below zero)."""
        d = self.get(metric)
        return not math.isnan(d.high) and d.high < 0.0 and d.delta <= -margin

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
            for d in out["differences"]
        ]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        diffs = tuple(
            Difference(
                str(d["metric"]),
                *(math.nan if d[k] is None else float(d[k]) for k in _NUMBERS),
            )
            for d in data["differences"]
        )
        return cls(
            str(data["block"]), int(data["rows"]), int(data["positives"]),
            float(data["confidence"]), float(data["alert_rate"]), diffs,
        )  # fmt: skip


def compare(
    y: npt.ArrayLike,
    champion: npt.ArrayLike,
    candidate: npt.ArrayLike,
    *,
    block: str,
    alert_rate: float = 0.01,
    confidence: float = 0.9,
    boot: int = 2000,
    ap_boot: int = 0,
    seed: int = 0,
) -> Comparison:
    """Compare two models' scores of the same labelled rows (see the module docstring).
    ``ap_boot=0`` reports average precision without an interval (it is the slow one).

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 20_000
    >>> y = (rng.random(n) < 0.02).astype(int)
    >>> weak = y * 0.5 + rng.random(n); strong = y * 2.0 + rng.random(n)
    >>> c = compare(y, weak, strong, block="example", alert_rate=0.05)
    >>> c.better("recall_at_alert_rate", 0.1), c.better("auc", 0.0), c.worse("auc", 0.0)
    (True, True, False)
    >>> compare(y, strong, strong, block="same").get("auc").delta
    0.0
    """
    yv = np.asarray(y, np.float64)
    a = np.asarray(champion, np.float64)
    b = np.asarray(candidate, np.float64)
    if yv.ndim != 1 or a.shape != yv.shape or b.shape != yv.shape:
        raise MinderError(
            "compare needs one label and two scores per row (1-D arrays of equal length). Got "
            f"{yv.shape}, {a.shape}, {b.shape}."
        )
    if not np.isin(yv, (0.0, 1.0)).all():
        raise MinderError("compare needs 0/1 labels.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise MinderError("compare needs finite scores from both models.")
    if not 0.5 <= confidence < 1.0:
        raise MinderError(f"'confidence' must be in [0.5, 1). Got {confidence!r}.")
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(yv == 1)
    neg = np.flatnonzero(yv == 0)
    enough = len(pos) >= MIN_POSITIVES and len(neg) >= MIN_POSITIVES
    tail = (1 - confidence) / 2
    diffs = [
        _recall(yv, a, b, pos, alert_rate, tail, boot, rng, enough),
        _auc(yv, a, b, pos, neg, confidence, enough),
        _ap(yv, a, b, pos, neg, tail, ap_boot, rng, enough),
    ]
    return Comparison(block, len(yv), len(pos), confidence, alert_rate, tuple(diffs))


def _hits(scores: FloatArray, rate: float) -> npt.NDArray[np.bool_]:
    """The rows in the top ``rate`` share of ``scores`` (ties broken by order, as
    :func:`modelminder.metrics.recall_at_alert_rate`)."""
    k = max(1, math.ceil(rate * len(scores)))
    top = np.argsort(-scores, kind="stable")[:k]
    hit = np.zeros(len(scores), bool)
    hit[top] = True
    return hit


def _recall(
    y: FloatArray,
    a: FloatArray,
    b: FloatArray,
    pos: npt.NDArray[np.int64],
    rate: float,
    tail: float,
    boot: int,
    rng: np.random.Generator,
    enough: bool,
) -> Difference:
    if len(pos) == 0:
        return Difference("recall_at_alert_rate", math.nan, math.nan, math.nan, math.nan, math.nan)
    ha = _hits(a, rate)[pos].astype(np.float64)
    hb = _hits(b, rate)[pos].astype(np.float64)
    ra, rb = float(ha.mean()), float(hb.mean())
    low = high = math.nan
    if enough and boot > 0:
        d = hb - ha
        draws = rng.integers(0, len(pos), size=(boot, len(pos)))
        reps = d[draws].mean(axis=1)
        low, high = (float(q) for q in np.quantile(reps, [tail, 1 - tail]))
    return Difference("recall_at_alert_rate", ra, rb, rb - ra, low, high)


def _auc(
    y: FloatArray,
    a: FloatArray,
    b: FloatArray,
    pos: npt.NDArray[np.int64],
    neg: npt.NDArray[np.int64],
    confidence: float,
    enough: bool,
) -> Difference:
    va, vb = auc(y, a), auc(y, b)
    if not enough or math.isnan(va) or math.isnan(vb):
        return Difference("auc", va, vb, vb - va, math.nan, math.nan)
    # DeLong: per positive, the share of negatives it outscores (ties count half), and per
    # negative the share of positives that outscore it; their covariances give the variance
    # of the paired difference.
    v10 = np.empty((2, len(pos)))
    v01 = np.empty((2, len(neg)))
    for i, s in enumerate((a, b)):
        sp, sn = s[pos], np.sort(s[neg])
        below = np.searchsorted(sn, sp, "left")
        ties = np.searchsorted(sn, sp, "right") - below
        v10[i] = (below + 0.5 * ties) / len(neg)
        sps = np.sort(sp)
        above = len(pos) - np.searchsorted(sps, s[neg], "right")
        tied = np.searchsorted(sps, s[neg], "right") - np.searchsorted(sps, s[neg], "left")
        v01[i] = (above + 0.5 * tied) / len(pos)
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(pos) + (
        s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]
    ) / len(neg)
    delta = vb - va
    half = float(norm.ppf(0.5 + confidence / 2)) * math.sqrt(max(float(var), 0.0))
    return Difference("auc", va, vb, delta, delta - half, delta + half)


def _ap(
    y: FloatArray,
    a: FloatArray,
    b: FloatArray,
    pos: npt.NDArray[np.int64],
    neg: npt.NDArray[np.int64],
    tail: float,
    boot: int,
    rng: np.random.Generator,
    enough: bool,
) -> Difference:
    va, vb = average_precision(y, a), average_precision(y, b)
    low = high = math.nan
    if enough and boot > 0:
        reps = np.empty(boot)
        for r in range(boot):
            rows = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            reps[r] = average_precision(y[rows], b[rows]) - average_precision(y[rows], a[rows])
        low, high = (float(q) for q in np.quantile(reps, [tail, 1 - tail]))
    return Difference("average_precision", va, vb, vb - va, low, high)
