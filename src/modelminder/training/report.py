"""The overfitting & leakage report: what the guard measured, as JSON and as an HTML section.

Sections: scores (train, validation, out-of-time, baseline), per-fold gaps and their trend, the
validation trend over the folds, the search (how many trials were infeasible, and why), a
learning curve, single-feature scores ("too good to be true"), the feature time-travel audit,
the label-delay audit, duplicates across folds, and findings (``leakage``, ``overfitting``,
``data``) that the gate reads.

The validation trend is a **finding, not a gate rule**. It fires when the validation AUC falls
fold after fold in time (a weighted least-squares slope over the folds at least ``gap_z``
standard errors below zero, Hanley-McNeil errors, three folds or more) *and* the last fold is
below the earlier ones by more than the gate's tolerance (:func:`last_fold_shortfall`). Why not
a rule: the gate's lab-vs-production check already fails a model whose decline continues into
the out-of-time holdout, which is the question that matters; a decline over the folds measures
how fast the *problem* drifts (fraudsters adapting), which every configuration and the baseline
suffer alike, so a rule would reject the best model available when the remedy is to retrain
more often or weigh recent rows more (``--recency-half-life``); and three to five noisy points
make a slope that is often "significant" by chance (fraud comes in bursts per card, so the
errors are too small): on a stationary test world the slope alone crossed 2 standard errors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelminder.metrics import auc, auc_standard_error, average_precision, scores
from modelminder.model.card import GuardReport
from modelminder.training.gate import GateRules, auc_tolerance

Array = npt.NDArray[Any]
DAY_US = 86_400_000_000
TOO_GOOD_AUC = 0.97  # a single feature this predictive is more likely a leak than a gift


def fold_rows(
    name: str, y_train: Array, p_train: Array, y_valid: Array, p_valid: Array
) -> dict[str, Any]:
    tr, va = scores(y_train, p_train), scores(y_valid, p_valid)
    return {
        "name": name,
        "train": tr,
        "valid": va,
        "gap_auc": tr["auc"] - va["auc"],
        "gap_average_precision": tr["average_precision"] - va["average_precision"],
    }


def gap_section(folds: list[dict[str, Any]]) -> dict[str, Any]:
    gaps = [f["gap_auc"] for f in folds if not math.isnan(f["gap_auc"])]
    ap_gaps = [g for f in folds if not math.isnan(g := f["gap_average_precision"])]
    trend = float(np.polyfit(np.arange(len(gaps)), gaps, 1)[0]) if len(gaps) >= 2 else 0.0
    return {
        "auc": float(np.mean(gaps)) if gaps else math.nan,
        # NaN when no fold had positives on both sides (not a warning about an empty mean).
        "average_precision": float(np.mean(ap_gaps)) if ap_gaps else math.nan,
        "per_fold_auc": gaps,
        "trend_per_fold": trend,
    }


def _se(s: Mapping[str, Any]) -> float:
    positives = int(s["positives"])
    return auc_standard_error(float(s["auc"]), positives, int(s["rows"]) - positives)


def last_fold_shortfall(
    valid: Sequence[Mapping[str, Any]], rules: GateRules
) -> dict[str, float] | None:
    """How far the last fold's validation AUC is below the mean of the earlier folds', and the
    tolerance (:func:`~modelminder.training.gate.auc_tolerance` of the two standard errors).

    ``valid`` holds one mapping per fold, in time order, with ``auc``, ``positives`` and
    ``rows``. None when there is no earlier fold or the last fold's AUC is NaN.

    Examples
    --------
    >>> folds = [{"auc": a, "positives": 50, "rows": 5000} for a in (0.95, 0.94, 0.80)]
    >>> out = last_fold_shortfall(folds, GateRules())
    >>> round(out["drop"], 3), round(out["tolerance"], 3), out["drop"] > out["tolerance"]
    (0.145, 0.082, True)
    """
    if len(valid) < 2 or math.isnan(float(valid[-1]["auc"])):
        return None
    earlier = [f for f in valid[:-1] if not math.isnan(float(f["auc"]))]
    if not earlier:
        return None
    mean = float(np.mean([float(f["auc"]) for f in earlier]))
    # Standard error of a mean of independent fold estimates.
    se_earlier = math.sqrt(sum(_se(f) ** 2 for f in earlier)) / len(earlier)
    last = float(valid[-1]["auc"])
    tol = auc_tolerance(_se(valid[-1]), se_earlier, rules)
    return {"last": last, "earlier": mean, "drop": mean - last, "tolerance": tol}


def validation_trend(
    folds: list[dict[str, Any]], rules: GateRules, *, in_time: bool = True
) -> dict[str, Any]:
    """Per-fold validation AUC in time order, its weighted slope per fold, and whether it is
    falling (see the module docstring). Random k-fold has no time order: never falling."""
    valid = [f["valid"] for f in folds]
    aucs = [float(v["auc"]) for v in valid]
    ses = [_se(v) for v in valid]
    out: dict[str, Any] = {
        "per_fold_auc": aucs,
        "per_fold_se": ses,
        "slope_per_fold": math.nan,
        "slope_se": math.nan,
        "last_fold": last_fold_shortfall(valid, rules) if in_time else None,
        "falling": False,
    }
    points = [(k, a, s) for k, (a, s) in enumerate(zip(aucs, ses, strict=True)) if math.isfinite(s)]
    if not in_time or len(points) < 3:
        return out
    x = np.array([p[0] for p in points], np.float64)
    a = np.array([p[1] for p in points], np.float64)
    # An AUC of exactly 1.0 has a zero Hanley-McNeil error; 0.001 keeps its weight finite.
    w = 1.0 / np.maximum([p[2] for p in points], 1e-3) ** 2
    xm, am = np.average(x, weights=w), np.average(a, weights=w)
    sxx = float(np.sum(w * (x - xm) ** 2))
    slope = float(np.sum(w * (x - xm) * (a - am)) / sxx)
    slope_se = 1.0 / math.sqrt(sxx)
    last = out["last_fold"]
    out["slope_per_fold"], out["slope_se"] = slope, slope_se
    out["falling"] = bool(
        slope <= -rules.gap_z * slope_se and last is not None and last["drop"] > last["tolerance"]
    )
    return out


def paired_ap_se(y: Array, mine: Array, base: Array, seed: int, boot: int = 200) -> dict[str, Any]:
    """Bootstrap standard error of ``AP(mine) - AP(base)`` on the same rows (positives and
    negatives resampled separately, so each replicate keeps the class counts)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if len(pos) < 2 or len(neg) < 2:
        return {"se": math.nan, "boot": 0}
    rng = np.random.default_rng(seed)
    reps = np.empty(boot)
    for r in range(boot):
        rows = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        reps[r] = average_precision(y[rows], mine[rows]) - average_precision(y[rows], base[rows])
    return {"se": float(np.std(reps, ddof=1)), "boot": boot}


