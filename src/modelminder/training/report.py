"""The overfitting & leakage report: what the guard measured, as JSON and as an HTML section.

Sections: scores (train, validation, out-of-time, baseline), per-fold gaps and their trend, a
learning curve, single-feature scores ("too good to be true"), the feature time-travel audit,
the label-delay audit, duplicates across folds, and findings (``leakage``, ``overfitting``,
``data``) that the gate reads.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from modelminder.metrics import auc, scores
from modelminder.model.card import GuardReport

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
    for f in report["single_feature"]:
        if not math.isnan(f["auc"]) and f["auc"] >= TOO_GOOD_AUC:
            out.append(
                {
                    "kind": "leakage",
                    "message": f"feature '{f['feature']}' alone scores AUC {f['auc']:.3f} "
                    f"(>= {TOO_GOOD_AUC}): too good to be true -- does it use the label?",
                }
            )
    travel = report.get("time_travel") or {}
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
