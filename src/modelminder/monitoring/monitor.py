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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from modelminder.errors import MonitorError
from modelminder.events.log import EventLog
from modelminder.events.predictions import PredictionTopic
from modelminder.features.durations import parse_duration
from modelminder.monitoring.alerts import Alert, AlertLog, Sink, fold
from modelminder.monitoring.drift import DriftConfig, DriftMonitor, DriftReport
from modelminder.monitoring.performance import auc_standard_error, measure
from modelminder.monitoring.reference import Reference
from modelminder.monitoring.signals import probing_findings, range_findings, volume_findings
from modelminder.monitoring.skew import check_served
from modelminder.project import Project
from modelminder.registry import Registry
from modelminder.registry.store import ModelRecord

WINDOWS = {"hour": "1h", "day": "1d", "week": "7d"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MonitorConfig:
    """What a run looks at and how it judges (defaults suit card fraud)."""

    window: str = "day"  # hour, day, week, or a duration like "6h"
    from_ts: int | None = None
    to_ts: int | None = None
    as_of: int | None = None  # the run's "now" (default: the latest time in the log)
    review_at: float = 0.2  # decision threshold: precision and recall count score >= this
    block_at: float = 0.8  # probing looks just under it
    entity: str | None = None  # probing's entity field (default: the first feature key)
    skew_sample: int = 2000  # latest served events replayed for the skew check (0 = off)
    perf_drop: float = 0.1  # AUC or recall this far below the out-of-time score alerts
    min_positives: int = 30  # labelled positives before measured performance can alert
    drift: DriftConfig = field(default_factory=DriftConfig)

    @property
    def window_us(self) -> int:
        return parse_duration(WINDOWS.get(self.window, self.window), what="monitor 'window'")

    def check(self) -> None:
        if self.window_us <= 0:
            raise MonitorError(f"The monitor window must be positive. Got {self.window!r}.")
        if not 0.0 <= self.review_at <= self.block_at <= 1.0:
            raise MonitorError(
                "The thresholds must satisfy 0 <= review_at <= block_at <= 1. Got "
                f"review_at={self.review_at}, block_at={self.block_at}."
            )
        if self.from_ts is not None and self.to_ts is not None and self.from_ts >= self.to_ts:
            raise MonitorError("The monitored range is empty: --from must be before --to.")


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

    @property
    def open_severe(self) -> list[Alert]:
        return [a for a in self.alerts if a.severity == "severe" and a.open]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "window_us": self.config.window_us,
            "windows": _jsonable(self.windows.to_dicts()),
            "alerts": [a.to_dict() for a in self.alerts],
            "open_severe": len(self.open_severe),
            "skew": self.skew,
            "notes": self.notes,
            "detectors": self.detectors,
            "drift": {
                version: _jsonable(rep.features.to_dicts()) for version, rep in self.drift.items()
            },
        }


