"""The label-delay estimate and the maturity it chooses (events.delays)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import TrainingError
from modelminder.events.delays import (
    DAY_US,
    HOUR_US,
    MIN_POSITIVES,
    MaturityEvidence,
    estimate_maturity,
    parse_request,
    positive_delays,
    truncated_quantiles,
)


def reference_quantile(delays: list[int], ages: list[int], level: float) -> int:
    """Lynden-Bell's product-limit estimate written out plainly: the share of delays at most
    ``u`` is the product, over the observed delays v above u, of 1 - (how many have delay v) /
    (how many have delay <= v and age >= v)."""
    values = sorted(set(delays))

    def share_within(u: int) -> float:
        share = 1.0
        for v in values:
            if v > u:
                ties = sum(1 for x in delays if x == v)
                risk = sum(1 for x, a in zip(delays, ages, strict=True) if x <= v <= a)
                share *= 1.0 - ties / risk
        return share

    return min(v for v in values if share_within(v) >= level - 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 60)), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.9, 0.95, 0.99]),
)
def test_the_vectorized_estimate_agrees_with_the_plain_reference(
    pairs: list[tuple[int, int]], level: float
) -> None:
    delays = [d for d, _ in pairs]
    ages = [d + extra for d, extra in pairs]  # a seen delay is never longer than its age
    assert truncated_quantiles(delays, ages, (level,)) == [reference_quantile(delays, ages, level)]


def lognormal_world(
    n: int, days: int, median_days: float, seed: int = 0
) -> tuple[pl.DataFrame, pl.DataFrame, int, np.ndarray]:
    """``n`` frauds spread over ``days``, each with a chargeback after a log-normal delay;
    only the chargebacks known by the end are in the log. Returns events, labels, the end
    and every delay (the truth, seen and unseen)."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, days * DAY_US, n))
    delay = (np.exp(rng.normal(np.log(median_days), 0.6, n)) * DAY_US).astype(np.int64)
    end = days * DAY_US
    known = ts + delay <= end
    ids = [f"e{i}" for i in range(n)]
    events = pl.DataFrame({"event_id": ids, "ts": ts})
    labels = pl.DataFrame(
        {
            "event_id": [i for i, k in zip(ids, known, strict=True) if k],
            "is_fraud": 1.0,
            "known_at": (ts + delay)[known],
            "source": "chargeback",
        }
    )
    return events, labels, end, delay


def test_the_estimate_sees_the_delays_the_cutoff_hides() -> None:
    # 60 days of log, chargebacks a median 10 days late: the last weeks' slow chargebacks are
    # not in the log yet. The plain quantile of what is seen would pick too short a maturity.
    events, labels, end, truth = lognormal_world(4000, 60, 10.0)
    evidence = estimate_maturity(events, labels, as_of=end, value="is_fraud")
    true_p95 = float(np.quantile(truth, 0.95)) / DAY_US
    seen = positive_delays(events, labels, as_of=end, value="is_fraud")
    naive_p95 = float(np.quantile(seen.get_column("delay").to_numpy(), 0.95)) / DAY_US
    assert evidence.delay_us is not None
    assert abs(evidence.delay_us / DAY_US - true_p95) < 1.5
    assert naive_p95 < true_p95 - 3.0  # what the correction is for
    assert evidence.how == "estimated" and evidence.maturity == f"{int(np.ceil(true_p95))}d"


def test_with_every_event_old_enough_it_is_the_plain_quantile() -> None:
    delays = np.arange(1, 101) * HOUR_US
    ages = np.full(100, 1000 * DAY_US)
    assert truncated_quantiles(delays, ages, (0.5, 0.95)) == [50 * HOUR_US, 95 * HOUR_US]


def chargebacks(delays_h: list[float], *, source: str = "chargeback") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(delays_h))],
            "is_fraud": 1.0,
            "known_at": [int(h * HOUR_US) for h in delays_h],
            "source": source,
        }
    )


