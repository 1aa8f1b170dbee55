"""State rebuilt from the log at start serves the next events like a full replay does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema
from modelminder.features.cardfraud import CARD_EVENT_FIELDS
from modelminder.features.dsl import (
    FeatureSet,
    LabelWindow,
    Window,
    count,
    distinct,
    label_count,
    label_sum,
    max_,
    mean,
    std,
    sum_,
)
from modelminder.features.plan import compile_plan
from modelminder.features.replay import replay_frame
from modelminder.logreplay import engine_from_log
from modelminder.sim.world import WorldConfig, simulate

SHORT = FeatureSet(
    "short",
    [
        Window("n_1h", count(), by="card_id", window="1h"),
        Window("n_1d", count(), by="card_id", window="1d"),
        Window("sum_1d", sum_("amount"), by="card_id", window="1d"),
        Window("mean_1d", mean("amount"), by="card_id", window="1d"),
        Window("std_1d", std("amount"), by="card_id", window="1d"),
        Window("max_1d", max_("amount"), by="card_id", window="1d"),
        Window("merchants_1d", distinct("merchant_id"), by="card_id", window="1d"),
        Window("merchant_n_1d", count(), by="merchant_id", window="1d"),
        LabelWindow("merchant_frauds_1d", label_sum(), by="merchant_id", window="1d"),
        # Chargebacks received in the last day: mostly of events older than the 6 days of
        # history the default rebuild reads, so these count only if the rebuild finds them.
        LabelWindow(
            "merchant_chargebacks_1d", label_sum(), by="merchant_id", window="1d", over="known"
        ),
        LabelWindow("card_labels_1d", label_count(), by="card_id", window="1d", over="known"),
    ],
    allowed_lateness="1d",
)


@pytest.mark.parametrize("history_days", [None, 1000])
def test_engine_from_log_continues_like_replay(tmp_path: Path, history_days: int | None) -> None:
    """Default history (3 x 2 days) cuts a 12-day log; 1000 days reads all of it."""
    world = simulate(WorldConfig(days=12, cards=150, seed=7))
    plan = compile_plan(SHORT, CARD_EVENT_FIELDS)
    events = world.events.with_columns(pl.col("ts").dt.epoch("us"))
    labels = world.labels.with_columns(pl.col("label_ts").dt.epoch("us"))
    k = events.height * 3 // 4
    high = int(events.head(k).get_column("ts").max())  # type: ignore[arg-type]
    first = events.head(k)
    early = labels.filter(
        pl.col("event_id").is_in(first.get_column("event_id").to_list())
        & (pl.col("label_ts") <= high)
    )
    later = labels.join(early.select("event_id"), on="event_id", how="anti").sort("label_ts")
    with EventLog.open(tmp_path / "log.db", EventSchema(CARD_EVENT_FIELDS)) as log:
        log.append_events(world.events.head(k))  # the log takes datetimes
        log.append_labels(
            world.labels.filter(pl.col("event_id").is_in(early.get_column("event_id").to_list()))
        )
        history = None if history_days is None else history_days * 86_400_000_000
        engine = engine_from_log(log, plan, history_us=history)
    by_id = {e["event_id"]: e for e in events.iter_rows(named=True)}
    pending = later.iter_rows(named=True)
    nxt = next(pending, None)
    served = []
    for e in events.slice(k).iter_rows(named=True):
        high = max(high, e["ts"])
        while nxt is not None and nxt["label_ts"] <= high:
            engine.add_label(by_id[nxt["event_id"]], nxt["is_fraud"], nxt["label_ts"])
            nxt = next(pending, None)
        feats = engine.process(e)
        served.append([feats[n] for n in plan.names])
    whole = replay_frame(plan, events, labels.rename({"label_ts": "known_at"}))
    expected = whole.drop("event_id").to_numpy()[k:]
    # Every feature, sums and std included, bit for bit: a window's value depends only on
    # what is in the window, not on where the state's history starts.
    np.testing.assert_array_equal(expected, np.array(served))
    # Not vacuous: chargebacks received the day before are served (median delay 10 days, so
    # most are of events older than the default history).
    received = expected[:, plan.names.index("merchant_chargebacks_1d")]
    assert (received > 0).sum() >= 10
