"""Make ``project_a17ea8f.tar.gz``: a small project folder written by the release before
versioned migrations (commit a17ea8f), for the upgrade test (``tests/store/test_upgrade.py``).

It must run with THAT release's code, not the current one::

    git worktree add /tmp/oldrel a17ea8f
    PYTHONPATH=/tmp/oldrel/src .venv/bin/python tests/store/data/make_project_a17ea8f.py \\
        tests/store/data
    git worktree remove /tmp/oldrel

Every table of the three databases gets rows: events, labels (backfilled and live), an expired
waiting label, audit records, predictions (champion and shadow), alerts (one of them updated in
place, as that release did), model versions and alias changes, API tokens (one revoked).
``project_a17ea8f.json`` next to the tarball records what the test must find.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

import polars as pl

from modelminder.events.predictions import PredictionTopic
from modelminder.monitoring.alerts import Alert, AlertLog
from modelminder.project import init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.store import ServingStore
from modelminder.serving.stream import play
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

DAY = 86_400_000_000


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp())
    root = work / "proj"
    init_project(root, builtin=True)
    project = load_project(root)
    world = simulate(
        WorldConfig(
            days=90, cards=10, seed=3, schedule="steady", txn_per_card_day=0.5,
            fraud_card_share=0.5,
        )
    )  # fmt: skip
    live_n = 30
    history = world.events.head(world.events.height - live_n)
    live = world.events.tail(live_n)
    seen = history.get_column("ts").max()
    with project.open_log() as log:
        log.append_events(history)
        log.append_labels(world.labels.filter(pl.col("label_ts") <= seen))
    trained = train_and_register(project, TrainConfig(trials=0, folds=2, embargo="0s"))
    with project.open_log() as log, Registry.open(root, log) as reg:
        reg.set_alias(
            "champion", trained.record.version, actor="fixture", reason="first model",
            override=trained.record.status == "rejected",
        )  # fmt: skip
        reg.set_alias("shadow", trained.record.version, actor="fixture", reason="shadow too")
    play(project, live, world.labels.filter(pl.col("label_ts") > seen))
    with project.open_log() as log:
        # A label whose event never came, expired (the label_expiry table).
        end = int(live.select(pl.col("ts").dt.epoch("us").max()).item())
        log.append_label_rows(
            [{"event_id": "never-came", "is_fraud": 1.0, "label_ts": end, "source": "chargeback"}],
            received_at_us=end,
        )
        log.expire_labels([("never-came", "chargeback")], at_us=end + 8 * DAY)
        # Alerts: recorded, then one of them updated in place (severity rose, closed).
        alerts = AlertLog(log, clock_us=lambda: end)
        drift = Alert(
            "data_drift", "warn", "amount", trained.record.version, 0, DAY,
            {"psi": 0.31, "threshold": 0.1}, "Check the source of 'amount'.",
        )  # fmt: skip
        skew = Alert("skew", "severe", "card_count_1h", trained.record.version, DAY, 2 * DAY,
                     {"mismatches": 3}, "Fix the feature.")  # fmt: skip
        alerts.record([drift, skew])
        alerts.record([replace(drift, severity="severe", window_end=2 * DAY, count=2, open=False)])
        expected = {
            "events": log.count("events"),
            "labels": log.count("labels"),
            "audit": log.count("audit"),
            "predictions": len(PredictionTopic(log).frame("champion", features=False))
            + len(PredictionTopic(log).frame("shadow", features=False)),
            "expired_labels": 1,
            "alerts": [a.to_dict() for a in alerts.read()],
            "first_event": log.read("events", to_offset=1).row(0, named=True),
            "last_label": log.read("labels").tail(1).row(0, named=True),
        }
    with Registry.open(root) as reg:
        expected["models"] = [r.version for r in reg.list()]
        expected["aliases"] = reg.aliases()
        expected["alias_history"] = len(reg.history())
    with ServingStore.open(root) as store:
        store.create_token("service")
        store.revoke(store.tokens()[0].id)
        store.create_token("admin")
        expected["tokens"] = [[t.role, t.revoked_at is not None] for t in store.tokens()]
    for leftover in ("features.parquet", "report.html"):
        (root / leftover).unlink(missing_ok=True)
    with tarfile.open(out / "project_a17ea8f.tar.gz", "w:gz") as tar:
        tar.add(root, arcname="proj")
    (out / "project_a17ea8f.json").write_text(
        json.dumps(expected, indent=1, sort_keys=True, default=str) + "\n"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
