"""Small projects for the loop's tests: a simulated card world ingested into a project."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from modelminder.project import Project, init_project, load_project
from modelminder.sim.world import World, WorldConfig, simulate

DAY_US = 86_400_000_000


def card_project(root: Path, *, loop: str = "", **world: object) -> tuple[Project, World]:
    """A built-in card-fraud project at ``root`` holding a simulated world's events and the
    labels known by its end; ``loop`` is extra ``[loop]`` TOML (replacing the template's)."""
    init_project(root, builtin=True)
    if loop:
        path = root / "minder.toml"
        text = path.read_text()
        path.write_text(text[: text.index("[loop]")] + "[loop]\n" + loop)
    project = load_project(root)
    w = simulate(WorldConfig(**world))  # type: ignore[arg-type]
    with project.open_log() as log:
        log.append_events(w.events)
        log.append_labels(w.labels)
    return project, w


def day(world: World, n: int) -> int:
    """The start of day ``n`` of the world, in UTC microseconds."""
    start = world.events.get_column("ts").min()
    assert isinstance(start, dt.datetime)
    first = int(start.timestamp() * 1e6) // DAY_US * DAY_US
    return first + n * DAY_US
