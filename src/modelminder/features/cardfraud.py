"""The built-in card-fraud feature set used by the demo (and a template for your own)."""

from __future__ import annotations

from modelminder.errors import FeatureDefinitionError
from modelminder.features.dsl import (
    Compute,
    Feature,
    FeatureSet,
    LabelWindow,
    Window,
    col,
    count,
    distinct,
    label_sum,
    max_,
    mean,
    since_last,
    std,
    sum_,
)

CARD_EVENT_FIELDS = {
    "card_id": "str",
    "merchant_id": "str",
    "amount": "float",
    "country": "str",
    "channel": "str",
}


BUILTIN_VERSIONS = {"card_fraud_v2": 2, "card_fraud": 1}


def card_fraud_features(version: int = 2) -> FeatureSet:
    """Amount, card velocity, z-score, novelty and label-aware merchant risk features (28).

    ``version`` 2 (``builtin = "card_fraud_v2"``, what ``minder init --builtin`` writes) sizes
    the label features for chargebacks that arrive late; version 1 (``builtin =
    "card_fraud"``) is the set of earlier releases, kept so that their projects' models still
    fit (a model serves only the feature set it was trained on): its 7-day merchant frauds
    over event time stay 0 while labels take a week. Retrain on version 2 to move.

    Examples
    --------
    >>> fs = card_fraud_features()
    >>> fs.validate(CARD_EVENT_FIELDS)
    >>> len(fs.feature_names), "merchant_chargebacks_7d" in fs.feature_names
    (28, True)
    >>> "merchant_frauds_7d" in card_fraud_features(1).feature_names
    True
    """
    if version not in (1, 2):
        raise FeatureDefinitionError(
            f"The built-in card-fraud feature set has versions 1 and 2. Got {version!r}."
        )
    velocity = [
        Window(f"card_{what}_{w}", agg, by="card_id", window=w)
        for w in ("1h", "24h", "7d", "30d")
        for what, agg in (("count", count()), ("amount_sum", sum_("amount")))
    ]
    return FeatureSet(
        "card_fraud",
        [
            Compute("amount_log", col("amount").log1p()),
            Compute("hour_of_day", col("ts").hour_of_day()),
            Compute("is_online", col("channel").eq("online")),
            *velocity,
            Window("card_amount_mean_30d", mean("amount"), by="card_id", window="30d"),
            Window("card_amount_std_30d", std("amount"), by="card_id", window="30d"),
            Window("card_amount_max_24h", max_("amount"), by="card_id", window="24h"),
            Window("card_merchants_24h", distinct("merchant_id"), by="card_id", window="24h"),
            Window("card_secs_since_last", since_last(), by="card_id", window="30d"),
            Compute(
                "amount_z_30d",
                (col("amount") - col("card_amount_mean_30d")) / col("card_amount_std_30d"),
            ),
            Compute(
                "amount_ratio_24h_30d", col("card_amount_sum_24h") / col("card_amount_sum_30d")
            ),
            Window("card_country_seen_30d", count(), by=("card_id", "country"), window="30d"),
            Window("card_channel_seen_30d", count(), by=("card_id", "channel"), window="30d"),
            Compute("new_country", col("card_country_seen_30d").eq(0.0)),
            Compute("new_channel", col("card_channel_seen_30d").eq(0.0)),
            Window("merchant_count_7d", count(), by="merchant_id", window="7d"),
            Window("merchant_count_28d", count(), by="merchant_id", window="28d"),
            # Merchant risk from labels, sized for chargebacks that arrive days to weeks late
            # (median ~10 days, most within a month). Over *event* time a window only sees
            # the labels of its own events that have already arrived, so a 7-day one is
            # nearly always 0 (its events are younger than the typical delay; 0 at 95% of the
            # events of fraud-hit merchants in the simulated world): we keep the 28-day one,
            # whose older events have had time to be charged back. Over *known* time a window
            # counts the fraud labels (chargebacks, reviews that found fraud) *received*
            # recently, whatever the age of the transactions they are about -- the signal an
            # analyst watches ("this terminal got 3 chargebacks this week"), there from the
            # moment they arrive (non-zero at 22% of those events; tests/features/
            # test_known_time.py).
            *(_merchant_labels_v2() if version == 2 else _merchant_labels_v1()),
        ],
        allowed_lateness="1d",
    )


def _merchant_labels_v2() -> list[Feature]:
    return [
        LabelWindow(
            "merchant_chargebacks_7d", label_sum(), by="merchant_id", window="7d", over="known"
        ),
        LabelWindow("merchant_frauds_28d", label_sum(), by="merchant_id", window="28d"),
        # Chargebacks received this week per transaction this week (as card networks'
        # chargeback ratio, over a week): a large merchant's count alone would look risky.
        Compute(
            "merchant_chargeback_rate_7d",
            col("merchant_chargebacks_7d") / col("merchant_count_7d"),
        ),
        Compute("merchant_fraud_rate_28d", col("merchant_frauds_28d") / col("merchant_count_28d")),
    ]


def _merchant_labels_v1() -> list[Feature]:
    # Version 1, as earlier releases defined it (its fingerprint must not change).
    return [
        LabelWindow("merchant_frauds_7d", label_sum(), by="merchant_id", window="7d"),
        LabelWindow("merchant_frauds_28d", label_sum(), by="merchant_id", window="28d"),
        Compute("merchant_fraud_rate_7d", col("merchant_frauds_7d") / col("merchant_count_7d")),
        Compute("merchant_fraud_rate_28d", col("merchant_frauds_28d") / col("merchant_count_28d")),
    ]
