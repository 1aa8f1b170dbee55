"""Review-based metrics two ways: on the reviewed items as they are, and over all traffic.

Reviewed items are not a random sample of traffic: the sampling policies send, e.g., every
blocked event, a share of the uncertain ones and 2% of everything else. Precision, recall and
the fraud rate computed on the reviewed items therefore describe the *review queue*, not the
model's traffic (recall on reviewed items is far too high: the flagged events are
over-represented). Each item records the probability ``propensity`` with which it came to be
reviewed, so every item can stand for ``1 / propensity`` events of traffic and the metrics can
be corrected (Horvitz-Thompson totals, Hajek ratios). The propensity must be that of being
*reviewed*: a budget that leaves selected items unreviewed changes it (see the doc).

Input: a Polars frame of reviewed items with ``flagged`` (the model's decision was positive,
block or review), ``label`` (the reviewer's verdict, 1 fraud / 0 legit; drop "unsure" first)
and ``propensity`` (the item's inclusion probability, in (0, 1]).

Method (docs/review-estimates.md has the derivation and a simulation study):

* naive: plain shares on the reviewed items, with a Wilson score interval;
* corrected: the Hajek ratio ``R = sum(a_i / p_i) / sum(b_i / p_i)`` (precision:
  a = flagged * label, b = flagged; recall: a = flagged * label, b = label; fraud rate:
  a = label, b = 1), a ratio of Horvitz-Thompson totals. Its interval is Fieller's: every R0
  for which ``S(R0) = sum((a_i - R0 b_i) / p_i)`` is within z standard errors of zero, the
  variance being the Poisson-sampling one taken at R0 (Wilson's idea, for a weighted ratio)::

      Var S(R0) = sum((1 - p_i) (a_i - R0 b_i)^2 / p_i^2)

  Divided by ``sum(b_i / p_i)^2`` at R0 = R it is the linearization (delta-method) variance
  of R. An item with propensity 1 adds no variance (it is a census of its part of traffic).
  ``ess`` is Kish's effective sample size ``(sum w)^2 / sum w^2`` of the items entering the
  ratio's denominator, with ``w = 1 / p``.
* Reviewer error: without ``reviewer_accuracy`` the corrected numbers estimate the metric
  *as the reviewers would label all traffic*. With a known :class:`ReviewerAccuracy` each
  label is replaced by its unbiased stand-in ``(label - (1 - sp)) / (se + sp - 1)`` and the
  variance gains the labels' own noise, so the numbers estimate the metric under the truth.

Pure: no I/O, no state. Raises :class:`~modelminder.errors.MonitorError` for input it cannot
use (missing columns, nulls, labels other than 0/1, a propensity outside (0, 1], no items).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.errors import MonitorError
from modelminder.jsonable import jsonable

VERSION = 1
COLUMNS = ("flagged", "label", "propensity")
METRICS = ("precision", "recall", "fraud_rate")
NAIVE = "naive-wilson"
CORRECTED = "hajek-fieller"
CORRECTED_ACCURACY = "hajek-fieller-misclassification"

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ReviewerAccuracy:
    """How often reviewers are right: ``sensitivity`` on fraud, ``specificity`` on legit.

    Measure them on items whose truth is known another way (chargebacks, a second reviewer
    on an audit sample). Their own uncertainty is not carried into the intervals.

    Examples
    --------
    >>> ReviewerAccuracy(0.95, 0.95).informativeness
    0.9
    """

    sensitivity: float
    specificity: float

    def __post_init__(self) -> None:
        for name in ("sensitivity", "specificity"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.5 < value <= 1.0):
                raise MonitorError(
                    f"The reviewers' '{name}' must be a number in (0.5, 1]: a reviewer no "
                    f"better than a coin cannot be corrected for. Got {value!r}."
                )

    @property
    def informativeness(self) -> float:
        """Youden's J, ``sensitivity + specificity - 1``: what divides the correction."""
        return round(self.sensitivity + self.specificity - 1.0, 12)


@dataclass(frozen=True)
class Estimate:
    """One number with its interval.

    ``n`` counts the reviewed items in the metric's denominator (flagged items for precision,
    items labelled fraud for recall, all items for the fraud rate; all items for recall with
    a misclassification correction); ``ess`` is their effective sample size (``n`` when
    unweighted). ``value``, ``low`` and ``high`` are NaN when the denominator is empty.
    """

    value: float
    low: float
    high: float
    n: int
    method: str
    ess: float

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def covers(self, x: float) -> bool:
        """Whether ``low <= x <= high``."""
        return self.low <= x <= self.high


