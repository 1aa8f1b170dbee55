"""How late labels arrive, estimated from the log, and the maturity that follows from it.

The label policy counts an unlabelled event as negative once it is older than its maturity
(:mod:`.outcomes`). Too long a maturity throws away the freshest data -- exactly what a
retrain after a change of fraud pattern needs; too short a one counts frauds whose
chargeback is still on its way as genuine. The right maturity is a property of the label
process, so it is measured from the log: the delay by which a stated share (default 95%) of
the eventual positives is known.

What is measured
----------------
For each event whose outcome, as of the cut-off, is positive (the label-outcome rule of
:func:`.outcomes.known_labels`): the *delay* ``known_at - ts`` of its first positive label --
from then on the event counts positive, whatever the maturity. Per source (chargeback,
review, ...), the same with that source's first positive label. Negative labels do not
matter: an unlabelled event is counted negative anyway.

Why a correction, and which
---------------------------
The log only holds the labels known by the cut-off, so a young event can only show a short
delay: an event 3 days old whose chargeback takes 10 days has no label yet and is invisible
among the positives. The plain quantile of the observed delays is biased short, most where
the log is short and the delays long. The data are *right-truncated* (a delay ``x`` of an
event of age ``a`` at the cut-off is seen only if ``x <= a``), the situation of AIDS
incubation times and of astronomical surveys, and the product-limit estimator for it
(Lynden-Bell 1971; Lagakos, Barraj and De Gruttola 1988) is the nonparametric maximum
likelihood estimate. In reverse time, the share of positives known within ``u`` is::

    F(u) = prod over observed delays u_j > u of (1 - d_j / R_j)
    R_j  = #{positives with delay <= u_j and age >= u_j}   (d_j: how many have delay u_j)

Every positive enters, each only where its age lets it: the old events (which could have
shown any delay) carry the tail, the young ones the short delays. The alternative -- keeping
only events older than some horizon (say twice the longest delay seen) -- throws away the
recent positives, needs the horizon guessed before the delays are known, and on a 90-day log
with chargebacks up to two months leaves nothing.

Limits, stated: delays longer than the oldest event's age cannot be seen at all (``F`` is
the share among positives known within the log's history); labels that never come (frauds
nobody reports) are not counted, no maturity can wait for them; the estimate assumes the
delay does not depend on when the event happened (a label process that sped up shows as a
mix).

The choice
----------
The share's quantile is rounded up -- to whole hours below 3 days, else to whole days -- and
raised to at least :data:`MIN_MATURITY` (a label pipeline that runs daily needs a day).
With fewer than :data:`MIN_POSITIVES` positives the estimate is noise: the maturity falls
back to :data:`FALLBACK_MATURITY` and the evidence says so. An explicit maturity is used as
given; the estimate is still recorded next to it, as a hint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.durations import parse_duration
from modelminder.errors import FeatureDefinitionError, TrainingError
from modelminder.events.outcomes import known_labels

if TYPE_CHECKING:
    from modelminder.events.log import EventLog

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
DEFAULT_SHARE = 0.95
MIN_POSITIVES = 30
"""Fewest positive labels an estimate may rest on (overall, and per source for its quantiles):
with fewer, a 95% quantile is the largest delay or two seen."""
FALLBACK_MATURITY = "30d"
"""The maturity used when there are too few positives to estimate one (the policy's default)."""
MIN_MATURITY = "1d"
HOURS_BELOW_US = 3 * DAY_US  # quantiles shorter than this are rounded to hours, not days
EVIDENCE_VERSION = 1
HOW = ("estimated", "fallback", "given")
MATURITY_HELP = "'auto' (estimate from the labels), 'auto:0.99' (another share), or a duration"


@dataclass(frozen=True)
class SourceDelays:
    """The delay of one label source's positive labels: how many, and quantiles
    ``(level, delay in microseconds)`` (empty when too few to estimate)."""

    source: str
    positives: int
    quantiles: tuple[tuple[float, int], ...] = ()

    def at(self, level: float) -> int | None:
        """The delay at ``level`` (e.g. 0.5), or None when not estimated."""
        return next((us for q, us in self.quantiles if math.isclose(q, level)), None)


@dataclass(frozen=True)
class MaturityEvidence:
    """The maturity a training run used, how it was chosen, and the label delays behind it.

    ``how`` is ``"estimated"`` (from the data), ``"fallback"`` (too few positives: the
    default) or ``"given"`` (an explicit maturity; the estimate, if any, is kept as a hint).
    ``delay_us`` is the estimated delay by which ``share`` of the eventual positives is known
    (None when not estimable); ``positives`` how many positive labels it rests on;
    ``support`` how many of them are on events old enough to have shown that delay (the
    estimate's tail rests on them); ``as_of`` the cut-off it was measured at. ``reason`` is
    the sentence printed with the fold plan.

    Examples
    --------
    >>> ev = MaturityEvidence("7d", "estimated", 0.95, 6 * DAY_US, 40, 35, (), 0, "from the data")
    >>> ev.describe()
    'maturity 7d, from the data'
    >>> MaturityEvidence.from_json(ev.to_json()) == ev
    True
    """

    maturity: str
    how: str
    share: float
    delay_us: int | None
    positives: int
    support: int | None
    sources: tuple[SourceDelays, ...]
    as_of: int
    reason: str
    version: int = EVIDENCE_VERSION

    def __post_init__(self) -> None:
        if self.how not in HOW:
            raise TrainingError(
                f"The maturity evidence's 'how' must be one of {', '.join(HOW)}. Got {self.how!r}."
            )
        parse_duration(self.maturity, what="maturity")
        _check_share(self.share)

    def describe(self) -> str:
        """The line ``minder train`` prints with the fold plan."""
        return f"maturity {self.maturity}, {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "maturity": self.maturity,
            "how": self.how,
            "share": self.share,
            "delay_us": self.delay_us,
            "positives": self.positives,
            "support": self.support,
            "sources": [
                {
                    "source": s.source,
                    "positives": s.positives,
                    "quantiles": [[q, us] for q, us in s.quantiles],
                }
                for s in self.sources
            ],
            "as_of": self.as_of,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MaturityEvidence:
        """Read what :meth:`to_json` wrote; raises TrainingError naming what is wrong."""
        version = data.get("version")
        if version != EVIDENCE_VERSION:
            raise TrainingError(
                f"The maturity evidence has version {version!r}; this modelminder reads "
                f"version {EVIDENCE_VERSION}."
            )
        try:
            delay, support = data.get("delay_us"), data.get("support")
            return cls(
                str(data["maturity"]),
                str(data["how"]),
                float(data["share"]),
                None if delay is None else int(delay),
                int(data["positives"]),
                None if support is None else int(support),
                tuple(
                    SourceDelays(
                        str(s["source"]),
                        int(s["positives"]),
                        tuple((float(q), int(us)) for q, us in s.get("quantiles") or ()),
                    )
                    for s in data.get("sources") or ()
                ),
                int(data["as_of"]),
                str(data["reason"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TrainingError(
                f"The maturity evidence is malformed ({type(exc).__name__}: {exc})."
            ) from None


def parse_request(text: str) -> tuple[float | None, str | None]:
    """Read a requested maturity: ``(share, None)`` for ``auto`` / ``auto:SHARE``, or
    ``(None, duration)`` for an explicit duration.

    Examples
    --------
    >>> parse_request("auto"), parse_request("auto:0.99"), parse_request("14d")
    ((0.95, None), (0.99, None), (None, '14d'))
    >>> parse_request("soon")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.TrainingError: The 'maturity' must be 'auto' (estimate ... Got 'soon'.
    """
    raw = text.strip() if isinstance(text, str) else text
    if raw == "auto":
        return DEFAULT_SHARE, None
    if isinstance(raw, str) and raw.startswith("auto:"):
        try:
            share = float(raw[5:])
        except ValueError:
            share = math.nan
        _check_share(share, raw)
        return share, None
    try:
        parse_duration(raw, what="maturity")
    except FeatureDefinitionError:  # restate the duration parser's error with every form
        raise TrainingError(
            f"The 'maturity' must be {MATURITY_HELP} like '7d' or '36h'. Got {text!r}."
        ) from None
    return None, raw


def _check_share(share: float, given: object = None) -> None:
    if not (isinstance(share, float | int) and 0.5 <= share < 1.0):
        got = share if given is None else given
        raise TrainingError(
            f"The maturity 'share' (of eventual positives known by the maturity) must be a "
            f"number in [0.5, 1), like auto:0.95. Got {got!r}."
        )


# -- the estimate -------------------------------------------------------------------------


def truncated_quantiles(
    delays: npt.ArrayLike, ages: npt.ArrayLike, levels: tuple[float, ...]
) -> list[int]:
    """Quantiles at ``levels`` of a delay distribution seen under right truncation: delay
    ``delays[i]`` was observable only because it is at most ``ages[i]`` (the event's age at
    the cut-off). The reverse-time product-limit estimate (see the module docstring); with
    every age large, the plain empirical quantiles (the smallest delay with at least that
    share at or below it).

    Examples
    --------
    >>> truncated_quantiles([1, 2, 3, 4], [100, 100, 100, 100], (0.5, 0.75, 1.0))
    [2, 3, 4]
    >>> # the same delays, but the events with short delays are young: the long delays
    >>> # were observable only on old events, so they carry more weight
    >>> truncated_quantiles([1, 2, 3, 4], [1, 2, 100, 100], (0.5,))
    [3]
    """
    x, t = np.asarray(delays, dtype=np.int64), np.asarray(ages, dtype=np.int64)
    if len(x) == 0 or len(x) != len(t):
        raise TrainingError(
            f"Delays and ages must be non-empty and of the same length. Got {len(x)} delays "
            f"and {len(t)} ages."
        )
    if (x > t).any() or (x < 0).any():
        i = int(np.flatnonzero((x > t) | (x < 0))[0])
        raise TrainingError(
            f"Each delay must be in [0, its event's age]: a label cannot be seen before its "
            f"event or after the cut-off. Got delay {int(x[i])} with age {int(t[i])} at "
            f"position {i}."
        )
    x, t = np.sort(x), np.sort(t)
    u, d = np.unique(x, return_counts=True)
    # Risk set in reverse time: delays <= u_j minus those whose age < u_j (their delay is
    # < u_j too, since a seen delay is at most its age), so R_j >= d_j >= 1.
    risk = np.searchsorted(x, u, side="right") - np.searchsorted(t, u, side="left")
    factor = 1.0 - d / risk
    # F(u_j) = prod_{l > j} factor_l: a suffix product, nondecreasing in j, F(u_last) = 1.
    suffix = np.cumprod(factor[::-1])[::-1]
    share = np.append(suffix[1:], 1.0)
    out = []
    for level in levels:
        j = int(np.searchsorted(share, level - 1e-12, side="left"))
        out.append(int(u[min(j, len(u) - 1)]))
    return out


def estimate_maturity(
    events: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    as_of: int,
    value: str,
    requested: str = "auto",
) -> MaturityEvidence:
    """The maturity for a training set with cut-off ``as_of``, and its evidence.

    ``events`` holds at least ``event_id, ts`` of the labelled events (others are ignored);
    ``labels`` is the labels topic (``event_id``, the label column ``value``, ``known_at``,
    ``source``). Only labels known by ``as_of`` and events before it count: the choice is
    what could have been known at the cut-off. ``requested`` is ``auto``, ``auto:SHARE`` or
    an explicit duration (:func:`parse_request`).

    Examples
    --------
    >>> day = DAY_US
    >>> n = 200
    >>> events = pl.DataFrame({"event_id": [f"e{i}" for i in range(n)],
    ...                        "ts": [i * day // 2 for i in range(n)]})
    >>> labels = pl.DataFrame({"event_id": [f"e{i}" for i in range(n)],
    ...                        "is_fraud": [1.0] * n, "source": ["chargeback"] * n,
    ...                        "known_at": [i * day // 2 + (i % 5 + 1) * day for i in range(n)]})
    >>> ev = estimate_maturity(events, labels, as_of=n * day // 2, value="is_fraud")
    >>> ev.maturity, ev.how, ev.positives
    ('5d', 'estimated', 195)
    >>> ev.describe()  # doctest: +ELLIPSIS
    'maturity 5d, from the data: 95% of eventual positives are known within 5.0 days ...'
    """
    share, given = parse_request(requested)
    delays = positive_delays(events, labels, as_of=as_of, value=value)
    overall = delays.filter(pl.col("source").is_null())
    n = overall.height
    use_share = share if share is not None else DEFAULT_SHARE
    levels = tuple(sorted({0.5, 0.9, use_share, 0.99}))
    sources = tuple(
        _source(str(name), part, levels)
        for (name,), part in sorted(
            delays.filter(pl.col("source").is_not_null()).partition_by("source", as_dict=True)
            .items()
        )
    )  # fmt: skip
    if n < MIN_POSITIVES:
        found = (
            f"only {n:,} positive label{'' if n == 1 else 's'} known by the cut-off, fewer "
            f"than the {MIN_POSITIVES} needed to estimate how late labels arrive"
        )
        if given is not None:
            reason = f"given; not checked against the data: {found}"
            return MaturityEvidence(
                given, "given", use_share, None, n, None, sources, as_of, reason
            )
        reason = f"the fallback: {found}; set --maturity to choose one"
        return MaturityEvidence(
            FALLBACK_MATURITY, "fallback", use_share, None, n, None, sources, as_of, reason
        )
    x, a = overall.get_column("delay").to_numpy(), overall.get_column("age").to_numpy()
    delay_us = truncated_quantiles(x, a, (use_share,))[0]
    support = int((a >= delay_us).sum())
    chosen, note = _round_up(delay_us)
    evidence = (
        f"{_pct(use_share)}% of eventual positives are known within {_days(delay_us)}{note} "
        f"(estimated from {n:,} positive labels, corrected for events too young for their "
        f"label to have arrived; {_source_text(sources, use_share)})"
    )
    if support < MIN_POSITIVES:
        evidence += (
            f"; uncertain: only {support:,} of them are on events old enough to have shown a "
            "delay that long"
        )
    how, maturity = ("given", given) if given is not None else ("estimated", chosen)
    if given is not None:
        reason = f"given; the data suggests {chosen}: {evidence}"
    else:
        reason = f"from the data: {evidence}; override with --maturity"
    return MaturityEvidence(maturity, how, use_share, delay_us, n, support, sources, as_of, reason)


def positive_delays(
    events: pl.DataFrame, labels: pl.DataFrame, *, as_of: int, value: str
) -> pl.DataFrame:
    """``event_id, source, delay, age`` (microseconds) of the eventual positives as of
    ``as_of``: one row per event with ``source`` null (its first positive label of any
    source), and one per event and source that labelled it positive. ``age`` is how old the
    event was at ``as_of``: the longest delay it could have shown."""
    empty = pl.DataFrame(
        schema={"event_id": pl.String, "source": pl.String, "delay": pl.Int64, "age": pl.Int64}
    )
    if labels.height == 0 or events.height == 0:
        return empty
    ts = events.select("event_id", pl.col("ts").cast(pl.Int64)).filter(pl.col("ts") < as_of)
    winners = known_labels(labels, as_of, value).filter(pl.col("value") > 0.5)
    source = pl.col("source") if "source" in labels.columns else pl.lit("label")
    positive = (
        labels.filter((pl.col("known_at") <= as_of) & (pl.col(value) > 0.5))
        .select("event_id", source.cast(pl.String).alias("source"), "known_at")
        .join(winners.select("event_id"), on="event_id", how="semi")
        .join(ts, on="event_id", how="inner")
    )
    first = pl.col("known_at").min()
    per_source = positive.group_by("event_id", "source").agg(first, pl.col("ts").first())
    per_event = positive.group_by("event_id").agg(first, pl.col("ts").first())
    both = pl.concat(
        [per_event.with_columns(pl.lit(None, pl.String).alias("source")), per_source],
        how="diagonal",
    )
    # A label stamped before its event (a backfill's clock) is a delay of zero, not negative.
    return both.select(
        "event_id",
        "source",
        pl.max_horizontal(pl.col("known_at") - pl.col("ts"), pl.lit(0, pl.Int64)).alias("delay"),
        (pl.lit(as_of, pl.Int64) - pl.col("ts")).alias("age"),
    ).sort("source", "event_id", nulls_last=False)


def maturity_from_log(log: EventLog, requested: str, *, as_of: int) -> MaturityEvidence:
    """:func:`estimate_maturity` on the log: the labels known by ``as_of`` and the times of
    the events they label (read by id: only the labelled events)."""
    labels = log.read("labels", to_ts=as_of + 1)
    label = log.schema.label
    ids = labels.filter(pl.col(label) > 0.5).get_column("event_id").unique().to_list()
    events = log.events_by_id(ids).select("event_id", "ts") if ids else _no_events()
    return estimate_maturity(events, labels, as_of=as_of, value=label, requested=requested)


def _no_events() -> pl.DataFrame:
    return pl.DataFrame(schema={"event_id": pl.String, "ts": pl.Int64})


def _source(name: str, part: pl.DataFrame, levels: tuple[float, ...]) -> SourceDelays:
    if part.height < MIN_POSITIVES:
        return SourceDelays(name, part.height)
    x, a = part.get_column("delay").to_numpy(), part.get_column("age").to_numpy()
    return SourceDelays(
        name, part.height, tuple(zip(levels, truncated_quantiles(x, a, levels), strict=True))
    )


def _source_text(sources: tuple[SourceDelays, ...], share: float) -> str:
    parts = []
    for s in sources:
        mid, top = s.at(0.5), s.at(share)
        if mid is None or top is None:
            parts.append(f"{s.source}: {s.positives:,} positives, too few for quantiles")
        else:
            parts.append(
                f"{s.source} p50 {_short(mid)}, p{_pct(share)} {_short(top)} "
                f"({s.positives:,} positives)"
            )
    return "; ".join(parts)


def _round_up(delay_us: int) -> tuple[str, str]:
    """The maturity for a quantile: rounded up (hours below 3 days, else days), at least
    the minimum; and a note when the minimum raised it."""
    floor = parse_duration(MIN_MATURITY, what="minimum maturity")
    if delay_us <= floor:
        return MIN_MATURITY, f", raised to the {MIN_MATURITY} minimum"
    if delay_us < HOURS_BELOW_US:
        return f"{math.ceil(delay_us / HOUR_US)}h", ""
    return f"{math.ceil(delay_us / DAY_US)}d", ""


def _days(us: int) -> str:
    if us < DAY_US:
        return f"{us / HOUR_US:.1f} hours"
    return f"{us / DAY_US:.1f} days"


def _short(us: int) -> str:
    return f"{us / HOUR_US:.1f}h" if us < DAY_US else f"{us / DAY_US:.1f}d"


def _pct(share: float) -> str:
    return f"{share * 100:g}"
