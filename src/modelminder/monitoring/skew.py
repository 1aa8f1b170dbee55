"""The skew monitor: served features against a replay of the log, feature by feature.

Replay and the live path run the same engine, so any mismatch means something broke (a
feature computed differently live, a state that missed events, a log that was edited). The
check replays the log and compares the served vectors of a sample of events with
:func:`~modelminder.logreplay.mismatched_rows` (the engine's documented tolerance; missing
equals missing, ``inf`` equals ``inf`` of the same sign, and an infinity is never missing: the
prediction log keeps it, see :mod:`modelminder.events.predictions`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from modelminder.events.log import EventLog
from modelminder.features.plan import Plan
from modelminder.logreplay import compare_tables, mismatched_rows, replay_log


@dataclass(frozen=True)
class SkewResult:
    checked: int
    mismatches: dict[str, int]  # feature -> served events whose value differs from replay
    examples: dict[str, list[dict[str, Any]]]  # feature -> a few (event_id, served, replayed)
    report: Any  # the engine's parity report (printable)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def check_served(
    log: EventLog,
    plan: Plan,
    event_ids: Sequence[str],
    features: Sequence[Sequence[float | None]],
    *,
    examples: int = 3,
) -> SkewResult:
    """Compare served ``features`` (one vector per event id, in ``plan.names`` order; None or
    NaN = missing, ``±inf`` as served) with a replay of ``log``."""
    served = pl.DataFrame(
        {
            "event_id": list(event_ids),
            **{name: [_num(v[j]) for v in features] for j, name in enumerate(plan.names)},
        },
        schema={"event_id": pl.String, **dict.fromkeys(plan.names, pl.Float64)},
    )
    order = {event_id: k for k, event_id in enumerate(event_ids)}
    replayed = (
        replay_log(log, plan)
        .filter(pl.col("event_id").is_in(list(event_ids)))
        .with_columns(_k=pl.col("event_id").replace_strict(order, return_dtype=pl.Int64))
        .sort("_k")
        .drop("_k")
    )
    bad = mismatched_rows(replayed, served, plan.names)
    report = compare_tables(replayed, served, plan.names, bad)
    mismatches = {name: len(rows) for name, rows in bad.items() if len(rows)}
    found = {
        name: [
            {
                "event_id": served["event_id"][i],
                "served": served[name][i],
                "replayed": replayed[name][i],
            }
            for i in bad[name][:examples].tolist()
        ]
        for name in mismatches
    }
    return SkewResult(served.height, mismatches, found, report)


def _num(v: float | None) -> float:
    return math.nan if v is None else float(v)
