from __future__ import annotations

import pytest

from modelminder.errors import FeatureDefinitionError
from modelminder.features.dsl import Compute, FeatureSet, Window, col, count, distinct, mean, sum_

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