def single_feature_section(
    X: Array, y: Array, names: list[str], rows: Array
) -> list[dict[str, Any]]:
    """AUC of each feature alone on ``rows`` (either direction; missing values last)."""
    out = []
    for j, name in enumerate(names):
        x = X[rows, j]
        if np.all(np.isnan(x)):
            continue
        x = np.where(np.isnan(x), np.nanmin(x) - 1.0, x)
        a = auc(y[rows], x)
        out.append({"feature": name, "auc": max(a, 1.0 - a) if not math.isnan(a) else a})
    return sorted(out, key=lambda r: -(r["auc"] if not math.isnan(r["auc"]) else 0.0))


def label_delay_section(
    ts: Array, known_at: Array, y: Array, labelled: Array, maturity_us: int
) -> dict[str, Any]:
    """How late positive labels arrive, and how many a maturity period would miss."""
    pos = (y == 1) & labelled
    delays = (known_at[pos] - ts[pos]) / DAY_US
    if len(delays) == 0:
        return {"positives": 0}
    late = float(np.mean(delays > maturity_us / DAY_US))
    return {
        "positives": int(pos.sum()),
        "median_days": float(np.median(delays)),
        "p90_days": float(np.quantile(delays, 0.9)),
        "max_days": float(delays.max()),
        "share_after_maturity": late,
    }


