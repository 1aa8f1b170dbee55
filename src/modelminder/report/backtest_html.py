"""A backtest of the loop as a self-contained HTML page (``minder backtest`` writes it).

It reads the backtest's JSON form (``BacktestResult.to_json()``, version 1) and shows:

* the metric per window for the looped deployment and for the frozen first model, with the
  loop's retrains, shadow starts, promotions and rollbacks marked on the time axis;
* the labels arriving per day and the share of each window's outcomes known at the end;
* the decisions in plain words.

Like the monitoring report it embeds plotly's JS bundle once and loads nothing from
elsewhere. A backtest of a single window still gets a readable date axis (a day either side).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import plotly.graph_objects as go
import plotly.offline

from modelminder.errors import MinderError
from modelminder.report.monitor_html import PLOT_CONFIG, pad_single_dates

MARKS = {
    "retrain_started": ("retrain", "#7a7a7a", "dot"),
    "shadow_started": ("shadow", "#d9822b", "dash"),
    "promoted": ("promoted", "#2e8b57", "solid"),
    "rolled_back": ("rolled back", "#c8372d", "solid"),
}


def render(data: dict[str, Any]) -> str:
    """The page for a backtest's JSON form.

    Examples
    --------
    >>> page = render({"version": 1, "from": "2026-03-01", "to": "2026-03-08",
    ...                "metric": "recall_at_alert_rate", "alert_rate": 0.01, "window_days": 7,
    ...                "frozen_version": "v1", "windows": [{"window": "2026-03-01", "rows": 10,
    ...                "positives": 1, "coverage": 1.0, "looped": 0.5, "frozen": None,
    ...                "versions": "v1"}], "decisions": [], "labels": [], "seconds": 1.0,
    ...                "notes": []})
    >>> page.startswith("<!DOCTYPE html>"), "recall at the alert rate" in page
    (True, True)
    """
    if data.get("version") != 1:
        raise MinderError(f"A backtest of version {data.get('version')!r} cannot be shown here.")
    metric = _METRIC.get(str(data["metric"]), str(data["metric"]))
    figures = [_metric_figure(data, metric), _labels_figure(data)]
    return _TEMPLATE.render(
        plotly_js=plotly.offline.get_plotlyjs(),
        data=data,
        metric=metric,
        figures="{" + ",".join(f'"plot-{i}":{f.to_json()}' for i, f in enumerate(figures, 1)) + "}",
        config=PLOT_CONFIG,
    )


def write(data: dict[str, Any], path: Path) -> Path:
    """Render and write atomically (a temporary file, then a rename)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise MinderError(f"Cannot write {path}: the folder {path.parent} does not exist.")
    text = render(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".backtest-", suffix=".html.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o644)
            out.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise MinderError(f"Cannot write {path}: {exc}.") from exc
    return path


_METRIC = {"recall_at_alert_rate": "recall at the alert rate", "auc": "AUC",
           "average_precision": "average precision"}  # fmt: skip


def _mid(window: str, days: int) -> str:
    start = dt.date.fromisoformat(window)
    return (start + dt.timedelta(days=days / 2)).isoformat()


def _metric_figure(data: dict[str, Any], metric: str) -> Any:
    days = int(data["window_days"])
    ws = data["windows"]
    x = [_mid(w["window"], days) for w in ws]
    fig = go.Figure()
    for key, name, colour in (("looped", "with the loop", "#2a6fb0"),
                              ("frozen", f"frozen first model ({data['frozen_version']})",
                               "#999999")):  # fmt: skip
        fig.add_trace(go.Scatter(
            x=x, y=[w[key] for w in ws], name=name, mode="lines+markers",
            line={"color": colour, "width": 3 if key == "looped" else 2},
            customdata=[[w["positives"], w["coverage"], w["versions"]] for w in ws],
            hovertemplate="%{y:.3f}<br>%{customdata[0]} frauds, %{customdata[1]:.0%} of "
            "outcomes known<br>served by %{customdata[2]}<extra>" + name + "</extra>",
        ))  # fmt: skip
    seen: set[str] = set()
    for d in data["decisions"]:
        mark = MARKS.get(d["step"])
        if mark is None:
            continue
        label, colour, dash = mark
        fig.add_trace(go.Scatter(
            x=[d["date"], d["date"]], y=[0, 1], mode="lines", name=label,
            line={"color": colour, "dash": dash, "width": 1}, legendgroup=label,
            showlegend=label not in seen, hovertext=d["text"], hoverinfo="text",
        ))  # fmt: skip
        seen.add(label)
    fig.update_layout(
        template="plotly_white", height=420, hovermode="closest",
        title={"text": f"{metric} per {days}-day window (rate {data['alert_rate']:.0%})",
               "x": 0},
        yaxis={"range": [0, 1.02], "title": metric},
        legend={"orientation": "h", "y": -0.2}, margin={"l": 60, "r": 30, "t": 50, "b": 40},
    )  # fmt: skip
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d")
    return pad_single_dates(fig)


def _labels_figure(data: dict[str, Any]) -> Any:
    labels = data["labels"]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[r["day"] for r in labels], y=[r["labels"] for r in labels],
                         name="labels that became known", marker={"color": "#8fb3d9"}))  # fmt: skip
    ws = data["windows"]
    fig.add_trace(go.Scatter(
        x=[_mid(w["window"], int(data["window_days"])) for w in ws],
        y=[w["coverage"] for w in ws], name="outcomes known at the end (share)", yaxis="y2",
        mode="lines+markers", line={"color": "#d9822b"},
    ))  # fmt: skip
    fig.update_layout(
        template="plotly_white", height=320, title={"text": "labels arriving", "x": 0},
        yaxis={"title": "labels per day"},
        yaxis2={"overlaying": "y", "side": "right", "range": [0, 1.02], "title": "known"},
        legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 60, "t": 50, "b": 40},
    )  # fmt: skip
    fig.update_xaxes(type="date", tickformat="%Y-%m-%d")
    return pad_single_dates(fig)


