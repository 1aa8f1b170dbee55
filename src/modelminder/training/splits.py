"""Fold plans: how a training set is split for validation, in time.

``walk_forward`` (the default) cuts the rows, in event-time order, into an out-of-time
**holdout** (the latest ``holdout`` share) and, before it, ``n_folds`` validation blocks that
start once enough rows are usable. Fold ``k`` validates on block ``k`` and trains on
everything earlier, with two guards:

* **purging** -- a training row whose label became known at or after the validation block
  starts is dropped: at that time its label was not known, so training on it would use the
  future (a chargeback that arrives during the validation period);
* **embargo** -- training rows within ``embargo`` of a validation block (before it, and after
  it when training rows follow it) are dropped, so serially correlated events -- one card's
  fraud burst straddling the boundary -- do not sit on both sides.

The holdout gets the same guards against everything before it; the fold models, all trained
before it, are scored on it once. ``random`` k-fold ignores time and is available only as an
explicit, warned-about comparison: it is optimistic on drifting, serially correlated data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelminder.errors import TrainingError

IntArray = npt.NDArray[np.int64]
SCHEMES = ("walk_forward", "random")
RANDOM_WARNING = (
    "Random k-fold ignores time: rows from the same card burst and from after the validation "
    "period land in training, so its scores are optimistic. Use it only to compare with the "
    "walk-forward estimate."
)


@dataclass(frozen=True)
class Fold:
    """One validation split: row indices into the training set."""

    name: str
    train: IntArray
    valid: IntArray
    purged: int
    embargoed: int


@dataclass(frozen=True)
class FoldPlan:
    """The folds, the holdout, and the rows the holdout's models may train on."""

    scheme: str
    folds: list[Fold]
    holdout: IntArray
    purged_for_holdout: int

    def describe(self, ts: IntArray) -> list[str]:
        """One line per fold: time ranges and row counts (what ``minder train`` prints)."""
        lines = []
        for f in self.folds:
            lines.append(
                f"{f.name:>8}: train {len(f.train):>9,} rows {_span(ts, f.train)} | "
                f"valid {len(f.valid):>8,} rows {_span(ts, f.valid)} | "
                f"purged {f.purged:,}, embargoed {f.embargoed:,}"
            )
        if len(self.holdout):
            lines.append(
                f"{'holdout':>8}: {len(self.holdout):,} rows {_span(ts, self.holdout)} "
                f"(out of time; {self.purged_for_holdout:,} earlier rows purged/embargoed)"
            )
        return lines


def _span(ts: IntArray, idx: IntArray) -> str:
    import datetime as dt

    if len(idx) == 0:
        return "(none)"

    def day(us: int) -> str:
        return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d")

    return f"{day(int(ts[idx].min()))}..{day(int(ts[idx].max()))}"


def _guard(
    candidates: IntArray,
    ts: IntArray,
    known_at: IntArray,
    start: int,
    end: int,
    embargo_us: int,
) -> tuple[IntArray, int, int]:
    """Drop purged and embargoed rows of ``candidates`` for a validation period [start, end)."""
    t = ts[candidates]
    purged = (t < start) & (known_at[candidates] >= start)
    embargoed = ((t >= start - embargo_us) & (t < start)) | ((t >= end) & (t < end + embargo_us))
    embargoed &= ~purged
    keep = ~(purged | embargoed) & ((t < start) | (t >= end))
    return candidates[keep], int(purged.sum()), int(embargoed.sum())


