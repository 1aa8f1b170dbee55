"""Label windows over the time labels became known (``LabelWindow(..., over="known")``).

"Chargebacks received on this merchant in the last 7 days": for an event at ``t``, the labels
with ``t - window < known_at < t`` whose labelled event shares the key, whatever that event's
own age. The property tests of test_parity.py and test_rebuild.py cover them too (every_kind
has three); here: the definition, the exact boundaries, the log adapters (label precedence,
expiry, labels of events older than what is read), bounded state, and why the built-in set
uses them (a simulated world whose chargebacks take ~10 days).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from modelminder.clock import SimulatedClock
from modelminder.errors import FeatureDefinitionError
from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema
from modelminder.features.cardfraud import CARD_EVENT_FIELDS, card_fraud_features
from modelminder.features.dsl import FeatureSet, LabelWindow, Window, count, label_count, label_sum
from modelminder.features.online import OnlineEngine
from modelminder.features.plan import compile_plan
from modelminder.features.reference import reference_features
from modelminder.features.replay import replay_frame
from modelminder.logreplay import replay_log, replay_log_online
from modelminder.sim.world import WorldConfig, simulate

S = 1_000_000
H = 3600 * S
D = 24 * H
BASE = 1_700_000_000 * S


def _known(name: str = "cb_7d", window: str = "7d", over: str = "known") -> LabelWindow:
    return LabelWindow(name, label_sum(), by="merch", window=window, over=over)


def test_over_must_be_event_or_known() -> None:
    fs = FeatureSet("t", [_known("m_cb_7d", over="arrival")])
    with pytest.raises(FeatureDefinitionError) as err:
        fs.validate({"merch": "str"})
    assert str(err.value) == (
        "The 'over' of feature 'm_cb_7d' must be one of 'event' (labels of the key's events "
        "whose time is in the window) or 'known' (labels that became known in the window). "
        "Got 'arrival'."
    )


def test_the_fingerprint_tells_known_time_from_event_time() -> None:
    def fingerprint(*features: LabelWindow) -> str:
        return FeatureSet("t", list(features)).fingerprint()

    by_event = LabelWindow("frauds_7d", label_sum(), by="merch", window="7d")
    explicit = LabelWindow("frauds_7d", label_sum(), by="merch", window="7d", over="event")
    by_known = LabelWindow("frauds_7d", label_sum(), by="merch", window="7d", over="known")
    assert fingerprint(by_known) != fingerprint(by_event)
    # The default is today's meaning, with today's text: models trained on a feature set
    # that never says ``over`` still match it.
    assert fingerprint(explicit) == fingerprint(by_event)
    assert by_event.describe() == "label_window(label_sum() by merch over 7d)"


def test_known_time_window_boundaries() -> None:
    """``t - window < known_at < t``, whatever the age of the labelled event."""
    features = [_known(), _known("by_event_7d", over="event")]
    plan = compile_plan(FeatureSet("t", features, allowed_lateness="1h"), {"merch": "str"})
    t = BASE + 40 * D
    events = [
        {"event_id": "a", "ts": BASE, "merch": "m"},  # three events 40 days before t
        {"event_id": "b", "ts": BASE + S, "merch": "m"},
        {"event_id": "c", "ts": BASE + 2 * S, "merch": "m"},
        *({"event_id": f"p{i}", "ts": t + i * S, "merch": "m"} for i in range(3)),
    ]
    labels = [
        {"event_id": "a", "known_at": t - 7 * D, "is_fraud": 1.0},
        {"event_id": "b", "known_at": t - 7 * D + S, "is_fraud": 1.0},
        {"event_id": "c", "known_at": t + S, "is_fraud": 1.0},
    ]
    out = replay_frame(plan, pl.DataFrame(events), pl.DataFrame(labels)).tail(3)
    # p0 at t: b only (a is known exactly 7 days before: the window is open at its start);
    # p1 at t + 1s: b is now at the open start, and c is known at t + 1s, not *before* p1;
    # p2 at t + 2s: c.
    assert out.get_column("cb_7d").to_list() == [1.0, 0.0, 1.0]
    # Over event time the same labels are of 40-day-old events: never in a 7-day window.
    assert out.get_column("by_event_7d").to_list() == [0.0, 0.0, 0.0]
    ref = reference_features(plan, events, labels)[-3:]
    assert [r["cb_7d"] for r in ref] == [1.0, 0.0, 1.0]


def _world_log(tmp_path: Path) -> tuple[EventLog, pl.DataFrame]:
    """A simulated month in a log, with extra labels: for some charged-back events a review
    known *before* the chargeback saying "legit" (the first known: the chargeback must not
    count), for others one known after it (counted once), one expired review, and one label
    of an event never logged."""
    world = simulate(
        WorldConfig(days=45, cards=20, seed=11, fraud_card_share=0.25, label_delay_days=10.0)
    )
    cb = world.labels.filter(pl.col("source") == "chargeback")
    events_ts = world.events.select("event_id", "ts")
    cb = cb.join(events_ts, on="event_id")
    before = cb.head(8).select(
        "event_id",
        pl.lit(0.0).alias("is_fraud"),
        (pl.col("ts") + dt.timedelta(hours=1)).alias("label_ts"),
        pl.lit("review").alias("source"),
    )
    after = cb.slice(8, 8).select(
        "event_id",
        pl.lit(1.0).alias("is_fraud"),
        (pl.col("label_ts") + dt.timedelta(days=2)).alias("label_ts"),
        pl.lit("review").alias("source"),
    )
    end = world.events.get_column("ts").max()
    orphan = pl.DataFrame(
        {"event_id": ["never-logged"], "is_fraud": [1.0], "label_ts": [end], "source": ["x"]}
    )
    labels = pl.concat(
        [world.labels, before, after.filter(pl.col("label_ts") <= end), orphan],
        how="vertical_relaxed",
    )
    clock = SimulatedClock(int(end.timestamp() * S) + D)  # type: ignore[union-attr]
    log = EventLog.open(tmp_path / "log.db", EventSchema(CARD_EVENT_FIELDS), clock=clock)
    log.append_events(world.events)
    log.append_labels(labels)
    # An expired review: its event's chargeback becomes the label that counts.
    expired = before.get_column("event_id")[0]
    log.expire_labels([(expired, "review")], at_us=clock.now_us())
    return log, world.events


LABEL_SET = FeatureSet(
    "labels",
    [
        Window("merchant_count_7d", count(), by="merchant_id", window="7d"),
        LabelWindow("merchant_frauds_28d", label_sum(), by="merchant_id", window="28d"),
        LabelWindow(
            "merchant_chargebacks_7d", label_sum(), by="merchant_id", window="7d", over="known"
        ),
        LabelWindow("card_labels_3d", label_count(), by="card_id", window="3d", over="known"),
    ],
    allowed_lateness="1d",
)


def test_log_replay_online_and_reference_agree_with_precedence_and_expiry(
    tmp_path: Path,
) -> None:
    log, _ = _world_log(tmp_path)
    with log:
        plan = compile_plan(LABEL_SET, CARD_EVENT_FIELDS)
        batch = replay_log(log, plan)
        online = replay_log_online(log, plan)
        counted = log.feature_labels().to_dicts()
        every = log.read("labels").to_dicts()
        events = log.read("events").select("event_id", "ts", "card_id", "merchant_id")
    np.testing.assert_array_equal(batch.drop("event_id"), online.drop("event_id"))
    ref = pl.DataFrame(reference_features(plan, events.to_dicts(), counted))
    np.testing.assert_array_equal(batch.drop("event_id").to_numpy(), ref.to_numpy())
    # Not vacuous: chargebacks are received in the window, and the precedence rule matters
    # here (counting every logged label would count the chargebacks of the events whose
    # first known label was a "legit" review, and the expired review).
    received = batch.get_column("merchant_chargebacks_7d")
    assert (received > 0).sum() > 20
    naive = pl.DataFrame(reference_features(plan, events.to_dicts(), every))
    assert (naive.get_column("merchant_chargebacks_7d") != received).sum() > 0
    assert (naive.get_column("card_labels_3d") > batch.get_column("card_labels_3d")).sum() > 0


def test_replay_from_a_time_counts_chargebacks_of_older_events(tmp_path: Path) -> None:
    """A range replay reads events from one horizon before its start; a chargeback received
    in the range of an event older than that still counts (keyed by its event, read by id),
    so the range gets exactly what a whole replay gives its events (built-in set)."""
    log, events = _world_log(tmp_path)
    plan = compile_plan(card_fraud_features(), CARD_EVENT_FIELDS)
    start = int(events.get_column("ts").dt.epoch("us").max()) - 5 * D  # type: ignore[arg-type]
    with log:
        whole = replay_log(log, plan)
        part = replay_log(log, plan, from_ts=start)
        part_online = replay_log_online(log, plan, from_ts=start)
        read = log.read("events", from_ts=start - plan.max_horizon)
        older_charged = log.feature_labels().filter(
            (pl.col("known_at") >= start) & ~pl.col("event_id").is_in(read["event_id"].to_list())
        )
    in_range = events.get_column("ts").dt.epoch("us") >= start
    np.testing.assert_array_equal(
        whole.filter(in_range).drop("event_id").to_numpy(), part.drop("event_id").to_numpy()
    )
    np.testing.assert_array_equal(part.drop("event_id"), part_online.drop("event_id"))
    assert older_charged.height > 0, "the range must hold chargebacks of events it does not read"


def test_label_state_over_known_time_is_bounded_on_a_quiet_key() -> None:
    """A merchant with no more events keeps receiving chargebacks (of its old events): it
    keeps only those received within the window plus the allowed lateness, because known
    times age with the whole stream (here, another merchant's events)."""
    fs = FeatureSet("t", [_known()], allowed_lateness="1h")
    plan = compile_plan(fs, {"merch": "str"})
    engine = OnlineEngine(plan)
    quiet = [{"event_id": f"q{i}", "ts": BASE + i * 600 * S, "merch": "quiet"} for i in range(300)]
    for e in quiet:  # two days of events, then none
        engine.process(e)
    # One chargeback every 4 hours for 50 days, while the busy merchant trades every 10 min.
    labels = {BASE + 2 * D + i * 4 * H: quiet[i] for i in range(300)}
    t = BASE + 2 * D
    largest = 0
    while t < BASE + 53 * D:
        if t in labels:
            engine.add_label(labels[t], 1.0, t)
            largest = max(largest, engine.max_label_key_size())
        engine.process({"event_id": f"b{t}", "ts": t + 1, "merch": "busy"})
        t += 600 * S
    # 7 days + 1 hour hold at most 43 chargebacks 4 hours apart (not the 300 received).
    assert 40 <= largest <= 43
    back = engine.process({"event_id": "last", "ts": t, "merch": "quiet"})
    in_window = sum(1 for k in labels if t - 7 * D < k < t)
    assert back["cb_7d"] == in_window > 0


def _share(mask: pl.Series) -> float:
    return float(mask.cast(pl.Float64).mean())  # type: ignore[arg-type]


def test_with_late_labels_only_known_time_sees_recent_chargebacks() -> None:
    """Chargebacks with a median delay of 10 days: over event time a 7-day window is (almost)
    always 0, over known time it shows the chargebacks each merchant received this week."""
    world = simulate(WorldConfig(days=60, cards=1000, seed=5, label_delay_days=10.0))
    fs = FeatureSet(
        "delay",
        [
            LabelWindow("frauds_7d", label_sum(), by="merchant_id", window="7d"),
            LabelWindow("frauds_28d", label_sum(), by="merchant_id", window="28d"),
            LabelWindow("chargebacks_7d", label_sum(), by="merchant_id", window="7d", over="known"),
        ],
    )
    plan = compile_plan(fs, CARD_EVENT_FIELDS)
    out = replay_frame(plan, world.events, world.labels.rename({"label_ts": "known_at"}))
    table = world.events.select("event_id", "merchant_id").join(out, on="event_id")
    charged = world.labels.filter(pl.col("is_fraud") == 1.0).join(
        world.events.select("event_id", "merchant_id"), on="event_id"
    )
    hit = table.filter(pl.col("merchant_id").is_in(charged["merchant_id"].unique().to_list()))
    per_merchant = hit.group_by("merchant_id").agg(
        (pl.col(c) > 0).mean().alias(c) for c in ("frauds_7d", "frauds_28d", "chargebacks_7d")
    )
    numbers: dict[str, Any] = {
        "events at fraud-hit merchants": hit.height,
        "fraud-hit merchants": per_merchant.height,
        "chargebacks": charged.height,
    }
    for c in ("frauds_7d", "frauds_28d", "chargebacks_7d"):
        numbers[f"{c}: events > 0"] = round(_share(hit[c] > 0), 3)
        numbers[f"{c}: sum"] = float(hit[c].sum())
        numbers[f"{c}: merchants with > 0 at >= 10% of events"] = round(
            _share(per_merchant[c] >= 0.1), 3
        )
    print("\n".join(f"{k}: {v}" for k, v in numbers.items()))
    # Over event time a 7-day window is 0 for about 19 of 20 events at fraud-hit merchants:
    # by the time a chargeback arrives, its event has mostly left the window.
    assert numbers["frauds_7d: events > 0"] < 0.08
    # Over known time it is non-zero at 10% of the events or more for most fraud-hit
    # merchants (few of them over event time), and carries several times the counts.
    assert numbers["chargebacks_7d: merchants with > 0 at >= 10% of events"] > 0.7
    assert numbers["frauds_7d: merchants with > 0 at >= 10% of events"] < 0.3
    assert numbers["chargebacks_7d: sum"] > 5 * numbers["frauds_7d: sum"]
