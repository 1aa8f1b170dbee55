from __future__ import annotations

import polars as pl
import pytest

from modelminder.errors import FeatureDefinitionError
from modelminder.features.dsl import Compute, FeatureSet, Window, col, count, distinct, mean, sum_
from modelminder.features.plan import compile_plan
from modelminder.features.replay import replay_frame

SCHEMA = {"card_id": "str", "amount": "float"}


@pytest.mark.parametrize(
    ("features", "needle"),
    [
        ([Window("n", count(), by="card_id", window="-5m")], "positive duration like"),
        ([Window("n", count(), by="card_id", window="1 fortnight")], "Got '1 fortnight'"),
        ([Window("n", mean("price"), by="card_id", window="1h")], "refers to 'price'"),
        ([Window("n", count(), by="terminal", window="1h")], "keyed by 'terminal'"),
        (
            [
                Window("n", count(), by="card_id", window="1h"),
                Window("n", count(), by="card_id", window="2h"),
            ],
            "defined twice",
        ),
        (
            [Compute("z", col("later") + 1), Window("later", count(), by="card_id", window="1h")],
            "feature defined before it",
        ),
        ([Window("s", sum_("card_id"), by="card_id", window="1h")], "text field"),
        ([Window("d", distinct("nope"), by="card_id", window="1h")], "'nope'"),
        ([Window("amount", count(), by="card_id", window="1h")], "also an event field"),
        ([Window("bad name", count(), by="card_id", window="1h")], "not a valid identifier"),
        ([], "has no features"),
    ],
)
def test_bad_definitions_name_the_problem(features: list[object], needle: str) -> None:
    with pytest.raises(FeatureDefinitionError, match=needle):
        FeatureSet("t", features).validate(SCHEMA)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        (col("card_id") + 1, "applies '\\+' to text \\('card_id'\\)"),
        (col("amount").eq("big"), "compares col\\('amount'\\) with 'big'"),
        (col("card_id") > "c", "applies '>' to text \\('card_id'\\)"),
        (col("amount") * "2", "applies '\\*' to text"),
    ],
)
def test_text_only_compares_for_equality(expr: object, needle: str) -> None:
    fs = FeatureSet("t", [Compute("x", expr)])  # type: ignore[arg-type]
    with pytest.raises(FeatureDefinitionError, match=needle):
        compile_plan(fs, SCHEMA)


def test_text_equality_compiles_and_computes() -> None:
    fs = FeatureSet(
        "t",
        [
            Compute("is_c1", col("card_id").eq("c1")),
            Compute("not_c1", col("card_id").ne("c1")),
            Compute("same", col("card_id").eq(col("merchant"))),
        ],
    )
    plan = compile_plan(fs, {**SCHEMA, "merchant": "str"})
    events = pl.DataFrame(
        {"event_id": ["a", "b"], "ts": [0, 1], "card_id": ["c1", "m"], "merchant": ["x", "m"]}
    )
    out = replay_frame(plan, events.with_columns(amount=pl.lit(1.0)))
    assert out.get_column("is_c1").to_list() == [1.0, 0.0]
    assert out.get_column("not_c1").to_list() == [0.0, 1.0]
    assert out.get_column("same").to_list() == [0.0, 1.0]


def test_bad_lateness_is_named() -> None:
    fs = FeatureSet("t", [Window("n", count(), by="card_id", window="1h")], allowed_lateness="soon")
    with pytest.raises(FeatureDefinitionError, match="allowed_lateness"):
        fs.validate(SCHEMA)


def test_fingerprint_changes_with_meaning() -> None:
    a = FeatureSet("t", [Window("n", count(), by="card_id", window="1h")])
    b = FeatureSet("t", [Window("n", count(), by="card_id", window="2h")])
    assert a.fingerprint() != b.fingerprint()
    assert (
        a.fingerprint()
        == FeatureSet("t", [Window("n", count(), by="card_id", window="1h")]).fingerprint()
    )