def run_monitor(
    project: Project,
    config: MonitorConfig | None = None,
    *,
    sinks: Sequence[Sink] = (),
    progress: Progress | None = None,
) -> MonitorReport:
    """Run every monitor over the configured range; record and deliver the alerts."""
    cfg = config or MonitorConfig()
    cfg.check()
    say = progress or (lambda _msg: None)
    plan = project.plan()
    size = cfg.window_us
    entity = cfg.entity or _default_entity(plan)
    with project.open_log() as log:
        if entity not in log.schema.fields:
            raise MonitorError(
                f"The probing entity {entity!r} is not an event field; fields: "
                f"{', '.join(log.schema.fields)}."
            )
        as_of = cfg.as_of if cfg.as_of is not None else _latest(log)
        say("reading the prediction log")
        cats = [n for n, t in log.schema.fields.items() if t == "str" and n != entity]
        served = PredictionTopic(log).frame(
            from_ts=cfg.from_ts, to_ts=cfg.to_ts, event_fields=[entity, *cats]
        )
        if served.height == 0:
            raise MonitorError(
                "Nothing was served in that range: the champion's prediction log has no events "
                "there. Check --from/--to, or serve some events first (minder serve/stream)."
            )
        labels = _known_labels(log, as_of)
        served = served.with_columns(window=pl.col("ts") // size).with_columns(
            window_start=pl.col("window") * size
        )
        alerts: list[Alert] = []
        notes: list[str] = []
        rows: list[dict[str, Any]] = []
        drift: dict[str, DriftReport] = {}
        detectors: dict[str, Any] = {}
        records = _records(project, served.get_column("model_version").unique().to_list())
        for version, record in records.items():
            part = served.filter(pl.col("model_version") == version)
            say(f"model {version}: {part.height:,} served events")
            part, schema_alerts = _schema(part, record, plan.names, size)
            alerts += schema_alerts
            if part.height == 0:
                continue
            outcome = _outcomes(part, labels, record, as_of)
            report = _drift(part, record, cfg, cats, notes)
            if report is not None:
                drift[version] = report
                alerts += _drift_alerts(report, version, size)
            alerts += _quality_alerts(part, record, version, size)
            perf_rows, perf_alerts = _performance(part, outcome, record, version, cfg)
            perf_alerts += _concept_alerts(part, outcome, version, cfg, detectors)
            rows += perf_rows
            alerts += perf_alerts
            alerts += _probing(part, entity, version, cfg)
        alerts += _volume(served, size)
        alerts += _label_volume(log, served, size)
        skew: dict[str, Any] = {"checked": 0, "mismatches": {}}
        if cfg.skew_sample:
            say("replaying the log for the skew check")
            skew, skew_alerts = _skew(log, plan, served, cfg.skew_sample, size)
            alerts += skew_alerts
        folded = _mark_open(fold(alerts, size), served, size)
        new = AlertLog(log).record(folded)
    for sink in sinks:
        sink.deliver(new)
    windows = pl.DataFrame(rows) if rows else pl.DataFrame()
    return MonitorReport(cfg, as_of, windows, drift, folded, new, skew, notes, detectors)


# -- inputs -------------------------------------------------------------------------------


def _default_entity(plan: Any) -> str:
    for group in plan.window_groups:
        if group.keys:
            return str(group.keys[0])
    raise MonitorError("The feature set has no entity key; pass --entity for probing.")


def _latest(log: EventLog) -> int:
    labels = log.read("labels")
    latest = max(
        int(log.max_event_ts() or 0),
        int(labels.get_column("known_at").max() or 0) if labels.height else 0,  # type: ignore[arg-type]
    )
    return latest + 1


def _known_labels(log: EventLog, as_of: int) -> pl.DataFrame:
    """Per event: the latest label known by ``as_of`` and when the first one became known."""
    labels = log.read("labels").filter(pl.col("known_at") < as_of)
    return (
        labels.sort("known_at")
        .group_by("event_id")
        .agg(label=pl.col("is_fraud").last(), label_known_at=pl.col("known_at").first())
    )


def _records(project: Project, versions: Sequence[str]) -> dict[str, ModelRecord]:
    with Registry.open(project.root) as reg:
        return {v: reg.get(v) for v in sorted(versions)}


def _outcomes(
    part: pl.DataFrame, labels: pl.DataFrame, record: ModelRecord, as_of: int
) -> pl.DataFrame:
    """``event_id, outcome (1/0/null), outcome_known_at`` under the model's label policy."""
    policy = record.meta.get("training", {}).get("label_policy", {})
    maturity = parse_duration(policy.get("maturity", "30d"), what="label policy 'maturity'")
    matured = policy.get("unlabeled", "negative_after_maturity") == "negative_after_maturity"
    joined = part.select("event_id", "ts").join(labels, on="event_id", how="left")
    mature = pl.lit(matured) & (pl.col("ts") + maturity <= as_of)
    return joined.select(
        "event_id",
        outcome=pl.when(pl.col("label").is_not_null())
        .then((pl.col("label") > 0.5).cast(pl.Float64))
        .when(mature)
        .then(pl.lit(0.0))
        .otherwise(None),
        outcome_known_at=pl.when(pl.col("label").is_not_null())
        .then(pl.col("label_known_at"))
        .when(mature)
        .then(pl.col("ts") + maturity)
        .otherwise(None),
    )


