from __future__ import annotations

import polars as pl

from modelminder.sim.world import WorldConfig, simulate


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = simulate(WorldConfig(days=5, cards=200, seed=3))
    b = simulate(WorldConfig(days=5, cards=200, seed=3))
    c = simulate(WorldConfig(days=5, cards=200, seed=4))
    assert a.events.equals(b.events) and a.labels.equals(b.labels)
    assert not a.events.equals(c.events)


def test_world_has_scenarios_late_labels_and_late_events() -> None:
    w = simulate(WorldConfig(days=40, cards=1000, seed=1))
    scen = set(w.truth.filter(pl.col("scenario") != "").get_column("scenario").unique())
    assert scen == {
        "big_ticket_abroad",
        "compromised_terminal",
        "low_and_slow",
        "threshold_probing",
    }
    joined = w.labels.join(w.events.select("event_id", "ts"), on="event_id")
    delay_days = (joined.get_column("label_ts") - joined.get_column("ts")).dt.total_days()
    charge = joined.get_column("source") == "chargeback"
    assert delay_days.filter(charge).min() >= 1  # chargebacks arrive days later
    assert delay_days.filter(charge).max() >= 14
    # Not every fraud is ever labelled.
    assert w.labels.filter(charge).height < int(w.truth.get_column("is_fraud").sum())
    ts = w.events.get_column("ts")
    assert (ts.diff().dt.total_microseconds() < 0).sum() > 0  # some events arrive late