def walk_forward(
    ts: IntArray,
    known_at: IntArray,
    *,
    n_folds: int = 4,
    holdout: float = 0.2,
    embargo_us: int = 86_400_000_000,
    min_train_share: float = 0.3,
) -> FoldPlan:
    """Purged, embargoed walk-forward folds over rows with times ``ts`` (any order).

    The validation blocks split the rows before the holdout from the first point where at
    least ``min_train_share`` of them are usable for training (``known_at`` before it).

    Examples
    --------
    >>> day = 86_400_000_000
    >>> ts = np.arange(100, dtype=np.int64) * day
    >>> plan = walk_forward(ts, ts + 3 * day, n_folds=2, holdout=0.2, embargo_us=day)
    >>> [int(ts[f.valid].min() // day) for f in plan.folds], int(ts[plan.holdout].min() // day)
    ([27, 53], 80)
    >>> # the fold validating from day 53 trains only on rows labelled before day 53, and
    >>> # leaves a day of embargo before the validation block
    >>> int(ts[plan.folds[1].train].max() // day)
    49
    """
    _check(ts, known_at, n_folds, holdout, embargo_us)
    order = np.argsort(ts, kind="stable").astype(np.int64)
    n = len(order)
    n_hold = round(n * holdout)
    cv = order[: n - n_hold]
    if len(cv) < 2 * (n_folds + 1):
        raise TrainingError(
            f"Too few rows ({len(cv):,} before the holdout) for {n_folds} walk-forward folds. "
            "Use fewer folds, a smaller holdout, or more data."
        )
    # Validation starts once enough rows are usable (known before it): with a maturity
    # period, the first weeks of data cannot be validated against.
    usable = np.sort(known_at[cv])
    first = 0
    while first < len(cv) - n_folds and (
        np.searchsorted(usable, ts[cv[first]], side="left") < min_train_share * len(cv)
    ):
        first += max(1, len(cv) // 200)
    first = min(first, len(cv) - n_folds)
    edges = np.linspace(first, len(cv), n_folds + 1).astype(int)
    folds = []
    for k in range(n_folds):
        valid = cv[edges[k] : edges[k + 1]]
        start = int(ts[valid].min())
        end = int(ts[valid].max()) + 1
        train, purged, embargoed = _guard(cv[: edges[k]], ts, known_at, start, end, embargo_us)
        folds.append(Fold(f"fold {k + 1}", np.sort(train), np.sort(valid), purged, embargoed))
    hold = np.sort(order[n - n_hold :])
    purged_h = 0
    if len(hold):
        start = int(ts[hold].min())
        _, p, e = _guard(cv, ts, known_at, start, start + 1, embargo_us)
        purged_h = p + e
    return FoldPlan("walk_forward", folds, hold, purged_h)


def random_kfold(
    n: int, y: IntArray, *, n_folds: int = 4, holdout_rows: IntArray | None = None, seed: int = 0
) -> FoldPlan:
    """Stratified random k-fold over the rows outside ``holdout_rows`` (warns: see module)."""
    warnings.warn(RANDOM_WARNING, UserWarning, stacklevel=2)
    hold = np.sort(holdout_rows) if holdout_rows is not None else np.zeros(0, np.int64)
    mask = np.ones(n, bool)
    mask[hold] = False
    rows = np.flatnonzero(mask).astype(np.int64)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(rows), np.int64)
    for cls in (0, 1):
        members = np.flatnonzero(y[rows] == cls)
        rng.shuffle(members)
        assignment[members] = np.arange(len(members)) % n_folds
    folds = [
        Fold(f"fold {k + 1}", rows[assignment != k], rows[assignment == k], 0, 0)
        for k in range(n_folds)
    ]
    return FoldPlan("random", folds, hold, 0)


def _check(ts: IntArray, known_at: IntArray, n_folds: int, holdout: float, embargo: int) -> None:
    if not isinstance(n_folds, int) or n_folds < 1:
        raise TrainingError(f"'folds' must be a whole number >= 1. Got {n_folds!r}.")
    if not 0.0 <= holdout < 0.9:
        raise TrainingError(f"'holdout' must be a share in [0, 0.9). Got {holdout!r}.")
    if embargo < 0:
        raise TrainingError(f"'embargo' must be a duration >= 0. Got {embargo!r} microseconds.")
    if len(ts) != len(known_at):
        raise TrainingError("ts and known_at must have the same length.")