@dataclass(frozen=True)
class MetricEstimate:
    """A metric on the reviewed items as they are (``naive``) and over all traffic."""

    naive: Estimate
    corrected: Estimate


@dataclass(frozen=True)
class ReviewEstimates:
    """Precision, recall and fraud rate, naive and corrected, with what they rest on.

    ``estimated_traffic`` is ``sum(1 / propensity)``: it should be close to the number of
    events the policies considered; far off, the recorded propensities are wrong.
    """

    precision: MetricEstimate
    recall: MetricEstimate
    fraud_rate: MetricEstimate
    items: int
    effective_sample_size: float
    estimated_traffic: float
    confidence: float
    reviewer_accuracy: ReviewerAccuracy | None

    def to_json(self) -> dict[str, Any]:
        """Strict JSON (NaN as null) with a ``version`` field; :meth:`from_json` reads it."""
        out: dict[str, Any] = {"version": VERSION}
        for name in METRICS:
            pair: MetricEstimate = getattr(self, name)
            out[name] = {k: vars(getattr(pair, k)) for k in ("naive", "corrected")}
        out |= {
            "items": self.items,
            "effective_sample_size": self.effective_sample_size,
            "estimated_traffic": self.estimated_traffic,
            "confidence": self.confidence,
            "reviewer_accuracy": None
            if self.reviewer_accuracy is None
            else vars(self.reviewer_accuracy),
        }
        result: dict[str, Any] = jsonable(out)
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewEstimates:
        """Read what :meth:`to_json` wrote; another version or a malformed record raises."""
        if data.get("version") != VERSION:
            raise MonitorError(
                f"These review estimates have version {data.get('version')!r}; this "
                f"modelminder reads version {VERSION}. Recompute them with "
                "estimate_review_metrics."
            )
        try:
            pairs = {
                name: MetricEstimate(*(_estimate(data[name][k]) for k in ("naive", "corrected")))
                for name in METRICS
            }
            accuracy = data["reviewer_accuracy"]
            return cls(
                **pairs,
                items=int(data["items"]),
                effective_sample_size=float(data["effective_sample_size"]),
                estimated_traffic=float(data["estimated_traffic"]),
                confidence=float(data["confidence"]),
                reviewer_accuracy=None if accuracy is None else ReviewerAccuracy(**accuracy),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(
                f"The stored review estimates are malformed ({type(exc).__name__}: {exc}). "
                "Recompute them with estimate_review_metrics."
            ) from exc


def _estimate(d: Mapping[str, Any]) -> Estimate:
    def num(key: str) -> float:
        return math.nan if d[key] is None else float(d[key])

    return Estimate(
        num("value"), num("low"), num("high"), int(d["n"]), str(d["method"]), num("ess")
    )


def estimate_review_metrics(
    items: pl.DataFrame,
    *,
    confidence: float = 0.95,
    reviewer_accuracy: ReviewerAccuracy | None = None,
) -> ReviewEstimates:
    """Naive and selection-corrected precision, recall and fraud rate of reviewed items.

    Parameters
    ----------
    items
        One row per reviewed item: ``flagged`` (bool, or 0/1), ``label`` (0/1 or bool) and
        ``propensity`` (float in (0, 1]). Other columns are ignored.
    confidence
        Coverage of the intervals, in (0, 1).
    reviewer_accuracy
        When given, labels are corrected for reviewer error; when None, the corrected
        numbers estimate the metrics as the reviewers would label all traffic. With a
        ``source`` column, only rows whose source is ``review`` are corrected (an
        outcome from elsewhere, e.g. a chargeback, is taken as exact).

    Returns
    -------
    ReviewEstimates

    Examples
    --------
    Forty blocked events, all reviewed (30 fraud); sixty of the rest of traffic, reviewed
    at 5% (3 fraud). On the reviewed items the model seems to catch 30 of 33 frauds; over
    traffic the 3 unflagged frauds stand for 60:

    >>> items = pl.DataFrame({
    ...     "flagged": [True] * 40 + [False] * 60,
    ...     "label": [1] * 30 + [0] * 10 + [1] * 3 + [0] * 57,
    ...     "propensity": [1.0] * 40 + [0.05] * 60,
    ... })
    >>> est = estimate_review_metrics(items)
    >>> r = est.recall
    >>> [round(x, 3) for x in (r.naive.value, r.naive.low, r.naive.high)]
    [0.909, 0.764, 0.969]
    >>> [round(x, 3) for x in (r.corrected.value, r.corrected.low, r.corrected.high)]
    [0.333, 0.192, 1.0]
    >>> est.estimated_traffic, round(r.corrected.ess, 1)
    (1240.0, 6.6)
    >>> est.to_json()["recall"]["corrected"]["method"]
    'hajek-fieller'
    """
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0):
        raise MonitorError(f"'confidence' must be a float in (0, 1). Got {confidence!r}.")
    flagged, label, propensity = _columns(items)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    w = 1.0 / propensity
    if reviewer_accuracy is None:
        y, noise = label, np.zeros_like(label)
    else:
        y, noise = _unbiased_labels(label, reviewer_accuracy)
        if "source" in items.columns:  # labels from elsewhere (chargebacks) are not reviews
            exact = (items.get_column("source") != "review").to_numpy()
            y, noise = np.where(exact, label, y), np.where(exact, 0.0, noise)
    corrected = CORRECTED if reviewer_accuracy is None else CORRECTED_ACCURACY
    ones = np.ones_like(label)
    # (numerator, denominator) per metric; the naive ones use the labels as given.
    parts = {
        "precision": ((flagged * label, flagged), (flagged * y, flagged, flagged, 0.0)),
        "recall": ((flagged * label, label), (flagged * y, y, flagged, 1.0)),
        "fraud_rate": ((label, ones), (y, ones, ones, 0.0)),
    }
    pairs = {}
    for name, ((na, nb), (a, b, da, db)) in parts.items():
        pairs[name] = MetricEstimate(
            naive=_wilson(na, nb, z),
            corrected=_hajek(a, b, w, z, corrected, noise, (da, db)),
        )
    return ReviewEstimates(
        **pairs,
        items=len(w),
        effective_sample_size=_kish(w),
        estimated_traffic=float(np.sum(w)),
        confidence=confidence,
        reviewer_accuracy=reviewer_accuracy,
    )