_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelminder loop backtest</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem 2rem;
  color: #222; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #ddd; margin-top: 2rem; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { border-bottom: 1px solid #e5e5e5; padding: .3rem .5rem; text-align: left; }
.note { background: #fdf6e9; border-left: 4px solid #e8a33d; padding: .5rem 1rem; }
</style>
<script>{{ plotly_js | safe }}</script>
</head>
<body>
<h1>Loop backtest {{ data["from"] }} to {{ data["to"] }}</h1>
<p>The project's history replayed through the retraining loop in simulated time, next to the
first model left frozen. Metric: {{ metric }}; frozen model {{ data.frozen_version }};
{{ data.decisions | length }} decisions; {{ data.seconds }} s.</p>
{% for n in data.notes %}<p class="note">{{ n }}</p>{% endfor %}
<div id="plot-1"></div>
<div id="plot-2"></div>
<h2>Windows</h2>
<table><tr><th>Window</th><th>Events</th><th>Frauds</th><th>Outcomes known</th>
<th>With the loop</th><th>Frozen</th><th>Served by</th></tr>
{% for w in data.windows %}<tr><td>{{ w.window }}</td><td>{{ w.rows }}</td>
<td>{{ w.positives }}</td><td>{{ "%.0f%%" | format(100 * w.coverage) }}</td>
<td>{{ "-" if w.looped is none else "%.3f" | format(w.looped) }}</td>
<td>{{ "-" if w.frozen is none else "%.3f" | format(w.frozen) }}</td>
<td>{{ w.versions }}</td></tr>{% endfor %}</table>
<h2>Decisions</h2>
<table><tr><th>Date</th><th>Step</th><th>What and why</th></tr>
{% for d in data.decisions %}<tr><td>{{ d.date }}</td><td>{{ d.step }}</td><td>{{ d.text }}</td>
</tr>{% endfor %}</table>
<script>
(function () {
  var figures = {{ figures | safe }};
  var config = {{ config | tojson }};
  Object.keys(figures).forEach(function (id) {
    Plotly.newPlot(id, figures[id].data, figures[id].layout, config);
  });
})();
</script>
</body>
</html>
"""
)