def duplicates_section(
    event_ids: Array, content_hash: Array, folds: list[tuple[Array, Array]]
) -> dict[str, int]:
    """Events (by id) or identical rows (by content) on both sides of any fold."""
    by_id = by_content = 0
    for train, valid in folds:
        by_id += len(np.intersect1d(event_ids[train], event_ids[valid]))
        by_content += len(np.intersect1d(content_hash[train], content_hash[valid]))
    return {"same_event_id": int(by_id), "same_content": int(by_content)}


def findings(report: dict[str, Any], rows: int) -> list[dict[str, str]]:
    """What the gate and a reader should look at first."""
    out: list[dict[str, str]] = []
    travel = report.get("time_travel") or {}
    # A feature this good alone is suspect. It is leakage (and the gate refuses the model)
    # when it reads labels, directly or through a computed feature, or when no time-travel
    # audit showed that it sees only the past. A plain event feature the audit cleared is
    # reported but not refused: when one fraud pattern dominates (all fraud big-ticket, say)
    # a single honest feature can separate it, and that is the data, not a leak.
    # A feature that reads labels can leak only if labels are known at their event's own
    # time (a label file stamped with the fraud's time rather than the report's): with the
    # positive labels arriving a median of an hour or more after their events, the engine's
    # "known before the event" rule keeps each event's own label out of its features.
    label_aware = set(report.get("label_aware") or ())
    median_h = 24 * float((report.get("label_delay") or {}).get("median_days", 0.0) or 0.0)
    labels_late = median_h >= 1.0
    audited = bool(travel) and int(travel.get("checked_events", 0)) > 0
    for f in report["single_feature"]:
        if not math.isnan(f["auc"]) and f["auc"] >= TOO_GOOD_AUC:
            name = f["feature"]
            reads_labels = name in label_aware
            leak = not audited or (reads_labels and not labels_late)
            why = (
                "no time-travel audit ran" if not audited
                else "it reads labels that are known about when their events happen"
                if leak
                else f"it reads labels, known a median {median_h:.0f} h after their events, "
                "and the time-travel audit found no look-ahead"
                if reads_labels
                else "it reads no labels and the time-travel audit found no look-ahead"
            )  # fmt: skip
            out.append(
                {
                    "kind": "leakage" if leak else "warning",
                    "message": f"feature '{name}' alone scores AUC {f['auc']:.3f} "
                    f"(>= {TOO_GOOD_AUC}): "
                    + ("too good to be true -- does it use the label? (" + why + ")" if leak
                       else "very predictive on its own; not treated as leakage: " + why),
                }
            )  # fmt: skip
    for name in travel.get("mismatched_features", []):
        out.append(
            {
                "kind": "leakage",
                "message": f"feature '{name}' changes when later events are removed from the "
                "log: it depends on data after the event",
            }
        )
    dup = report["duplicates"]
    if dup["same_event_id"]:
        out.append(
            {
                "kind": "leakage",
                "message": f"{dup['same_event_id']} events are in both training and validation",
            }
        )
    if dup["same_content"] > 0.001 * rows:
        out.append(
            {
                "kind": "data",
                "message": f"{dup['same_content']} identical rows appear in both training and "
                "validation (re-sent events under new ids?)",
            }
        )
    delay = report["label_delay"]
    if delay.get("share_after_maturity", 0.0) > 0.1:
        out.append(
            {
                "kind": "data",
                "message": f"{delay['share_after_maturity']:.0%} of positive labels arrived after "
                "the maturity period: matured negatives hide positives; lengthen the maturity",
            }
        )
    trend = report.get("validation_trend") or {}
    if trend.get("falling"):
        last = trend["last_fold"]
        path = " -> ".join(f"{a:.3f}" for a in trend["per_fold_auc"])
        out.append(
            {
                "kind": "overfitting",
                "message": f"validation AUC falls fold after fold in time ({path}; "
                f"{trend['slope_per_fold']:+.3f} per fold, "
                f"{-trend['slope_per_fold'] / trend['slope_se']:.1f} standard errors) and the "
                f"last fold is {last['drop']:.3f} below the earlier ones (tolerance "
                f"{last['tolerance']:.3f}): the model's skill decays with time, expect the "
                "production score to keep falling; retrain more often or weigh recent rows "
                "more (--recency-half-life)",
            }
        )
    gap = report["gap"]
    if gap["trend_per_fold"] > 0.04:
        out.append(
            {
                "kind": "overfitting",
                "message": f"the train-vs-validation gap grows by {gap['trend_per_fold']:.3f} "
                "AUC per fold",
            }
        )
    return out


