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


@st.composite
def streams(
    draw: st.DrawFn, max_events: int = 60, amounts: st.SearchStrategy[float] = CENTS
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
        if draw(st.booleans()):
            delay = draw(st.sampled_from([-60, 0, 1, 600, 3600, 86400, 10 * 86400]))
            labels.append(
                {
                    "event_id": e["event_id"],
                    "known_at": e["ts"] + delay * SECOND,
                    "is_fraud": float(draw(st.integers(0, 1))),
                }
            )
    return events, labels
