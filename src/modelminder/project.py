"""A modelminder project: a folder with ``minder.toml``, the log file and a features module.

``minder init DIR`` writes a project that works with ``minder ingest`` and ``minder replay`` at
once; every command takes ``--project DIR``.
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelminder.clock import Clock
from modelminder.durations import parse_duration
from modelminder.errors import ConfigError, MinderError, SchemaError
from modelminder.events.log import EventLog
from modelminder.events.schema import LABEL, MAX_TEXT_CHARS, EventSchema
from modelminder.features.dsl import FeatureSet
from modelminder.features.plan import Plan, compile_plan

CONFIG_NAME = "minder.toml"
# "card_fraud" is version 1 of the built-in set, kept for projects made by earlier releases.
BUILTIN_SETS = ("card_fraud_v2", "card_fraud")

CONFIG_TEMPLATE = """\
# modelminder project configuration.
[project]
name = "{name}"
# The embedded event log (SQLite, WAL mode), relative to this folder.
log = "minder.db"

[events]
# The fields of your events besides 'event_id' and 'ts' (types: str, float, int, bool).
fields = {{ card_id = "str", merchant_id = "str", amount = "float", country = "str", \
channel = "str" }}

# Plausible ranges of numeric fields: an event outside them is refused (422 on the API, an
# error naming the row for files). Undeclared float fields accept |x| <= 1e15.
ranges = {{ amount = [-1000000, 1000000] }}
# Text fields longer than this are refused (event_id: 128 characters, label source: 64).
max_chars = 256
# The name of the label's value (0 or 1) in label files and the API, e.g. is_fraud, is_abuse.
label = "is_fraud"

[features]
# A Python file defining FEATURES = FeatureSet(...); edit it to define your own features.
module = "features.py"

[serving]
# Live events (POST /v1/predict, /v1/events) dated further from the server's clock are
# refused: older than max_event_age, or ahead of it by more than max_event_lead.
max_event_age = "365d"
max_event_lead = "1h"
# Labels that arrived before their event wait for it (in memory and in the log); at most
# this many wait at once, and a label waits at most label_wait (then it expires).
max_waiting_labels = 10000
label_wait = "7d"
# "normal": a commit survives a crash of the process, not of the machine (fast);
# "full": every commit is on disk before the answer (fsync per commit).
durability = "normal"

[review]
# Served events go to human review when blocked (always), near a decision threshold
# (uncertain_rate of those within uncertain_band), decided otherwise by the shadow model
# (disagreement_rate), in the region an open drift alert points at (drift_rate), or at random
# (exploration_rate of all traffic: what keeps review-based numbers unbiased). Each item
# records its probability. overlap_rate of items get two independent reviewers (agreement).
exploration_rate = 0.02
uncertain_band = 0.05
uncertain_rate = 0.3
disagreement_rate = 0.5
drift_rate = 0.2
overlap_rate = 0.05
# Priority (the expected value of a review) scales with this numeric [events] field (""
# for none): change it with the fields, as the ranges above.
value_field = "amount"
daily_budget = 200
exploration_share = 0.25  # of the budget kept for the exploration sample
lease = "15m"

[loop]
# The retraining loop (minder loop, minder backtest). Triggers: an open alert of these kinds
# at this severity ("severe", "warn" or "off"), this many new labels since the last training
# (0 = off), a schedule ("" = off); never two retrains closer than min_interval.
on_alert = "severe"
alert_kinds = ["performance", "concept_drift"]
new_labels = 0
schedule = "7d"
min_interval = "3d"
# Retraining: a replay of the last train_window of the log with the labels known now
# (shorter adapts faster to new tactics; longer needs fewer labels per tactic).
train_window = "30d"
recency_half_life = ""
max_train_rows = 100000
trials = 0
maturity = "auto"
# The candidate against the champion on the latest labelled block neither trained on: paired,
# with a bootstrap interval on the metric (recall_at_alert_rate, auc or average_precision).
metric = "recall_at_alert_rate"
alert_rate = 0.01
margin = 0.0
confidence = 0.9
# The monitors run at most this often (each run looks back over monitor_lookback).
monitor_every = "1d"
monitor_lookback = "21d"
# Then it shadows live traffic; promotion is "auto" or "approve" (minder models approve V).
shadow_period = "3d"
promotion = "auto"
# After a promotion the previous champion shadows; the new one is rolled back automatically
# when its live metric falls below the previous one's by rollback_margin within probation.
# "auto": twice the champion's label maturity plus a week, at least 14 days (outcomes of the
# probation's first days must have matured before it ends).
probation = "auto"
rollback_margin = 0.05
"""

FEATURES_TEMPLATE = '''\
"""Your feature set: defined once, computed the same way by replay and by the live path.

