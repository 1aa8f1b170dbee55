"""Scores used by the guard, the gate and ``minder evaluate``.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.4, 0.35, 0.8])
>>> round(auc(y, p), 3), round(average_precision(y, p), 3)
(0.75, 0.833)
>>> recall_at_alert_rate(y, p, 0.25)
0.5
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

Array = npt.NDArray[Any]
ALERT_RATE = 0.01  # the share of events a fraud team can review: recall at this alert rate


def _two_classes(y: Array) -> bool:
    return len(y) > 0 and 0 < int(np.sum(y)) < len(y)


def auc(y: Array, p: Array) -> float:
    """Area under the ROC curve (NaN with a single class)."""
    return float(roc_auc_score(y, p)) if _two_classes(y) else math.nan


def average_precision(y: Array, p: Array) -> float:
    """Average precision (area under precision-recall; NaN without positives)."""
    return float(average_precision_score(y, p)) if _two_classes(y) else math.nan


def recall_at_alert_rate(y: Array, p: Array, rate: float = ALERT_RATE) -> float:
    """Share of positives among the top ``rate`` share of scores (ties broken by order)."""
    positives = int(np.sum(y))
    if positives == 0 or len(y) == 0:
        return math.nan
    k = max(1, math.ceil(rate * len(y)))
    top = np.argsort(-np.asarray(p), kind="stable")[:k]
    return float(np.sum(np.asarray(y)[top]) / positives)


def calibration_error(y: Array, p: Array, bins: int = 10) -> float:
    """Expected calibration error: the row-weighted mean |observed rate - mean score| over
    ``bins`` equal-count bins of the scores (0 for perfectly calibrated probabilities)."""
    if len(y) == 0:
        return math.nan
    order = np.argsort(np.asarray(p), kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, len(order))):
        total += len(chunk) * abs(float(np.mean(np.asarray(y)[chunk])) - float(np.mean(p[chunk])))
    return total / len(y)


def scores(y: Array, p: Array, rate: float = ALERT_RATE) -> dict[str, float]:
    """AUC, average precision, recall at the alert rate and calibration error, with the row
    and positive counts."""
    return {
        "auc": auc(y, p),
        "average_precision": average_precision(y, p),
        "recall_at_alert_rate": recall_at_alert_rate(y, p, rate),
        "calibration_error": calibration_error(y, np.asarray(p, np.float64)),
        "rows": float(len(y)),
        "positives": float(np.sum(y)),
    }


def auc_standard_error(auc_value: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC measured on ``positives`` and
    ``negatives`` (NaN when either is zero).

    Examples
    --------
    >>> round(auc_standard_error(0.9, 30, 3000), 3)
    0.038
    """
    if positives <= 0 or negatives <= 0 or not math.isfinite(auc_value):
        return math.nan
    a = auc_value
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (
        positives * negatives
    )
    return math.sqrt(max(var, 0.0))
