"""minder stream plays a recorded stream through the live path; minder check-skew proves it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from modelminder.cli import app
from modelminder.project import init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.store import ServingStore
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

runner = CliRunner()


def test_stream_then_no_skew_and_a_broken_feature_is_caught(tmp_path: Path) -> None:
    root = tmp_path / "p"
    init_project(root, builtin=True)
    project = load_project(root)
    world = simulate(
        WorldConfig(days=100, cards=200, seed=4, fraud_card_share=0.25, schedule="steady")
    )
    cut = world.events.height * 97 // 100
    first = world.events.head(cut)
    with project.open_log() as log:
        log.append_events(first)
        ts_cut = first.get_column("ts").max()
        log.append_labels(world.labels.filter(pl.col("label_ts") <= ts_cut))
    trained = train_and_register(project, TrainConfig(trials=0, folds=3, max_train_rows=20_000))
    with project.open_log() as log, Registry.open(root, log) as reg:
        reg.set_alias("champion", trained.record.version, actor="test", reason="fixture")
    world.events.slice(cut).write_parquet(tmp_path / "rest.parquet")
    world.labels.filter(pl.col("label_ts") > ts_cut).write_parquet(tmp_path / "later.parquet")

    r = runner.invoke(
        app,
        ["stream", "--events", str(tmp_path / "rest.parquet"), "--labels",
         str(tmp_path / "later.parquet"), "-p", str(root)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"{world.events.height - cut:,} events (0 already logged)" in r.output
    with project.open_log() as log:
        assert log.count("events") == world.events.height
        live_labels = log.read("labels").filter(pl.col("label_ts") > 0)
    # Streamed labels are known from their label_ts (the simulated clock follows the stream).
    assert (live_labels.get_column("known_at") >= live_labels.get_column("label_ts")).all()

    r = runner.invoke(app, ["check-skew", "-p", str(root)])
    assert r.exit_code == 0, r.output
    assert "OK: no skew in 28 features" in r.output

    # Break one served feature value, as a buggy serving path would: caught, named.
    with ServingStore.open(root) as store:
        row = store._db.fetch("SELECT id, features FROM predictions ORDER BY id LIMIT 1")[0]
        features = json.loads(row[1])
        features[3] = (features[3] or 0) + 1  # card_count_1h
        store._db.fetch(
            "UPDATE predictions SET features = ? WHERE id = ?", [json.dumps(features), row[0]]
        )
    r = runner.invoke(app, ["check-skew", "-p", str(root)])
    assert r.exit_code == 1
    assert "SKEW" in r.output and "card_count_1h" in r.output
