from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelminder.errors import MonitorError
from modelminder.model.reference import OTHER, VERSION, Reference


def training(rows: int, seed: int = 0) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(100.0, 15.0, rows),  # amount-like
            rng.integers(0, 2, rows).astype(float),  # binary: heavy ties
            np.full(rows, 3.0),  # constant
            rng.lognormal(size=rows),  # heavy tail
        ]
    )
    x[rng.random(rows) < 0.1, 3] = np.nan
    channel = rng.choice(["pos", "web", "app", "atm", "moto"], rows, p=[0.5, 0.3, 0.1, 0.07, 0.03])
    return x, ["amount", "online", "version", "ratio"], {"channel": channel}


def test_summaries_count_every_row_once() -> None:
    x, names, cats = training(20_000)
    ref = Reference.build(x, names, cats)
    assert ref.rows == 20_000 and ref.chunk_rows.sum() == 20_000 and ref.chunk_rows.size == 10
    for s, col in zip(ref.numeric, x.T, strict=True):
        present = int(np.isfinite(col).sum())
        assert s.counts.sum() == present and s.missing == col.size - present
        assert np.array_equal(s.chunk_counts.sum(axis=0), s.counts)
        assert s.chunk_missing.sum() == s.missing
        assert s.counts[0] == 0  # nothing in the reference lies below its own minimum
        assert np.all(np.diff(s.grid) > 0)
        # Counts per cell agree with a direct count of the cell's interval.
        cell = np.searchsorted(s.grid, col[np.isfinite(col)], side="right")
        assert np.array_equal(np.bincount(cell, minlength=s.grid.size + 1), s.counts)
    c = ref.categorical[0]
    assert c.categories == ("pos", "web", "app", "atm", "moto") and c.counts[-1] == 0


def test_quantile_bins_hold_equal_shares_and_ties_merge() -> None:
    x, names, cats = training(50_000)
    ref = Reference.build(x, names, cats)
    amount, online, version, _ = ref.numeric
    coarse = np.add.reduceat(amount.counts, amount.coarse_starts) / amount.counts.sum()
    assert coarse.size == 20 and np.allclose(coarse, 0.05, atol=0.002)
    assert amount.grid.size == 101
    assert amount.scale == pytest.approx(15.0, rel=0.05)  # IQR / 1.349 of a normal is its std
    assert online.grid.tolist() == [0.0, 1.0]  # ties merged into the two values
    assert version.grid.tolist() == [3.0] and version.scale == 1.0  # constant: unit scale
    assert ref.pca is not None and "version" not in ref.pca.features


def test_rare_categories_are_counted_as_other() -> None:
    x, names, cats = training(5_000)
    ref = Reference.build(x, names, cats, max_categories=2)
    c = ref.categorical[0]
    assert c.categories == ("pos", "web")
    assert c.counts[-1] == int(np.isin(cats["channel"], ["app", "atm", "moto"]).sum())
    assert OTHER == "__other__"


def test_missing_categories_are_counted_apart() -> None:
    values = ["a", None, "b", "a"] * 50
    ref = Reference.build(np.zeros((200, 0)), [], {"c": values})
    c = ref.categorical[0]
    assert c.missing == 50 and c.counts.tolist() == [100, 50, 0]


def test_size_does_not_grow_with_training_rows() -> None:
    small = len(json.dumps(Reference.build(*training(5_000)).to_dict()))
    large = len(json.dumps(Reference.build(*training(500_000)).to_dict()))
    features = 5
    assert large < 12_000 * features  # kilobytes per feature
    assert large < 1.5 * small  # only the digits of the counts grow


def test_json_round_trip_keeps_everything() -> None:
    ref = Reference.build(*training(3_000))
    data = json.loads(json.dumps(ref.to_dict()))
    assert data["version"] == VERSION
    back = Reference.from_dict(data)
    assert back.to_dict() == ref.to_dict()
    assert back.feature_names == ("amount", "online", "version", "ratio", "channel")


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
cell = st.one_of(finite, st.just(float("nan")), st.sampled_from([0.0, 1.0, 2.5]))


@st.composite
def datasets(draw: st.DrawFn) -> tuple[np.ndarray, list[str], dict[str, list[str | None]]]:
    rows = draw(st.integers(1, 120))
    cols = draw(st.integers(0, 3))
    values = draw(st.lists(cell, min_size=rows * cols, max_size=rows * cols))
    x = np.array(values, dtype=float).reshape(rows, cols)
    for j in range(cols):  # every reference feature needs at least one value
        if np.isnan(x[:, j]).all():
            x[0, j] = draw(finite)
    cats: dict[str, list[str | None]] = {}
    if cols == 0 or draw(st.booleans()):
        labels = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "é", "d e"]))
        cats["c"] = draw(st.lists(labels, min_size=rows, max_size=rows))
    return x, [f"f{j}" for j in range(cols)], cats


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), chunks=st.integers(1, 12), cap=st.integers(1, 4))
def test_round_trip_property(
    data: tuple[np.ndarray, list[str], dict[str, list[str | None]]], chunks: int, cap: int
) -> None:
    x, names, cats = data
    ref = Reference.build(x, names, cats, chunks=chunks, max_categories=cap)
    first = ref.to_dict()
    text = json.dumps(first, allow_nan=False)  # plain JSON: no NaN, no infinities
    again = Reference.from_dict(json.loads(text)).to_dict()
    assert again == first
    for s in ref.numeric:
        assert s.counts.sum() + s.missing == ref.rows
        assert np.all(np.isfinite(s.means)) and s.scale > 0
        assert np.all(s.means >= np.concatenate([s.grid[:1], s.grid]))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"matrix": np.zeros((10, 2)), "feature_names": ["a"]}, "one column per feature"),
        ({"matrix": np.full((10, 1), np.nan), "feature_names": ["a"]}, "'a' has no value"),
        ({"matrix": np.full((10, 1), np.inf), "feature_names": ["a"]}, "infinite values"),
        ({"matrix": np.zeros((10, 2)), "feature_names": ["a", "a"]}, "'a' is given twice"),
        ({"matrix": np.zeros((0, 1)), "feature_names": ["a"]}, "no rows"),
        ({"matrix": np.zeros((10, 0)), "feature_names": []}, "no features"),
        ({"matrix": np.zeros((10, 1)), "feature_names": ["a"], "bins": 7}, "multiple of 'bins'"),
        ({"matrix": np.zeros((10, 1)), "feature_names": ["a"], "chunks": 0}, "'chunks'"),
        (
            {"matrix": np.zeros((10, 1)), "feature_names": ["a"], "categorical": {"c": [1.5]}},
            "'c' must hold strings",
        ),
        (
            {"matrix": np.zeros((10, 1)), "feature_names": ["a"], "categorical": {"c": ["x"]}},
            "'c' has 1 values but the data has 10 rows",
        ),
    ],
)
def test_bad_training_data_is_named(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(MonitorError, match=needle):
        Reference.build(**kwargs)


def test_bad_stored_reference_is_refused() -> None:
    data = Reference.build(*training(500)).to_dict()
    with pytest.raises(MonitorError, match="version 99"):
        Reference.from_dict({**data, "version": 99})
    with pytest.raises(MonitorError, match="malformed"):
        Reference.from_dict({**data, "numeric": [{"name": "x"}]})
    broken = json.loads(json.dumps(data))
    broken["numeric"][0]["counts"] = broken["numeric"][0]["counts"][:-1]
    with pytest.raises(MonitorError, match="'amount' has inconsistent array shapes"):
        Reference.from_dict(broken)
