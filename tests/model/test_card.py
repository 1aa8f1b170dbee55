"""The model card and guard report round-trip through their JSON form, and refuse what they
cannot read."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import ArtifactError
from modelminder.events.outcomes import POLICIES, LabelPolicy
from modelminder.model.card import (
    CARD_VERSION,
    Check,
    Finding,
    Gap,
    GuardReport,
    ModelCard,
    Scores,
    ScoreSet,
    TrainingSummary,
    Verdict,
)
from modelminder.model.reference import Reference

floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
scores = st.builds(Scores, floats, floats, floats, floats, floats, floats)
score_sets = st.builds(ScoreSet, scores, scores, scores, st.none() | scores)
gaps = st.builds(Gap, floats, floats, st.lists(floats, max_size=4).map(tuple), floats)
checks = st.builds(Check, names, floats, floats, st.booleans(), names)
verdicts = st.builds(Verdict, st.booleans(), st.lists(checks, max_size=4).map(tuple))
findings = st.builds(Finding, st.sampled_from(["leakage", "data", "overfitting"]), names)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | names,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
details = st.dictionaries(
    names.filter(
        lambda k: k not in {"scheme", "fold_plan", "scores", "gap", "findings", "verdict"}
    ),
    json_values,
    max_size=4,
)
reports = st.builds(
    GuardReport,
    st.sampled_from(["walk_forward", "random"]),
    st.lists(names, max_size=4).map(tuple),
    score_sets,
    gaps,
    st.lists(findings, max_size=3).map(tuple),
    st.none() | verdicts,
    details,
)
policies = st.builds(
    LabelPolicy, st.sampled_from(POLICIES), st.integers(1, 90).map(lambda d: f"{d}d")
)
ints = st.integers(0, 2**53)
summaries = st.builds(
    TrainingSummary, ints, ints, ints, ints, ints, policies,
    st.dictionaries(names, st.integers(0, 10**9), max_size=4),
)  # fmt: skip
cards = st.builds(
    ModelCard,
    names,
    st.text("0123456789abcdef", min_size=64, max_size=64),
    st.lists(names, min_size=1, max_size=6, unique=True).map(tuple),
    st.sampled_from(["lightgbm", "logistic", "mlp"]),
    st.dictionaries(names, json_values, max_size=4),
    summaries,
    reports,
    st.none(),
    st.dictionaries(names, json_values, max_size=4),
)


def _same_scores(a: Scores | None, b: Scores | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(_same_floats(getattr(a, k), getattr(b, k)) for k in dataclasses.asdict(a))


def _same_floats(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=150, deadline=None)
@given(cards)
def test_card_round_trips_through_strict_json(card: ModelCard) -> None:
    text = json.dumps(card.to_json(), allow_nan=False)  # strict JSON: what the registry stores
    again = ModelCard.from_json(json.loads(text))
    assert again.to_json() == card.to_json()
    # Field by field (NaN equal to NaN): the typed values, not only their JSON, survive.
    for name, s in card.report.scores.rows():
        assert _same_scores(s, getattr(again.report.scores, name))
    assert _same_scores(card.report.scores.baseline_oot, again.report.scores.baseline_oot)
    assert _same_floats(card.report.gap.auc, again.report.gap.auc)
    assert card.report.findings == again.report.findings
    assert (card.feature_names, card.training.label_policy) == (
        again.feature_names,
        again.training.label_policy,
    )
    if card.report.verdict is not None:
        assert again.report.verdict is not None
        assert card.report.verdict.passed == again.report.verdict.passed
        assert card.report.verdict.reasons == again.report.verdict.reasons
    assert dict(card.report.details) == dict(again.report.details)
    assert again.card_version == CARD_VERSION


def test_card_keeps_its_drift_reference() -> None:
    rng = np.random.default_rng(0)
    ref = Reference.build(rng.normal(size=(500, 2)), ["amount", "score"], {}, chunks=2)
    card = ModelCard.example(("amount",))
    card = ModelCard(**{**card.__dict__, "reference": ref})
    again = ModelCard.from_json(json.loads(json.dumps(card.to_json(), allow_nan=False)))
    assert again.reference is not None
    assert again.reference.to_dict() == ref.to_dict()


def test_card_from_the_future_is_refused_by_name() -> None:
    data = ModelCard.example().to_json() | {"card_version": CARD_VERSION + 1}
    with pytest.raises(ArtifactError, match=r"version 2.*reads version 1"):
        ModelCard.from_json(data)


def test_malformed_card_is_refused_with_the_missing_field() -> None:
    data = ModelCard.example().to_json()
    del data["feature_names"]
    with pytest.raises(ArtifactError, match=r"malformed.*feature_names"):
        ModelCard.from_json(data)


def test_a_meta_that_is_no_card_is_refused() -> None:
    with pytest.raises(ArtifactError, match="version None"):
        ModelCard.from_json({"auc": 0.9})
