"""Hypothesis strategies: random event streams with bursts, late events, ties and labels."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Money: whole cents.
CENTS = st.one_of(
    st.sampled_from([0.0, 1.0, 9.99, 100.0]),
    st.integers(0, 500_000).map(lambda c: c / 100),
)

SCHEMA = {"card": "str", "merch": "str", "amount": "float"}
SECOND = 1_000_000
# Label delays (seconds after the labelled event): before it, at it, soon, days later.
DELAYS = [-60, 0, 1, 600, 3600, 86400, 10 * 86400]


@st.composite
def streams(
    draw: st.DrawFn, max_events: int = 60, amounts: st.SearchStrategy[float] = CENTS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events in log order, and labels in log order (not ``known_at`` order).

    An event may get a second label from another source (known earlier, at the same time or
    later, with the same or the other value): only the first known counts in label-aware
    features (:func:`modelminder.events.outcomes.first_known`). Some labels become known
    exactly at another event's time, and labels of different events tie in ``known_at``.
    """
    n = draw(st.integers(1, max_events))
    cards = draw(st.integers(1, 4))
    merchants = draw(st.integers(1, 3))
    t = 1_700_000_000 * SECOND
    events: list[dict[str, Any]] = []
    for i in range(n):
        step = draw(st.sampled_from([0, 0, 1, 30, 600, 3600, 5 * 3600, 2 * 86400]))
        t += step * SECOND  # 0 gives ties and bursts
        late = draw(st.sampled_from([0, 0, 0, 0, 120, 3600, 3 * 86400]))  # out-of-order
        events.append(
            {
                "event_id": f"e{i}",
                "ts": t - late * SECOND,
                "card": f"c{draw(st.integers(0, cards - 1))}",
                "merch": f"m{draw(st.integers(0, merchants - 1))}",
                "amount": draw(amounts),
            }
        )
    labels: list[dict[str, Any]] = []
    for e in events:
        for source in ("chargeback", "review"):
            if not draw(st.booleans()) or (source == "review" and not draw(st.booleans())):
                continue
            if draw(st.integers(0, 4)) == 0:  # known exactly when some event happens
                known_at = draw(st.sampled_from(events))["ts"]
            else:
                known_at = e["ts"] + draw(st.sampled_from(DELAYS)) * SECOND
            labels.append(
                {
                    "event_id": e["event_id"],
                    "known_at": known_at,
                    "is_fraud": float(draw(st.integers(0, 1))),
                    "source": source,
                }
            )
    return events, draw(st.permutations(labels))  # labels arrive in any order
