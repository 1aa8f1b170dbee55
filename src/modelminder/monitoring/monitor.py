"""One monitor run: every signal, per window and model version, from the log; alerts out.

The run reads what was served (the champion's prediction log, with the features as served),
the labels known at the run's time (``as_of``, by default the latest time in the log), each
model's stored reference and scores, and computes:

* drift of every feature and of the score against the model's reference, and a whole-vector
  signal (:mod:`~modelminder.monitoring.drift`);
* data quality: missing and non-finite values, values outside the training range, unseen
  categories, volume drops and spikes;
* performance measured on the labels known so far (with their coverage) next to the
  label-free estimate (:mod:`~modelminder.monitoring.performance`);
* concept-drift detectors over the error stream in label-arrival order;
* skew: a sample of served events replayed and compared feature by feature;
* probing: entities with repeated scores just under the block threshold.

Findings become alerts, folded across consecutive windows, recorded in the log and handed to
the sinks. Nothing is re-predicted; the run writes only alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from modelminder.clock import Clock
from modelminder.errors import MonitorError
from modelminder.events.log import EventLog
from modelminder.events.outcomes import latest_time, outcomes
from modelminder.events.predictions import PredictionTopic
from modelminder.jsonable import jsonable
from modelminder.monitoring import findings
from modelminder.monitoring.alerts import Alert, AlertLog, Sink, fold
from modelminder.monitoring.config import MAX_WINDOWS, MonitorConfig
from modelminder.monitoring.drift import DriftReport
from modelminder.project import Project
from modelminder.registry import Registry
from modelminder.registry.store import ModelRecord
from modelminder.review.estimate import estimate_review_metrics
from modelminder.review.queue import ReviewQueue
from modelminder.review.sample import review_sample

__all__ = ["MonitorConfig", "MonitorReport", "run_monitor"]
Progress = Callable[[str], None]


@dataclass
class MonitorReport:
    """What one run found."""

    config: MonitorConfig
    as_of: int
    windows: pl.DataFrame  # one row per window x model version: volume, drift, performance
    drift: dict[str, DriftReport]  # by model version
    alerts: list[Alert]
    new_alerts: list[Alert]
    skew: dict[str, Any]
    notes: list[str]
    # version -> error stream -> {"labels": n, detector: [window starts where it signalled]}
    detectors: dict[str, Any] = field(default_factory=dict)
    # Metrics from human review labels, naive and corrected for selection (None: no reviews)
    review: dict[str, Any] | None = None

    @property
    def open_severe(self) -> list[Alert]:
        return [a for a in self.alerts if a.severity == "severe" and a.open]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "window_us": self.config.window_us,
            "windows": jsonable(self.windows.to_dicts()),
            "alerts": [a.to_dict() for a in self.alerts],
            "open_severe": len(self.open_severe),
            "skew": self.skew,
            "notes": self.notes,
            "detectors": self.detectors,
            "review": self.review,
            "drift": {
                version: jsonable(rep.features.to_dicts()) for version, rep in self.drift.items()
            },
        }


def run_monitor(
    project: Project,
    config: MonitorConfig | None = None,
    *,
    sinks: Sequence[Sink] = (),
    progress: Progress | None = None,
    record_alerts: bool = True,
    clock: Clock | None = None,
) -> MonitorReport:
    """Run every monitor over the configured range; record the alerts in the log and deliver
    the new ones to ``sinks``. ``record_alerts=False`` is a read-only run: nothing is written
    or sent. ``clock`` is the run's clock (the wall clock by default; the loop's backtest
    passes its simulated one, so alerts are recorded at simulated times).

    Examples
    --------
    Monitors read what was served (the prediction log); a project that served nothing yet
    gets a clear refusal rather than an empty report:

    >>> import tempfile
    >>> from modelminder.project import init_project, load_project
    >>> root = tempfile.mkdtemp()
    >>> _ = init_project(root, builtin=True)
    >>> run_monitor(load_project(root), MonitorConfig(window="day"), record_alerts=False)
    Traceback (most recent call last):
    ...
    modelminder.errors.MonitorError: Nothing was served in that range: ...

    On a served project, ``report.alerts`` holds the folded alerts, ``report.windows`` the
    per-window performance, and ``report.to_dict()`` everything as JSON (see
    ``tests/monitoring/test_monitor.py`` for worlds that drift).
    """
    cfg = config or MonitorConfig()
    cfg.check()
    say = progress or (lambda _msg: None)
    plan = project.plan()
    size = cfg.window_us
    entity = cfg.entity or _default_entity(plan)
    with project.open_log(clock) as log:
        if entity not in log.schema.fields:
            raise MonitorError(
                f"The probing entity {entity!r} is not an event field; fields: "
                f"{', '.join(log.schema.fields)}."
            )
        all_labels = log.read("labels")  # read once: the run's time, outcomes, label volume
        as_of = cfg.as_of if cfg.as_of is not None else _latest(log, all_labels)
        # Windows not yet over at the run's time are partial (a few hours of a day look unlike
        # training): they are left out of drift and quality until complete.
        end = as_of if cfg.to_ts is None else min(cfg.to_ts, as_of)
        say("reading the prediction log")
        cats = [n for n, t in log.schema.fields.items() if t == "str" and n != entity]
        notes: list[str] = []
        served = PredictionTopic(log).frame(
            from_ts=cfg.from_ts, to_ts=cfg.to_ts, event_fields=[entity, *cats]
        )
        if served.height == 0:
            raise MonitorError(
                "Nothing was served in that range: the champion's prediction log has no events "
                "there. Check --from/--to, or serve some events first (minder serve/stream)."
            )
        served, outliers = _drop_outlying_times(served, cfg, size)
        if outliers:
            notes.append(outliers)
        span = served.get_column("ts")
        windows_n = (int(span.max()) - int(span.min())) // size + 1  # type: ignore[arg-type]
        if windows_n > MAX_WINDOWS:
            raise MonitorError(
                f"That range holds {windows_n:,} windows of {cfg.window!r}; at most "
                f"{MAX_WINDOWS:,} per run. Use a longer --window or a shorter --from/--to."
            )
        served = served.with_columns(window=pl.col("ts") // size).with_columns(
            window_start=pl.col("window") * size
        )
        complete = pl.col("window_start") + size <= end
        partial = served.filter(~complete).get_column("window_start").unique().sort().to_list()
        alerts: list[Alert] = []
        rows: list[dict[str, Any]] = []
        drift: dict[str, DriftReport] = {}
        detectors: dict[str, Any] = {}
        records = _records(project, served.get_column("model_version").unique().to_list())
        for version, record in records.items():
            part = served.filter(pl.col("model_version") == version)
            say(f"model {version}: {part.height:,} served events")
            part, schema_alerts = findings.schema_check(part, record, plan.names, size)
            alerts += schema_alerts
            if part.height == 0:
                continue
            outcome = _outcomes(part, all_labels, record, as_of, plan.feature_set.label_value)
            whole = part.filter(complete)
            ref = findings.reference_of(record, notes) if whole.height else None
            if ref is not None:
                X = _matrix(whole)  # the served vectors, decoded once for drift and quality
                names = list(record.card.feature_names)
                report = findings.drift(whole, X, ref, names, cfg, cats)
                drift[version] = report
                alerts += findings.drift_alerts(report, version, size)
                alerts += findings.quality_alerts(whole, X, ref, version, size)
            perf_rows, perf_alerts = findings.performance(
                part, outcome, record, version, cfg, notes
            )
            perf_alerts += findings.concept_alerts(part, outcome, version, cfg, detectors)
            rows += perf_rows
            alerts += perf_alerts
            alerts += findings.probing_alerts(part, entity, version, cfg)
        alerts += findings.volume_alerts(served.filter(complete), size)
        if partial:
            notes.append(
                f"{len(partial)} window(s) not over at the run's time (from "
                f"{_iso(partial[0])}) are left out of drift, quality and volume until complete."
            )
        alerts += findings.label_volume_alerts(all_labels, served, size)
        skew: dict[str, Any] = {"checked": 0, "mismatches": {}}
        if cfg.skew_sample:
            say("replaying the log for the skew check")
            skew, skew_alerts = findings.skew_check(log, plan, served, cfg.skew_sample, size)
            alerts += skew_alerts
        review = _review_metrics(log, project, as_of, all_labels)
        folded = _mark_open(fold(alerts, size), served.filter(complete), size, as_of)
        new = AlertLog(log).record(folded) if record_alerts else []
    for sink in sinks:
        sink.deliver(new)
    # (every row's type from all rows: the first windows may have no measured value yet)
    windows = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    return MonitorReport(cfg, as_of, windows, drift, folded, new, skew, notes, detectors, review)


def _review_metrics(
    log: EventLog, project: Project, as_of: int, labels: pl.DataFrame
) -> dict[str, Any] | None:
    """Precision, recall and fraud rate from the review queue's labels, on the reviewed
    items as they are and corrected for how they were selected (:mod:`modelminder.review`)."""
    sample = review_sample(ReviewQueue(log, project.review), now=as_of, labels=labels)
    if sample.items.height == 0:
        return None
    return {
        "estimates": estimate_review_metrics(sample.items).to_json(),
        "queued": sample.queued,
        "by_review": sample.by_review,
        "by_other_source": sample.by_other_source,
        "unsure": sample.unsure,
        "outside": sample.outside,
        "unobserved": sample.unobserved,
    }


# -- inputs -------------------------------------------------------------------------------


def _default_entity(plan: Any) -> str:
    for group in plan.window_groups:
        if group.keys:
            return str(group.keys[0])
    raise MonitorError("The feature set has no entity key; pass --entity for probing.")


def _drop_outlying_times(
    served: pl.DataFrame, cfg: MonitorConfig, size: int
) -> tuple[pl.DataFrame, str | None]:
    """Where the range is not given, leave out events whose time lies far from the rest (one
    event stamped 0001-01-01 must not stretch the report over 700,000 empty days): outside
    ``[q05 - 3 * spread, q95 + 3 * spread]``, spread = ``max(q95 - q05, one window)``. What
    was left out is said in a note; ``--from``/``--to`` include it."""
    if (cfg.from_ts is not None and cfg.to_ts is not None) or served.height == 0:
        return served, None
    ts = served.get_column("ts")
    q05 = int(ts.quantile(0.05, "lower") or 0)
    q95 = int(ts.quantile(0.95, "higher") or 0)
    spread = max(q95 - q05, size)
    low = q05 - 3 * spread if cfg.from_ts is None else None
    high = q95 + 3 * spread if cfg.to_ts is None else None
    keep = pl.lit(True)
    if low is not None:
        keep = keep & (pl.col("ts") >= low)
    if high is not None:
        keep = keep & (pl.col("ts") <= high)
    kept = served.filter(keep)
    dropped = served.height - kept.height
    if not dropped:
        return served, None
    first, last = kept.get_column("ts").min(), kept.get_column("ts").max()
    span = f"{_iso(int(first))} to {_iso(int(last))}"  # type: ignore[arg-type]
    return kept, (
        f"{dropped:,} served event(s) dated far from the rest were left out of the default "
        f"range ({span}); pass --from/--to to include them."
    )


def _latest(log: EventLog, labels: pl.DataFrame) -> int:
    """The run's default "now": just after the latest event or label in the log, but never
    after the wall clock (a label stamped in the future must not mature everything)."""
    return min(latest_time(log.max_event_ts(), labels) + 1, log.clock.now_us())


def _records(project: Project, versions: Sequence[str]) -> dict[str, ModelRecord]:
    with Registry.open(project.root) as reg:
        return {v: reg.get(v) for v in sorted(versions)}


def _outcomes(
    part: pl.DataFrame, labels: pl.DataFrame, record: ModelRecord, as_of: int, value: str
) -> pl.DataFrame:
    """``event_id, outcome (1.0/0.0/null), outcome_known_at`` under the model's label policy
    (the one rule: :func:`modelminder.events.outcomes.outcomes`)."""
    out = outcomes(part, labels, record.card.label_policy, as_of=as_of, value=value)
    return out.select("event_id", pl.col("outcome").cast(pl.Float64), "outcome_known_at")


def _mark_open(alerts: list[Alert], complete: pl.DataFrame, size: int, as_of: int) -> list[Alert]:
    """An alert is open while its signal is still in alarm at the end of the range: drift,
    quality, volume, probing and skew when they cover the last complete window; performance
    within the last week of windows; concept drift for a week after the label that raised it
    arrived (labels lag their events by weeks)."""
    from dataclasses import replace

    ends = complete.get_column("window_start")
    last = int(ends.max()) + size if len(ends) else as_of  # type: ignore[arg-type]
    lag = max(7 * 86_400_000_000, size)
    out = []
    for a in alerts:
        if a.kind == "concept_drift":
            is_open = int(a.evidence.get("known_at") or a.window_end) + lag >= as_of
        else:
            reach = lag if a.kind == "performance" else 0
            is_open = a.window_end + reach >= last
        out.append(replace(a, open=is_open))
    return out


def _matrix(part: pl.DataFrame) -> np.ndarray:
    return np.asarray(part.get_column("features").to_list(), np.float64)


def _iso(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M")
