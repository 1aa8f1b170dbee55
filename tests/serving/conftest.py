"""Serving fixtures: a project whose log holds most of a world, with a champion."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from modelminder.project import Project, init_project, load_project
from modelminder.registry import Registry
from modelminder.sim.world import World, WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register


def accept_history(root: Path) -> None:
    """Let the project's live path accept the simulated world's 2026 events whatever today's
    date (``[serving].max_event_age``), as a user replaying a recording through a live server
    would configure it."""
    config = root / "minder.toml"
    text = config.read_text()
    assert text.count('max_event_age = "365d"') == 1
    config.write_text(text.replace('max_event_age = "365d"', 'max_event_age = "36500d"'))


def live_project(root: Path, share: float = 0.97, cards: int = 200) -> tuple[Project, World, int]:
    """Log the first ``share`` of a world's events (and the labels known by then), train a
    model, promote it. Returns the project, the world and the number of events logged."""
    init_project(root, builtin=True)
    accept_history(root)
    project = load_project(root)
    world = simulate(
        WorldConfig(days=100, cards=cards, seed=4, fraud_card_share=0.25, schedule="steady")
    )
    cut = int(world.events.height * share)
    first = world.events.head(cut)
    with project.open_log() as log:
        log.append_events(first)
        log.append_labels(world.labels.filter(pl.col("label_ts") <= first.get_column("ts").max()))
    trained = train_and_register(project, TrainConfig(trials=0, folds=3, max_train_rows=20_000))
    with project.open_log() as log, Registry.open(root, log) as reg:
        # Serving tests need a champion, not a good one: small worlds may fail the gate.
        reg.set_alias(
            "champion",
            trained.record.version,
            actor="test",
            reason="fixture",
            override=not trained.result.verdict.passed,
        )
    return project, world, cut
