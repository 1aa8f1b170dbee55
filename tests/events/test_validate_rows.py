"""The live path's row-wise validation agrees with the batch path's frame validation."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import SchemaError
from modelminder.events.schema import normalize, validate_rows

FIELDS = {"card_id": "str", "amount": "float", "n": "int"}
GOOD = st.fixed_dictionaries(
    {
        "event_id": st.text("abcxyz0123", min_size=1, max_size=6),
        "ts": st.datetimes(
            min_value=__import__("datetime").datetime(2000, 1, 1),
            max_value=__import__("datetime").datetime(2100, 1, 1),
        ).map(lambda d: d.isoformat() + "Z"),
        "card_id": st.text("cdef", min_size=1, max_size=4),
        "amount": st.floats(-1e9, 1e9, allow_nan=False),
        "n": st.integers(-(2**40), 2**40),
    }
)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(GOOD, min_size=1, max_size=5))
def test_valid_rows_normalize_the_same_way(rows: list[dict[str, Any]]) -> None:
    fast = validate_rows(rows, FIELDS, ("ts",))
    frame = normalize(pl.DataFrame(rows), FIELDS, ("ts",))
    assert [tuple(r.values()) for r in fast] == frame.rows()


def test_text_for_a_number_is_rejected_on_the_live_path() -> None:
    row = {"event_id": "a", "ts": "2026-01-01T00:00:00Z", "card_id": "c", "amount": "12", "n": 1}
    with pytest.raises(SchemaError, match="field 'amount' must be float; got '12'"):
        validate_rows([row], FIELDS, ("ts",))


@pytest.mark.parametrize(
    "change",
    [
        {"amount": math.nan},
        {"amount": math.inf},
        {"ts": "yesterday"},
        {"card_id": None},
        {"event_id": ""},
        {"colour": "red"},
        {"n": 1.5},
    ],
)
def test_bad_rows_are_rejected_by_both(change: dict[str, Any]) -> None:
    row = {"event_id": "a", "ts": "2026-01-01T00:00:00Z", "card_id": "c", "amount": 1.0, "n": 1}
    bad = row | change
    with pytest.raises(SchemaError, match="rejected whole; nothing was written"):
        validate_rows([row, bad], FIELDS, ("ts",))
    with pytest.raises(SchemaError):
        normalize(pl.DataFrame([row, bad], strict=False), FIELDS, ("ts",))


def test_text_that_is_not_unicode_is_refused() -> None:
    from modelminder.errors import SchemaError
    from modelminder.events.schema import validate_rows

    row = {"event_id": "e1", "ts": "2026-01-01T00:00:00Z", "card_id": "c\ud800"}
    with pytest.raises(SchemaError, match="not valid Unicode text"):
        validate_rows([row], {"card_id": "str"}, ("ts",))
