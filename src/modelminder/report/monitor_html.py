"""One monitor run as a self-contained HTML page (``minder report --out report.html``).

Sections, per model version where it applies:

* **header**: the monitored time range, the run's as-of time, the window size, the model
  versions with their served events, alerts by severity, the skew check, the run's notes;
* **drift over time per feature**: a heatmap of windows x features of the drift ratio (the
  worst statistic's distance over its calibrated threshold, so 1 = threshold; capped so one
  extreme window does not wash out the rest), the worst statistic in the hover; a line of the
  score's drift ratio and of the feature vector's (multivariate) one; a table of the features
  that drifted;
* **performance over time with label coverage**: measured AUC (with one standard error) and
  recall per window, with the share of the window whose outcome is known as bars on a second
  axis;
* **estimate vs actual**: the label-free estimates of AUC and recall next to the measured ones;
* **alerts timeline**: each (folded) alert as a bar from its first to its last window, one row
  per kind and subject, coloured by severity, the suggested action in the hover; then a table.

The page embeds the plotly JS bundle of the installed plotly package once and loads nothing
from elsewhere. It holds aggregates only: alert evidence that lists individual events (the skew
check's examples) is left out.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
import tempfile
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.offline
import polars as pl

from modelminder.errors import MonitorError
from modelminder.monitoring.alerts import KINDS, SEVERITIES, Alert
from modelminder.monitoring.drift import DriftReport
from modelminder.monitoring.monitor import MonitorReport

DAY_US = 86_400_000_000
RATIO_CAP = 4.0  # drift ratios above this are drawn as this (the hover keeps the true value)
COLOURS = {"warn": "#e8a33d", "severe": "#c8372d", "auc": "#2a6fb0", "recall": "#d9822b"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "showLink": False}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ESTIMATE_NOTE = (
    "Estimates read only the served scores, assuming the model is calibrated (an event with "
    "score 0.3 is fraud 30% of the time). They are unreliable under concept drift, when the "
    "relation between features and fraud changes: exactly then estimate and measurement part "
    "ways, so a widening gap is itself a warning."
)


def render(report: MonitorReport) -> str:
    """The report as one self-contained HTML document (plotly JS inline, nothing external).

    Parameters
    ----------
    report
        What :func:`~modelminder.monitoring.monitor.run_monitor` returned.

    Returns
    -------
    str
        The page. It opens offline and holds aggregates only, never events or feature vectors.

    Examples
    --------
    >>> import polars as pl
    >>> from modelminder.monitoring.monitor import MonitorConfig
    >>> empty = MonitorReport(MonitorConfig(), 0, pl.DataFrame(), {}, [], [],
    ...                       {"checked": 0, "mismatches": {}}, ["<nothing served>"])
    >>> page = render(empty)
    >>> page.startswith("<!DOCTYPE html>"), "&lt;nothing served&gt;" in page
    (True, True)
    """
    size = report.config.window_us
    page = _Page()
    versions = _versions(report)
    drift = [_drift_part(page, v, report.drift.get(v), report) for v in versions]
    perf = [_performance_part(page, v, _version_windows(report.windows, v)) for v in versions]
    est = [_estimate_part(page, v, _version_windows(report.windows, v)) for v in versions]
    timeline = (
        page.add(_timeline(report.alerts, size, len(versions) > 1)) if report.alerts else None
    )
    return _TEMPLATE.render(
        plotly_js=plotly.offline.get_plotlyjs(),
        header=_header(report, versions),
        drift=drift,
        performance=perf,
        estimate=est,
        estimate_note=_ESTIMATE_NOTE,
        timeline=timeline,
        review=_review_rows(report.review),
        review_counts=report.review,
        alerts=[_alert_row(a, size) for a in _alert_order(report.alerts)],
        figures=page.script(),
        config=PLOT_CONFIG,
    )


def write(report: MonitorReport, path: Path) -> Path:
    """Render ``report`` and write it to ``path`` atomically (a temporary file in the same
    folder, then a rename): a reader never sees half a page, and a failed write leaves any
    earlier file as it was.

    Raises
    ------
    MonitorError
        The folder of ``path`` does not exist, ``path`` is a folder, or the write failed.

    Examples
    --------
    >>> import tempfile
    >>> import polars as pl
    >>> from modelminder.monitoring.monitor import MonitorConfig
    >>> empty = MonitorReport(MonitorConfig(), 0, pl.DataFrame(), {}, [], [], {}, [])
    >>> out = write(empty, Path(tempfile.mkdtemp()) / "report.html")
    >>> out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    True
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise MonitorError(
            f"Cannot write the report to '{path}': the folder '{folder}' does not exist. "
            "Create it first, or pass --out with an existing folder."
        )
    if path.is_dir():
        raise MonitorError(
            f"Cannot write the report to '{path}': it is a folder. Pass a file name, like "
            f"'{path / 'report.html'}'."
        )
    text = render(report)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-", suffix=".html.tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o644)  # mkstemp's 0600 would hide a page meant to be shared
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise MonitorError(f"Cannot write the report to '{path}': {exc}.") from exc
    return path


