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

Too little data
---------------
A fold is only worth its model if its validation block can score it. :func:`sufficient_folds`
(called by ``train_model`` right after the plan is made) enforces, per fold:

* training rows of both classes after purging and embargo, else it refuses;
* at least :data:`MIN_VALID_ROWS` validation rows and :data:`MIN_VALID_POSITIVES` validation
  positives. A block below either is **merged** with the blocks after it (the merged fold
  validates on their union and trains on the rows its first block could train on, so
  purging still holds); the merge is stated in the plan's description, never silent. When
  every block together is still below the minimums, it **refuses** with the numbers and
  the remedy.

Why merge before refusing: on a small but usable history (the test worlds, a pilot project) a
block that happens to hold no fraud would otherwise stop training although the validation rows
as a whole can score a model; merging keeps every validation row and gives each shipped member
a block that scores it. Why refuse at all: a fold plan of 1-row blocks (seen on 72 days of
history with a 30-day maturity) gave NaN scores, a calibrator fitted on no fraud, and a model
that scored 0 for everything. The refusal says how many days of history the settings need
(:func:`history_days_needed`).

The minimums are floors that make a score *computable*, not *precise*: an AUC on 5 positives
still moves by about 0.1 from one block to the next.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from modelminder.durations import parse_duration
from modelminder.errors import TrainingError

