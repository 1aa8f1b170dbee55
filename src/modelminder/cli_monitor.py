"""``minder monitor``: every monitor over a range of the prediction log, as a table or JSON."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from modelminder.cli_common import ProjectOpt, console, out, parse_time


def monitor(
    start: Annotated[str | None, typer.Option("--from", help="First event time (ISO).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End event time (ISO, excluded).")] = None,
    window: Annotated[str, typer.Option(help="hour, day, week or a duration like 6h.")] = "day",
    as_of: Annotated[
        str | None, typer.Option(help="The run's 'now' for label maturity (default: the log's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    webhook: Annotated[
        str | None, typer.Option(help="POST new alerts as JSON to this URL (with retries).")
    ] = None,
    skew_sample: Annotated[
        int, typer.Option(help="Latest served events replayed for the skew check (0 = off).")
    ] = 2000,
    project: ProjectOpt = Path("."),
) -> None:
    """Drift, data quality, performance on late labels (with a label-free estimate),
    concept-drift detectors, skew and probing, per window; alerts are recorded in the log.

    Exits 1 while a severe alert is open (usable from cron or CI).
    Example: minder monitor --from 2026-03-01 --window day --project myproj
    """
    from modelminder.monitoring.alerts import Sink, StdoutSink, WebhookSink
    from modelminder.monitoring.monitor import MonitorConfig, run_monitor
    from modelminder.project import load_project

    config = MonitorConfig(
        window=window,
        from_ts=parse_time(start, "--from"),
        to_ts=parse_time(end, "--to"),
        as_of=parse_time(as_of, "--as-of"),
        skew_sample=skew_sample,
    )
    sinks: list[Sink] = [] if as_json else [StdoutSink(console.file)]
    if webhook:
        sinks.append(WebhookSink(webhook))
    with console.status("monitoring") as status:
        report = run_monitor(
            load_project(project), config, sinks=sinks, progress=lambda m: status.update(m)
        )
    if as_json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        _print(report)
    if report.open_severe:
        raise typer.Exit(1)


def report(
    out_path: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path(
        "report.html"
    ),
    start: Annotated[str | None, typer.Option("--from", help="First event time (ISO).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End event time (ISO, excluded).")] = None,
    window: Annotated[str, typer.Option(help="hour, day, week or a duration like 6h.")] = "day",
    project: ProjectOpt = Path("."),
) -> None:
    """Write a self-contained HTML monitoring report (works offline; aggregates only): drift
    over time per feature, performance with label coverage, estimate vs actual, alerts.

    Example: minder report --out report.html --window day --project myproj
    """
    from modelminder.monitoring.monitor import MonitorConfig, run_monitor
    from modelminder.project import load_project
    from modelminder.report.monitor_html import write

    config = MonitorConfig(
        window=window, from_ts=parse_time(start, "--from"), to_ts=parse_time(end, "--to")
    )
    with console.status("monitoring") as status:
        result = run_monitor(load_project(project), config, progress=lambda m: status.update(m))
    path = write(result, out_path)
    out.print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(result.alerts)} alert(s), "
        f"{len(result.open_severe)} severe and open)"
    )


def _print(report: Any) -> None:
    from rich.table import Table

    size = report.config.window_us
    alerts_by_window: dict[int, list[str]] = {}
    for a in report.alerts:
        for start in range(a.window_start, a.window_end, size):
            alerts_by_window.setdefault(start, []).append(a.kind)
    drifted: dict[tuple[str, int], list[str]] = {}
    for version, rep in report.drift.items():
        for r in rep.windows.iter_rows(named=True):
            drifted[(version, int(r["window"]) * size)] = list(r["top_features"])
    table = Table(title=f"Monitor, one row per window (as of {_time(report.as_of)})")
    for col in ("window", "model", "events", "drifted features", "labelled", "AUC (est.)",
                "recall (est.)", "alerts"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("window", "drifted features") else "right")
    for r in report.windows.iter_rows(named=True):
        start = int(r["window_start"])
        top = drifted.get((r["model_version"], start), [])
        kinds = sorted(set(alerts_by_window.get(start, [])))
        table.add_row(
            _time(start),
            r["model_version"],
            f"{r['rows']:,}",
            ", ".join(top[:3]) + (f" +{len(top) - 3}" if len(top) > 3 else ""),
            _pct(r["coverage"]),
            f"{_num(r['auc'])} ({_num(r['est_auc'])})",
            f"{_num(r['recall'])} ({_num(r['est_recall'])})",
            ", ".join(kinds),
        )
    out.print(table)
    for note in report.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    skew = report.skew
    if skew["checked"]:
        verdict = "no skew" if not skew["mismatches"] else f"SKEW in {sorted(skew['mismatches'])}"
        out.print(f"skew: {skew['checked']:,} served events replayed: {verdict}")
    for version, streams in report.detectors.items():
        for stream, found in streams.items():
            counts = ", ".join(f"{name} {len(v)}" for name, v in found.items() if name != "labels")
            out.print(
                f"river detectors on '{stream}' (model {version}, {found['labels']:,} labels), "
                f"windows signalled: {counts}"
            )
    if report.review is not None:
        _print_review(report.review)
    severe = report.open_severe
    out.print(
        f"{len(report.alerts)} alert(s), {len(report.new_alerts)} new, {len(severe)} severe "
        "and open. Estimates (in brackets) assume the scores stay calibrated; they are "
        "unreliable under concept drift."
    )


def _print_review(review: dict[str, Any]) -> None:
    """Review-based metrics, naive and corrected, each labelled with what it describes."""
    from rich.table import Table

    est = review["estimates"]
    table = Table(title="From human review labels (95% intervals)")
    table.add_column("metric")
    table.add_column("on reviewed items, as they are (naive)", justify="right")
    table.add_column("over all traffic, corrected for selection", justify="right")
    for name in ("precision", "recall", "fraud_rate"):
        cells = [
            f"{_num(e['value'])} [{_num(e['low'])}, {_num(e['high'])}] (n={e['n']:,})"
            for e in (est[name]["naive"], est[name]["corrected"])
        ]
        table.add_row(name.replace("_", " "), *cells)
    out.print(table)
    out.print(
        f"review sample: {review['queued']:,} queued; outcomes from reviews "
        f"{review['by_review']:,}, from other sources (e.g. chargebacks) "
        f"{review['by_other_source']:,}; unsure {review['unsure']:,}; not yet known "
        f"{review['unobserved']:,}; left out (reviewed below the day's threshold) "
        f"{review['outside']:,}. Corrected numbers weight each item by 1/P(reviewed) and "
        "take reviewers' labels as they are (docs/review-estimates.md)."
    )


def _time(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _num(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.0%}"


def register_monitoring(app: typer.Typer) -> None:
    app.command()(monitor)
    app.command()(report)
