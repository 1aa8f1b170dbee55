"""Feature sets used by the engine tests (every aggregation kind and key shape)."""

from __future__ import annotations

from modelminder.features.dsl import (
    Compute,
    FeatureSet,
    LabelWindow,
    Window,
    col,
    count,
    distinct,
    label_count,
    label_sum,
    max_,
    mean,
    min_,
    since_last,
    std,
    sum_,
)


def every_kind(lateness: str = "1h") -> FeatureSet:
    return FeatureSet(
        "every_kind",
        [
            Compute("amount_log", col("amount").log1p()),
            Window("n_1h", count(), by="card", window="1h"),
            Window("n_1d", count(), by="card", window="1d"),
            Window("sum_1h", sum_("amount"), by="card", window="1h"),
            Window("mean_1d", mean("amount"), by="card", window="1d"),
            Window("std_1d", std("amount"), by="card", window="1d"),
            Window("min_1d", min_(col("amount").log()), by="card", window="1d"),
            Window("max_2h", max_("amount"), by="card", window="2h"),
            Window("merchants_1d", distinct("merch"), by="card", window="1d"),
            Window("since_last", since_last(), by="card", window="1d"),
            Window("pair_seen_3d", count(), by=("card", "merch"), window="3d"),
            Window("merch_n_1d", count(), by="merch", window="1d"),
            LabelWindow("merch_frauds_1d", label_sum(), by="merch", window="1d"),
            LabelWindow("merch_labels_2d", label_count(), by="merch", window="2d"),
            # Over the time labels became known: its own group and state, per key shape.
            LabelWindow(
                "merch_frauds_known_1d", label_sum(), by="merch", window="1d", over="known"
            ),
            LabelWindow(
                "card_labels_known_2d", label_count(), by="card", window="2d", over="known"
            ),
            LabelWindow(
                "pair_frauds_known_3h", label_sum(), by=("card", "merch"), window="3h", over="known"
            ),
            Compute("z", (col("amount") - col("mean_1d")) / col("std_1d")),
            Compute("fraud_rate", col("merch_frauds_1d") / col("merch_n_1d")),
        ],
        allowed_lateness=lateness,
    )
