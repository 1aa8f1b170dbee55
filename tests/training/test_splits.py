"""Fold plans never train on what was not known when validation starts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.events.outcomes import LabelPolicy
from modelminder.training.dataset import build_training_set
from modelminder.training.splits import walk_forward

from .conftest import Fixture

DAY = 86_400_000_000


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(60, 400),
    folds=st.integers(1, 4),
    holdout=st.sampled_from([0.0, 0.1, 0.25]),
    embargo_days=st.integers(0, 3),
    delay_days=st.integers(0, 20),
    seed=st.integers(0, 10_000),
)
def test_walk_forward_purges_embargoes_and_keeps_the_holdout_apart(
    n: int, folds: int, holdout: float, embargo_days: int, delay_days: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 120 * DAY, n)).astype(np.int64)
    rng.shuffle(ts)  # any order in, indices out
    known = ts + rng.integers(0, delay_days * DAY + 1, n)
    embargo = embargo_days * DAY
    plan = walk_forward(ts, known, n_folds=folds, holdout=holdout, embargo_us=embargo)
    hold = set(plan.holdout.tolist())
    assert len(plan.folds) == folds
    for fold in plan.folds:
        start = ts[fold.valid].min()
        train = fold.train
        assert hold.isdisjoint(train.tolist()) and hold.isdisjoint(fold.valid.tolist())
        assert set(train.tolist()).isdisjoint(fold.valid.tolist())
        # purged: every training label was known before validation starts
        assert (known[train] < start).all()
        # embargoed: nothing in the gap before validation
        assert (ts[train] < start - embargo).all()
    if len(plan.holdout):
        # the holdout is the latest share of rows
        assert ts[plan.holdout].min() >= max(ts[f.valid].max() for f in plan.folds)


def test_the_exclude_policy_keeps_labelled_events_only(trained_world: Fixture) -> None:
    with trained_world.log() as log:
        cutoff = trained_world.data.cutoff
        data = build_training_set(
            log, trained_world.plan(), cutoff=cutoff, now=cutoff, policy=LabelPolicy("exclude")
        )
    labelled = trained_world.world.labels.height
    assert data.counts["matured_negatives"] == 0
    assert data.n <= labelled
    assert data.frame.get_column("labelled").all()
    # and the default policy is stated, not silent
    assert "older than 30d" in trained_world.data.describe()