IntArray = npt.NDArray[np.int64]
DAY_US = 86_400_000_000
SCHEMES = ("walk_forward", "random")
MIN_VALID_ROWS = 100
"""Fewest validation rows a fold may have (after merging): with fewer, its scores and the
out-of-fold scores the calibrator learns from are noise."""
MIN_VALID_POSITIVES = 5
"""Fewest validation positives a fold may have (after merging): average precision and AUC are
undefined with none and a lottery with one or two; early stopping needs both classes."""
MIN_TRAIN_SHARE = 0.3
"""Walk-forward validation starts once this share of the rows before the holdout is usable
for training (known before it)."""
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
    notes: tuple[str, ...] = ()  # what the plan had to do that a reader should know

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
        return lines + [f"    note: {note}" for note in self.notes]


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
    min_train_share: float = MIN_TRAIN_SHARE,
) -> FoldPlan:
    """Purged, embargoed walk-forward folds over rows with times ``ts`` (any order).

    The validation blocks split the rows before the holdout from the first point where at
    least ``min_train_share`` of them are usable for training (``known_at`` before it). When
    no such point comes before the holdout, the blocks are the last rows, one or a few each,
    and the plan says so in its notes (:func:`sufficient_folds` then refuses it).

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
    notes: tuple[str, ...] = ()
    if np.searchsorted(usable, ts[cv[first]], side="left") < min_train_share * len(cv):
        notes = (
            f"no point before the holdout had {min_train_share:.0%} of the rows usable for "
            f"training (label known before it), so the validation blocks are the last "
            f"{len(cv) - first:,} rows",
        )
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
    return FoldPlan("walk_forward", folds, hold, purged_h, notes)


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


@dataclass(frozen=True)
class PlanSettings:
    """The settings a fold plan was made under, as the user gave them (for the messages of
    :func:`sufficient_folds` and for :func:`history_days_needed`).

    ``maturity`` is the label policy's maturity (``"30d"``), or None when unlabelled events
    are excluded (then nothing matures: rows are usable once labelled).
    """

    folds: int
    holdout: float
    embargo: str
    maturity: str | None
    scheme: str = "walk_forward"

    def flags(self) -> str:
        """The settings as the ``minder train`` options that change them."""
        parts = [f"--maturity {self.maturity}"] if self.maturity is not None else []
        parts += [f"--embargo {self.embargo}", f"--folds {self.folds}"]
        return ", ".join(parts) + f" and --holdout {self.holdout:g}"


def history_days_needed(
    settings: PlanSettings,
    *,
    delay_days: float,
    rows_per_day: float,
    positives_per_day: float,
    min_train_share: float = MIN_TRAIN_SHARE,
) -> float:
    """Days of event history (up to the cut-off) a walk-forward plan needs so that each of
    its blocks can meet the minimums, for rows spread evenly in time.

    The last ``maturity`` days are immature and left out of the training set; of the rest, the
    latest ``holdout`` share is held out; validation starts once ``min_train_share`` of the
    rows before the holdout are usable, i.e. ``delay`` (how long after its event a row becomes
    usable; for fold 1 at least the embargo too) plus that share of the span; then ``folds``
    blocks each need the days that hold :data:`MIN_VALID_ROWS` rows and, on average, twice
    :data:`MIN_VALID_POSITIVES` positives at the given rates (positives come by chance: a
    block that expects 10 holds fewer than 5 about 3% of the time, one that expects 5 about
    half the time)::

        maturity + (max(delay, embargo) + folds * block) / ((1 - min_train_share) * (1 - holdout))

    Shorter histories are not necessarily refused: small blocks are merged first.

    Examples
    --------
    >>> s = PlanSettings(folds=4, holdout=0.2, embargo="1d", maturity="30d")
    >>> round(history_days_needed(s, delay_days=30, rows_per_day=2000, positives_per_day=4))
    101
    """
    maturity = 0.0 if settings.maturity is None else _days(settings.maturity, "maturity")
    embargo = _days(settings.embargo, "embargo")
    block = max(
        MIN_VALID_ROWS / rows_per_day if rows_per_day > 0 else math.inf,
        2 * MIN_VALID_POSITIVES / positives_per_day if positives_per_day > 0 else math.inf,
    )
    span = (max(delay_days, embargo) + settings.folds * block) / (
        (1.0 - min_train_share) * (1.0 - settings.holdout)
    )
    return maturity + span


def sufficient_folds(
    plan: FoldPlan,
    y: npt.NDArray[Any],
    ts: IntArray,
    known_at: IntArray,
    *,
    cutoff: int,
    settings: PlanSettings,
) -> FoldPlan:
    """``plan`` if every fold can be trained and scored, else the plan with its small
    validation blocks merged (see the module docstring); refuses with a
    :class:`~modelminder.errors.TrainingError` that gives the numbers and the remedy when no
    merge is enough or a fold has nothing to train on.

    Examples
    --------
    >>> day = 86_400_000_000
    >>> ts = np.arange(1000, dtype=np.int64) * day // 10  # 100 days, 10 rows a day
    >>> y = (np.arange(1000) % 50 == 0).astype(np.int64)  # one positive every 5 days
    >>> plan = walk_forward(ts, ts + day, n_folds=3, embargo_us=day)
    >>> settings = PlanSettings(folds=3, holdout=0.2, embargo="1d", maturity=None)
    >>> merged = sufficient_folds(plan, y, ts, ts + day, cutoff=int(ts[-1]) + 1, settings=settings)
    >>> [(f.name, len(f.valid), int(y[f.valid].sum())) for f in merged.folds]
    [('folds 1-3', 548, 10)]
    """
    counts = [(len(f.valid), int(np.sum(y[f.valid]))) for f in plan.folds]
    for fold in plan.folds:
        positives = int(np.sum(y[fold.train]))
        if len(fold.train) == 0:
            why = (
                "the rows before its validation block became usable (label known or matured) "
                "only after it started"
            )
        elif positives in (0, len(fold.train)):
            only = "negative" if positives == 0 else "positive"
            why = f"its {len(fold.train):,} rows are all {only}"
        else:
            continue
        what = "no" if len(fold.train) == 0 else "a single class of"
        raise TrainingError(
            f"{fold.name} has {what} training rows after purging: {why}. "
            f"{_remedy(plan, y, ts, known_at, cutoff, settings)}"
        )
    groups = _merge(counts)
    if groups is None:
        listed = "; ".join(
            f"{f.name}: {r:,} row{'' if r == 1 else 's'}, {p:,} positives"
            for f, (r, p) in zip(plan.folds, counts, strict=True)
        )
        rows, positives = sum(r for r, _ in counts), sum(p for _, p in counts)
        raise TrainingError(
            f"The validation blocks are too small to score a model ({listed}; together "
            f"{rows:,} rows, {positives:,} positives). Each fold needs at least "
            f"{MIN_VALID_ROWS} validation rows and {MIN_VALID_POSITIVES} positives "
            "(MIN_VALID_ROWS, MIN_VALID_POSITIVES in modelminder.training.splits), even with "
            f"all blocks merged into one. {_remedy(plan, y, ts, known_at, cutoff, settings)}"
        )
    if all(len(g) == 1 for g in groups):
        return plan
    folds = [_merged(plan.folds, g) for g in groups]
    short = [
        f"{plan.folds[i].name} ({counts[i][0]:,} rows, {counts[i][1]:,} positives)"
        for g in groups
        if len(g) > 1
        for i in g
    ]
    note = (
        f"validation blocks merged to reach {MIN_VALID_ROWS} rows and {MIN_VALID_POSITIVES} "
        f"positives per fold: {', '.join(short)} -> {len(folds)} folds instead of "
        f"{len(plan.folds)}"
    )
    return replace(plan, folds=folds, notes=(*plan.notes, note))


def _merge(counts: list[tuple[int, int]]) -> list[list[int]] | None:
    """Consecutive fold indices grouped so each group meets the minimums (a short tail joins
    the group before it), or None when all of them together do not."""
    groups: list[list[int]] = []
    current: list[int] = []
    rows = positives = 0
    for i, (r, p) in enumerate(counts):
        current.append(i)
        rows, positives = rows + r, positives + p
        if rows >= MIN_VALID_ROWS and positives >= MIN_VALID_POSITIVES:
            groups.append(current)
            current, rows, positives = [], 0, 0
    if current:
        if not groups:
            return None
        groups[-1].extend(current)
    return groups


def _merged(folds: list[Fold], group: list[int]) -> Fold:
    """One fold validating on the group's blocks, training only on rows every one of them
    could train on (walk-forward: the first block's training rows)."""
    if len(group) == 1:
        return folds[group[0]]
    parts = [folds[i] for i in group]
    train = parts[0].train
    for part in parts[1:]:
        train = np.intersect1d(train, part.train)
    valid = np.sort(np.concatenate([p.valid for p in parts]))
    name = f"folds {group[0] + 1}-{group[-1] + 1}"
    return Fold(name, train.astype(np.int64), valid, parts[0].purged, parts[0].embargoed)


def _remedy(
    plan: FoldPlan,
    y: npt.NDArray[Any],
    ts: IntArray,
    known_at: IntArray,
    cutoff: int,
    settings: PlanSettings,
) -> str:
    """What the settings need and what to change, with this data's numbers."""
    if plan.scheme != "walk_forward":
        return (
            f"Use fewer --folds (now {settings.folds}) or more data: random k-fold spreads "
            f"the {int(np.sum(y)):,} positives over the folds."
        )
    span = max(float(ts.max() - ts.min()) / DAY_US, 1.0)
    rows_per_day, positives_per_day = len(ts) / span, float(np.sum(y)) / span
    delay = float(np.median(known_at - ts)) / DAY_US
    need = history_days_needed(
        settings, delay_days=delay, rows_per_day=rows_per_day, positives_per_day=positives_per_day
    )
    have = float(cutoff - ts.min()) / DAY_US
    rates = f"{rows_per_day:,.0f} rows and {positives_per_day:,.1f} positives a day"
    if settings.maturity is None:
        rates += f", labels usable a median {delay:.1f} days after their event"
    if math.isinf(need):
        needs = f"This data has {have:.0f} days of event history and no positive row."
    elif need > have:
        needs = (
            f"With {settings.flags()}, walk-forward validation needs about {math.ceil(need)} "
            f"days of event history up to the cut-off at this data's rates ({rates}); this "
            f"data has {have:.0f}."
        )
    else:
        needs = (
            f"With {settings.flags()}, about {math.ceil(need)} days of event history would do "
            f"if rows and positives were spread evenly ({rates}); this data has {have:.0f}, "
            "but its positives are not spread evenly."
        )
    change = "Use more history (wait for more data, or an earlier --from), fewer --folds, "
    change += "a smaller --holdout or a shorter --embargo"
    if settings.maturity is not None:
        change += "; a shorter --maturity only if labels really arrive sooner than that"
    return f"{needs} {change}."


def _days(text: str, what: str) -> float:
    return parse_duration(text, what=f"'{what}'", allow_zero=True) / DAY_US