def _columns(items: pl.DataFrame) -> tuple[Floats, Floats, Floats]:
    """``flagged``, ``label`` and ``propensity`` as float arrays, validated once."""
    missing = [c for c in COLUMNS if c not in items.columns]
    if missing:
        raise MonitorError(
            f"The reviewed items lack the column(s) {missing}; they need {list(COLUMNS)} "
            f"(got {items.columns}). Select them from the review items and their labels."
        )
    if items.height == 0:
        raise MonitorError(
            "There are no reviewed items to estimate from. Review some items first, or "
            "widen the time range."
        )
    out = []
    for name in COLUMNS:
        col = items.get_column(name)
        if col.null_count():
            raise MonitorError(
                f"Column '{name}' of the reviewed items has {col.null_count()} missing "
                f"value(s). Drop unlabelled or 'unsure' items before estimating."
            )
        if not (col.dtype.is_numeric() or col.dtype == pl.Boolean):
            raise MonitorError(f"Column '{name}' must be numeric or boolean. Got {col.dtype}.")
        out.append(col.cast(pl.Float64).to_numpy())
    flagged, label, propensity = out
    for name, values in (("flagged", flagged), ("label", label)):
        bad = values[(values != 0.0) & (values != 1.0)]
        if len(bad):
            raise MonitorError(
                f"Column '{name}' of the reviewed items must hold 0/1 (or booleans). Got "
                f"{bad[0]!r} in {len(bad)} row(s). Map verdicts to 1 fraud / 0 legit and "
                "drop 'unsure' ones."
            )
    bad = propensity[~((propensity > 0.0) & (propensity <= 1.0))]
    if len(bad):
        raise MonitorError(
            f"Every 'propensity' must be the item's inclusion probability, in (0, 1]. Got "
            f"{bad[0]!r} in {len(bad)} row(s). An item no policy could select has no weight: "
            "record the probability each item was actually selected with."
        )
    return flagged, label, propensity


def _unbiased_labels(label: Floats, acc: ReviewerAccuracy) -> tuple[Floats, Floats]:
    """Labels corrected for reviewer error, and an unbiased estimate of their noise variance.

    E[label | truth t] = (1 - sp) + J t, so ``(label - (1 - sp)) / J`` has expectation t. Its
    variance is ``v(t) = (sp (1 - sp) + t (se (1 - se) - sp (1 - sp))) / J^2``, linear in t,
    so putting the corrected label in place of t estimates it without bias.
    """
    se, sp, j = acc.sensitivity, acc.specificity, acc.informativeness
    y = (label - (1.0 - sp)) / j
    noise = (sp * (1.0 - sp) + y * (se * (1.0 - se) - sp * (1.0 - sp))) / j**2
    return y, noise


