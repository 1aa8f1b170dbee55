"""Training sets from the log: features as served at each event's time, labels as known at the
cut-off.

A training set is a replay of the events before the cut-off, joined with their outcomes as of
the cut-off under a stated :class:`~modelminder.events.outcomes.LabelPolicy` -- the one
label-outcome rule of :mod:`modelminder.events.outcomes`, which ``minder evaluate`` and the
performance monitors use too. Only the rule's *usable* rows are kept.

Each row keeps ``label_known_at``: from when it was usable for training (the rule's
``usable_from``). Purged validation needs it.

A training set also carries how its policy's maturity was chosen
(:class:`~modelminder.events.delays.MaturityEvidence`: estimated from the label delays, the
fallback, or given), which ``minder train`` prints with the fold plan and the model card keeps
(in the guard report's ``data`` section: :func:`maturity_evidence` reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.errors import TrainingError
from modelminder.events.delays import MaturityEvidence
from modelminder.events.log import EventLog
from modelminder.events.outcomes import LabelPolicy, outcomes
from modelminder.features.plan import Plan
from modelminder.logreplay import replay_log
from modelminder.model.card import ModelCard, TrainingSummary


@dataclass(frozen=True)
class TrainingSet:
    """Rows in log order: ``offset, event_id, ts, content_hash, label, label_known_at`` and the
    features; ``labelled`` says whether the label was known (else matured).
    ``maturity_evidence``: how the policy's maturity was chosen (None: not recorded)."""

    frame: pl.DataFrame
    feature_names: list[str]
    cutoff: int
    policy: LabelPolicy
    counts: dict[str, int] = field(default_factory=dict)
    maturity_evidence: MaturityEvidence | None = None

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

    def maturity_note(self) -> str:
        """The line ``minder train`` prints after the fold plan: the maturity and why."""
        if self.policy.unlabeled == "exclude":
            return f"label policy: {self.policy.describe()} (no maturity)"
        if self.maturity_evidence is None:
            return f"maturity {self.policy.maturity}, given"
        return self.maturity_evidence.describe()

    def summary(self) -> TrainingSummary:
        """What the model card records about the data a model was trained on."""
        lo, hi = self.offsets()
        ts = self.ts()
        return TrainingSummary(
            lo, hi, int(ts.min()), int(ts.max()), self.cutoff, self.policy, dict(self.counts)
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
            **(
                {"maturity": self.maturity_evidence.to_json()}
                if self.maturity_evidence is not None
                else {}
            ),
        }


def maturity_evidence(card: ModelCard) -> MaturityEvidence | None:
    """How the maturity of a registered model's training set was chosen, from its card
    (None for a card written before it was recorded).

    Examples
    --------
    >>> maturity_evidence(ModelCard.example()) is None
    True
    """
    data = card.report.details.get("data")
    stored = data.get("maturity") if isinstance(data, dict) else None
    return None if stored is None else MaturityEvidence.from_json(stored)


def build_training_set(
    log: EventLog,
    plan: Plan,
    *,
    cutoff: int,
    now: int,
    policy: LabelPolicy | None = None,
    from_ts: int | None = None,
    maturity: MaturityEvidence | None = None,
    features: pl.DataFrame | None = None,
) -> TrainingSet:
    """Replay the events with time in ``[from_ts, cutoff)`` and join the labels known by
    ``cutoff`` (all times in UTC microseconds). ``maturity`` is how the policy's maturity
    was chosen (:func:`~modelminder.events.delays.maturity_from_log`), kept with the set.
    ``features`` is a replay computed earlier (``event_id`` and the plan's features, for at
    least these events), sliced instead of replaying again: a backtest replays its history
    once. The values are the same (a replayed feature sees only what came before its event).

    Raises :class:`TrainingError` for a cut-off after ``now``, an empty range, no labels known
    by the cut-off, or a single class.
    """
    policy = policy or LabelPolicy()
    if maturity is not None and maturity.maturity != policy.maturity:
        raise TrainingError(
            f"The maturity evidence is for a maturity of {maturity.maturity!r}, but the label "
            f"policy's maturity is {policy.maturity!r}: build the policy from the evidence "
            "(LabelPolicy(maturity=evidence.maturity))."
        )
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
    if features is None:
        features = replay_log(log, plan, from_ts=from_ts, to_ts=cutoff)
    else:
        span = log.read("events", from_ts=from_ts, to_ts=cutoff).select("event_id")
        features = span.join(features, on="event_id", how="inner")
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
    all_labels = log.read("labels")
    out = outcomes(events, all_labels, policy, as_of=cutoff, value=plan.feature_set.label_value)
    if not out.get_column("labelled").any():
        raise TrainingError(
            f"No labels are known by the cut-off {_iso(cutoff)}, so there is nothing to learn "
            "from. Ingest labels (minder ingest FILE --topic labels) or move the cut-off later."
        )
    table = events.join(features, on="event_id", how="inner").join(out, on="event_id", how="left")
    table = table.with_columns(
        label=(pl.col("outcome") == 1).fill_null(False),
        label_known_at=pl.col("usable_from"),
        _labelled=pl.col("labelled"),
        _keep=pl.col("usable"),
        _known=pl.col("label_arrived_at"),
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
    return TrainingSet(frame, names, cutoff, policy, counts, maturity)


def _iso(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat(timespec="seconds")
