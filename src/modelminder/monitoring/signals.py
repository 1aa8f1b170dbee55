"""Signals computed straight from served data: volume, probing and out-of-range values.

Each function takes columns (NumPy arrays or a polars frame) and returns findings as plain
dicts; :mod:`modelminder.monitoring.monitor` turns findings into alerts. No I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]


def volume_findings(
    counts: Sequence[int], starts: Sequence[int], *, factor: float = 3.0, history: int = 7
) -> list[dict[str, Any]]:
    """Windows whose event count is ``factor`` times above or below the median of the
    previous ``history`` windows (none until 3 windows of history exist; a partial last
    window is the caller's to leave out).

    Examples
    --------
    >>> volume_findings([100, 110, 95, 105, 20, 400], [0, 1, 2, 3, 4, 5])
    [{'window_start': 4, 'count': 20, 'typical': 102.5, 'change': 'drop'}, \
{'window_start': 5, 'count': 400, 'typical': 100.0, 'change': 'spike'}]
    """
    if factor <= 1:
        raise ValueError(f"The volume 'factor' must be > 1. Got {factor}.")
    out = []
    for i, (n, start) in enumerate(zip(counts, starts, strict=True)):
        past = list(counts[max(0, i - history) : i])
        if len(past) < 3:
            continue
        typical = float(np.median(past))
        if typical <= 0:
            continue
        if n > factor * typical or n < typical / factor:
            change = "spike" if n > typical else "drop"
            out.append(
                {"window_start": start, "count": int(n), "typical": typical, "change": change}
            )
    return out


def probing_findings(
    frame: pl.DataFrame,
    *,
    entity: str,
    block_at: float,
    margin: float = 0.1,
    min_count: int = 3,
) -> list[dict[str, Any]]:
    """Entities with at least ``min_count`` scores in ``[block_at - margin, block_at)`` in a
    window: someone feeling for the block threshold. ``frame`` has ``window_start``,
    ``score`` and the ``entity`` column.

    Examples
    --------
    >>> f = pl.DataFrame({"window_start": [0] * 5, "card_id": ["a", "a", "a", "b", "a"],
    ...                   "score": [0.75, 0.78, 0.79, 0.78, 0.95]})
    >>> probing_findings(f, entity="card_id", block_at=0.8)
    [{'window_start': 0, 'entity': 'a', 'count': 3, 'max_score': 0.79}]
    """
    if not 0 < margin < block_at:
        raise ValueError(f"The probing 'margin' must be in (0, block_at). Got {margin}.")
    near = frame.filter((pl.col("score") >= block_at - margin) & (pl.col("score") < block_at))
    grouped = (
        near.group_by("window_start", entity)
        .agg(count=pl.len(), max_score=pl.col("score").max())
        .filter(pl.col("count") >= min_count)
        .sort("window_start", "count", entity, descending=[False, True, False])
    )
    return [
        {
            "window_start": int(r["window_start"]),
            "entity": str(r[entity]),
            "count": int(r["count"]),
            "max_score": round(float(r["max_score"]), 4),
        }
        for r in grouped.iter_rows(named=True)
    ]


def range_findings(
    X: FloatArray,
    names: Sequence[str],
    ref_min: Sequence[float],
    ref_max: Sequence[float],
    *,
    min_rows: int = 50,
    out_of_range: float = 0.05,
) -> list[dict[str, Any]]:
    """Features of one window with more than ``out_of_range`` of their values outside the
    reference's [min, max]: training saw nothing there, so the model extrapolates. (Missing
    values are the drift report's: its ``missing`` statistic and ``all_missing`` finding.)

    Examples
    --------
    >>> X = np.array([[1.0, np.nan], [2.0, np.nan], [50.0, np.nan]])
    >>> [(f["feature"], f["share"]) for f in range_findings(
    ...     X, ["a", "b"], [0.0, 0.0], [10.0, 1.0], min_rows=1)]
    [('a', 0.3333)]
    """
    if X.shape[0] < min_rows:
        return []
    with np.errstate(invalid="ignore"):
        outside = ((np.asarray(ref_min) > X) | (np.asarray(ref_max) < X)).mean(axis=0)
    return [
        {
            "feature": name,
            "problem": "out_of_range",
            "share": round(float(outside[j]), 4),
            "reference_range": [float(ref_min[j]), float(ref_max[j])],
        }
        for j, name in enumerate(names)
        if math.isfinite(ref_min[j]) and outside[j] > out_of_range
    ]
