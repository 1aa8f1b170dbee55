"""Alerts fold, are recorded once in the log, and reach a webhook through retries."""

from __future__ import annotations

import http.server
import io
import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import MinderError
from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema
from modelminder.monitoring.alerts import (
    Alert,
    AlertLog,
    StdoutSink,
    WebhookSink,
    fold,
    fold_states,
)

DAY = 86_400_000_000


def _alert(day: int, severity: str = "warn", subject: str = "amount") -> Alert:
    return Alert(
        "data_drift", severity, subject, "v1", day * DAY, (day + 1) * DAY,
        {"psi": 0.4, "threshold": 0.1}, "Check the source of 'amount'.",
    )  # fmt: skip


def test_consecutive_findings_fold_and_rerecording_changes_nothing(tmp_path: Path) -> None:
    folded = fold(
        [_alert(0), _alert(1, "severe"), _alert(2), _alert(9), _alert(1, subject="x")], DAY
    )
    assert [(a.subject, a.window_start // DAY, a.count, a.severity) for a in folded] == [
        ("amount", 0, 3, "severe"), ("x", 1, 1, "warn"), ("amount", 9, 1, "warn"),
    ]  # fmt: skip
    with EventLog.open(tmp_path / "log.db", EventSchema({"card_id": "str"})) as log:
        alerts = AlertLog(log)
        assert len(alerts.record(folded)) == 3
        assert alerts.record(folded) == []  # a rerun of the monitor delivers nothing new
        assert len(alerts.read()) == 3
        assert [a.subject for a in alerts.read(since_us=5 * DAY)] == ["amount"]


def test_bad_alerts_are_refused() -> None:
    with pytest.raises(MinderError, match="kind must be one of"):
        Alert("drifty", "warn", "a", "v1", 0, 1, {}, "")
    with pytest.raises(MinderError, match="severity must be one of"):
        Alert("skew", "critical", "a", "v1", 0, 1, {}, "")
    with pytest.raises(MinderError, match="http:// or https://"):
        WebhookSink("ftp://example.com")


@pytest.fixture
def hook() -> Iterator[tuple[str, list[Any], list[int]]]:
    """A local webhook that fails with 503 as many times as asked, then accepts."""
    received: list[Any] = []
    failures = [1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if failures[0] > 0:
                failures[0] -= 1
                self.send_response(503)
            else:
                received.append(json.loads(body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received, failures
    server.shutdown()
    server.server_close()


def test_webhook_retries_then_delivers(hook: tuple[str, list[Any], list[int]]) -> None:
    url, received, failures = hook
    WebhookSink(url, retries=2, backoff_s=0.01).deliver([_alert(0)])
    assert received[0]["alerts"][0]["subject"] == "amount"
    failures[0] = 5
    with pytest.raises(MinderError, match="after 2 attempts"):
        WebhookSink(url, retries=1, backoff_s=0.01).deliver([_alert(1)])


def test_stdout_sink_names_the_finding() -> None:
    out = io.StringIO()
    StdoutSink(out).deliver([_alert(0, "severe")])
    assert out.getvalue().startswith("[severe] data_drift amount (model v1)")


def test_an_alert_that_worsens_is_delivered_again_and_open_is_kept(tmp_path: Path) -> None:
    from dataclasses import replace

    with EventLog.open(tmp_path / "log.db", EventSchema({"card_id": "str"})) as log:
        alerts = AlertLog(log)
        warn = _alert(0)
        assert alerts.record([warn]) == [warn]
        assert alerts.record([warn]) == []  # the same finding again: nothing to send
        severe = replace(warn, severity="severe", open=False)
        assert alerts.record([severe]) == [severe]  # it got worse: news
        [stored] = alerts.read()
        assert (stored.severity, stored.open) == ("severe", False)


def test_alert_changes_are_appended_never_rewritten(tmp_path: Path) -> None:
    from dataclasses import replace

    with EventLog.open(tmp_path / "log.db", EventSchema({"card_id": "str"})) as log:
        times = iter([10, 20, 30])
        alerts = AlertLog(log, clock_us=lambda: next(times))
        warn = _alert(0)
        alerts.record([warn])
        alerts.record([warn])  # no change: nothing appended
        alerts.record([replace(warn, severity="severe", window_end=2 * DAY, count=2)])
        history = alerts.events()
        assert [(e.recorded_at, e.alert.severity, e.alert.count) for e in history] == [
            (10, "warn", 1),
            (30, "severe", 2),
        ]
        for sql in ("UPDATE alert_events SET severity = 'warn'", "DELETE FROM alert_events"):
            with pytest.raises(Exception, match="alert_events rows are immutable"):
                log.database.fetch(sql)
        assert alerts.events() == history


_ALERTS = st.builds(
    Alert,
    kind=st.sampled_from(["data_drift", "skew"]),
    severity=st.sampled_from(["warn", "severe"]),
    subject=st.sampled_from(["amount", "card_count_1h"]),
    model_version=st.just("v1"),
    window_start=st.sampled_from([0, DAY]),
    window_end=st.sampled_from([DAY, 2 * DAY, 3 * DAY]),
    evidence=st.fixed_dictionaries({"psi": st.integers(0, 2)}),
    action=st.sampled_from(["Look.", "Retrain."]),
    count=st.integers(1, 3),
    open=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(st.lists(_ALERTS, max_size=4), max_size=6))
def test_folding_alert_events_gives_the_state_of_applying_the_changes_in_order(
    batches: list[list[Alert]],
) -> None:
    """The reference is the mutable table alerts used to be: one row per alert, inserted at
    its first record and overwritten in place by each later one."""
    rank = {"warn": 0, "severe": 1}
    table: dict[str, Alert] = {}  # insertion order = the row's offset
    changes = 0
    with (
        tempfile.TemporaryDirectory() as folder,
        EventLog.open(Path(folder) / "log.db", EventSchema({"card_id": "str"})) as log,
    ):
        alerts = AlertLog(log, clock_us=lambda: 1)
        for batch in batches:
            news: dict[str, Alert] = {}
            for a in batch:
                before = table.get(a.key)
                if before is None or rank[a.severity] > rank[before.severity]:
                    news[a.key] = a
                if before != a:
                    changes += 1
                table[a.key] = a
            assert alerts.record(batch) == list(news.values())
            state = sorted(table.values(), key=lambda a: a.window_start)  # stable: row order
            assert fold_states(alerts.events()) == state
            assert alerts.read() == state
            assert alerts.read(since_us=DAY) == [a for a in state if a.window_end > DAY]
        assert len(alerts.events()) == changes  # a record that changes nothing appends nothing
