"""From signals to alerts: each function computes one family of signals for the served data of
one model version (or all of them) and returns its findings as :class:`Alert` objects, with the
evidence and a suggested action. :func:`~modelminder.monitoring.monitor.run_monitor` calls them
in turn; they read nothing but what they are given, except the log reads of the label volume
and the skew replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from modelminder.events.log import EventLog
from modelminder.metrics import auc_standard_error
from modelminder.model.reference import Reference
from modelminder.monitoring.alerts import Alert
from modelminder.monitoring.config import MonitorConfig
from modelminder.monitoring.drift import DriftMonitor, DriftReport
from modelminder.monitoring.performance import measure
from modelminder.monitoring.signals import probing_findings, range_findings, volume_findings
from modelminder.monitoring.skew import check_served
from modelminder.registry.store import ModelRecord

MIN_COVERAGE = 0.95  # share of a window's outcomes known before its performance can alarm


# -- drift and quality --------------------------------------------------------------------


def reference_of(record: ModelRecord, notes: list[str]) -> Reference | None:
    """The drift reference stored with the model at training (parsed once per run)."""
    ref = record.card.reference
    if ref is None:
        notes.append(
            f"Model {record.version} has no drift reference (trained before drift monitoring); "
            "retrain it to monitor drift."
        )
    return ref


def drift(
    part: pl.DataFrame,
    X: np.ndarray,
    ref: Reference,
    names: list[str],
    cfg: MonitorConfig,
    cats: list[str],
) -> DriftReport:
    """Drift of the served features ``X`` (rows of ``part``) and scores against ``ref``."""
    with_score = np.column_stack([X, part.get_column("score").to_numpy()])
    ref_cats = {s.name for s in ref.categorical}
    categorical = {c: part.get_column(c).to_list() for c in cats if c in ref_cats}
    return DriftMonitor(ref, cfg.drift).report(
        with_score, [*names, "score"], part.get_column("window").to_numpy(), categorical
    )


def drift_alerts(report: DriftReport, version: str, size: int) -> list[Alert]:
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


def quality_alerts(
    part: pl.DataFrame, X: np.ndarray, ref: Reference, version: str, size: int
) -> list[Alert]:
    """Values outside the training range (the model extrapolates there), per window."""
    names = [s.name for s in ref.numeric if s.name != "score"]
    lo = [float(s.grid[0]) if s.grid.size else math.nan for s in ref.numeric][: len(names)]
    hi = [float(s.grid[-1]) if s.grid.size else math.nan for s in ref.numeric][: len(names)]
    windows = part.get_column("window").to_numpy()
    out: list[Alert] = []
    for window in np.unique(windows):
        start = int(window) * size
        for f in range_findings(X[windows == window], names, lo, hi):
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


def schema_check(
    part: pl.DataFrame, record: ModelRecord, plan_names: list[str], size: int
) -> tuple[pl.DataFrame, list[Alert]]:
    """Served vectors that do not fit the model's features (a schema change between what was
    served and what the model expects) are reported and left out of the statistics."""
    names = list(record.card.feature_names)
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


def label_volume_alerts(labels: pl.DataFrame, served: pl.DataFrame, size: int) -> list[Alert]:
    """Labels arriving per window and source (a feed that stops is a monitoring blind spot);
    ``labels`` is the log's labels topic."""
    lo = int(served.get_column("window_start").min())  # type: ignore[arg-type]
    hi = int(served.get_column("window_start").max()) + size  # type: ignore[arg-type]
    labels = labels.filter((pl.col("known_at") >= lo) & (pl.col("known_at") < hi))
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


def volume_alerts(served: pl.DataFrame, size: int) -> list[Alert]:
    """Event volume per complete window (the caller leaves partial ones out); a window with no
    event at all counts as zero, so an outage is a drop like any other."""
    if served.height == 0:
        return []
    per = dict(served.group_by("window_start").len().iter_rows())
    starts = list(range(min(per), max(per) + size, size))
    found = volume_findings([int(per.get(w, 0)) for w in starts], starts)
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


def performance(
    part: pl.DataFrame,
    outcome: pl.DataFrame,
    record: ModelRecord,
    version: str,
    cfg: MonitorConfig,
    notes: list[str] | None = None,
) -> tuple[list[dict[str, Any]], list[Alert]]:
    """Measured performance per window, and the performance alerts (see
    :func:`performance_reference` for what they are judged against). ``notes`` receives a
    line when the judgement falls back from the out-of-time AUC, or cannot be made at all."""
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
    reference = performance_reference(record, cfg)
    if notes is not None and (reference is None or reference.name != "out_of_time"):
        notes.append(_reference_note(record, reference))
    alerts = [] if reference is None else _performance_alerts(data, reference, version, cfg)
    return rows, alerts


