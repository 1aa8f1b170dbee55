"""minder train chooses the label maturity from the data (issue 13), says why, and keeps it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from modelminder.cli import app
from modelminder.events.delays import maturity_from_log
from modelminder.model.card import ModelCard
from modelminder.project import Project, init_project, load_project
from modelminder.registry import Registry
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.dataset import maturity_evidence

from .conftest import Fixture

runner = CliRunner()
# A stationary world whose chargebacks all arrive within a week (median 3 days, capped at 7).
WEEK = WorldConfig(
    days=50, cards=300, seed=11, fraud_card_share=0.25, schedule="steady",
    label_delay_days=3.0, max_label_delay_days=7.0,
)  # fmt: skip
FAST = ["--trials", "0", "--folds", "2", "--estimator", "logistic"]


def train(root: Path, *args: str) -> str:
    """``minder train`` as a user runs it; the printed text, wrapped lines joined."""
    result = runner.invoke(app, ["train", *FAST, *args, "-p", str(root)])
    text = " ".join(result.output.split())
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f" [error: {result.exception}]"
    return text


def project_with(
    root: Path, world_config: WorldConfig, keep_positives: int | None = None
) -> Project:
    init_project(root, builtin=True)
    project = load_project(root)
    world = simulate(world_config)
    labels = world.labels
    if keep_positives is not None:
        positives = labels.filter(pl.col("is_fraud") == 1.0).head(keep_positives)
        labels = pl.concat([positives, labels.filter(pl.col("is_fraud") == 0.0)])
    with project.open_log() as log:
        log.append_events(world.events)
        log.append_labels(labels)
    return project


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    yield project_with(tmp_path_factory.mktemp("week"), WEEK)


def test_labels_within_a_week_give_a_maturity_of_about_a_week(week: Project) -> None:
    text = train(week.root)
    found = re.search(
        r"maturity (\d+)d, from the data: 95% of eventual positives are known within "
        r"([\d.]+) days \(estimated from ([\d,]+) positive labels, corrected for events too "
        r"young for their label to have arrived; chargeback p50 ([\d.]+)d, p95 ([\d.]+)d",
        text,
    )
    assert found, text
    chosen, p95, positives, p50 = (
        int(found[1]), float(found[2]), int(found[3].replace(",", "")), float(found[4])
    )  # fmt: skip
    assert 6 <= chosen <= 8 and 6.0 <= p95 <= 7.0 and 2.5 <= p50 <= 3.5 and positives > 500
    assert "override with --maturity" in text
    # Printed with the fold plan, and the training set is built with it.
    assert text.index("holdout:") < text.index(f"maturity {chosen}d, from the data")
    assert f"events older than {chosen}d at the cut-off are used" in text
    assert "Registered v1" in text

    # The model card keeps the evidence: `minder models show --json` has it, and it reads back.
    shown = runner.invoke(app, ["models", "show", "v1", "--json", "-p", str(week.root)])
    assert "95% of eventual positives are known within" in shown.output
    with Registry.open(week.root) as reg:
        card = reg.get("v1").card
    evidence = maturity_evidence(card)
    assert evidence is not None and evidence.how == "estimated"
    assert evidence.maturity == f"{chosen}d" == card.label_policy.maturity
    assert evidence.positives == positives

    # A card written before the evidence existed still reads, without it.
    old = card.to_json()
    del old["report"]["data"]["maturity"]
    older = ModelCard.from_json(json.loads(json.dumps(old)))
    assert maturity_evidence(older) is None and older.label_policy.maturity == f"{chosen}d"


def test_an_explicit_maturity_overrides_the_estimate(week: Project) -> None:
    text = train(week.root, "--maturity", "14d")
    assert "maturity 14d, given; the data suggests 7d: 95% of eventual" in text
    assert "events older than 14d at the cut-off are used" in text
    with Registry.open(week.root) as reg:
        latest = reg.list()[-1]
    assert latest.card.label_policy.maturity == "14d"
    evidence = maturity_evidence(latest.card)
    assert evidence is not None and evidence.how == "given"


def test_the_default_world_needs_a_longer_maturity(trained_world: Fixture) -> None:
    # Chargebacks a median 10 days late (log-normal): 95% are known after about 27 days.
    with trained_world.log() as log:
        end = log.max_event_ts()
        assert end is not None
        evidence = maturity_from_log(log, "auto", as_of=end + 1)
    assert evidence.how == "estimated" and evidence.delay_us is not None
    assert 24 <= int(evidence.maturity[:-1]) <= 30
    assert "chargeback p50 10." in evidence.reason


def test_too_few_positive_labels_fall_back_to_30d_and_say_so(tmp_path: Path) -> None:
    small = WorldConfig(days=50, cards=150, seed=4, fraud_card_share=0.25, schedule="steady")
    project = project_with(tmp_path / "few", small, keep_positives=20)
    text = train(project.root)
    assert (
        "maturity 30d, the fallback: only 20 positive labels known by the cut-off, fewer than "
        "the 30 needed to estimate how late labels arrive; set --maturity to choose one"
    ) in text
    assert "events older than 30d at the cut-off are used" in text


def test_a_bad_maturity_is_refused_naming_the_forms_allowed(week: Project) -> None:
    text = train(week.root, "--maturity", "a week")
    assert (
        "The 'maturity' must be 'auto' (estimate from the labels), 'auto:0.99' (another "
        "share), or a duration like '7d' or '36h'. Got 'a week'."
    ) in text