def _matrix(part: pl.DataFrame) -> np.ndarray:
    return np.asarray(part.get_column("features").to_list(), np.float64)


# -- drift and quality --------------------------------------------------------------------


def _drift(
    part: pl.DataFrame, record: ModelRecord, cfg: MonitorConfig, cats: list[str], notes: list[str]
) -> DriftReport | None:
    stored = record.meta.get("monitor_reference")
    if not stored:
        notes.append(
            f"Model {record.version} has no drift reference (trained before drift monitoring); "
            "retrain it to monitor drift."
        )
        return None
    ref = Reference.from_dict(stored)
    names = list(record.meta["feature_names"])
    X = np.column_stack([_matrix(part), part.get_column("score").to_numpy()])
    ref_cats = {s.name for s in ref.categorical}
    categorical = {c: part.get_column(c).to_list() for c in cats if c in ref_cats}
    return DriftMonitor(ref, cfg.drift).report(
        X, [*names, "score"], part.get_column("window").to_numpy(), categorical
    )


def _drift_alerts(report: DriftReport, version: str, size: int) -> list[Alert]:
    out: list[Alert] = []
    drifted = report.features.filter(pl.col("drifted"))
    for r in drifted.iter_rows(named=True):
        start = int(r["window"]) * size
        stat = report.statistics.filter(
            (pl.col("window") == r["window"])
            & (pl.col("feature") == r["feature"])
            & (pl.col("statistic") == r["worst"])
        ).row(0, named=True)
        what = "the score" if r["feature"] == "score" else f"feature '{r['feature']}'"
        out.append(
            Alert(
                "data_drift",
                r["severity"],
                r["feature"],
                version,
                start,
                start + size,
                {
                    "statistic": r["worst"],
                    "value": stat["value"],
                    "threshold": stat["threshold"],
                    "ratio": r["score"],
                    "rows": r["rows"],
                },
                f"The distribution of {what} moved away from training ({r['worst']} "
                f"{stat['value']:.3g} > {stat['threshold']:.3g}). Look at what changed at the "
                "source; if measured performance holds it is drift the model tolerates, "
                "otherwise retrain on recent data.",
            )
        )
    for r in report.windows.filter(pl.col("multivariate_drifted")).iter_rows(named=True):
        start = int(r["window"]) * size
        top = list(r["multivariate_features"])
        out.append(
            Alert(
                "multivariate_drift",
                "warn",
                "feature vector",
                version,
                start,
                start + size,
                {
                    "error_ratio": r["multivariate"],
                    "threshold": r["multivariate_threshold"],
                    "explained_by": top,
                },
                "The features' joint structure changed (PCA reconstruction error "
                f"{r['multivariate']:.3g}x training); mostly {', '.join(top[:3])}.",
            )
        )
    for r in report.findings.iter_rows(named=True):
        start = int(r["window"]) * size
        out.append(
            Alert(
                "data_quality",
                "severe" if r["issue"] == "all_missing" else "warn",
                f"{r['feature']}: {r['issue']}",
                version,
                start,
                start + size,
                {"issue": r["issue"], "detail": r["detail"]},
                f"Data quality: {r['feature']} has {r['issue'].replace('_', ' ')} "
                f"({r['detail']}). Check the upstream source.",
            )
        )
    return out


def _quality_alerts(
    part: pl.DataFrame, record: ModelRecord, version: str, size: int
) -> list[Alert]:
    """Values outside the training range (the model extrapolates there)."""
    stored = record.meta.get("monitor_reference")
    if not stored:
        return []
    ref = Reference.from_dict(stored)
    names = [s.name for s in ref.numeric if s.name != "score"]
    lo = [float(s.grid[0]) if s.grid.size else math.nan for s in ref.numeric][: len(names)]
    hi = [float(s.grid[-1]) if s.grid.size else math.nan for s in ref.numeric][: len(names)]
    out: list[Alert] = []
    for (window,), group in part.group_by(["window"], maintain_order=True):
        X = _matrix(group)
        for f in range_findings(X, names, [0.0] * len(names), lo, hi, missing_jump=2.0):
            if f["problem"] != "out_of_range":
                continue  # missing values are the drift report's
            start = int(window) * size
            out.append(
                Alert(
                    "data_quality",
                    "warn",
                    f"{f['feature']}: out_of_range",
                    version,
                    start,
                    start + size,
                    f,
                    f"{f['share']:.1%} of '{f['feature']}' lies outside the training range "
                    f"{f['reference_range']}: the model extrapolates there.",
                )
            )
    return out


