"""A project with a champion made by the loop, copied fresh for each test that changes it."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from modelminder.clock import SimulatedClock
from modelminder.events.predictions import Prediction, PredictionTopic, served_features
from modelminder.logreplay import replay_log
from modelminder.loop.engine import RunContext, run_once
from modelminder.project import Project, load_project
from modelminder.registry import Registry, changes
from tests.loop.worlds import DAY_US, card_project

LOOP = """\
on_alert = "severe"
alert_kinds = ["performance", "concept_drift"]
new_labels = 0
schedule = "7d"
min_interval = "3d"
train_window = "40d"
max_train_rows = 30000
monitor_every = "1d"
trials = 0
maturity = "auto"
metric = "recall_at_alert_rate"
alert_rate = 0.01
shadow_period = "3d"
promotion = "auto"
probation = "14d"
rollback_margin = 0.05
"""


def today_us() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1e6) // DAY_US * DAY_US


@pytest.fixture(scope="session")
def base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50 days of a steady card world ending today (the wall clock is the live loop's), 400
    cards, chargebacks within a week; the loop made v1 champion at the end."""
    root = tmp_path_factory.mktemp("loopbase") / "p"
    start = dt.datetime.fromtimestamp((today_us() - 50 * DAY_US) / 1e6, dt.UTC)
    project, _ = card_project(
        root, loop=LOOP, days=50, cards=400, seed=11, schedule="steady", start=start,
        fraud_card_share=0.2, label_delay_days=2.0, max_label_delay_days=6.0,
    )  # fmt: skip
    decisions = run_once(RunContext(project), force_retrain="the first model")
    assert [d.step for d in decisions][-1] == "promoted", [d.text for d in decisions]
    return root


@pytest.fixture
def project(base_project: Path, tmp_path: Path) -> Iterator[Project]:
    """A copy of the base project (the loop's tests change aliases and the log)."""
    root = tmp_path / "p"
    shutil.copytree(base_project, root)
    yield load_project(root)


def serve_history(
    project: Project,
    *,
    from_ts: int,
    to_ts: int,
    roles: dict[str, tuple[str, str]],
    seed: int = 0,
) -> int:
    """Write predictions for the logged events in ``[from_ts, to_ts)`` as if they had been
    served: ``roles`` maps ``champion``/``shadow`` to ``(version, how)``, ``how`` being
    ``"model"`` (the version's real scores of the replayed features) or ``"noise"`` (uniform
    random scores: a useless model). Returns the number of events."""
    plan = project.plan()
    rng = np.random.default_rng(seed)
    with project.open_log() as log:
        table = replay_log(log, plan, from_ts=from_ts, to_ts=to_ts)
        ts = log.read("events", from_ts=from_ts, to_ts=to_ts).select("event_id", "ts")
        table = ts.join(table, on="event_id")
        X = np.ascontiguousarray(table.select(plan.names).to_numpy(), np.float64)
        preds = []
        for role, (version, how) in roles.items():
            if how == "model":
                model = changes.load_model(project.root, version, fingerprint=project.fingerprint())
                scores = model.model.predict(X)
            else:
                scores = rng.random(len(X))
            for i, (eid, t) in enumerate(table.select("event_id", "ts").iter_rows()):
                preds.append(Prediction(eid, int(t), version, role, float(scores[i]), "approve",
                                        0, served_features(X[i].tolist()), []))  # fmt: skip
        PredictionTopic(log).append(preds)
    return len(X)


def copy_version(project: Project, version: str) -> str:
    """Register the artifacts and card of ``version`` again (a new version number)."""
    with Registry.open(project.root) as reg:
        record = reg.get(version)
        files = reg.load_files(version)
        new = reg.register(files, record.card.to_json(), status="accepted", created_by="test")
    return new.version


def audit(project: Project, step: str, payload: dict[str, object], ts: int) -> None:
    with project.open_log() as log:
        log.append_audit("loop." + step, "test", {"text": step, **payload}, ts_us=ts)


def sim(ts: int) -> SimulatedClock:
    return SimulatedClock(ts)


__all__ = ["DAY_US", "audit", "copy_version", "pl", "serve_history", "sim", "today_us"]