def events_at_zero(n: int) -> pl.DataFrame:
    return pl.DataFrame({"event_id": [f"e{i}" for i in range(n)], "ts": [0] * n})


def test_labels_within_a_week_give_a_week() -> None:
    delays_h = list(np.linspace(12, 7 * 24, 200))
    evidence = estimate_maturity(
        events_at_zero(200), chargebacks(delays_h), as_of=60 * DAY_US, value="is_fraud"
    )
    assert evidence.maturity == "7d" and evidence.how == "estimated"
    text = evidence.describe()
    assert text.startswith("maturity 7d, from the data: 95% of eventual positives are known")
    assert "estimated from 200 positive labels" in text and "override with --maturity" in text
    assert "chargeback p50 3.7d, p95 6.7d (200 positives)" in text


def test_short_delays_round_up_to_hours_and_never_below_a_day() -> None:
    hours = estimate_maturity(
        events_at_zero(100), chargebacks([20 + i / 10 for i in range(100)]),
        as_of=10 * DAY_US, value="is_fraud",
    )  # fmt: skip
    assert hours.maturity == "30h"
    minutes = estimate_maturity(
        events_at_zero(100), chargebacks([1 + i / 100 for i in range(100)]),
        as_of=10 * DAY_US, value="is_fraud",
    )  # fmt: skip
    assert minutes.maturity == "1d"
    assert "within 1.9 hours, raised to the 1d minimum" in minutes.reason


def test_too_few_positives_fall_back_to_30d_and_say_why() -> None:
    n = MIN_POSITIVES - 1
    evidence = estimate_maturity(
        events_at_zero(n), chargebacks([48.0] * n), as_of=10 * DAY_US, value="is_fraud"
    )
    assert (evidence.maturity, evidence.how, evidence.positives) == ("30d", "fallback", n)
    assert evidence.describe() == (
        f"maturity 30d, the fallback: only {n} positive labels known by the cut-off, fewer "
        f"than the {MIN_POSITIVES} needed to estimate how late labels arrive; set --maturity "
        "to choose one"
    )
    empty = estimate_maturity(
        events_at_zero(0), chargebacks([])[:0], as_of=10 * DAY_US, value="is_fraud"
    )
    assert empty.maturity == "30d" and "only 0 positive labels" in empty.reason


def test_an_explicit_maturity_is_used_and_the_estimate_kept_as_a_hint() -> None:
    evidence = estimate_maturity(
        events_at_zero(200), chargebacks(list(np.linspace(12, 7 * 24, 200))),
        as_of=60 * DAY_US, value="is_fraud", requested="14d",
    )  # fmt: skip
    assert evidence.maturity == "14d" and evidence.how == "given"
    assert evidence.describe().startswith("maturity 14d, given; the data suggests 7d: 95% of")


def test_another_share_asks_for_more_of_the_positives() -> None:
    events, labels, end, _ = lognormal_world(3000, 90, 10.0, seed=1)
    p95 = estimate_maturity(events, labels, as_of=end, value="is_fraud")
    p99 = estimate_maturity(events, labels, as_of=end, value="is_fraud", requested="auto:0.99")
    assert p95.delay_us is not None and p99.delay_us is not None
    assert p99.delay_us > p95.delay_us * 1.2
    assert "99% of eventual positives" in p99.reason and "p99 " in p99.reason


def test_only_what_was_known_at_the_cutoff_counts() -> None:
    # Chargebacks known after the cut-off, and events after it, do not enter the estimate:
    # a backtest chooses the maturity it could have chosen then.
    labels = chargebacks([24.0] * 40 + [24.0 * 20] * 40)
    events = pl.DataFrame(
        {"event_id": [f"e{i}" for i in range(80)], "ts": [0] * 40 + [0] * 30 + [50 * DAY_US] * 10}
    )
    evidence = estimate_maturity(events, labels, as_of=10 * DAY_US, value="is_fraud")
    assert evidence.positives == 40 and evidence.maturity == "1d"


