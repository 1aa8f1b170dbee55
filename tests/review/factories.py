"""Small projects whose review queue holds a few served (blocked) events."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from modelminder.events.predictions import Prediction
from modelminder.project import init_project, load_project
from modelminder.review.queue import ReviewQueue

NOW = 1_780_000_000_000_000  # 2026-05-28


def queued_project(root: Path, ids: tuple[str, ...] = ("e0", "e1", "e2")) -> Path:
    """A built-in card project with ``ids`` logged and queued as blocked (must review)."""
    init_project(root, builtin=True)
    config = root / "minder.toml"  # the events are dated 2026-05: accept them live too
    config.write_text(
        config.read_text().replace('max_event_age = "365d"', 'max_event_age = "36500d"')
    )
    project = load_project(root)
    n = len(ids)
    with project.open_log() as log:
        log.append_events(
            pl.DataFrame({
                "event_id": list(ids), "ts": ["2026-05-28T00:00:00Z"] * n,
                "card_id": ["c"] * n, "merchant_id": ["m"] * n,
                "amount": [10.0 * (i + 1) for i in range(n)], "country": ["FR"] * n,
                "channel": ["pos"] * n,
            })
        )  # fmt: skip
        served = [Prediction(e, NOW, "v1", "champion", 0.95, "block", 0, [], []) for e in ids]
        rows = {e: {"ts": NOW} for e in ids}
        ReviewQueue(log, project.review).consider(served, rows, now=NOW)
    return root
