"""A simulated world whose later part was 'served' by a champion trained on its first part.

The served predictions are written in bulk from a replay of the log, scored by the champion:
the same features the live path serves (replay equals live, proven in tests/serving), at a
fraction of the time of streaming every event through the service.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from modelminder.events.outcomes import LabelPolicy
from modelminder.events.predictions import Prediction, PredictionTopic, served_features
from modelminder.logreplay import replay_log
from modelminder.project import Project, init_project, load_project
from modelminder.registry import Registry
from modelminder.serving.service import DecisionPolicy
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import load_model, train_and_register


def served_world(
    root: Path, *, schedule: str, cards: int, train_days: int, days: int = 100, seed: int = 3
) -> Project:
    """Log and train on the first ``train_days``; then serve the rest: its events and labels
    are logged, and each event's prediction is what the live path would have served with the
    labels interleaved at their time (``minder stream``), i.e. a replay of the whole log."""
    init_project(root, builtin=True)
    project = load_project(root)
    world = simulate(
        WorldConfig(days=days, cards=cards, seed=seed, fraud_card_share=0.25, schedule=schedule)
    )
    cut = world.events.get_column("ts").min() + dt.timedelta(days=train_days)  # type: ignore[operator]
    first = world.events.filter(pl.col("ts") < cut)
    rest = world.events.filter(pl.col("ts") >= cut)
    with project.open_log() as log:
        log.append_events(first)
        log.append_labels(world.labels.filter(pl.col("label_ts") < cut))
    trained = train_and_register(
        project,
        TrainConfig(trials=0, folds=3, max_train_rows=30_000),
        policy=LabelPolicy(maturity="14d"),
    )
    with project.open_log() as log, Registry.open(root, log) as reg:
        reg.set_alias(
            "champion", trained.record.version, actor="test", reason="fixture",
            override=not trained.result.verdict.passed,
        )  # fmt: skip
    plan = project.plan()
    record, model = load_model(project, "champion")
    policy = DecisionPolicy()
    with project.open_log() as log:
        log.append_events(rest)
        log.append_labels(world.labels.filter(pl.col("label_ts") >= cut))
        table = replay_log(log, plan).filter(
            pl.col("event_id").is_in(rest.get_column("event_id").to_list())
        )
        times = rest.select("event_id", ts=pl.col("ts").dt.epoch("us"))
        ts = dict(zip(times.get_column("event_id"), times.get_column("ts"), strict=True))
        X = np.ascontiguousarray(table.select(plan.names).to_numpy(), np.float64)
        scores = model.predict(X)
        PredictionTopic(log).append(
            [
                Prediction(
                    event_id,
                    int(ts[event_id]),
                    record.version,
                    "champion",
                    float(s),
                    policy.decide(float(s)),
                    0,
                    served_features(x.tolist()),
                    [],
                )
                for event_id, s, x in zip(table.get_column("event_id"), scores, X, strict=True)
            ]
        )
    return project