def test_the_first_positive_counts_and_each_source_is_listed() -> None:
    n = 40
    ids = [f"e{i}" for i in range(n)]
    review = pl.DataFrame(
        {"event_id": ids, "is_fraud": 1.0, "known_at": [3 * HOUR_US] * n, "source": "review"}
    )
    charge = pl.DataFrame(
        {"event_id": ids, "is_fraud": 1.0, "known_at": [12 * DAY_US] * n, "source": "chargeback"}
    )
    # A review that says fraud, overruled by a chargeback's "genuine": not a positive.
    overruled = pl.DataFrame(
        {
            "event_id": ["x", "x"],
            "is_fraud": [1.0, 0.0],
            "known_at": [HOUR_US, 2 * HOUR_US],
            "source": ["review", "chargeback"],
        }
    )
    events = pl.concat([events_at_zero(n), pl.DataFrame({"event_id": ["x"], "ts": [0]})])
    labels = pl.concat([charge, review, overruled])
    evidence = estimate_maturity(events, labels, as_of=30 * DAY_US, value="is_fraud")
    # Every event was known positive within 3 hours (its review): the maturity is the floor.
    assert evidence.positives == n and evidence.maturity == "1d"
    # The overruled review is not counted: its event is not an eventual positive.
    assert [(s.source, s.positives) for s in evidence.sources] == [("chargeback", n), ("review", n)]
    assert "chargeback p50 12.0d, p95 12.0d" in evidence.reason
    assert "review p50 3.0h, p95 3.0h" in evidence.reason


def test_a_source_with_few_positives_is_named_without_quantiles() -> None:
    labels = pl.concat(
        [chargebacks([48.0] * 40), chargebacks([5.0] * 3, source="review")]
    ).with_columns(pl.Series("event_id", [f"e{i}" for i in range(43)]))
    evidence = estimate_maturity(events_at_zero(43), labels, as_of=10 * DAY_US, value="is_fraud")
    assert "review: 3 positives, too few for quantiles" in evidence.reason


def test_the_evidence_survives_json() -> None:
    events, labels, end, _ = lognormal_world(500, 60, 4.0, seed=2)
    for requested in ("auto", "auto:0.9", "21d"):
        evidence = estimate_maturity(
            events, labels, as_of=end, value="is_fraud", requested=requested
        )
        text = json.dumps(evidence.to_json(), allow_nan=False)
        assert MaturityEvidence.from_json(json.loads(text)) == evidence
    few = estimate_maturity(events[:5], labels, as_of=end, value="is_fraud")
    assert MaturityEvidence.from_json(json.loads(json.dumps(few.to_json()))) == few


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"version": 9}, "version 9; this modelminder reads version 1"),
        ({"positives": "many"}, "malformed (ValueError"),
        ({"how": "guessed"}, "'how' must be one of estimated, fallback, given. Got 'guessed'"),
    ],
)
def test_bad_evidence_json_is_refused_naming_the_problem(
    change: dict[str, object], needle: str
) -> None:
    data = {**estimate_maturity(events_at_zero(0), chargebacks([]), as_of=1, value="is_fraud")
            .to_json(), **change}  # fmt: skip
    with pytest.raises(TrainingError, match=needle.replace("(", r"\(")):
        MaturityEvidence.from_json(data)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("soon", "The 'maturity' must be 'auto' (estimate from the labels), 'auto:0.99'"),
        ("-3d", "Got '-3d'"),
        ("auto:1.5", "must be a number in [0.5, 1), like auto:0.95. Got 'auto:1.5'"),
        ("auto:most", "Got 'auto:most'"),
    ],
)
def test_a_bad_maturity_request_names_what_is_allowed(text: str, needle: str) -> None:
    with pytest.raises(TrainingError) as err:
        parse_request(text)
    assert needle in str(err.value)


def test_a_delay_longer_than_its_age_is_refused() -> None:
    with pytest.raises(TrainingError, match=r"Got delay 5 with age 3 at position 1"):
        truncated_quantiles([1, 5], [2, 3], (0.5,))