Edit freely; `minder replay` and `minder check-parity` pick it up.
"""

from modelminder.features.cardfraud import card_fraud_features
from modelminder.features.dsl import Compute, FeatureSet, Window, col, count, mean, sum_

# Start from the built-in card-fraud features and add your own.
_builtin = card_fraud_features()

FEATURES = FeatureSet(
    "my_features",
    [
        *_builtin.features,
        Window("merchant_amount_mean_7d", mean("amount"), by="merchant_id", window="7d"),
        Compute("amount_vs_merchant", col("amount") / col("merchant_amount_mean_7d")),
    ],
    allowed_lateness="1d",
)

# Unused imports kept as a menu of what is available:
_ = (count, sum_)
'''


DURABILITY = ("normal", "full")


@dataclass(frozen=True)
class ServingConfig:
    """``[serving]`` in ``minder.toml``: what the live path accepts and how durably it logs."""

    max_event_age: str = "365d"
    max_event_lead: str = "1h"
    max_waiting_labels: int = 10_000
    label_wait: str = "7d"
    durability: str = "normal"

    def __post_init__(self) -> None:
        for key in ("max_event_age", "max_event_lead", "label_wait"):
            try:
                parse_duration(getattr(self, key), what=f"[serving].{key}")
            except MinderError as exc:
                raise ConfigError(str(exc)) from None
        n = self.max_waiting_labels
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10_000_000:
            raise ConfigError(
                f"[serving].max_waiting_labels must be an int from 0 to 10000000. Got {n!r}."
            )
        if self.durability not in DURABILITY:
            raise ConfigError(
                f"[serving].durability must be one of {', '.join(map(repr, DURABILITY))}. "
                f"Got {self.durability!r}."
            )

    @property
    def max_event_age_us(self) -> int:
        return parse_duration(self.max_event_age, what="[serving].max_event_age")

    @property
    def max_event_lead_us(self) -> int:
        return parse_duration(self.max_event_lead, what="[serving].max_event_lead")

    @property
    def label_wait_us(self) -> int:
        return parse_duration(self.label_wait, what="[serving].label_wait")


@dataclass(frozen=True)
class ReviewConfig:
    """``[review]`` in ``minder.toml``: which served events go to human review, with what
    probability, and how much reviewers can do a day (see :mod:`modelminder.review`)."""

    exploration_rate: float = 0.02  # share of ALL traffic sampled at random (unbiased numbers)
    uncertain_band: float = 0.05  # |score - a decision threshold| within this is "uncertain"
    uncertain_rate: float = 0.3  # probability an uncertain event is queued
    disagreement_rate: float = 0.5  # probability an event the shadow decides otherwise is queued
    drift_rate: float = 0.2  # ... one in the region an open drift alert points at
    overlap_rate: float = 0.05  # share of items two reviewers label (their agreement)
    value_field: str = ""  # numeric event field a review's value scales with (e.g. amount)
    daily_budget: int = 200  # reviews a day (UTC) before claims are refused
    exploration_share: float = 0.25  # of the budget kept for exploration-only items
    lease: str = "15m"  # how long a claim holds an item before it returns to the queue

    def __post_init__(self) -> None:
        for key in (
            "exploration_rate", "uncertain_band", "uncertain_rate", "disagreement_rate",
            "drift_rate", "overlap_rate", "exploration_share",
        ):  # fmt: skip
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise ConfigError(f"[review].{key} must be a number in [0, 1]. Got {v!r}.")
        n = self.daily_budget
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1_000_000:
            raise ConfigError(f"[review].daily_budget must be an int from 0 to 1000000. Got {n!r}.")
        if not isinstance(self.value_field, str):
            raise ConfigError(
                f"[review].value_field must be a field name. Got {self.value_field!r}."
            )
        try:
            parse_duration(self.lease, what="[review].lease")
        except MinderError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def lease_us(self) -> int:
        return parse_duration(self.lease, what="[review].lease")


LOOP_METRICS = ("recall_at_alert_rate", "auc", "average_precision")
# The monitors' alert kinds (modelminder.monitoring.alerts.KINDS, which a test keeps equal).
ALERT_KINDS = (
    "data_drift", "multivariate_drift", "data_quality", "volume", "performance",
    "estimate_gap", "concept_drift", "skew", "probing",
)  # fmt: skip


@dataclass(frozen=True)
class LoopConfig:
    """``[loop]`` in ``minder.toml``: when the loop retrains, how it judges a candidate, and
    how it promotes and rolls back (see :mod:`modelminder.loop`).

    Examples
    --------
    >>> LoopConfig().schedule_us // 86_400_000_000
    7
    >>> LoopConfig(metric="f1")
    Traceback (most recent call last):
    ...
    modelminder.errors.ConfigError: [loop].metric must be one of recall_at_alert_rate, auc, \
