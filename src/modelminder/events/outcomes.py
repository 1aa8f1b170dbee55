"""The label-outcome rule: what the log says an event's outcome was, as of a moment.

Training sets, ``minder evaluate`` and the performance monitors all ask the same question --
"was this event fraud, as far as we know at time T?" -- and get their answer here, so the
three cannot drift apart.

For each event, as of ``as_of`` (UTC microseconds):

* the labels known by then are those with ``known_at <= as_of``; when several are known, the
  one of the highest-ranked source wins (:func:`source_rank`: an outcome from the world, such
  as a chargeback, outranks a human review), and among those the latest known (ties: the one
  logged later) -- so a reviewer's correction, a later revision, replaces their first verdict;
* the event is *mature* once ``ts + maturity <= as_of``;
* ``outcome`` is the known label's value (1 or 0); with no label, 0 if the policy is
  ``negative_after_maturity`` and the event is mature (in card fraud: no chargeback within
  the period), else unknown (null);
* ``outcome_known_at`` is when the outcome became known: when the first label arrived, or
  when the event matured;
* ``usable`` says whether the event belongs in a training or evaluation set. Under
  ``negative_after_maturity`` only mature events are usable, labelled or not: keeping the
  quickly labelled young positives without their unlabelled peers would make recent data look
  like all fraud. Under ``exclude``, exactly the labelled events;
* ``usable_from`` is when a usable row could first have been used (purged validation needs
  it): under ``exclude`` when its latest label arrived; else when it matured, or later for a
  positive whose label came after that.

Monitors use ``outcome`` as it stands (an early chargeback is evidence as soon as it arrives);
training and evaluation keep only the ``usable`` rows.

Label-aware features (e.g. "frauds on this merchant in the last 7 days") follow a simpler rule,
:func:`first_known`: an event counts with its *first known* label, from the time it became
known, and is never counted twice or taken back. Replay and the live service apply it alike, so
a review that says fraud today and a chargeback that says the same next month count once; a
later label that disagrees changes outcomes (training, evaluation, monitoring), not the
features already served.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from modelminder.durations import parse_duration
from modelminder.errors import TrainingError

POLICIES = ("negative_after_maturity", "exclude")


@dataclass(frozen=True)
class LabelPolicy:
    """How events without a known label are treated.

    Examples
    --------
    >>> LabelPolicy().describe()  # doctest: +ELLIPSIS
    'events older than 30d at the cut-off are used, unlabelled ones as negative; younger ones...'
    >>> LabelPolicy("exclude").describe()
    'only events with a label known by the cut-off are used'
    >>> LabelPolicy(maturity="-3d")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.FeatureDefinitionError: The label policy 'maturity' must be ...
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


OUTCOME_COLUMNS = (
    "event_id", "outcome", "outcome_known_at", "labelled", "label_arrived_at", "usable",
    "usable_from",
)  # fmt: skip


def latest_time(max_event_ts: int | None, labels: pl.DataFrame) -> int:
    """The latest time the log knows of: its latest event time or label ``known_at`` (0 for
    an empty log). Callers cap it by their clock, so a label stamped in the future cannot
    mature everything.

    Examples
    --------
    >>> latest_time(50, pl.DataFrame({"known_at": [10, 70]}))
    70
    >>> latest_time(None, pl.DataFrame({"known_at": []}, schema={"known_at": pl.Int64}))
    0
    """
    newest = labels.get_column("known_at").max() if labels.height else None
    return max(int(max_event_ts or 0), int(newest) if newest is not None else 0)  # type: ignore[arg-type]


REVIEW_SOURCE = "review"


def source_rank(source: pl.Expr) -> pl.Expr:
    """The precedence of a label's source: 0 for a human review (``source = "review"``), 1 for
    every other source (chargebacks, confirmed reports: outcomes from the world). The
    higher rank wins, whatever the order the labels arrived in.

    Examples
    --------
    >>> frame = pl.DataFrame({"source": ["review", "chargeback"]})
    >>> frame.select(source_rank(pl.col("source"))).to_series().to_list()
    [0, 1]
    """
    return pl.when(source == REVIEW_SOURCE).then(pl.lit(0, pl.Int8)).otherwise(pl.lit(1, pl.Int8))


