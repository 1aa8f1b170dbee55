"""Replay throughput of the built-in card-fraud feature set vs a hand-written Polars query.

The baseline is what a user would write for batch only: ``rolling(..., group_by=key,
closed="left")`` per window, joined back to the events, plus the row expressions. It
computes every window feature of the built-in set except the two label-aware ones (which need
a bitemporal join that rolling cannot express); the engine computes all 28 features,
labels included, so the comparison favours the baseline.

Target (issue 2): ratio engine/baseline >= 1.0 on 5M events.

    .venv/bin/python benchmarks/replay_throughput.py [--events 5000000] [--repeat 2]
"""

from __future__ import annotations

import numpy as np
import polars as pl
from _common import best, load, machine, parse, world

from modelminder.features.cardfraud import CARD_EVENT_FIELDS, card_fraud_features
from modelminder.features.plan import compile_plan
from modelminder.features.replay import default_threads, replay_frame

US = 1_000_000


def polars_features(events: pl.DataFrame) -> pl.DataFrame:
    """The hand-written batch query (window + row features, in the events' order)."""
    e = events.with_row_index("row")
    by_key: dict[tuple[str, ...], pl.DataFrame] = {}

    def rolling(keys: list[str], period: str, aggs: list[pl.Expr]) -> pl.DataFrame:
        s = by_key.get(tuple(keys))
        if s is None:
            s = by_key[tuple(keys)] = e.sort([*keys, "ts"], maintain_order=True)
        r = (
            s.rolling(index_column="ts", period=period, group_by=keys, closed="left")
            .agg(aggs)
            .sort([*keys, "ts"], maintain_order=True)
        )
        # rolling() emits one row per input row, groups in no set order. Sorted by (key, ts)
        # they line up with the sorted input (rows tied on (key, ts) have equal windows with
        # closed="left", so their order does not matter). Check it before attaching rows.
        if not r.select(*keys, "ts").equals(s.select(*keys, "ts")):
            raise RuntimeError("rolling() changed the row order; cannot align the results")
        return r.drop(*keys, "ts").with_columns(s.get_column("row"))

    parts: list[pl.DataFrame] = []
    card = ["card_id"]
    for w in ("1h", "24h", "7d", "30d"):
        aggs = [
            pl.len().cast(pl.Float64).alias(f"card_count_{w}"),
            pl.col("amount").sum().alias(f"card_amount_sum_{w}"),
        ]
        if w == "24h":
            aggs += [
                pl.col("amount").max().alias("card_amount_max_24h"),
                pl.col("merchant_id").n_unique().cast(pl.Float64).alias("card_merchants_24h"),
            ]
        if w == "30d":
            aggs += [
                pl.col("amount").mean().alias("card_amount_mean_30d"),
                pl.col("amount").std().alias("card_amount_std_30d"),
                pl.col("ts").max().alias("_last"),
            ]
        parts.append(rolling(card, w, aggs))
    for field in ("country", "channel"):
        agg = [pl.len().cast(pl.Float64).alias(f"card_{field}_seen_30d")]
        parts.append(rolling(["card_id", field], "30d", agg))
    for w in ("7d", "28d"):
        agg = [pl.len().cast(pl.Float64).alias(f"merchant_count_{w}")]
        parts.append(rolling(["merchant_id"], w, agg))
    out = e.select("row", "event_id", "ts", "amount", "channel")
    for p in parts:
        out = out.join(p, on="row", how="left")
    return (
        out.sort("row")
        .with_columns(
            amount_log=(pl.col("amount") + 1.0).log(),
            hour_of_day=pl.col("ts").dt.hour().cast(pl.Float64),
            is_online=(pl.col("channel") == "online").cast(pl.Float64),
            card_secs_since_last=(pl.col("ts") - pl.col("_last")).dt.total_microseconds() / US,
            amount_z_30d=(pl.col("amount") - pl.col("card_amount_mean_30d"))
            / pl.col("card_amount_std_30d"),
            amount_ratio_24h_30d=pl.col("card_amount_sum_24h") / pl.col("card_amount_sum_30d"),
            new_country=(pl.col("card_country_seen_30d") == 0).cast(pl.Float64),
            new_channel=(pl.col("card_channel_seen_30d") == 0).cast(pl.Float64),
        )
        .drop("row", "ts", "amount", "channel", "_last")
    )


def main() -> None:
    args = parse(__doc__.splitlines()[0], 5_000_000)
    ev_path, lab_path = world(args.events)
    events = load(ev_path)
    labels = load(lab_path).with_columns(known_at=pl.col("label_ts"))
    plan = compile_plan(card_fraud_features(), CARD_EVENT_FIELDS)
    n = events.height
    print(f"{n:,} events, {len(plan.names)} features; {machine()}; {default_threads()} threads")
    replay_frame(plan, events.head(1000), labels)  # load compiled code

    t_engine = t_polars = float("inf")
    engine_out = base_out = None
    for _ in range(args.repeat):  # alternate, so both see the same machine conditions
        t, engine_out = best(lambda: replay_frame(plan, events, labels), 1)
        t_engine = min(t_engine, t)
        t, base_out = best(lambda: polars_features(events), 1)
        t_polars = min(t_polars, t)
    assert engine_out is not None and base_out is not None

    # Same numbers? The semantics differ only at the edges: Polars' closed="left" window
    # [t - w, t) drops same-time events and includes the event at exactly t - w, and it
    # sorts late events into time order (the engine shows each event what had arrived).
    shared = [c for c in base_out.columns if c != "event_id"]
    a = engine_out.select(shared).to_numpy()
    b = base_out.select(shared).to_numpy()
    same = np.isclose(a, b, rtol=1e-9, atol=1e-6, equal_nan=True)
    agree = same.all(axis=1).mean()
    worst = sorted(zip((~same).sum(axis=0), shared, strict=True), reverse=True)[:3]

    print(f"engine   {t_engine:7.2f} s  {n / t_engine:12,.0f} events/s  (28 features)")
    print(f"polars   {t_polars:7.2f} s  {n / t_polars:12,.0f} events/s  ({len(shared)} features)")
    print(
        f"rows where all {len(shared)} shared features agree: {agree:.2%}; most differing: "
        + ", ".join(f"{name} ({int(k):,} rows)" for k, name in worst)
    )
    print(f"RATIO engine/polars throughput = {t_polars / t_engine:.2f}  (target >= 1.0)")


if __name__ == "__main__":
    main()