average_precision. Got 'f1'.
    """

    on_alert: str = "severe"  # "severe", "warn" (any severity) or "off"
    alert_kinds: tuple[str, ...] = ("performance", "concept_drift")
    new_labels: int = 0  # retrain after this many new labels since the last training (0: off)
    schedule: str = "7d"  # retrain at least this often ("" = off)
    min_interval: str = "3d"  # never two retrains closer than this
    # The retrain replays this much of the latest history. 30 days, not 60: on the adaptive
    # world a 60-day window never gave a better candidate after the tactics changed (the fold
    # models trained on the old tactic are half the bag), a 30-day one did (docs/loop.md).
    train_window: str = "30d"
    recency_half_life: str = ""  # weight rows by 0.5 ** (age / half-life) ("" = equal weights)
    max_train_rows: int = 100_000  # rows per fit: every positive, negatives sampled and weighted
    trials: int = 0  # search trials per retrain (0: the estimator's defaults)
    maturity: str = "auto"  # "auto" (from the label delays) or a duration
    metric: str = "recall_at_alert_rate"
    alert_rate: float = 0.01  # the operating alert rate of recall_at_alert_rate
    margin: float = 0.0  # the candidate must beat the champion by this on the metric
    confidence: float = 0.9  # of the paired interval, whose low end must be above zero
    monitor_every: str = "1d"  # the monitors run at most this often
    monitor_lookback: str = "21d"  # each monitor run covers this much of the recent past
    shadow_period: str = "3d"  # a candidate scores live traffic this long before a decision
    promotion: str = "auto"  # "auto" or "approve" (a human runs minder models approve V)
    # After a promotion, watch the new champion this long; "auto": max(14d, 2 x the champion's
    # maturity + 7d), so that the outcomes of its first days mature before probation ends.
    probation: str = "auto"
    rollback_margin: float = 0.05  # roll back when it falls this far below the previous one

    def __post_init__(self) -> None:
        choices = {"on_alert": ("severe", "warn", "off"), "promotion": ("auto", "approve"),
                   "metric": LOOP_METRICS}  # fmt: skip
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"[loop].{key} must be one of {', '.join(allowed)}. Got {getattr(self, key)!r}."
                )
        kinds = self.alert_kinds
        if isinstance(kinds, str) or not all(k in ALERT_KINDS for k in kinds):
            raise ConfigError(
                f"[loop].alert_kinds must be a list of {', '.join(ALERT_KINDS)}. Got {kinds!r}."
            )
        object.__setattr__(self, "alert_kinds", tuple(kinds))
        for key, least in (("new_labels", 0), ("trials", 0), ("max_train_rows", 1000)):
            n = getattr(self, key)
            if isinstance(n, bool) or not isinstance(n, int) or not least <= n <= 100_000_000:
                raise ConfigError(f"[loop].{key} must be a whole number >= {least}. Got {n!r}.")
        bounds = (
            ("alert_rate", 1e-6, 0.5), ("margin", -1.0, 1.0), ("confidence", 0.5, 0.999),
            ("rollback_margin", 0.0, 1.0),
        )  # fmt: skip
        for key, low, high in bounds:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not low <= v <= high:
                raise ConfigError(f"[loop].{key} must be a number in [{low}, {high}]. Got {v!r}.")
        for key in ("schedule", "recency_half_life"):
            if getattr(self, key) != "":
                self._duration(key)
        if self.probation != "auto":
            self._duration("probation")
        for key in ("min_interval", "train_window", "shadow_period",
                    "monitor_every", "monitor_lookback"):  # fmt: skip
            self._duration(key, allow_zero=key != "train_window")
        if self.maturity != "auto":
            self._duration("maturity")

    def _duration(self, key: str, *, allow_zero: bool = False) -> int:
        value = getattr(self, key)
        try:
            return parse_duration(value, what=f"[loop].{key}", allow_zero=allow_zero)
        except MinderError as exc:
            raise ConfigError(str(exc)) from None

    def us(self, key: str) -> int:
        """A duration setting in microseconds (0 for an empty, switched-off one)."""
        return 0 if getattr(self, key) == "" else self._duration(key, allow_zero=True)

    @property
    def schedule_us(self) -> int:
        return self.us("schedule")


@dataclass(frozen=True)
class Project:
    """A loaded project."""

    root: Path
    name: str
    log_path: Path
    schema: EventSchema
    features_module: Path | None
    builtin: str | None
    serving: ServingConfig = ServingConfig()
    review: ReviewConfig = ReviewConfig()
    loop: LoopConfig = LoopConfig()

    def open_log(self, clock: Clock | None = None) -> EventLog:
        """Open the project's log; ``clock`` (default: the wall clock) is the log's "now"."""
        return EventLog.open(
            self.log_path, self.schema, clock=clock, durability=self.serving.durability,
            max_lead=(self.serving.max_event_lead_us, self.serving.max_event_lead),
        )  # fmt: skip

    def feature_set(self) -> FeatureSet:
        if self.builtin is not None:
            from modelminder.features.cardfraud import BUILTIN_VERSIONS, card_fraud_features

            fs = card_fraud_features(BUILTIN_VERSIONS[self.builtin])
        else:
            assert self.features_module is not None
            fs = _load_features(self.features_module)
        # One definition of the label: the feature set's label-aware features count the
        # label the events declare.
        if fs.label_value != self.schema.label:
            raise ConfigError(
                f"The feature set {fs.name!r} counts labels named {fs.label_value!r}, but "
                f"[events].label is {self.schema.label!r}. Set FeatureSet(..., "
                f"label_value={self.schema.label!r}) or change [events].label."
            )
        return fs

    def plan(self) -> Plan:
        return compile_plan(self.feature_set(), dict(self.schema.fields))

    def fingerprint(self) -> str:
        """The feature set's fingerprint: a model fits this project only if trained on it."""
        return self.feature_set().fingerprint()