def _schema(
    part: pl.DataFrame, record: ModelRecord, plan_names: list[str], size: int
) -> tuple[pl.DataFrame, list[Alert]]:
    """Served vectors that do not fit the model's features (a schema change between what was
    served and what the model expects) are reported and left out of the statistics."""
    names = list(record.meta.get("feature_names", []))
    out: list[Alert] = []
    if names != plan_names:
        start = int(part.get_column("window_start").min())  # type: ignore[arg-type]
        end = int(part.get_column("window_start").max()) + size  # type: ignore[arg-type]
        out.append(
            Alert(
                "data_quality",
                "warn",
                "schema: feature set",
                record.version,
                start,
                end,
                {"model": names, "project": plan_names},
                f"Model {record.version} was trained on other features than the project now "
                "defines: retrain it before promoting anything new.",
            )
        )
    width = pl.col("features").list.len()
    wrong = part.filter(width != len(names))
    for (start,), g in wrong.group_by(["window_start"], maintain_order=True):
        widths = sorted(set(g.get_column("features").list.len().to_list()))
        out.append(
            Alert(
                "data_quality",
                "severe",
                "schema: served vector",
                record.version,
                int(start),
                int(start) + size,
                {"rows": g.height, "widths": widths, "expected": len(names)},
                f"{g.height} served feature vectors have {widths} values where model "
                f"{record.version} expects {len(names)}: the serving path and the model "
                "disagree on the feature set. Redeploy the server with the model's features.",
            )
        )
    return part.filter(width == len(names)), out


