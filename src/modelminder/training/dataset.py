"""Training sets from the log: features as served at each event's time, labels as known at the
cut-off.

A training set is a replay of the events before the cut-off, joined with the label known by the
cut-off (``known_at <= cutoff``; when several sources labelled an event, the latest known wins).
Events without a known label are handled by a stated :class:`LabelPolicy`, never silently:

* ``negative_after_maturity`` (default) -- only events older than the maturity period at the
  cut-off are used; one with no label by then counts as negative (in card fraud: no
  chargeback within the period). Younger events are left out as immature, labelled or not:
  keeping the quickly labelled young positives without their peers would bias the data;
* ``exclude`` -- only events with a known label are used.

Each row keeps ``label_known_at``: from when it was usable for training (its ``known_at``
under ``exclude``; else when it matured, or later for a positive whose label came later).
Purged validation needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.durations import parse_duration
from modelminder.errors import TrainingError
from modelminder.events.log import EventLog
from modelminder.features.plan import Plan
from modelminder.logreplay import replay_log

POLICIES = ("negative_after_maturity", "exclude")


@dataclass(frozen=True)
class LabelPolicy:
    """How events without a label known by the cut-off are treated.

    Examples
    --------
    >>> LabelPolicy().describe()  # doctest: +ELLIPSIS
    'events older than 30d at the cut-off are used, unlabelled ones as negative; younger ones...'
    >>> LabelPolicy("exclude").describe()
    'only events with a label known by the cut-off are used'
    """

    unlabeled: str = "negative_after_maturity"
    maturity: str = "30d"

    def __post_init__(self) -> None:
        if self.unlabeled not in POLICIES:
            raise TrainingError(
                f"The label policy 'unlabeled' must be one of {', '.join(POLICIES)}. "
                f"Got {self.unlabeled!r}."
            )
        parse_duration(self.maturity, what="label policy 'maturity'")

    @property
    def maturity_us(self) -> int:
        return parse_duration(self.maturity, what="label policy 'maturity'")

    def describe(self) -> str:
        if self.unlabeled == "exclude":
            return "only events with a label known by the cut-off are used"
        return (
            f"events older than {self.maturity} at the cut-off are used, unlabelled ones as "
            "negative; younger ones are left out"
        )


@dataclass(frozen=True)
class TrainingSet:
    """Rows in log order: ``offset, event_id, ts, content_hash, label, label_known_at`` and the
    features; ``labelled`` says whether the label was known (else matured)."""

    frame: pl.DataFrame
    feature_names: list[str]
    cutoff: int
    policy: LabelPolicy
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.frame.height

    def X(self) -> npt.NDArray[np.float64]:
        """Features as a float64 matrix (NaN for missing)."""
        return np.ascontiguousarray(self.frame.select(self.feature_names).to_numpy(), np.float64)

    def y(self) -> npt.NDArray[np.int64]:
        return self.frame.get_column("label").to_numpy().astype(np.int64)

    def ts(self) -> npt.NDArray[np.int64]:
        return self.frame.get_column("ts").to_numpy().astype(np.int64)

    def known_at(self) -> npt.NDArray[np.int64]:
        return self.frame.get_column("label_known_at").to_numpy().astype(np.int64)

    def offsets(self) -> tuple[int, int]:
        col = self.frame.get_column("offset")
        return int(col.min()), int(col.max())  # type: ignore[arg-type]

    def describe(self) -> str:
        c = self.counts
        return (
            f"{c['rows']:,} rows ({c['positives']:,} positive, {c['labelled_negatives']:,} "
            f"labelled negative, {c['matured_negatives']:,} matured negative); "
            f"{c['immature']:,} immature events left out; {self.policy.describe()}"
        )

    def to_meta(self) -> dict[str, Any]:
        """What the registry records about the data a model was trained on."""
        lo, hi = self.offsets()
        ts = self.ts()
        return {
            "from_offset": lo,
            "to_offset": hi,
            "from_ts": int(ts.min()),
            "to_ts": int(ts.max()),
            "cutoff": self.cutoff,
            "label_policy": {"unlabeled": self.policy.unlabeled, "maturity": self.policy.maturity},
            "counts": dict(self.counts),
        }


def build_training_set(
    log: EventLog,
    plan: Plan,
    *,
    cutoff: int,
    now: int,
    policy: LabelPolicy | None = None,
    from_ts: int | None = None,
) -> TrainingSet:
    """Replay the events with time in ``[from_ts, cutoff)`` and join the labels known by
    ``cutoff`` (all times in UTC microseconds).

    Raises :class:`TrainingError` for a cut-off after ``now``, an empty range, no labels known
    by the cut-off, or a single class.
    """
    policy = policy or LabelPolicy()
    if cutoff > now:
        raise TrainingError(
            f"The cut-off {_iso(cutoff)} is in the future (now is {_iso(now)}). Labels after "
            "now are not known yet; pick a cut-off at or before now."
        )
    if from_ts is not None and from_ts >= cutoff:
        raise TrainingError(
            f"The training range is empty: from {_iso(from_ts)} is not before the cut-off "
            f"{_iso(cutoff)}."
        )
    features = replay_log(log, plan, from_ts=from_ts, to_ts=cutoff)
    if features.height == 0:
        raise TrainingError(
            f"No events in the log before the cut-off {_iso(cutoff)}"
            + (f" from {_iso(from_ts)}" if from_ts is not None else "")
            + ". Ingest events first, or move the range."
        )
    raw = log.read("events", from_ts=from_ts, to_ts=cutoff)
    fields = [c for c in raw.columns if c not in ("offset", "event_id")]
    # Identical content under different ids (a re-sent event) is a duplicate the report finds.
    events = raw.select(
        "offset", "event_id", "ts", pl.struct(fields).hash(seed=0).alias("content_hash")
    )
    value_col = plan.feature_set.label_value
    labels = (
        log.read("labels")
        .filter(pl.col("known_at") <= cutoff)
        .sort("known_at")
        .group_by("event_id")
        .agg(pl.col(value_col).last().alias("_value"), pl.col("known_at").last().alias("_known"))
    )
    if labels.height == 0:
        raise TrainingError(
            f"No labels are known by the cut-off {_iso(cutoff)}, so there is nothing to learn "
            "from. Ingest labels (minder ingest FILE --topic labels) or move the cut-off later."
        )
    table = events.join(features, on="event_id", how="inner").join(
        labels, on="event_id", how="left"
    )
    matures_at = pl.col("ts") + policy.maturity_us
    labelled = pl.col("_value").is_not_null()
    positive = labelled & (pl.col("_value").cast(pl.Float64) > 0.5)
    if policy.unlabeled == "exclude":
        keep = labelled
        known = pl.col("_known")
    else:
        # Only mature events, labelled or not: keeping the quickly labelled young positives
        # without their unlabelled peers would make recent data look like all fraud. A row
        # is usable from when it matured, and a positive only once its label is known too.
        keep = matures_at <= cutoff
        known = (
            pl.when(positive).then(pl.max_horizontal(matures_at, "_known")).otherwise(matures_at)
        )
    table = table.with_columns(
        label=positive.fill_null(False),
        label_known_at=known,
        _labelled=labelled,
        _keep=keep,
    )
    immature = int(table.filter(~pl.col("_keep")).height)
    table = table.filter(pl.col("_keep")).sort("offset")
    counts = {
        "rows": table.height,
        "positives": int(table.get_column("label").sum()),
        "labelled_negatives": int(table.filter(pl.col("_labelled") & ~pl.col("label")).height),
        "matured_negatives": int(table.filter(~pl.col("_labelled")).height),
        "immature": immature,
    }
    if counts["positives"] == 0 or counts["positives"] == table.height:
        only = "negative" if counts["positives"] == 0 else "positive"
        raise TrainingError(
            f"Every one of the {table.height:,} training rows is {only}: a model needs both "
            "classes. Move the cut-off later (more labels), widen the range, or change the "
            f"label policy (now: {policy.describe()})."
        )
    names = list(plan.names)
    frame = table.select(
        "offset",
        "event_id",
        "ts",
        "content_hash",
        pl.col("label").cast(pl.Int8),
        pl.col("label_known_at").cast(pl.Int64),
        pl.col("_labelled").alias("labelled"),
        pl.col("_known").alias("label_arrived_at"),
        *names,
    )
    return TrainingSet(frame, names, cutoff, policy, counts)


def _iso(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat(timespec="seconds")
