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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_id": " "}, "field 'event_id' must be non-blank text"),
        ({"event_id": "a\x00b"}, "without control characters"),
        ({"event_id": "e" * 129}, "field 'event_id' is longer than 128 characters"),
        ({"card_id": "c" * 257}, "field 'card_id' is longer than 256 characters"),
        ({"amount": 1e308}, r"field 'amount' must be within \[-1e\+15, 1e\+15\]"),
        ({"amount": -(2.0**60)}, "field 'amount' must be within"),
        ({"n": 2**60}, "field 'n' must be within"),
    ],
)
def test_limits_are_enforced_by_both_paths(change: dict[str, Any], message: str) -> None:
    row = {"event_id": "a", "ts": "2026-01-01T00:00:00Z", "card_id": "c", "amount": 1.0, "n": 1}
    bad = row | change
    with pytest.raises(SchemaError, match=message):
        validate_rows([row, bad], FIELDS, ("ts",))
    with pytest.raises(SchemaError, match=message):
        normalize(pl.DataFrame([row, bad], strict=False), FIELDS, ("ts",))


def test_a_declared_range_is_enforced_and_values_at_its_edges_pass() -> None:
    from modelminder.events.schema import EventSchema

    rules = EventSchema(FIELDS, {"amount": (0.0, 5000.0)}).rules
    row = {"event_id": "a", "ts": "2026-01-01T00:00:00Z", "card_id": "c", "amount": 0.0, "n": 1}
    edges = [row, row | {"event_id": "b", "amount": 5000.0}]
    assert len(validate_rows(edges, FIELDS, ("ts",), rules)) == 2
    assert normalize(pl.DataFrame(edges), FIELDS, ("ts",), rules).height == 2
    with pytest.raises(SchemaError, match=r"'amount' must be within \[0, 5000\]; got -0.01"):
        validate_rows([row | {"amount": -0.01}], FIELDS, ("ts",), rules)


def test_a_bool_is_not_a_number() -> None:
    row = {"event_id": "a", "ts": "2026-01-01T00:00:00Z", "card_id": "c", "amount": True, "n": 1}
    with pytest.raises(SchemaError, match="field 'amount' must be float; got True"):
        validate_rows([row], FIELDS, ("ts",))
    with pytest.raises(SchemaError, match="field 'amount' has type Boolean"):
        normalize(pl.DataFrame([row]), FIELDS, ("ts",))


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ({"card_id": (0, 1)}, "not a float or int field"),
        ({"amount": (5, 1)}, "low < high"),
        ({"amount": (0, 1e300)}, "high <= 1e"),
        ({"amount": (0,)}, "must be \\[low, high\\]"),
    ],
)
def test_bad_declared_ranges_are_refused(ranges: dict[str, Any], message: str) -> None:
    from modelminder.events.schema import EventSchema

    with pytest.raises(SchemaError, match=message):
        EventSchema(FIELDS, ranges)


def test_labels_are_strict_and_conflicting_duplicates_name_both_rows() -> None:
    from modelminder.events.schema import normalize_labels, validate_label_rows

    good = {"event_id": "e1", "is_fraud": 1, "label_ts": "2026-01-02", "source": "bank"}
    for bad, message in [
        ({"is_fraud": True}, "field 'is_fraud' must be float; got True"),
        ({"is_fraud": "1"}, "field 'is_fraud' must be float; got '1'"),
        ({"is_fraud": 0.5}, "field 'is_fraud' must be 0 or 1"),
        ({"source": "\ud800"}, "field 'source' is not valid Unicode text"),
        ({"label_ts": "\udc00"}, "field 'label_ts' must be an ISO-8601 time"),
        ({"source": " "}, "field 'source' must be non-blank"),
        ({"source": "s" * 65}, "field 'source' is longer than 64 characters"),
    ]:
        with pytest.raises(SchemaError, match=message):
            validate_label_rows([good | bad])
    clash = [good, good | {"is_fraud": 0}]
    both = "rows 0 and 1 give different labels for event_id 'e1' from source 'bank'"
    with pytest.raises(SchemaError, match=both):
        validate_label_rows(clash)
    with pytest.raises(SchemaError, match=both):
        normalize_labels(pl.DataFrame(clash))
    # The same label twice is a harmless repeat; another source is another label.
    assert len(validate_label_rows([good, good, good | {"source": "review"}])) == 3