def _label_volume(log: EventLog, served: pl.DataFrame, size: int) -> list[Alert]:
    """Labels arriving per window and source (a feed that stops is a monitoring blind spot)."""
    lo = int(served.get_column("window_start").min())  # type: ignore[arg-type]
    hi = int(served.get_column("window_start").max()) + size  # type: ignore[arg-type]
    labels = log.read("labels", from_ts=lo, to_ts=hi)
    out: list[Alert] = []
    for (source,), g in labels.group_by(["source"], maintain_order=True):
        per = g.with_columns(w=(pl.col("known_at") // size) * size).group_by("w").len().sort("w")
        # Windows with no label at all count as zero (a stopped feed), up to the last full one.
        starts = list(range(int(per.get_column("w").min()), hi - size, size))  # type: ignore[arg-type]
        counts = dict(
            zip(per.get_column("w").to_list(), per.get_column("len").to_list(), strict=True)
        )
        for f in volume_findings([counts.get(w, 0) for w in starts], starts):
            out.append(
                Alert(
                    "volume",
                    "warn",
                    f"labels from {source} ({f['change']})",
                    "all",
                    f["window_start"],
                    f["window_start"] + size,
                    f,
                    f"{f['count']:,} labels from '{source}' in the window against a typical "
                    f"{f['typical']:,.0f}: a {f['change']}. Check that the label feed runs.",
                )
            )
    return out


def _volume(served: pl.DataFrame, size: int) -> list[Alert]:
    counts = served.group_by("window_start").len().sort("window_start")
    starts = counts.get_column("window_start").to_list()
    found = volume_findings(counts.get_column("len").to_list()[:-1], starts[:-1])  # last: partial
    return [
        Alert(
            "volume",
            "warn",
            f"events ({f['change']})",
            "all",
            f["window_start"],
            f["window_start"] + size,
            f,
            f"{f['count']:,} events in the window against a typical {f['typical']:,.0f}: "
            f"a {f['change']}. Check the sources feeding the log.",
        )
        for f in found
    ]


# -- performance, detectors, probing, skew -------------------------------------------------


def _performance(
    part: pl.DataFrame, outcome: pl.DataFrame, record: ModelRecord, version: str, cfg: MonitorConfig
) -> tuple[list[dict[str, Any]], list[Alert]]:
    data = part.join(outcome, on="event_id", how="left")
    rows: list[dict[str, Any]] = []
    for (start,), g in data.group_by(["window_start"], maintain_order=True):
        w = measure(
            g.get_column("score").to_numpy(),
            g.get_column("outcome").fill_null(math.nan).to_numpy(),
            cfg.review_at,
        )
        rows.append({"window_start": start, "model_version": version, **w.to_dict()})
    rows.sort(key=lambda r: r["window_start"])
    alerts = _performance_alerts(data, record, version, cfg)
    return rows, alerts


def _performance_alerts(
    data: pl.DataFrame, record: ModelRecord, version: str, cfg: MonitorConfig
) -> list[Alert]:
    """Measured AUC or recall below the model's out-of-time score by ``perf_drop``, on pools
    of consecutive windows holding at least ``min_positives`` known positives."""
    oot = record.meta.get("metrics", {}).get("oot") or {}
    ref_auc = oot.get("auc")
    if ref_auc is None or not math.isfinite(ref_auc):
        return []
    ref_pos, ref_rows = int(oot.get("positives", 0)), int(oot.get("rows", 0))
    out: list[Alert] = []
    size = cfg.window_us
    known = data.filter(pl.col("outcome").is_not_null()).sort("ts")
    pool: list[pl.DataFrame] = []
    for (_,), g in known.group_by(["window_start"], maintain_order=True):
        pool.append(g)
        joined = pl.concat(pool)
        if int(joined.get_column("outcome").sum()) < cfg.min_positives:
            continue
        w = measure(joined.get_column("score").to_numpy(), joined.get_column("outcome").to_numpy(),
                    cfg.review_at, estimate=False)  # fmt: skip
        pool = []
        first = int(joined.get_column("window_start").min())  # type: ignore[arg-type]
        last = int(joined.get_column("window_start").max())  # type: ignore[arg-type]
        # A drop counts when it is both large (perf_drop) and clear of the noise of two AUCs
        # measured on few positives (3 standard errors, Hanley-McNeil, window and training).
        se = math.hypot(
            auc_standard_error(w.auc, w.positives, w.known - w.positives),
            auc_standard_error(ref_auc, ref_pos, ref_rows - ref_pos),
        )
        if w.auc < ref_auc - cfg.perf_drop and ref_auc - w.auc > 3 * se:
            out.append(
                Alert(
                    "performance",
                    "severe",
                    "auc",
                    version,
                    first,
                    last + size,
                    {
                        "auc": w.auc,
                        "out_of_time_auc": ref_auc,
                        "standard_error": se,
                        "positives": w.positives,
                        "rows": w.known,
                        "recall": w.recall,
                    },
                    f"Measured AUC {w.auc:.3f} on {w.positives} labelled frauds, against "
                    f"{ref_auc:.3f} out of time at training: the model no longer separates "
                    "fraud as it did. Retrain on recent labels (minder train) and compare.",
                )
            )
    return out


def _concept_alerts(
    part: pl.DataFrame,
    outcome: pl.DataFrame,
    version: str,
    cfg: MonitorConfig,
    signals: dict[str, Any],
) -> list[Alert]:
    """Concept-drift detectors over error streams in label-arrival order, never re-predicting:
    ``missed fraud`` (each arriving fraud label: 1 if its served score was under the review
    threshold) and ``error rate`` (every known outcome: 1 if the decision got it wrong). For
    rare fraud the first is the sensitive one: a new pattern shows as frauds the model let
    through, long before it moves the overall error rate."""
    from modelminder.monitoring.detectors import DETECTORS, AlarmPolicy, detect

    data = part.join(outcome, on="event_id", how="left")

    known = (
        data.filter(pl.col("outcome").is_not_null())
        .sort("outcome_known_at", "ts")
        .with_columns(flagged=(pl.col("score") >= cfg.review_at).cast(pl.Float64))
    )
    streams = {
        "missed fraud": known.filter(pl.col("outcome") == 1.0).with_columns(
            error=1.0 - pl.col("flagged")
        ),
        "error rate": known.with_columns(
            error=(pl.col("flagged") != pl.col("outcome")).cast(pl.Float64)
        ),
    }
    out: list[Alert] = []
    for subject, stream in streams.items():
        policy = AlarmPolicy(min_samples=cfg.min_positives if subject == "missed fraud" else 30)
        errors = stream.get_column("error").to_numpy()
        # river's detectors with their defaults, for comparison: where each signals (window
        # starts). Only the policy raises alerts (see docs/benchmarks.md for why).
        starts = stream.get_column("window_start")
        signals.setdefault(version, {})[subject] = {
            "labels": len(errors),
            **{d: sorted({int(starts[int(i)]) for i in detect(errors, d)}) for d in DETECTORS},
        }
        for alarm in policy.alarms(errors):
            at = stream.row(alarm.index, named=True)
            start = int(at["window_start"])
            evidence = {
                "change_point": alarm.change_point, "rate_before": alarm.rate_before,
                "rate_after": alarm.rate_after, "n_before": alarm.n_before,
                "n_after": alarm.n_after, "z": alarm.z, "known_at": at["outcome_known_at"],
            }  # fmt: skip
            out.append(
                Alert(
                    "concept_drift",
                    "severe",
                    subject,
                    version,
                    start,
                    start + cfg.window_us,
                    evidence,
                    f"The {subject} on arriving labels rose from {alarm.rate_before:.1%} to "
                    f"{alarm.rate_after:.1%}: the relation between features and fraud changed. "
                    "Send recent cases to review, retrain on recent labels and compare.",
                )
            )
    return out


def _probing(part: pl.DataFrame, entity: str, version: str, cfg: MonitorConfig) -> list[Alert]:
    found = probing_findings(part, entity=entity, block_at=cfg.block_at)
    return [
        Alert(
            "probing",
            "warn",
            f"{entity} {f['entity']}",
            version,
            f["window_start"],
            f["window_start"] + cfg.window_us,
            f,
            f"{entity} {f['entity']} scored just under the block threshold {f['count']} times "
            f"(max {f['max_score']}): someone may be feeling for the limit. Review its events.",
        )
        for f in found
    ]


def _skew(
    log: EventLog, plan: Any, served: pl.DataFrame, sample: int, size: int
) -> tuple[dict[str, Any], list[Alert]]:
    latest = served.sort("served_at").tail(sample)
    result = check_served(
        log, plan, latest.get_column("event_id").to_list(), latest.get_column("features").to_list()
    )
    start = int(latest.get_column("window_start").min())  # type: ignore[arg-type]
    end = int(latest.get_column("window_start").max()) + size  # type: ignore[arg-type]
    version = str(latest.get_column("model_version")[-1])
    alerts = [
        Alert(
            "skew",
            "severe",
            feature,
            version,
            start,
            end,
            {"mismatches": n, "checked": result.checked, "examples": result.examples[feature]},
            f"{n} of {result.checked} served values of '{feature}' differ from a replay of "
            "the log: the live path computed it differently. Stop trusting this feature "
            "until the cause is found (minder check-skew shows the details).",
        )
        for feature, n in result.mismatches.items()
    ]
    return {"checked": result.checked, "mismatches": result.mismatches}, alerts


def _mark_open(alerts: list[Alert], served: pl.DataFrame, size: int) -> list[Alert]:
    """An alert is open while its signal is still in alarm at the end of the range: drift,
    quality, volume, probing and skew when they cover the last window; performance and
    concept drift (labels lag) within the last week of windows."""
    from dataclasses import replace

    last = int(served.get_column("window_start").max()) + size  # type: ignore[arg-type]
    lag = max(7 * 86_400_000_000, size)
    out = []
    for a in alerts:
        reach = lag if a.kind in ("performance", "concept_drift") else 0
        out.append(replace(a, open=a.window_end + reach >= last))
    return out


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return [{k: clean(v) for k, v in r.items()} for r in rows]