# -- page assembly ------------------------------------------------------------------------


class _Page:
    """The page's figures, by element id, serialized once for one inline script."""

    def __init__(self) -> None:
        self._figures: list[str] = []

    def add(self, figure: Any) -> str:
        self._figures.append(str(figure.to_json()))  # plotly escapes <, > and / in strings
        return f"plot-{len(self._figures)}"

    def script(self) -> str:
        body = ",".join(f'"plot-{i}":{f}' for i, f in enumerate(self._figures, 1))
        return "{" + body + "}"


def _versions(report: MonitorReport) -> list[str]:
    found = set(report.drift)
    if "model_version" in report.windows.columns:
        found.update(str(v) for v in report.windows.get_column("model_version").unique())
    return sorted(found)


def _version_windows(windows: pl.DataFrame, version: str) -> pl.DataFrame:
    if "model_version" not in windows.columns:
        return pl.DataFrame()
    return windows.filter(pl.col("model_version") == version).sort("window_start")


def _part(
    version: str,
    message: str | None = None,
    plots: list[str] | None = None,
    drifted: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """One model version's part of a section: its plots, and a message when something is
    missing (the template reads every key)."""
    return {"version": version, "message": message, "plots": plots or [], "drifted": drifted or []}


def _header(report: MonitorReport, versions: list[str]) -> dict[str, Any]:
    size = report.config.window_us
    starts = _all_starts(report)
    span = _span(min(starts), max(starts) + size, size) if starts else "-"
    served: dict[str, int] = {}
    if "rows" in report.windows.columns:
        for version, rows in (
            report.windows.group_by("model_version").agg(pl.col("rows").sum()).rows()
        ):
            served[str(version)] = int(rows)
    severity = Counter(a.severity for a in report.alerts)
    open_severe = len(report.open_severe)
    alerts = ", ".join(f"{severity[s]} {s}" for s in reversed(SEVERITIES))
    return {
        "range": span,
        "as_of": _when(report.as_of, 1),
        "window": f"{report.config.window} ({_duration(size)})",
        "versions": [f"{v} ({served.get(v, 0):,} events served)" for v in versions],
        "alerts": f"{len(report.alerts)} ({alerts}; {open_severe} severe still open)",
        "skew": _skew_text(report.skew),
        "notes": report.notes,
    }


def _all_starts(report: MonitorReport) -> list[int]:
    starts: list[int] = []
    if "window_start" in report.windows.columns:
        starts += [int(s) for s in report.windows.get_column("window_start")]
    for rep in report.drift.values():
        starts += [int(w) * report.config.window_us for w in rep.windows.get_column("window")]
    return starts


def _skew_text(skew: dict[str, Any]) -> str:
    checked = int(skew.get("checked", 0))
    if not checked:
        return "not checked in this run"
    mismatches: dict[str, int] = skew.get("mismatches") or {}
    if not mismatches:
        return f"{checked:,} served events replayed: every feature matches"
    listed = ", ".join(f"{name} ({n:,})" for name, n in sorted(mismatches.items()))
    return f"{checked:,} served events replayed: MISMATCHES in {listed}"


# -- drift --------------------------------------------------------------------------------


def _drift_part(
    page: _Page, version: str, rep: DriftReport | None, report: MonitorReport
) -> dict[str, Any]:
    if rep is None or rep.features.height == 0:
        return _part(
            version,
            f"No drift report for model {version}: it has no stored drift reference (it was "
            "trained before drift monitoring). Retrain it to monitor drift.",
        )
    size, severe = report.config.window_us, report.config.drift.severe
    worst = rep.statistics.select(
        "window", "feature", worst="statistic", value="value", threshold="threshold"
    )
    cells = rep.features.join(worst, on=["window", "feature", "worst"], how="left")
    inputs = cells.filter(pl.col("feature") != "score")
    plots = [page.add(_heatmap(inputs, size, severe))] if inputs.height else []
    plots.append(page.add(_drift_lines(cells, rep.windows, size)))
    return _part(version, plots=plots, drifted=_drift_table(cells))


def _heatmap(cells: pl.DataFrame, size: int, severe: float) -> Any:
    cap = max(RATIO_CAP, 2 * severe)
    order = (
        cells.group_by("feature")
        .agg(pl.col("score").fill_nan(None).max())
        .sort("score", "feature", descending=[False, True], nulls_last=False)
        .get_column("feature")
        .to_list()
    )  # least drifting first: plotly draws the first row at the bottom
    windows = sorted(set(cells.get_column("window").to_list()))
    by_cell = {(r["feature"], r["window"]): r for r in cells.iter_rows(named=True)}
    z, hover = [], []
    for feature in order:
        rows = [by_cell.get((feature, w)) for w in windows]
        z.append([_capped(r["score"], cap) if r else None for r in rows])
        hover.append([_cell_hover(r) if r else ["no data"] * 6 for r in rows])
    t, s = 1.0 / cap, severe / cap
    scale = [
        [0, "#f7f7f7"],
        [t, "#b9cde0"],
        [t, "#fde6a4"],
        [s, "#ef9a48"],
        [s, "#d9553f"],
        [1, "#7f1d16"],
    ]
    figure = go.Figure(
        go.Heatmap(
            x=[_when(w * size, size) for w in windows],
            y=[_text(f) for f in order],
            z=z,
            zmin=0,
            zmax=cap,
            colorscale=scale,
            customdata=hover,
            colorbar={
                "title": {"text": "drift ratio"},
                "tickvals": [0, 1, severe, cap],
                "ticktext": ["0", "1 threshold", f"{severe:g} severe", f"{cap:g}+"],
            },
            hovertemplate="<b>%{y}</b> %{x}<br>drift ratio %{customdata[0]}<br>worst: "
            "%{customdata[1]} %{customdata[2]} (threshold %{customdata[3]})<br>"
            "%{customdata[4]}; %{customdata[5]}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    return _layout(
        figure,
        "Drift ratio per window and feature (1 = threshold)",
        height=140 + 20 * len(order),
        xdate=True,
    )


def _cell_hover(r: dict[str, Any]) -> list[str]:
    missing = r["missing_share"]
    return [
        _num(r["score"]),
        _text(r["worst"] or "-"),
        _num(r["value"]),
        _num(r["threshold"]),
        str(r["severity"]),
        f"{int(r['rows']):,} rows, {_share(missing)} missing",
    ]


def _drift_lines(cells: pl.DataFrame, windows: pl.DataFrame, size: int) -> Any:
    score = cells.filter(pl.col("feature") == "score").sort("window")
    traces = [
        go.Scatter(
            x=[_when(w * size, size) for w in score.get_column("window")],
            y=_floats(score.get_column("score")),
            customdata=[_text(w or "-") for w in score.get_column("worst")],
            name="model score",
            mode="lines+markers",
            hovertemplate="score: ratio %{y:.2f} (worst: %{customdata})<extra></extra>",
        )
    ]
    multi = windows.filter(pl.col("multivariate").is_not_null()).sort("window")
    if multi.height:
        ratio = multi.get_column("multivariate") / multi.get_column("multivariate_threshold")
        traces.append(
            go.Scatter(
                x=[_when(w * size, size) for w in multi.get_column("window")],
                y=_floats(ratio),
                name="feature vector (multivariate)",
                mode="lines+markers",
                hovertemplate="feature vector: ratio %{y:.2f}<extra></extra>",
            )
        )
    figure = go.Figure(traces)
    figure.add_hline(y=1.0, line_dash="dash", line_color="#888", annotation_text="threshold")
    figure.update_yaxes(title_text="drift ratio", rangemode="tozero")
    return _layout(figure, "Drift of the score and of the feature vector", xdate=True)


def _drift_table(cells: pl.DataFrame) -> list[dict[str, str]]:
    drifted = (
        cells.filter(pl.col("drifted"))
        .group_by("feature")
        .agg(
            windows=pl.len(),
            severe=(pl.col("severity") == "severe").sum(),
            largest=pl.col("score").max(),
        )
        .sort("windows", "largest", descending=True)
    )
    total = cells.get_column("window").n_unique()
    return [
        {
            "feature": str(r["feature"]),
            "windows": f"{r['windows']} of {total}",
            "severe": str(r["severe"]),
            "largest": _num(r["largest"]),
        }
        for r in drifted.iter_rows(named=True)
    ]


# -- performance and estimates --------------------------------------------------------------


def _performance_part(page: _Page, version: str, w: pl.DataFrame) -> dict[str, Any]:
    if w.height == 0:
        return _part(version, f"No performance windows for model {version}.")
    if not _has_measure(w):
        known = int(w.get_column("known").sum())
        return _part(
            version,
            f"No labelled windows yet for model {version}: {known:,} outcomes known, too few "
            "labelled frauds to measure AUC or recall. They appear as labels arrive.",
        )
    x = [_when(s, 1) for s in w.get_column("window_start")]
    hover = [
        f"{r:,} rows, {k:,} known, {p:,} frauds"
        for r, k, p in w.select("rows", "known", "positives").rows()
    ]
    bars = go.Bar(
        x=x,
        y=_floats(w.get_column("coverage")),
        name="label coverage",
        marker_color="#c9d3dd",
        opacity=0.6,
        customdata=hover,
        hovertemplate="coverage %{y:.0%}<br>%{customdata}<extra></extra>",
    )
    lines = [
        go.Scatter(
            x=x,
            y=_floats(w.get_column(m)),
            name=f"measured {m.upper()}" if m == "auc" else "measured recall",
            mode="lines+markers",
            line_color=COLOURS[m],
            yaxis="y2",  # the overlaying axis: lines drawn above the bars
            hovertemplate=f"{m} %{{y:.3f}}<extra></extra>",
            # AUC on a handful of frauds is noisy: one standard error either way.
            error_y=(
                {"type": "data", "array": _floats(w.get_column("auc_se")), "thickness": 1}
                if m == "auc" and "auc_se" in w.columns
                else None
            ),
        )
        for m in ("auc", "recall")
    ]
    figure = go.Figure([bars, *lines])
    figure.update_layout(
        yaxis={
            "title": {"text": "label coverage"},
            "side": "right",
            "range": [0, 1.02],
            "tickvals": [0, 0.25, 0.5, 0.75, 1],
            "tickformat": ".0%",
            "showgrid": False,
        },
        yaxis2={
            "title": {"text": "AUC / recall"},
            "overlaying": "y",
            "side": "left",
            "range": [0, 1.02],
        },
    )
    return _part(version, plots=[page.add(_layout(figure, "Measured performance"))])


def _estimate_part(page: _Page, version: str, w: pl.DataFrame) -> dict[str, Any]:
    if w.height == 0:
        return _part(version, f"No performance windows for model {version}.")
    x = [_when(s, 1) for s in w.get_column("window_start")]
    traces = []
    for metric in ("auc", "recall"):
        label = "AUC" if metric == "auc" else "recall"
        for kind, column, dash in (
            ("estimated", f"est_{metric}", "dash"),
            ("measured", metric, "solid"),
        ):
            traces.append(
                go.Scatter(
                    x=x,
                    y=_floats(w.get_column(column)),
                    name=f"{kind} {label}",
                    mode="lines+markers",
                    line={"color": COLOURS[metric], "dash": dash},
                    hovertemplate=f"{kind} {label} %{{y:.3f}}<extra></extra>",
                )
            )
    figure = go.Figure(traces)
    figure.update_yaxes(title_text="AUC / recall", range=[0, 1.02])
    return _part(
        version,
        None
        if _has_measure(w)
        else f"No labelled windows yet for model {version}: only estimates so far.",
        [page.add(_layout(figure, "Estimate vs actual"))],
    )


def _has_measure(w: pl.DataFrame) -> bool:
    return any(v is not None for m in ("auc", "recall") for v in _floats(w.get_column(m)))


# -- alerts -------------------------------------------------------------------------------


def _alert_order(alerts: list[Alert]) -> list[Alert]:
    """Open before closed, severe before warn, newest first."""
    return sorted(
        alerts, key=lambda a: (not a.open, -SEVERITIES.index(a.severity), -a.window_end, a.kind)
    )


def _timeline(alerts: list[Alert], size: int, versions: bool) -> Any:
    def row(a: Alert) -> str:
        label = f"{a.kind}: {a.subject}"
        return _text(f"{label} ({a.model_version})" if versions else label)

    rows = list(
        dict.fromkeys(
            row(a) for a in sorted(alerts, key=lambda a: (KINDS.index(a.kind), a.window_start))
        )
    )
    traces = []
    for severity in SEVERITIES:
        chosen = [a for a in alerts if a.severity == severity]
        if not chosen:
            continue
        traces.append(
            go.Bar(
                base=[_when(a.window_start, 1) for a in chosen],
                x=[(a.window_end - a.window_start) / 1000 for a in chosen],  # milliseconds
                y=[row(a) for a in chosen],
                orientation="h",
                name=severity,
                marker_color=COLOURS[severity],
                customdata=[_alert_hover(a, size) for a in chosen],
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    figure = go.Figure(traces)
    figure.update_xaxes(type="date")
    figure.update_yaxes(categoryorder="array", categoryarray=rows[::-1], automargin=True)
    return _layout(figure, "Alerts by kind and subject", height=160 + 22 * len(rows))


def _alert_hover(a: Alert, size: int) -> str:
    action = "<br>".join(textwrap.wrap(_text(a.action), 90))
    state = "open" if a.open else "closed"
    return (
        f"<b>{a.severity} {a.kind}</b>: {_text(a.subject)} (model {_text(a.model_version)})<br>"
        f"{_span(a.window_start, a.window_end, size)}, {a.count} window(s), "
        f"{state}<br>{action}"
    )


def _alert_row(a: Alert, size: int) -> dict[str, str]:
    return {
        "severity": a.severity,
        "kind": a.kind,
        "subject": a.subject,
        "version": a.model_version,
        "span": _span(a.window_start, a.window_end, size),
        "count": str(a.count),
        "open": "open" if a.open else "closed",
        "evidence": _evidence(a.evidence, size),
        "action": a.action,
    }


def _evidence(evidence: dict[str, Any], size: int) -> str:
    """Scalars and lists of scalars only: nested records (the skew check's examples) name
    individual events and stay out of the report."""
    out = []
    for key, value in evidence.items():
        if key in ("known_at", "window_start") and isinstance(value, int):
            out.append(f"{key} {_when(value, size)}")
        elif isinstance(value, bool | int | float | str):
            out.append(f"{key} {_num(value) if isinstance(value, float) else value}")
        elif isinstance(value, list) and all(isinstance(v, int | float | str) for v in value):
            out.append(
                f"{key} {', '.join(_num(v) if isinstance(v, float) else str(v) for v in value)}"
            )
    return "; ".join(out)


# -- small helpers --------------------------------------------------------------------------


def _layout(figure: Any, title: str, *, height: int = 360, xdate: bool = False) -> Any:
    figure.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0, "font": {"size": 14}},
        height=height,
        margin={"l": 60, "r": 40, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.15},
        hovermode="closest",
    )
    if xdate:
        figure.update_xaxes(type="date")
        pad_single_dates(figure)
    return figure


def pad_single_dates(figure: Any) -> Any:
    """Give a date axis whose traces all sit at one time a day either side, ticked in days:
    plotly would otherwise zoom into that instant and tick it in microseconds (a report over
    one window, like the demo's last day, must still read well).

    Examples
    --------
    >>> fig = go.Figure(go.Scatter(x=["2026-04-30 00:00"], y=[1.0]))
    >>> pad_single_dates(fig).layout.xaxis.range
    ('2026-04-29 00:00:00', '2026-05-01 00:00:00')
    """
    seen: set[dt.datetime] = set()
    if any(trace.type == "heatmap" for trace in figure.data):
        return figure  # a one-column heatmap fills its axis; a padded range would hide it
    for trace in figure.data:
        for value in getattr(trace, "x", None) or ():
            try:
                seen.add(dt.datetime.fromisoformat(str(value)))
            except ValueError:
                return figure  # not a date axis
    if len(seen) == 1:
        (only,) = seen
        day = dt.timedelta(days=1)
        figure.update_xaxes(
            range=[str(only - day), str(only + day)], dtick=DAY_US // 1000, tickformat="%Y-%m-%d"
        )
    return figure


def _when(us: int, size: int) -> str:
    """A UTC time: the date alone when ``size`` is whole days."""
    t = _EPOCH + dt.timedelta(microseconds=int(us))
    return t.strftime("%Y-%m-%d") if size % DAY_US == 0 else t.strftime("%Y-%m-%d %H:%M")


def _span(start: int, end: int, size: int) -> str:
    """Windows from ``start`` to ``end`` (exclusive): whole days as inclusive dates."""
    if size % DAY_US:
        return f"{_when(start, size)} to {_when(end, size)}"
    first, last = _when(start, size), _when(end - DAY_US, size)
    return first if first == last else f"{first} to {last}"


def _duration(us: int) -> str:
    for unit, n in (("d", DAY_US), ("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000)):
        if us % n == 0:
            return f"{us // n}{unit}"
    return f"{us}us"


def _floats(values: pl.Series) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(v) else None for v in values.to_list()]


def _capped(value: float | None, cap: float) -> float | None:
    return None if value is None or not math.isfinite(value) else min(float(value), cap)


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1%}"


def _review_rows(review: dict[str, Any] | None) -> list[dict[str, str]]:
    """Precision, recall and fraud rate from review labels: naive and corrected."""
    if review is None:
        return []

    def cell(e: dict[str, Any]) -> str:
        return f"{_num(e['value'])} [{_num(e['low'])}, {_num(e['high'])}] (n = {e['n']:,})"

    est = review["estimates"]
    return [
        {"metric": name.replace("_", " "), "naive": cell(est[name]["naive"]),
         "corrected": cell(est[name]["corrected"])}
        for name in ("precision", "recall", "fraud_rate")
    ]  # fmt: skip


def _text(value: str) -> str:
    """Data text for plotly's labels and hovers, which read a little HTML: escaped."""
    return html.escape(str(value), quote=False)


_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelminder monitoring report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem 2rem;
  color: #222; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #ddd; margin-top: 2.5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
.empty, .note { background: #f5f5f5; border-left: 4px solid #999; padding: .5rem 1rem; }
.note { border-color: #e8a33d; background: #fdf6e9; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { border-bottom: 1px solid #e5e5e5; padding: .3rem .5rem; text-align: left;
  vertical-align: top; }
.severe { color: #c8372d; font-weight: 600; } .warn { color: #a8660c; }
nav a { margin-right: 1rem; }
</style>
<script>{{ plotly_js | safe }}</script>
</head>
<body>
<header>
<h1>Monitoring report</h1>
<dl>
<dt>Time range (UTC)</dt><dd>{{ header.range }}</dd>
<dt>As of</dt><dd>{{ header.as_of }}</dd>
<dt>Window</dt><dd>{{ header.window }}</dd>
<dt>Model versions</dt><dd>{{ header.versions | join(", ") or "none" }}</dd>
<dt>Alerts</dt><dd>{{ header.alerts }}</dd>
<dt>Skew check</dt><dd>{{ header.skew }}</dd>
</dl>
{% if header.notes %}<h3>Notes</h3>
<ul>{% for n in header.notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<nav><a href="#drift">Drift</a><a href="#performance">Performance</a>
<a href="#estimate">Estimate vs actual</a><a href="#review">Review</a>
<a href="#alerts">Alerts</a></nav>
</header>
{% macro parts(items) %}{% for p in items %}
<h3>Model {{ p.version }}</h3>
{% if p.message %}<p class="empty">{{ p.message }}</p>{% endif %}
{% for id in p.plots %}<div class="plot" id="{{ id }}"></div>{% endfor %}
{{ caller(p) }}{% endfor %}{% endmacro %}
<section id="drift">
<h2>Drift over time per feature</h2>
<p>The drift ratio is the worst statistic's distance over its calibrated threshold: above 1 the
feature drifted in that window, above the severe factor it drifted severely.</p>
{% call(p) parts(drift) %}{% if p.drifted %}
<table><tr><th>Drifted feature</th><th>Windows drifted</th><th>Severe windows</th>
<th>Largest ratio</th></tr>
{% for r in p.drifted %}<tr><td>{{ r.feature }}</td><td>{{ r.windows }}</td>
<td>{{ r.severe }}</td><td>{{ r.largest }}</td></tr>
{% endfor %}</table>{% elif p.plots %}<p>No feature drifted.</p>{% endif %}{% endcall %}
</section>
<section id="performance">
<h2>Performance over time with label coverage</h2>
<p>Measured on the labels known at the run's time; coverage is the share of a window whose
outcome is known (labels arrive late, so recent windows are thin).</p>
{% call(p) parts(performance) %}{% endcall %}
</section>
<section id="estimate">
<h2>Estimate vs actual</h2>
<p class="note">{{ estimate_note }}</p>
{% call(p) parts(estimate) %}{% endcall %}
</section>
<section id="review">
<h2>From human review labels</h2>
{% if review %}<p>Reviewed items are not a random sample of traffic (every blocked event is
queued, uncertain ones often, the rest at the exploration rate), so the same labels give two
answers: on the reviewed items as they are, and over all traffic with each item weighted by
1 / P(reviewed). 95% intervals.</p>
<table><tr><th>Metric</th><th>On reviewed items, as they are (naive)</th>
<th>Over all traffic, corrected for selection</th></tr>
{% for r in review %}<tr><td>{{ r.metric }}</td><td>{{ r.naive }}</td>
<td>{{ r.corrected }}</td></tr>{% endfor %}</table>
<p>{{ review_counts.queued }} queued; outcomes from reviews {{ review_counts.by_review }},
from other sources (e.g. chargebacks) {{ review_counts.by_other_source }}; unsure
{{ review_counts.unsure }}; not yet known {{ review_counts.unobserved }}.</p>
{% else %}<p class="empty">No review labels yet (minder review next).</p>{% endif %}
</section>
<section id="alerts">
<h2>Alerts timeline</h2>
{% if timeline %}<div class="plot" id="{{ timeline }}"></div>
<h3>Alerts</h3>
<table><tr><th>Severity</th><th>Kind</th><th>Subject</th><th>Model</th><th>Windows</th>
<th>Count</th><th>State</th><th>Evidence</th><th>Action</th></tr>
{% for a in alerts %}<tr><td class="{{ a.severity }}">{{ a.severity }}</td><td>{{ a.kind }}</td>
<td>{{ a.subject }}</td><td>{{ a.version }}</td><td>{{ a.span }}</td><td>{{ a.count }}</td>
<td>{{ a.open }}</td><td>{{ a.evidence }}</td><td>{{ a.action }}</td></tr>
{% endfor %}</table>
{% else %}<p class="empty">No alerts in this run.</p>{% endif %}
</section>
<footer><p>Made by modelminder. Aggregates only: no event, event id or feature vector is
in this page.</p></footer>
<script>
(function () {
  var figures = {{ figures | safe }};
  var config = {{ config | tojson }};
  Object.keys(figures).forEach(function (id) {
    var f = figures[id];
    Plotly.newPlot(id, f.data, f.layout, config);
  });
})();
</script>
</body>
</html>
"""
)