HTML = """<section class="guard-report">
<h2>Overfitting &amp; leakage report</h2>
<p>Verdict: <strong>{{ verdict_text }}</strong></p>
<table><tr><th>scores</th><th>AUC</th><th>average precision</th><th>recall @ alert rate</th>
<th>rows</th></tr>
{% for name, s in scores.items() if s %}<tr><td>{{ name }}</td>
<td>{{ "%.3f"|format(s.auc) }}</td><td>{{ "%.3f"|format(s.average_precision) }}</td>
<td>{{ "%.3f"|format(s.recall_at_alert_rate) }}</td><td>{{ s.rows|int }}</td></tr>
{% endfor %}</table>
<h3>Folds</h3><table><tr><th>fold</th><th>train AUC</th><th>valid AUC</th><th>gap</th></tr>
{% for f in folds %}<tr><td>{{ f.name }}</td><td>{{ "%.3f"|format(f.train.auc) }}</td>
<td>{{ "%.3f"|format(f.valid.auc) }}</td><td>{{ "%.3f"|format(f.gap_auc) }}</td></tr>
{% endfor %}</table>
{% if search and search.summary %}<h3>Search</h3><p>{{ search.summary }}</p>{% endif %}
{% if validation_trend and validation_trend.last_fold %}<p>Last fold: validation AUC
{{ "%.3f"|format(validation_trend.last_fold.last) }} vs {{
"%.3f"|format(validation_trend.last_fold.earlier) }} on the earlier folds (tolerance {{
"%.3f"|format(validation_trend.last_fold.tolerance) }}).</p>{% endif %}
<h3>Learning curve</h3><table><tr><th>share of training rows</th><th>valid AP</th></tr>
{% for p in learning_curve %}<tr><td>{{ "%.0f%%"|format(100 * p.share) }}</td>
<td>{{ "%.3f"|format(p.valid_average_precision) }}</td></tr>{% endfor %}</table>
<h3>Findings</h3><ul>{% for f in findings %}<li>[{{ f.kind }}] {{ f.message }}</li>
{% else %}<li>none</li>{% endfor %}</ul>
<h3>Strongest single features</h3><table><tr><th>feature</th><th>AUC alone</th></tr>
{% for f in single_feature[:8] %}<tr><td>{{ f.feature }}</td><td>{{ "%.3f"|format(f.auc) }}</td>
</tr>{% endfor %}</table>
</section>"""


def to_html(report: GuardReport) -> str:
    """The report as a self-contained HTML section (no raw rows)."""
    import jinja2

    verdict = report.verdict.summary() if report.verdict else "not judged"
    fields = {
        **report.details,
        "scores": {name: dataclasses.asdict(s) for name, s in report.scores.rows()},
        "findings": report.findings,
    }
    env = jinja2.Environment(autoescape=True)
    return env.from_string(HTML).render(verdict_text=verdict, **fields)
