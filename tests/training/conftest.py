"""A small, learnable card-fraud world in a project log, shared by the training tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelminder.events.log import EventLog
from modelminder.features.plan import Plan
from modelminder.project import Project, init_project, load_project
from modelminder.sim.world import World, WorldConfig, simulate
from modelminder.training.dataset import TrainingSet, build_training_set

# All four fraud scenarios the whole time (a stationary problem), many victims, few events.
WORLD = WorldConfig(days=120, cards=400, seed=11, fraud_card_share=0.25, schedule="steady")


@dataclass
class Fixture:
    project: Project
    world: World
    data: TrainingSet

    def log(self) -> EventLog:
        return self.project.open_log()

    def plan(self) -> Plan:
        return self.project.plan()


@pytest.fixture(scope="session")
def trained_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    root: Path = tmp_path_factory.mktemp("proj")
    init_project(root, builtin=True)
    project = load_project(root)
    world = simulate(WORLD)
    with project.open_log() as log:
        log.append_events(world.events)
        log.append_labels(world.labels)
        end = log.max_event_ts()
        assert end is not None
        data = build_training_set(log, project.plan(), cutoff=end + 1, now=end + 1)
    yield Fixture(project, world, data)
