"""Shared helpers of the benchmarks: a cached simulated world and honest timing.

Every benchmark prints its numbers *and* a ratio against a baseline measured in the same run,
because these machines are noisy (2 shared cores): only same-run ratios are comparable.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import polars as pl

from modelminder.sim.world import WorldConfig, simulate

T = TypeVar("T")
DATA = Path(os.environ.get("MODELMINDER_BENCH_DATA", "bench-data"))
DAYS = 90
EVENTS_PER_CARD = 244  # over 90 days, measured on the simulator (seed 1)


def parse(
    description: str,
    default_events: int,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The benchmarks' common options; ``extra`` adds a script's own to the parser."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("BENCH_EVENTS", default_events)),
        help=f"approximate number of simulated events (default {default_events:,})",
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (default 2)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def world(events: int) -> tuple[Path, Path]:
    """Parquet files of a simulated world of about ``events`` events (cached on disk)."""
    cards = max(50, round(events / EVENTS_PER_CARD))
    folder = DATA / f"world-{DAYS}d-{cards}c"
    ev, lab = folder / "events.parquet", folder / "labels.parquet"
    if not ev.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        w = simulate(WorldConfig(days=DAYS, cards=cards, seed=1))
        w.events.write_parquet(folder / "events.tmp")
        w.labels.write_parquet(lab)
        (folder / "events.tmp").rename(ev)
        print(f"simulated {w.events.height:,} events in {time.perf_counter() - t0:.1f} s -> {ev}")
    return ev, lab


def best(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Fastest wall time of ``repeat`` runs and the last result."""
    times = []
    result: T | None = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    assert result is not None
    return min(times), result


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def load(path: Path) -> pl.DataFrame:
    return pl.read_parquet(path)
