"""The prediction log keeps served features exactly: finite values bit for bit, ±inf as ±inf,
missing as missing; rows written before infinities were kept read as they did."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelminder.events.log import EventLog
from modelminder.events.predictions import (
    Prediction,
    PredictionTopic,
    decode_features,
    features_from_json,
    features_json,
    served_features,
)
from modelminder.events.schema import EventSchema

VALUES = st.lists(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.inf, -math.inf, math.nan, 5e-324, -0.0, 1.7976931348623157e308]),
    ),
    max_size=12,
)


def _not_json(token: str) -> float:
    raise AssertionError(f"{token} is not JSON")


def _bits(values: list[float]) -> list[int]:
    """Bit patterns, with every NaN as one pattern (missing has no payload)."""
    a = np.array(values, np.float64)
    a[np.isnan(a)] = np.nan
    return a.view(np.int64).tolist()


@settings(max_examples=200, deadline=None)
@given(values=VALUES)
def test_stored_features_read_back_bit_for_bit(values: list[float]) -> None:
    text = features_json(served_features(values))
    json.loads(text, parse_constant=_not_json)  # standard JSON: no NaN or Infinity tokens
    back = [math.nan if v is None else v for v in features_from_json(text)]
    assert _bits(back) == _bits(values)
    (decoded,) = decode_features(pl.Series([text])).to_list()
    assert _bits(decoded) == _bits(values)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(VALUES.map(lambda v: [*v, 1.0]), min_size=1, max_size=6))
def test_the_topic_keeps_inf_apart_from_missing(tmp_path: Path, rows: list[list[float]]) -> None:
    with EventLog.open(tmp_path / f"log{abs(hash(str(rows)))}.db", EventSchema({})) as log:
        ids = [f"e{i}" for i in range(len(rows))]
        log.append_event_rows([{"event_id": i, "ts": 1_000_000 * k} for k, i in enumerate(ids)])
        topic = PredictionTopic(log)
        topic.append(
            [
                Prediction(i, 0, "v1", "champion", 0.5, "approve", 1, served_features(v), [])
                for i, v in zip(ids, rows, strict=True)
            ]
        )
        for i, v in zip(ids, rows, strict=True):
            (p,) = topic.for_event(i)
            assert _bits([math.nan if x is None else x for x in p.features]) == _bits(v)
        frame = topic.frame()
        for got, v in zip(frame.get_column("features").to_list(), rows, strict=True):
            assert _bits(got) == _bits(v)


def test_rows_written_before_infinities_were_kept_read_as_before() -> None:
    """The former writer: json.dumps of numbers and null (an infinity was written as null)."""
    old = json.dumps([1.5, None, 2.5e-310, -3.0], separators=(",", ":"))
    assert features_from_json(old) == [1.5, None, 2.5e-310, -3.0]
    (decoded,) = decode_features(pl.Series([old, "[]"])).to_list()[:1]
    assert decoded[0] == 1.5 and math.isnan(decoded[1]) and decoded[2:] == [2.5e-310, -3.0]
