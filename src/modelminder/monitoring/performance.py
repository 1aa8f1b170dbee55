"""Performance per window: measured on late labels, and estimated before they arrive.

*Measured* metrics join the served scores with the labels known at the monitor's time, under
the model's label policy: with ``negative_after_maturity`` an unlabelled event counts as
negative once it is older than the maturity period, and a window's outcomes are complete
(coverage 1) only when all of it has matured; with ``exclude`` only labelled events count.

*Estimated* metrics (confidence-based, like CBPE) read only the calibrated scores: each event is
a positive with probability equal to its score, so expected precision, recall, AUC and average
precision follow without a single label. They are right while the model stays calibrated and
wrong under concept drift -- which is exactly when measured and estimated part ways, so the two
are always shown side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelminder.metrics import auc, auc_standard_error, average_precision, calibration_error

FloatArray = npt.NDArray[np.float64]
MIN_POSITIVES = 5  # below this, measured AUC/AP are not reported (too noisy to read)


@dataclass(frozen=True)
class WindowPerformance:
    """One window's measured and estimated performance (NaN where it cannot be computed)."""

    rows: int
    known: int  # events whose outcome is known (labelled, or matured as negative)
    positives: int
    auc: float
    average_precision: float
    precision: float  # at the decision threshold (score >= threshold is flagged)
    recall: float
    calibration_error: float
    auc_se: float  # Hanley-McNeil standard error of the measured AUC
    est_auc: float
    est_average_precision: float
    est_precision: float
    est_recall: float
    est_positives: float

    @property
    def coverage(self) -> float:
        """Share of the window whose outcome is known yet."""
        return self.known / self.rows if self.rows else math.nan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: _clean(v) for k, v in self.__dict__.items()}
        out["coverage"] = _clean(self.coverage)
        return out


def measure(
    scores: FloatArray, outcome: FloatArray, threshold: float, *, estimate: bool = True
) -> WindowPerformance:
    """Metrics of one window. ``outcome`` is 1, 0 or NaN (not known yet) per event.

    Examples
    --------
    >>> s = np.array([0.9, 0.8, 0.3, 0.1, 0.05, 0.02, 0.6, 0.2, 0.1, 0.05])
    >>> y = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, np.nan])
    >>> w = measure(s, y, threshold=0.5)
    >>> w.rows, w.known, w.positives, round(w.coverage, 2), w.precision, w.recall
    (10, 9, 3, 0.9, 1.0, 1.0)
    >>> round(w.est_precision, 3), round(w.est_recall, 3)
    (0.767, 0.737)
    """
    scores = np.asarray(scores, np.float64)
    outcome = np.asarray(outcome, np.float64)
    known = ~np.isnan(outcome)
    y, s = outcome[known].astype(np.int64), scores[known]
    positives = int(y.sum())
    enough = positives >= MIN_POSITIVES and positives < len(y)
    flagged = s >= threshold
    precision = float(y[flagged].mean()) if flagged.any() else math.nan
    recall = float(y[flagged].sum() / positives) if positives else math.nan
    est = expected(scores, threshold) if estimate else {}
    auc_value = auc(y, s) if enough else math.nan
    return WindowPerformance(
        rows=len(scores),
        known=int(known.sum()),
        positives=positives,
        auc=auc_value,
        average_precision=average_precision(y, s) if enough else math.nan,
        precision=precision,
        recall=recall,
        calibration_error=calibration_error(y, s) if enough else math.nan,
        auc_se=auc_standard_error(auc_value, positives, len(y) - positives),
        est_auc=est.get("auc", math.nan),
        est_average_precision=est.get("average_precision", math.nan),
        est_precision=est.get("precision", math.nan),
        est_recall=est.get("recall", math.nan),
        est_positives=est.get("positives", math.nan),
    )


def expected(scores: FloatArray, threshold: float) -> dict[str, float]:
    """Expected metrics if each event is positive with probability ``score`` (calibrated).

    AUC: the expected number of correctly ordered (positive, negative) pairs over the expected
    number of pairs; average precision: the expected precision at each rank, weighted by the
    chance that the rank holds a positive. O(n log n).

    Examples
    --------
    >>> round(expected(np.array([0.99, 0.01, 0.99, 0.01]), 0.5)["auc"], 3)
    0.995
    >>> round(expected(np.full(1000, 0.1), 0.5)["positives"], 1)
    100.0
    """
    p = np.sort(np.asarray(scores, np.float64))[::-1]  # descending
    if len(p) == 0:
        return {}
    total = float(p.sum())
    out = {"positives": total}
    flagged = p >= threshold
    out["precision"] = float(p[flagged].mean()) if flagged.any() else math.nan
    out["recall"] = float(p[flagged].sum() / total) if total > 0 else math.nan
    negatives = 1.0 - p
    # Pairs (i ranked above j): P(i positive) * P(j negative). Ties in score count half.
    neg_below = np.cumsum(negatives[::-1])[::-1] - negatives  # sum of (1-p_j) for j after i
    correct = float(np.sum(p * neg_below))
    pairs = total * float(negatives.sum()) - float(np.sum(p * negatives))
    if pairs > 0:
        # Equal scores are not ordered: give their pairs half credit, as AUC does.
        _, starts, counts = np.unique(-p, return_index=True, return_counts=True)
        tied = 0.0
        for start, count in zip(starts, counts, strict=True):
            if count > 1:
                block_p = p[start : start + count]
                block_n = negatives[start : start + count]
                within = float(block_p.sum() * block_n.sum() - np.sum(block_p * block_n))
                # ``correct`` counted the pairs inside a block once in one order only.
                tied += within / 2.0 - _ordered_within(block_p, block_n)
        out["auc"] = (correct + tied) / pairs
    if total > 0:
        precision_at = np.cumsum(p) / np.arange(1, len(p) + 1)
        out["average_precision"] = float(np.sum(p * precision_at) / total)
    return out


def _ordered_within(block_p: FloatArray, block_n: FloatArray) -> float:
    """What the rank sweep credited to pairs inside a block of equal scores."""
    after = np.cumsum(block_n[::-1])[::-1] - block_n
    return float(np.sum(block_p * after))


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
