"""The simulator's chargeback-delay knobs (label_delay_days, max_label_delay_days)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from modelminder.cli import app
from modelminder.errors import MinderError
from modelminder.sim.world import World, WorldConfig, simulate

runner = CliRunner()


def chargeback_delay_days(world: World) -> pl.Series:
    joined = world.labels.filter(pl.col("source") == "chargeback").join(
        world.events.select("event_id", "ts"), on="event_id"
    )
    return (joined.get_column("label_ts") - joined.get_column("ts")).dt.total_seconds() / 86_400


def test_the_default_world_is_the_one_before_the_knobs() -> None:
    # Counts and checksums of WorldConfig(days=40, cards=500, seed=1) as generated before the
    # delay knobs existed: tests and recorded demos depend on the same seed giving this world.
    world = simulate(WorldConfig(days=40, cards=500, seed=1))
    assert (world.events.height, world.labels.height) == (58_334, 733)
    assert world.labels.get_column("label_ts").dt.epoch("us").sum() == 1_296_833_176_097_935_721
    explicit = simulate(WorldConfig(days=40, cards=500, seed=1, label_delay_days=10.0))
    assert explicit.labels.equals(world.labels)


def test_a_shorter_median_and_a_cap_bring_every_chargeback_within_the_cap() -> None:
    base = WorldConfig(days=60, cards=400, seed=3, fraud_card_share=0.2)
    default = chargeback_delay_days(simulate(base))
    quick_world = replace(base, label_delay_days=3.0, max_label_delay_days=7.0)
    quick = chargeback_delay_days(simulate(quick_world))
    # (The seen delays are those known by the world's end, so the default's median is a
    # little under its 10 days.)
    assert default.median() > 2.5 * quick.median() and default.max() > 20  # type: ignore[operator]
    assert 2.7 < quick.median() < 3.3  # type: ignore[operator]
    assert quick.max() <= 7.0 and quick.min() > 0.0  # type: ignore[operator]
    # The cap keeps the rest of the world as it was: the same events, the same frauds.
    same = simulate(replace(base, max_label_delay_days=7.0))
    assert same.events.equals(simulate(base).events)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"label_delay_days": 0.0}, "'label_delay_days' (the median chargeback delay)"),
        ({"label_delay_days": float("nan")}, "Got nan"),
        ({"max_label_delay_days": -1.0}, "'max_label_delay_days' (the longest chargeback"),
        ({"max_label_delay_days": 400}, "in (0, 365], like 7, or None for no cap. Got 400"),
    ],
)
def test_bad_delay_knobs_are_refused_naming_them(change: dict[str, float], needle: str) -> None:
    with pytest.raises(MinderError) as err:
        simulate(WorldConfig(days=3, cards=20, **change))  # type: ignore[arg-type]
    assert needle in str(err.value)


def test_minder_simulate_exposes_the_delay(tmp_path: Path) -> None:
    args = ["simulate", "--days", "30", "--cards", "300", "--fraud-card-share", "0.2"]
    r = runner.invoke(
        app,
        [*args, "--label-delay-days", "2", "--max-label-delay-days", "5", "--out", str(tmp_path)],
    )
    assert r.exit_code == 0, r.output
    events = pl.read_parquet(tmp_path / "events.parquet")
    labels = pl.read_parquet(tmp_path / "labels.parquet")
    world = World(events, labels, pl.read_parquet(tmp_path / "truth.parquet"))
    delays = chargeback_delay_days(world)
    assert delays.len() > 100 and delays.max() <= 5.0  # type: ignore[operator]
    assert 1.7 < delays.median() < 2.3  # type: ignore[operator]


@pytest.mark.parametrize("option", ["--label-delay-days", "--max-label-delay-days"])
def test_minder_simulate_refuses_a_bad_delay_naming_the_option(tmp_path: Path, option: str) -> None:
    r = runner.invoke(app, ["simulate", "--out", str(tmp_path), option, "0"])
    assert r.exit_code == 2
    text = " ".join(r.output.replace("│", " ").split())
    assert option in text and "(0, 365] days. Got 0.0" in text
    assert not (tmp_path / "events.parquet").exists()
