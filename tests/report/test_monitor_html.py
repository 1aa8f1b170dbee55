"""The monitor report page on a served world: one self-contained file that opens offline, every
section present, the findings named, aggregates only (no event ids), data text escaped, empty
parts said in words, and an atomic write that refuses a bad path."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import plotly.offline
import polars as pl
import pytest
from markupsafe import escape

from modelminder.errors import MonitorError
from modelminder.monitoring.alerts import Alert
from modelminder.monitoring.monitor import MonitorReport, run_monitor
from modelminder.report.monitor_html import render, write

from ..monitoring.worlds import served_world

SECTIONS = (
    "Drift over time per feature",
    "Performance over time with label coverage",
    "Estimate vs actual",
    "Alerts timeline",
)
BUNDLE = plotly.offline.get_plotlyjs()
EVENT_ID = re.compile(r"ev\d{9}")  # the simulator's event ids


@dataclasses.dataclass(frozen=True)
class Served:
    report: MonitorReport
    event_ids: list[str]
    page: str

    @property
    def ours(self) -> str:
        """The page without the plotly bundle: what this package wrote."""
        return self.page.replace(BUNDLE, "")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    project = served_world(
        tmp_path_factory.mktemp("report") / "p", schedule="steady", cards=120, train_days=45
    )
    report = run_monitor(project)
    with project.open_log() as log:
        ids = log.read("events").get_column("event_id").to_list()
    return Served(report, ids, render(report))


def test_the_page_is_one_file_that_works_offline(served: Served) -> None:
    assert served.page.startswith("<!DOCTYPE html>")
    assert served.page.count(BUNDLE) == 1
    # The minified bundle itself holds link templates (href="http...) in its code; those are
    # strings, not resources. Everything around it must load nothing from elsewhere.
    ours = served.ours.lower()
    for external in ("<script src", "src=", 'href="http', "<link", "@import", "url(", "http"):
        assert external not in ours, external


def test_every_section_and_the_header(served: Served) -> None:
    page, report = served.page, served.report
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "<dt>Window</dt><dd>day (1d)</dd>" in page
    assert "v1 (" in page and f"{report.windows.get_column('rows').sum():,} events served" in page
    severe = sum(a.severity == "severe" for a in report.alerts)
    assert f"<dd>{len(report.alerts)} ({severe} severe, " in page
    assert "2,000 served events replayed: every feature matches" in page
    # one plot element per figure, and one figure per element
    ids = re.findall(r'<div class="plot" id="(plot-\d+)">', page)
    assert len(ids) >= 5 and all(f'"{i}":{{' in page for i in ids)


def test_drifted_features_and_alert_actions_are_named(served: Served) -> None:
    rep = served.report.drift["v1"]
    drifted = rep.features.filter(pl.col("drifted") & (pl.col("feature") != "score"))
    names = set(drifted.get_column("feature").to_list())
    assert len(names) >= 3  # the holiday season moves several features
    for name in names:
        assert f"<tr><td>{name}</td>" in served.page
    assert served.report.alerts
    for alert in served.report.alerts:
        assert str(escape(alert.action)) in served.page
    assert "assuming the model is calibrated" in served.page
    assert "They are unreliable under concept drift" in served.page


def test_no_raw_rows(served: Served) -> None:
    assert all(EVENT_ID.fullmatch(i) for i in served.event_ids)  # else the check below is void
    assert not set(EVENT_ID.findall(served.ours)) & set(served.event_ids)
    # Aggregates per window: a few hundred kB. The served feature vectors alone (21k events x
    # ~30 features) would be several MB.
    assert len(served.ours) < 1_000_000


def test_skew_examples_naming_events_stay_out(served: Served) -> None:
    leaked = served.event_ids[-1]
    last = served.report.alerts[-1]
    skew = Alert(
        "skew",
        "severe",
        "card_count_1h",
        "v1",
        last.window_start,
        last.window_end,
        {"mismatches": 7, "checked": 2000, "examples": [{"event_id": leaked, "served": 3.0}]},
        "7 of 2000 served values of 'card_count_1h' differ from a replay of the log.",
    )
    page = render(dataclasses.replace(served.report, alerts=[*served.report.alerts, skew]))
    assert leaked not in page
    assert "mismatches 7; checked 2000" in page
    assert str(escape(skew.action)) in page


def test_data_text_is_escaped(served: Served) -> None:
    hostile = "</script><script>alert(1)</script>"
    first = served.report.alerts[0]
    report = dataclasses.replace(
        served.report,
        alerts=[dataclasses.replace(first, subject=hostile, action=hostile)],
        notes=['<img src=x onerror="alert(2)">'],
    )
    page = render(report).replace(BUNDLE, "")
    assert hostile not in page and "<img" not in page
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in page
    assert page.count("<script>") == 2  # the bundle's and the plots'


def test_missing_parts_are_said_not_crashed(served: Served) -> None:
    no_labels = served.report.windows.with_columns(
        pl.lit(None, pl.Float64).alias(c) for c in ("auc", "recall", "precision")
    ).with_columns(known=pl.lit(0, pl.Int64), coverage=pl.lit(0.0))
    bare = dataclasses.replace(served.report, drift={}, windows=no_labels, alerts=[])
    page = render(bare)
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert "No drift report for model v1" in page
    assert "No labelled windows yet for model v1: 0 outcomes known" in page
    assert "No labelled windows yet for model v1: only estimates so far." in page
    assert "No alerts in this run." in page


def test_write_is_atomic_and_replaces(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    assert write(served.report, target) == target
    assert target.read_text(encoding="utf-8") == served.page
    assert target.stat().st_mode & 0o777 == 0o644  # readable by whoever it is shared with
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left


def test_write_refuses_a_missing_folder_or_a_folder(served: Served, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "report.html"
    with pytest.raises(MonitorError, match=r"the folder '.*nope' does not exist"):
        write(served.report, missing)
    assert not missing.parent.exists()
    with pytest.raises(MonitorError, match="it is a folder"):
        write(served.report, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_the_plots_render_in_a_browser_offline(served: Served, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    target = write(served.report, tmp_path / "report.html")
    blocked: list[str] = []
    errors: list[str] = []

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", only_files)
            page.goto(target.as_uri())
            page.wait_for_function(
                "document.querySelectorAll('div.plot.js-plotly-plot .main-svg').length > 0 && "
                "document.querySelectorAll('div.plot').length === "
                "document.querySelectorAll('div.plot.js-plotly-plot').length",
                timeout=30_000,
            )
            plots = page.locator("div.plot.js-plotly-plot").count()
            heatmaps = page.locator("div.plot .hm").count()
        finally:
            browser.close()
    assert plots >= 5 and heatmaps == 1
    assert errors == [] and blocked == []
