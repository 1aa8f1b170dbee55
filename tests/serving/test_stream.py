"""minder stream plays a recorded stream through the live path; minder check-skew proves it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from modelminder.cli import app

from .conftest import live_project

runner = CliRunner()


def test_stream_then_no_skew_and_a_broken_feature_is_caught(tmp_path: Path) -> None:
    root = tmp_path / "p"
    project, world, cut = live_project(root)
    ts_cut = world.events.head(cut).get_column("ts").max()
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
    with project.open_log() as log:
        db = log.database
        row = db.fetch('SELECT "offset", features FROM predictions ORDER BY "offset" LIMIT 1')[0]
        features = json.loads(row[1])
        features[3] = (features[3] or 0) + 1  # card_count_1h
        db.fetch(
            'UPDATE predictions SET features = ? WHERE "offset" = ?', [json.dumps(features), row[0]]
        )
    r = runner.invoke(app, ["check-skew", "-p", str(root)])
    assert r.exit_code == 1
    assert "SKEW" in r.output and "card_count_1h" in r.output
