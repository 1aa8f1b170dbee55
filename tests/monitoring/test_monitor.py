"""The monitor on simulated worlds: holiday data drift is data drift, not a performance
problem; a change of fraud pattern is caught; a healthy run shows no skew; a broken feature
does; bad input gets a clear message."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from modelminder.errors import MinderError
from modelminder.events.predictions import PredictionTopic
from modelminder.monitoring.alerts import AlertLog
from modelminder.monitoring.monitor import MonitorConfig, MonitorReport, run_monitor
from modelminder.monitoring.skew import check_served
from modelminder.project import Project
from modelminder.registry import Registry

from .worlds import served_world

DAY = 86_400_000_000
START = 20_454  # 2026-01-01 in days since the epoch: the simulator's first day


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, MonitorReport]:
    """All fraud patterns all the time; a holiday season (days 55-72) changes the data."""
    project = served_world(
        tmp_path_factory.mktemp("steady") / "p", schedule="steady", cards=200, train_days=45
    )
    return project, run_monitor(project)


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory: pytest.TempPathFactory) -> MonitorReport:
    """Fraud patterns take turns: the model meets patterns it never saw."""
    project = served_world(
        tmp_path_factory.mktemp("adaptive") / "p", schedule="adaptive", cards=300, train_days=45
    )
    with Registry.open(project.root) as reg:
        oot = reg.get(reg.alias("champion") or "").card.metrics.oot
    # A real model of the patterns it saw (not a constant scorer), for the test to mean much.
    assert oot.auc > 0.8 and oot.positives >= 10, oot
    return run_monitor(project)


def _day(us: int) -> int:
    return us // DAY - START


def test_holiday_is_data_drift_without_a_performance_alert(
    steady: tuple[Project, MonitorReport],
) -> None:
    report = steady[1]
    kinds = Counter(a.kind for a in report.alerts)
    assert kinds["performance"] == 0 and kinds["concept_drift"] == 0
    drift = [a for a in report.alerts if a.kind == "data_drift"]
    in_holiday = [a for a in drift if 55 <= _day(a.window_start) < 72]
    assert len(in_holiday) >= 5  # several features move when the season starts
    # and the season is where drift concentrates: more alerts start there than in the
    # 27 ordinary days around it together
    assert len(in_holiday) > len(drift) - len(in_holiday)
    assert {"window_start", "coverage", "est_auc", "auc"} <= set(report.windows.columns)


def test_a_change_of_fraud_pattern_is_caught(adaptive: MonitorReport) -> None:
    caught = [a for a in adaptive.alerts if a.kind in ("performance", "concept_drift")]
    assert caught, Counter(a.kind for a in adaptive.alerts)
    first = min(caught, key=lambda a: a.window_start)
    assert first.severity == "severe"
    assert "rate_after" in first.evidence or "auc" in first.evidence


def test_healthy_serving_has_no_skew_and_a_broken_feature_is_named(
    steady: tuple[Project, MonitorReport],
) -> None:
    project, report = steady
    assert report.skew["checked"] == 2000 and report.skew["mismatches"] == {}
    assert not [a for a in report.alerts if a.kind == "skew"]
    plan = project.plan()
    with project.open_log() as log:
        served = PredictionTopic(log).frame().tail(300)
        features = np.array(served.get_column("features").to_list())
        broken = plan.names.index("card_amount_sum_1h")
        features[:, broken] *= 1.01  # a live path that computes one feature slightly wrong
        result = check_served(log, plan, served.get_column("event_id").to_list(), features.tolist())
    moved = int(np.sum(np.asarray(served.get_column("features").to_list())[:, broken] != 0))
    assert result.mismatches == {"card_amount_sum_1h": moved} and moved > 0


def test_alerts_are_recorded_once_and_reruns_add_nothing(
    steady: tuple[Project, MonitorReport],
) -> None:
    project, report = steady
    with project.open_log() as log:
        before = len(AlertLog(log).read())
    again = run_monitor(project)
    assert again.new_alerts == [] and len(again.alerts) == len(report.alerts)
    with project.open_log() as log:
        assert len(AlertLog(log).read()) == before


def test_bad_input_gets_a_clear_message(steady: tuple[Project, MonitorReport]) -> None:
    project = steady[0]
    with pytest.raises(MinderError, match="Nothing was served in that range"):
        run_monitor(project, MonitorConfig(from_ts=0, to_ts=DAY))
    with pytest.raises(MinderError, match="--from must be before --to"):
        run_monitor(project, MonitorConfig(from_ts=DAY, to_ts=DAY))
    with pytest.raises(MinderError, match="monitor 'window'"):
        run_monitor(project, MonitorConfig(window="fortnightly"))
    with pytest.raises(MinderError, match="probing entity 'colour' is not an event field"):
        run_monitor(project, MonitorConfig(entity="colour"))


def test_the_cli_prints_a_table_or_json_and_exits_1_on_open_severe_alerts(
    steady: tuple[Project, MonitorReport],
) -> None:
    import json

    from typer.testing import CliRunner

    from modelminder.cli import app

    project = steady[0]
    runner = CliRunner()
    as_json = runner.invoke(app, ["monitor", "--json", "--project", str(project.root)])
    body = json.loads(as_json.stdout)
    assert {"windows", "alerts", "skew", "open_severe", "as_of"} <= set(body)
    assert as_json.exit_code == (1 if body["open_severe"] else 0)
    table = runner.invoke(app, ["monitor", "--window", "week", "--project", str(project.root)])
    assert "Monitor, one row per window" in table.stdout and "skew: 2,000" in table.stdout
    assert table.exit_code in (0, 1)
    bad = runner.invoke(app, ["monitor", "--from", "soon", "--project", str(project.root)])
    html = project.root / "report.html"
    wrote = runner.invoke(app, ["report", "--out", str(html), "--project", str(project.root)])
    assert wrote.exit_code == 0, wrote.output
    assert html.stat().st_size > 1_000_000 and "Alerts timeline" in html.read_text()
    # (main() turns a MinderError into this message and exit code 2)
    assert isinstance(bad.exception, MinderError) and "--from must be an ISO" in str(bad.exception)


def test_monitor_endpoints_serve_alerts_and_reports_to_reviewers(
    steady: tuple[Project, MonitorReport],
) -> None:
    from starlette.testclient import TestClient

    from modelminder.serving.app import create_app
    from modelminder.serving.service import Service

    project, report = steady
    service = Service(project)
    try:
        reviewer = service.store.create_token("reviewer")
        worker = service.store.create_token("service")
        with TestClient(create_app(service)) as client:
            auth = {"Authorization": f"Bearer {reviewer}"}
            alerts = client.get("/v1/monitor/alerts", headers=auth)
            assert alerts.status_code == 200
            # (other tests' runs, e.g. by week, recorded alerts of their own too)
            returned = {
                (a["kind"], a["subject"], a["window_start"]) for a in alerts.json()["alerts"]
            }
            assert {(a.kind, a.subject, a.window_start) for a in report.alerts} <= returned
            with project.open_log() as log:
                recorded = len(AlertLog(log).read())
            got = client.get(
                "/v1/monitor/report", params={"window": "hour", "from": "2026-02-15"}, headers=auth
            )
            with project.open_log() as log:  # a GET writes nothing (hourly alerts would be new)
                assert len(AlertLog(log).read()) == recorded
            assert got.status_code == 200, got.text
            body = got.json()
            assert body["window_us"] == DAY // 24 and body["windows"] and body["alerts"]

            assert client.get("/v1/monitor/alerts").status_code == 401
            other = client.get("/v1/monitor/alerts", headers={"Authorization": f"Bearer {worker}"})
            assert other.status_code == 403
            bad = client.get("/v1/monitor/alerts", params={"since": "soon"}, headers=auth)
            assert bad.status_code == 422 and "'since' must be an ISO-8601" in bad.text
            spec = client.get("/openapi.json").json()
            assert {"/v1/monitor/alerts", "/v1/monitor/report"} <= set(spec["paths"])
    finally:
        service.close()


def test_served_vectors_that_do_not_fit_the_model_are_reported_not_averaged() -> None:
    import polars as pl

    from modelminder.model.card import ModelCard
    from modelminder.monitoring.findings import schema_check
    from modelminder.registry.store import ModelRecord

    part = pl.DataFrame({"window_start": [0, 0, DAY], "features": [[1.0, 2.0], [1.0], [1.0, 2.0]]})
    card = ModelCard.example(("a", "b")).to_json()
    record = ModelRecord("v1", 0, "accepted", (), "x", card, "t")
    kept, alerts = schema_check(part, record, ["a", "b"], DAY)
    assert kept.height == 2
    assert [(a.subject, a.severity, a.evidence["widths"]) for a in alerts] == [
        ("schema: served vector", "severe", [1])
    ]
    _, changed = schema_check(part, record, ["a", "c"], DAY)
    assert "schema: feature set" in [a.subject for a in changed]


def test_a_window_not_over_yet_is_left_out_of_drift_and_outages_count(
    steady: tuple[Project, MonitorReport],
) -> None:
    import polars as pl

    from modelminder.monitoring.findings import volume_alerts

    project = steady[0]
    six_am = (START + 60) * DAY + 6 * 3_600_000_000  # day 60 has only begun
    report = run_monitor(
        project, MonitorConfig(to_ts=six_am, as_of=six_am, skew_sample=0), record_alerts=False
    )
    assert not [a for a in report.alerts if a.window_start >= (START + 60) * DAY and
                a.kind in ("data_drift", "data_quality", "multivariate_drift")]  # fmt: skip
    assert any("not over at the run's time" in n for n in report.notes)
    with pytest.raises(MinderError, match="at least 1 minute"):
        run_monitor(project, MonitorConfig(window="1s"))
    # A window with no event at all is a drop, not a gap.
    days = [d * DAY for d in range(12) if d != 10]
    frame = pl.DataFrame({"window_start": [d for d in days for _ in range(100)]})
    [outage] = volume_alerts(frame, DAY)
    assert outage.window_start == 10 * DAY and outage.evidence["count"] == 0


def test_one_event_from_year_one_does_not_break_the_default_range(
    steady: tuple[Project, MonitorReport], tmp_path: pytest.TempPathFactory
) -> None:
    """An event dated 0001-01-01 that reached the log (an import, or a server from before the
    live path refused it) is left out of the default range with a note, not 739,736 windows."""
    import datetime as dt
    import shutil
    from pathlib import Path

    import polars as pl

    from modelminder.events.predictions import Prediction
    from modelminder.project import load_project

    copy = Path(str(tmp_path)) / "p"
    shutil.copytree(steady[0].root, copy)
    project = load_project(copy)
    with project.open_log() as log:
        last = PredictionTopic(log).frame().tail(1)
        event = log.events_by_id(last.get_column("event_id").to_list()).drop("offset")
        ancient = event.with_columns(
            event_id=pl.lit("ancient"), ts=pl.lit(dt.datetime(1, 1, 1), pl.Datetime("us"))
        )
        log.append_events(ancient)
        [served] = PredictionTopic(log).for_event(last.get_column("event_id")[0])
        PredictionTopic(log).append([Prediction(**(vars(served) | {"event_id": "ancient"}))])
    report = run_monitor(project, MonitorConfig(skew_sample=0), record_alerts=False)
    assert any("1 served event(s) dated far from the rest were left out" in n
               for n in report.notes), report.notes  # fmt: skip
    assert report.windows.get_column("window_start").min() >= START * DAY


def test_review_labels_are_reported_naive_and_corrected(
    steady: tuple[Project, MonitorReport], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from modelminder.cli import app
    from modelminder.events.predictions import Prediction
    from modelminder.project import load_project
    from modelminder.review.queue import ReviewError, ReviewQueue

    shutil.copytree(steady[0].root, tmp_path / "p")  # the fixture's project stays as it was
    project = load_project(tmp_path / "p")
    with project.open_log() as log:
        served = PredictionTopic(log).frame(features=False)
        charged = set(log.read("labels").get_column("event_id").to_list())
        queue = ReviewQueue(log, project.review)
        days = served.with_columns(day=pl.col("ts") // DAY)
        for day in days.partition_by("day", maintain_order=True):
            preds = [
                Prediction(r["event_id"], r["ts"], r["model_version"], "champion", r["score"],
                           r["decision"], 0, [], [])
                for r in day.iter_rows(named=True)
            ]  # fmt: skip
            rows = {r["event_id"]: {"ts": r["ts"]} for r in day.iter_rows(named=True)}
            queue.consider(preds, rows, now=int(day.get_column("ts").max()))
        now = int(served.get_column("ts").max())
        reviewed = 0
        for _ in range(60):  # a reviewer who knows the truth the chargebacks tell
            try:
                item = queue.claim("ann", now=now)
            except ReviewError:
                break
            verdict = "fraud" if item.event_id in charged else "legit"
            queue.label(item.item_id, "ann", verdict, now=now)
            reviewed += 1
    assert reviewed == 60
    report = run_monitor(project, record_alerts=False)
    assert report.review is not None
    est = report.review["estimates"]
    assert report.review["by_review"] + report.review["by_other_source"] == est["items"]
    assert est["recall"]["naive"]["method"] == "naive-wilson"
    assert est["recall"]["corrected"]["method"] == "hajek-fieller"
    assert est["fraud_rate"]["corrected"]["value"] < est["fraud_rate"]["naive"]["value"]
    table = CliRunner().invoke(app, ["monitor", "--project", str(project.root)])
    assert "From human review labels" in table.stdout
    assert "on reviewed items, as they are (naive)" in table.stdout
    assert "over all traffic, corrected for selection" in table.stdout