def known_labels(labels: pl.DataFrame, as_of: int, value: str) -> pl.DataFrame:
    """Per event, the labels known by ``as_of``: ``event_id, value`` (the winner: highest
    source rank, then latest known, then latest logged), ``first_known_at`` and
    ``last_known_at``. ``labels`` is the log's labels topic (in log order) with the label
    column named ``value``; without a ``source`` column all labels rank alike.

    Examples
    --------
    >>> labels = pl.DataFrame({
    ...     "event_id": ["a", "a", "a"], "y": [0.0, 1.0, 0.0],
    ...     "known_at": [1, 2, 3], "source": ["chargeback", "review", "review"]})
    >>> known_labels(labels, 9, "y").select("value", "first_known_at", "last_known_at").row(0)
    (0.0, 1, 3)
    """
    rank = source_rank(pl.col("source")) if "source" in labels.columns else pl.lit(0, pl.Int8)
    return (
        labels.filter(pl.col("known_at") <= as_of)
        .with_row_index("_order")
        .with_columns(rank.alias("_rank"))
        .sort("known_at", "_order")
        .group_by("event_id")
        .agg(
            pl.col(value)
            .sort_by("_rank", "known_at", "_order")
            .last()
            .cast(pl.Float64)
            .alias("value"),
            pl.col("known_at").min().alias("first_known_at"),
            pl.col("known_at").last().alias("last_known_at"),
        )
    )


def first_known(labels: pl.DataFrame) -> pl.DataFrame:
    """The labels label-aware features count: each event's first known label (ties: the
    first logged), in the order given.

    Examples
    --------
    >>> labels = pl.DataFrame({"event_id": ["a", "b", "a"], "known_at": [5, 1, 2]})
    >>> first_known(labels).rows()
    [('b', 1), ('a', 2)]
    """
    if labels.height == 0:
        return labels
    order = labels.with_row_index("_order")
    first = order.sort("known_at", "_order").unique("event_id", keep="first")
    return first.sort("_order").drop("_order")


def outcomes(
    events: pl.DataFrame,
    labels: pl.DataFrame,
    policy: LabelPolicy,
    *,
    as_of: int,
    value: str,
) -> pl.DataFrame:
    """The outcome of each of ``events`` (``event_id, ts``) as of ``as_of``: the columns of
    :data:`OUTCOME_COLUMNS`, one row per event, in the order given. See the module docstring.

    Examples
    --------
    >>> day = 86_400_000_000
    >>> events = pl.DataFrame({"event_id": ["a", "b", "c"], "ts": [0, 0, 40 * day]})
    >>> labels = pl.DataFrame({"event_id": ["a"], "is_fraud": [1.0], "known_at": [3 * day]})
    >>> out = outcomes(events, labels, LabelPolicy(), as_of=45 * day, value="is_fraud")
    >>> out.select("event_id", "outcome", "usable").rows()
    [('a', 1, True), ('b', 0, True), ('c', None, False)]
    """
    maturity = policy.maturity_us
    known = known_labels(labels, as_of, value)
    joined = events.select("event_id", "ts").join(known, on="event_id", how="left")
    labelled = pl.col("value").is_not_null()
    positive = labelled & (pl.col("value") > 0.5)
    matures_at = pl.col("ts") + maturity
    mature = matures_at <= as_of
    outcome: pl.Expr
    known_at: pl.Expr
    if policy.unlabeled == "exclude":
        outcome = pl.when(labelled).then(positive.cast(pl.Int8))
        known_at = pl.col("first_known_at")
        usable = labelled
        usable_from = pl.col("last_known_at")
    else:
        outcome = (
            pl.when(labelled).then(positive.cast(pl.Int8)).when(mature).then(pl.lit(0, pl.Int8))
        )
        known_at = pl.when(labelled).then(pl.col("first_known_at")).when(mature).then(matures_at)
        usable = mature
        usable_from = (
            pl.when(positive)
            .then(pl.max_horizontal(matures_at, "last_known_at"))
            .otherwise(matures_at)
        )
    return joined.select(
        "event_id",
        outcome.alias("outcome"),
        known_at.cast(pl.Int64).alias("outcome_known_at"),
        labelled.alias("labelled"),
        pl.col("last_known_at").alias("label_arrived_at"),
        usable.alias("usable"),
        pl.when(usable).then(usable_from).cast(pl.Int64).alias("usable_from"),
    )