def load_project(root: str | Path) -> Project:
    """Read ``minder.toml`` in ``root``; errors name the key and the fix."""
    base = Path(root).resolve()
    path = base / CONFIG_NAME
    if not path.exists():
        raise ConfigError(
            f"No {CONFIG_NAME} in {base}. Create a project with 'minder init {root}' or pass "
            "--project DIR pointing at one."
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
    proj = data.get("project", {})
    name = str(proj.get("name", base.name))
    log = proj.get("log", "minder.db")
    if not isinstance(log, str) or not log:
        raise ConfigError(f"[project].log in {path} must be a file name like 'minder.db'.")
    fields = data.get("events", {}).get("fields")
    if not isinstance(fields, dict) or not fields:
        raise ConfigError(
            f"[events].fields in {path} must be a table of field = type, e.g. "
            '{ card_id = "str", amount = "float" }.'
        )
    events = data.get("events", {})
    ranges = events.get("ranges", {})
    if not isinstance(ranges, dict):
        raise ConfigError(
            f"[events].ranges in {path} must be a table of field = [low, high], e.g. "
            "{ amount = [0, 1000000] }."
        )
    unknown = set(events) - {"fields", "ranges", "max_chars", "label"}
    serving = data.get("serving", {})
    if not isinstance(serving, dict):
        raise ConfigError(f"[serving] in {path} must be a table (a [serving] section).")
    unknown_serving = set(serving) - set(ServingConfig.__dataclass_fields__)
    review = _section(data, "review", ReviewConfig.__dataclass_fields__, path)
    loop = _section(data, "loop", LoopConfig.__dataclass_fields__, path)
    if unknown or unknown_serving:
        keys = [f"[events].{k}" for k in unknown] + [f"[serving].{k}" for k in unknown_serving]
        raise ConfigError(
            f"{path} has unknown key(s) {', '.join(sorted(keys))}. [events] takes fields, "
            "ranges, max_chars, label; [serving] takes "
            f"{', '.join(ServingConfig.__dataclass_fields__)}."
        )
    feats = data.get("features", {})
    module = feats.get("module")
    builtin = feats.get("builtin")
    if (module is None) == (builtin is None):
        raise ConfigError(
            f"[features] in {path} must set exactly one of 'module' (a Python file defining "
            f"FEATURES) or 'builtin' (one of: {', '.join(BUILTIN_SETS)})."
        )
    if builtin is not None and builtin not in BUILTIN_SETS:
        raise ConfigError(
            f"[features].builtin in {path} is {builtin!r}. Allowed: {', '.join(BUILTIN_SETS)}."
        )
    value_field = review.get("value_field", "")
    if value_field and fields.get(value_field) not in ("float", "int"):
        numeric = [n for n, t in fields.items() if t in ("float", "int")]
        raise ConfigError(
            f"[review].value_field in {path} is {value_field!r}; it must name a numeric event "
            f"field: one of {', '.join(numeric) or '(none declared)'}."
        )
    return Project(
        root=base,
        name=name,
        log_path=base / log,
        schema=_schema(
            path,
            fields,
            ranges,
            events.get("max_chars", MAX_TEXT_CHARS),
            events.get("label", LABEL),
        ),
        features_module=(base / module) if module is not None else None,
        builtin=builtin,
        serving=ServingConfig(**serving),
        review=ReviewConfig(**review),
        loop=LoopConfig(**loop),
    )


def _section(data: dict[str, Any], name: str, keys: Any, path: Path) -> dict[str, Any]:
    """The ``[name]`` table of the configuration, refusing keys its dataclass lacks."""
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] in {path} must be a table (a [{name}] section).")
    unknown = set(table) - set(keys)
    if unknown:
        named = ", ".join(f"[{name}].{k}" for k in sorted(unknown))
        raise ConfigError(f"{path} has unknown key(s) {named}. [{name}] takes {', '.join(keys)}.")
    return table


