"""The feature definition language: define a feature set once, compute it anywhere.

A :class:`FeatureSet` is an ordered list of features of three kinds:

* :class:`Window` -- an aggregation over the earlier events of the same entity key
  (``count``, ``sum``, ``mean``, ``std``, ``min``, ``max``, ``distinct``, ``since_last``)
  within a time window such as ``'1h'`` or ``'30d'``;
* :class:`LabelWindow` -- a *label-aware* aggregation (``label_count``, ``label_sum``) over
  the labels known before the event whose labelled events share the key: those of events whose
  time falls in the window (``over="event"``, the default), or those that *became known* in the
  window (``over="known"``: "chargebacks received on this merchant in the last 7 days");
* :class:`Compute` -- a row expression over event fields and features defined earlier
  (ratios, z-scores, ``log(amount)``...).

Examples
--------
>>> fs = FeatureSet(
...     "demo",
...     [
...         Window("card_count_1h", count(), by="card_id", window="1h"),
...         Window("card_amount_mean_30d", mean("amount"), by="card_id", window="30d"),
...         Compute("amount_vs_mean", col("amount") / col("card_amount_mean_30d")),
...     ],
... )
>>> fs.validate({"card_id": "str", "amount": "float"})
>>> fs.feature_names
['card_count_1h', 'card_amount_mean_30d', 'amount_vs_mean']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modelminder.durations import parse_duration
from modelminder.errors import FeatureDefinitionError
from modelminder.features.expr import Expr, as_expr, col, lit

__all__ = [
    "Agg",
    "Compute",
    "FeatureSet",
    "LabelWindow",
    "Window",
    "col",
    "count",
    "distinct",
    "label_count",
    "label_sum",
    "lit",
    "max_",
    "mean",
    "min_",
    "since_last",
    "std",
    "sum_",
]

FIELD_TYPES = ("str", "float", "int", "bool")
WINDOW_KINDS = ("count", "sum", "mean", "std", "min", "max", "distinct", "since_last")
LABEL_KINDS = ("label_count", "label_sum")
# What a label window's time range is over: the labelled event's time, or when the label
# became known (its ``known_at``).
LABEL_OVER = ("event", "known")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = ("event_id", "ts")


@dataclass(frozen=True)
class Agg:
    """An aggregation: its kind and, for value aggregations, the expression aggregated."""

    kind: str
    value: Expr | None = None
    field: str | None = None  # for 'distinct': the categorical field counted

    def describe(self) -> str:
        arg = self.value.describe() if self.value is not None else (self.field or "")
        return f"{self.kind}({arg})"


def count() -> Agg:
    """Number of earlier events of the key in the window."""
    return Agg("count")


def sum_(value: Expr | str) -> Agg:
    """Sum of ``value`` over earlier events in the window (0 when there are none)."""
    return Agg("sum", as_expr(value))


def mean(value: Expr | str) -> Agg:
    """Mean of ``value`` (missing when the window is empty)."""
    return Agg("mean", as_expr(value))


def std(value: Expr | str) -> Agg:
    """Sample standard deviation (ddof=1) of ``value``; missing with fewer than 2 events."""
    return Agg("std", as_expr(value))


def min_(value: Expr | str) -> Agg:
    """Minimum of ``value`` (missing when the window is empty)."""
    return Agg("min", as_expr(value))


def max_(value: Expr | str) -> Agg:
    """Maximum of ``value`` (missing when the window is empty)."""
    return Agg("max", as_expr(value))


def distinct(field_name: str) -> Agg:
    """Number of distinct values of a field (any type) among earlier events in the window."""
    return Agg("distinct", field=field_name)


def since_last() -> Agg:
    """Seconds since the latest earlier event of the key (missing if none within the window)."""
    return Agg("since_last")


def label_count() -> Agg:
    """Number of labels known before the event, of the key's events, in the window (see
    :class:`LabelWindow` for which time the window is over)."""
    return Agg("label_count")


def label_sum() -> Agg:
    """Sum of the label value (e.g. ``is_fraud``) over the labels :func:`label_count` counts."""
    return Agg("label_sum")


def _key_tuple(by: str | Sequence[str]) -> tuple[str, ...]:
    return (by,) if isinstance(by, str) else tuple(by)


@dataclass(frozen=True)
class Window:
    """A keyed window aggregation over the earlier events of the same key.

    For an event ``e`` with key ``k`` and time ``t`` it aggregates the events of ``k`` that came
    earlier in the log with event time in ``(t - window, t]``.
    """

    name: str
    agg: Agg
    by: str | Sequence[str]
    window: str

    @property
    def keys(self) -> tuple[str, ...]:
        return _key_tuple(self.by)

    @property
    def window_us(self) -> int:
        return parse_duration(self.window, what=f"'window' of feature '{self.name}'")

    def describe(self) -> str:
        return f"window({self.agg.describe()} by {','.join(self.keys)} over {self.window})"


@dataclass(frozen=True)
class LabelWindow:
    """A label-aware aggregation (bitemporal).

    For an event at time ``t`` with key ``k`` it aggregates labels whose labelled event has
    key ``k`` and that were known before the event (``known_at < t``), each event's counted
    label once (the log decides which: the first known, see
    :func:`modelminder.events.outcomes.first_known`). Which of them depends on ``over``:

    * ``over="event"`` (default): the labelled event's time is in ``(t - window, t]``
      ("frauds among this merchant's events of the last 28 days, as far as known now"). With
      labels that take days to arrive, a window shorter than the usual delay stays empty.
    * ``over="known"``: the label became known in ``(t - window, t)``, whatever the labelled
      event's own time ("chargebacks received on this merchant in the last 7 days").

    Examples
    --------
    >>> f = LabelWindow("m_cb_7d", label_sum(), by="merchant_id", window="7d", over="known")
    >>> f.describe()
    'label_window(label_sum() by merchant_id over 7d of known time)'
    >>> FeatureSet("t", [LabelWindow("x", label_sum(), by="m", window="7d", over="arrival")]
    ...            ).validate({"m": "str"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.FeatureDefinitionError: The 'over' of feature 'x' must be one of ...
    """

    name: str
    agg: Agg
    by: str | Sequence[str]
    window: str
    over: str = "event"

    @property
    def keys(self) -> tuple[str, ...]:
        return _key_tuple(self.by)

    @property
    def window_us(self) -> int:
        return parse_duration(self.window, what=f"'window' of feature '{self.name}'")

    @property
    def over_known(self) -> bool:
        """Is the window over the time labels became known (``over="known"``)?"""
        return self.over == "known"

    def describe(self) -> str:
        # Over event time the text is what it was before ``over`` existed, so the
        # fingerprints of existing feature sets (and the models trained on them) still match.
        over = " of known time" if self.over_known else ""
        return (
            f"label_window({self.agg.describe()} by {','.join(self.keys)} over {self.window}{over})"
        )


@dataclass(frozen=True)
class Compute:
    """A row expression over event fields and features defined before it."""

    name: str
    expr: Expr

    def describe(self) -> str:
        return f"compute({self.expr.describe()})"


Feature = Window | LabelWindow | Compute


@dataclass(frozen=True)
class FeatureSet:
    """An ordered, named collection of features, defined once for replay and online.

    Parameters
    ----------
    name:
        A short identifier of the feature set.
    features:
        The features, in output order. ``Compute`` features may refer to features before them.
    allowed_lateness:
        How late (in event time, behind the latest event seen for the key) an event may arrive
        and still see its full window. Per-key state keeps ``largest window + allowed_lateness``
        of history; an event later than that sees only the retained part. Replay applies the
        same bound, so replay and online still agree exactly.
    """

    name: str
    features: Sequence[Feature]
    allowed_lateness: str = "1d"
    label_value: str = "is_fraud"
    _validated_for: tuple[tuple[str, str], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def lateness_us(self) -> int:
        return parse_duration(self.allowed_lateness, what="'allowed_lateness' of the feature set")

    def fingerprint(self) -> str:
        """SHA-256 of the canonical definition; changes whenever any feature's meaning does."""
        text = "\n".join(
            [f"set {self.name} lateness={self.allowed_lateness} label={self.label_value}"]
            + [f"{f.name} = {f.describe()}" for f in self.features]
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def validate(self, schema: Mapping[str, str]) -> None:
        """Check every feature against the event schema (field name -> type).

        Raises :class:`FeatureDefinitionError` naming the feature, the problem and the fix.
        """
        self.lateness_us  # noqa: B018 -- parses and raises on a bad value
        fields = dict(schema)
        seen: set[str] = set()
        if not self.features:
            raise FeatureDefinitionError(
                f"Feature set '{self.name}' has no features. Add at least one Window, "
                "LabelWindow or Compute feature."
            )
        for feat in self.features:
            _check_name(feat.name, seen, fields)
            if isinstance(feat, Window | LabelWindow):
                _check_window(feat, fields)
            elif isinstance(feat, Compute):
                _check_refs(feat.name, feat.expr, fields, seen, allow_features=True)
            else:
                raise FeatureDefinitionError(
                    f"Feature {feat!r} is not a Window, LabelWindow or Compute feature."
                )
            seen.add(feat.name)


def _check_name(name: str, seen: set[str], fields: Mapping[str, str]) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise FeatureDefinitionError(
            f"Feature name {name!r} is not a valid identifier. Use letters, digits and "
            "underscores, starting with a letter, e.g. 'card_count_1h'."
        )
    if name in seen:
        raise FeatureDefinitionError(
            f"Feature name '{name}' is defined twice. Give each feature a unique name."
        )
    if name in fields or name in RESERVED:
        raise FeatureDefinitionError(
            f"Feature name '{name}' is also an event field. Rename the feature, "
            f"e.g. '{name}_feature'."
        )


def _check_window(feat: Window | LabelWindow, fields: Mapping[str, str]) -> None:
    feat.window_us  # noqa: B018 -- parses and raises on a bad window string
    allowed = WINDOW_KINDS if isinstance(feat, Window) else LABEL_KINDS
    if feat.agg.kind not in allowed:
        raise FeatureDefinitionError(
            f"Feature '{feat.name}' uses aggregation '{feat.agg.kind}', which a "
            f"{type(feat).__name__} does not support. Allowed: {', '.join(allowed)}."
        )
    if isinstance(feat, LabelWindow) and feat.over not in LABEL_OVER:
        raise FeatureDefinitionError(
            f"The 'over' of feature '{feat.name}' must be one of 'event' (labels of the key's "
            "events whose time is in the window) or 'known' (labels that became known in the "
            f"window). Got {feat.over!r}."
        )
    if not feat.keys:
        raise FeatureDefinitionError(f"Feature '{feat.name}' needs at least one key in 'by'.")
    for key in feat.keys:
        if key not in fields:
            raise FeatureDefinitionError(
                f"Feature '{feat.name}' is keyed by '{key}', which is not an event field. "
                f"Event fields: {', '.join(sorted(fields))}."
            )
    if feat.agg.value is not None:
        _check_refs(feat.name, feat.agg.value, fields, set(), allow_features=False)
        for ref in feat.agg.value.names():
            if fields[ref] == "str":
                raise FeatureDefinitionError(
                    f"Feature '{feat.name}' aggregates '{ref}', a text field, with "
                    f"'{feat.agg.kind}'. Aggregate a numeric field, or use distinct('{ref}')."
                )
    if feat.agg.field is not None and feat.agg.field not in fields:
        raise FeatureDefinitionError(
            f"Feature '{feat.name}' counts distinct values of '{feat.agg.field}', which is not "
            f"an event field. Event fields: {', '.join(sorted(fields))}."
        )


def _check_refs(
    name: str, expr: Expr, fields: Mapping[str, str], seen: set[str], *, allow_features: bool
) -> None:
    for ref in sorted(expr.names()):
        if ref in fields or ref == "ts" or (allow_features and ref in seen):
            continue
        hint = (
            "an event field or a feature defined before it"
            if allow_features
            else ("an event field")
        )
        raise FeatureDefinitionError(
            f"Feature '{name}' refers to '{ref}', which is not {hint}. "
            f"Event fields: {', '.join(sorted(fields))}."
        )