@dataclass(frozen=True)
class PerformanceReference:
    """What measured AUC is compared with: ``name`` is ``out_of_time``, ``validation`` or
    ``floor``; ``standard_error`` is the reference's own (0 for the floor, which is exact)."""

    name: str
    auc: float
    standard_error: float

    @property
    def label(self) -> str:
        """The reference in a few words: ``0.912 out of time at training``."""
        return {
            "out_of_time": f"{self.auc:.3f} out of time at training",
            "validation": f"{self.auc:.3f} on validation at training",
            "floor": f"the floor of {self.auc:.3f} (perf_floor_auc)",
        }[self.name]

    @property
    def words(self) -> str:
        """The reference as an alert's message says it: with why, for a fallback."""
        why = {
            "out_of_time": "",
            "validation": " (the out-of-time holdout held no fraud, so its AUC was not measured)",
            "floor": " (neither the out-of-time nor the validation AUC was measured at training: "
            "they held no fraud)",
        }
        return self.label + why[self.name]


def performance_reference(record: ModelRecord, cfg: MonitorConfig) -> PerformanceReference | None:
    """The model's out-of-time AUC from its card; if that was not measurable (the holdout held
    no fraud, as after a training period that saw one fraud pattern), its validation (out of
    fold) AUC; if neither was, the absolute floor ``cfg.perf_floor_auc``; None when the floor
    is off too. Each estimate's standard error comes from its own positives and rows.

    Examples
    --------
    >>> from dataclasses import replace
    >>> from modelminder.model.card import ModelCard, Scores
    >>> card = ModelCard.example()
    >>> blind = replace(card.report.scores, oot=Scores(rows=500.0), validation=Scores())
    >>> meta = replace(card, report=replace(card.report, scores=blind)).to_json()
    >>> record = ModelRecord("v1", 0, "accepted", (), "x", meta, "t")
    >>> performance_reference(record, MonitorConfig())
    PerformanceReference(name='floor', auc=0.75, standard_error=0.0)
    >>> performance_reference(record, MonitorConfig(perf_floor_auc=None)) is None
    True
    """
    metrics = record.card.metrics
    for name, s in (("out_of_time", metrics.oot), ("validation", metrics.validation)):
        if math.isfinite(s.auc):
            positives = int(s.positives)
            se = auc_standard_error(s.auc, positives, int(s.rows) - positives)
            return PerformanceReference(name, s.auc, se)
    if cfg.perf_floor_auc is None:
        return None
    return PerformanceReference("floor", float(cfg.perf_floor_auc), 0.0)


def _reference_note(record: ModelRecord, reference: PerformanceReference | None) -> str:
    oot = record.card.metrics.oot
    why = (
        f"Model {record.version}'s out-of-time AUC was not measured at training (its holdout "
        f"held {int(oot.positives):,} fraud among {int(oot.rows):,} events)"
    )
    if reference is None:
        return (
            f"{why}, nor its validation AUC, and the absolute floor is off "
            "(perf_floor_auc=None): its measured performance raises no alert. Set "
            "perf_floor_auc, or retrain on a period that holds fraud."
        )
    return f"{why}; its measured AUC is judged against {reference.label}."


def _performance_alerts(
    data: pl.DataFrame, ref: PerformanceReference, version: str, cfg: MonitorConfig
) -> list[Alert]:
    """Measured AUC below the reference, on pools of consecutive mature windows holding at
    least ``min_positives`` known positives: by ``perf_drop`` below a training estimate
    (out of time or validation), or below the floor; in both cases by more than 3 standard
    errors of the difference."""
    out: list[Alert] = []
    size = cfg.window_us
    # Only windows whose outcomes are (nearly) all known: in a younger window the known ones
    # are mostly the quickly labelled frauds, and an AUC over them says little.
    mature = (
        data.group_by("window_start")
        .agg(coverage=pl.col("outcome").is_not_null().mean())
        .filter(pl.col("coverage") >= MIN_COVERAGE)
        .get_column("window_start")
    )
    known = data.filter(
        pl.col("outcome").is_not_null() & pl.col("window_start").is_in(mature)
    ).sort("ts")
    # The floor is already the least acceptable AUC; a training estimate may fall by perf_drop.
    limit = ref.auc if ref.name == "floor" else ref.auc - cfg.perf_drop
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
        # A drop counts when it is both large and clear of the noise of the AUCs measured on
        # few positives (3 standard errors, Hanley-McNeil, window and reference).
        se = math.hypot(
            auc_standard_error(w.auc, w.positives, w.known - w.positives), ref.standard_error
        )
        if w.auc < limit and ref.auc - w.auc > 3 * se:
            evidence: dict[str, Any] = {
                "auc": w.auc,
                "reference": ref.name,
                "reference_auc": ref.auc,
                "standard_error": se,
                "positives": w.positives,
                "rows": w.known,
                "recall": w.recall,
            }
            worse = (
                "separates fraud worse than the floor allows"
                if ref.name == "floor"
                else "no longer separates fraud as it did"
            )
            if ref.name == "out_of_time":  # (the key alerts had before the fallbacks)
                evidence["out_of_time_auc"] = ref.auc
            out.append(
                Alert(
                    "performance",
                    "severe",
                    "auc",
                    version,
                    first,
                    last + size,
                    evidence,
                    f"Measured AUC {w.auc:.3f} on {w.positives} labelled frauds, against "
                    f"{ref.words}: the model {worse}. Retrain on recent labels (minder train) "
                    "and compare.",
                )
            )
    return out


def concept_alerts(
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


def probing_alerts(
    part: pl.DataFrame, entity: str, version: str, cfg: MonitorConfig
) -> list[Alert]:
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


def skew_check(
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