def _schema(
    path: Path, fields: dict[str, Any], ranges: dict[str, Any], max_chars: Any, label: Any
) -> EventSchema:
    try:
        return EventSchema(
            {str(k): str(v) for k, v in fields.items()},
            {str(k): tuple(v) if isinstance(v, list) else v for k, v in ranges.items()},
            max_chars,
            label,
        )
    except SchemaError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _load_features(path: Path) -> FeatureSet:
    if not path.exists():
        raise ConfigError(
            f"The features module {path} does not exist. Fix [features].module in minder.toml."
        )
    spec = importlib.util.spec_from_file_location(f"minder_user_features_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"Cannot import the features module {path}.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fs = getattr(module, "FEATURES", None)
    if not isinstance(fs, FeatureSet):
        raise ConfigError(
            f"The features module {path} must define FEATURES = FeatureSet(...). "
            f"Found {type(fs).__name__}."
        )
    return fs


def init_project(root: str | Path, *, builtin: bool = False) -> Path:
    """Create a project folder (refuses to overwrite an existing ``minder.toml``)."""
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    config = base / CONFIG_NAME
    if config.exists():
        raise ConfigError(f"{config} already exists; not overwriting it.")
    text = CONFIG_TEMPLATE.format(name=base.resolve().name)
    if builtin:
        text = text.replace('module = "features.py"', 'builtin = "card_fraud_v2"')
    else:
        (base / "features.py").write_text(FEATURES_TEMPLATE)
    config.write_text(text)
    return config