def _wilson(a: Floats, b: Floats, z: float) -> Estimate:
    """Share of ``a`` among the rows where ``b`` is 1, with a Wilson score interval."""
    n = int(np.sum(b))
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, NAIVE, 0.0)
    p = float(np.sum(a)) / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At p = 0 or 1 the bound equals p exactly in reals; keep rounding from crossing it.
    low, high = max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))
    return Estimate(p, low, high, n, NAIVE, float(n))


def _hajek(
    a: Floats,
    b: Floats,
    w: Floats,
    z: float,
    method: str,
    noise: Floats,
    slopes: tuple[Floats | float, float],
) -> Estimate:
    """The Hajek ratio ``R = sum(w a) / sum(w b)`` with a Fieller (test-inversion) interval.

    The interval holds every R0 whose estimating equation ``S(R0) = sum(w (a - R0 b))``
    (zero at the estimate) is within ``z`` standard errors of zero, with its variance taken
    at R0 -- as Wilson's interval does for a plain share -- rather than at the estimate::

        Var S(R0) = sum((1 - p) w^2 (a - R0 b)^2) + sum(w (da - R0 db)^2 noise)

    (the second term is the labels' own noise: ``noise`` is 0 when labels are taken as the
    truth; ``slopes`` = (da, db) is how ``a`` and ``b`` change with the label). ``S(R0)^2 <=
    z^2 Var S(R0)`` is a quadratic inequality in R0. Dividing ``Var S(R)`` by
    ``sum(w b)^2`` gives the linearization (delta-method) variance of R. When no item (or
    every item) of the denominator is in the numerator, that variance is 0 at every R0: the
    sampled items' part then keeps the Wilson bound at their Kish effective sample size.
    """
    domain = b != 0.0
    n = int(np.sum(domain))
    big_a, big_b = float(np.sum(w * a)), float(np.sum(w * b))
    if n == 0 or big_b <= 0.0:
        return Estimate(math.nan, math.nan, math.nan, n, method, 0.0)
    r = big_a / big_b
    da, db = slopes
    c, m = (1.0 - 1.0 / w) * w * w, w * noise
    saa = float(np.sum(c * a * a + m * da * da))
    sab = float(np.sum(c * a * b + m * da * db))
    sbb = float(np.sum(c * b * b + m * db * db))
    z2 = z * z
    # q2 R0^2 + q1 R0 + q0 <= 0
    q2, q1, q0 = big_b**2 - z2 * sbb, -2.0 * (big_a * big_b - z2 * sab), big_a**2 - z2 * saa
    low, high = 0.0, 1.0  # the denominator is not clearly positive: the set is unbounded
    if q2 > 0.0:
        half = math.sqrt(max(q1 * q1 - 4.0 * q2 * q0, 0.0)) / (2.0 * q2)
        centre = -q1 / (2.0 * q2)
        low, high = max(0.0, min(centre - half, r)), min(1.0, max(centre + half, r))
    value = min(max(r, 0.0), 1.0)
    # At a boundary (no event in the numerator, or all of them) the plug-in variance at R0
    # vanishes with the data and the interval would shrink to the point. The sampled part
    # (p < 1) is then bounded by Wilson at its effective sample size (Korn and Graubard's idea
    # for survey shares), scaled by its share of the weighted denominator; a census part is
    # known exactly.
    sampled = domain & (w > 1.0)
    if not np.any(noise) and np.any(sampled):
        share = float(np.sum(w[sampled] * b[sampled])) / big_b
        ess_s = _kish(w[sampled])
        if not np.any(a[domain]):
            high = max(high, share * z2 / (ess_s + z2))
        elif np.array_equal(a[domain], b[domain]):
            low = min(low, 1.0 - share * z2 / (ess_s + z2))
    return Estimate(value, min(low, value), max(high, value), n, method, _kish(w[domain]))


def _kish(w: Floats) -> float:
    """Kish's effective sample size of weights ``w``: ``(sum w)^2 / sum w^2``."""
    return float(np.sum(w) ** 2 / np.sum(w * w)) if len(w) else 0.0
