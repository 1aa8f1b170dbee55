"""minder train / models / score / evaluate, end to end, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sklearn.dummy import DummyClassifier
from typer.testing import CliRunner

from modelminder.cli import app
from modelminder.errors import MinderError
from modelminder.project import init_project
from modelminder.sim.world import WorldConfig, simulate
from modelminder.training.gate import GateRules
from modelminder.training.train import TrainConfig
from modelminder.workflows import train_and_register

from .conftest import Fixture

runner = CliRunner()


def minder(*args: str) -> tuple[int, str]:
    """Run a command as a user would: modelminder errors become exit code 2 and a message."""
    result = runner.invoke(app, list(args))
    if isinstance(result.exception, MinderError):
        return 2, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_train_promote_score_evaluate_rollback(trained_world: Fixture, tmp_path: Path) -> None:
    root = str(trained_world.project.root)
    html = tmp_path / "report.html"
    code, text = minder(
        "train", "--trials", "0", "--folds", "3", "--report-html", str(html), "-p", root
    )
    assert code == 0, text
    page = html.read_text()
    assert "Overfitting &amp; leakage report" in page and "Learning curve" in page
    assert all(f"<td>{name}</td>" in page for name in ("train", "validation", "oot"))
    assert page.count("<tr>") > 10
    assert "fold 1:" in text and "holdout:" in text  # the fold plan is printed
    assert "PASSED" in text and "Registered v1 (accepted)" in text
    code, text = minder("models", "list", "-p", root)
    assert code == 0 and "v1" in text and "accepted" in text
    assert minder("models", "promote", "v1", "-p", root)[0] == 0

    scores = tmp_path / "scores.parquet"
    code, text = minder("score", "--from", "2026-04-01", "--out", str(scores), "-p", root)
    assert code == 0, text
    frame = pl.read_parquet(scores)
    assert frame.columns == ["event_id", "ts", "score"] and frame.height > 1000
    assert frame.get_column("score").is_between(0.0, 1.0).all()
    code, text = minder(
        "evaluate", "--model", "v1", "--from", "2026-02-01", "--to", "2026-03-01", "-p", root
    )
    assert code == 0, text
    assert "overall: AUC 0.9" in text and "known outcome" in text

    # A rejected model is registered with its reasons and cannot become champion quietly.
    rejected = train_and_register(
        trained_world.project,
        TrainConfig(estimator=DummyClassifier(strategy="prior"), trials=0, folds=3),
        rules=GateRules(),
    )
    assert rejected.record.status == "rejected" and rejected.record.reasons
    code, text = minder("models", "promote", "v2", "-p", root)
    assert code == 2 and "override" in text
    code, text = minder("models", "promote", "v2", "--override", "--reason", "drill", "-p", root)
    assert code == 0, text
    code, text = minder("models", "rollback", "--reason", "drill over", "-p", root)
    assert code == 0 and "champion -> v1" in text
    with trained_world.log() as log:
        audit = log.read("audit")
    changes = [json.loads(p) for p in audit.get_column("payload").to_list()]
    assert [c.get("version") for c in changes if "alias" in c][-3:] == ["v1", "v2", "v1"]
    assert any(c.get("override") for c in changes)

    # Tampering with an artifact is caught on load.
    member = Path(root) / "models" / "v1" / "member_0.txt"
    data = bytearray(member.read_bytes())
    data[100] ^= 1
    member.write_bytes(bytes(data))
    code, text = minder("score", "--model", "v1", "--out", str(scores), "-p", root)
    assert code == 2 and "member_0.txt" in text and "tampered" in text


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    init_project(root, builtin=True)
    world = simulate(WorldConfig(days=100, cards=60, seed=2, schedule="steady"))
    world.events.write_parquet(tmp_path / "ev.parquet")
    world.labels.write_parquet(tmp_path / "lab.parquet")
    assert minder("ingest", str(tmp_path / "ev.parquet"), "-p", str(root))[0] == 0
    return root


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--estimator", "xgboost"], "Unknown estimator 'xgboost'. Allowed: lightgbm"),
        (["--cutoff", "2099-01-01"], "is in the future"),
        (["--from", "2026-05-01", "--cutoff", "2026-04-01"], "range is empty"),
        (["--scheme", "shuffle"], "'scheme' must be one of walk_forward, random"),
        (["--maturity", "soon"], "maturity"),
        ([], "No labels are known by the cut-off"),
    ],
)
def test_bad_training_input_is_named(small_project: Path, args: list[str], needle: str) -> None:
    code, text = minder("train", *args, "-p", str(small_project))
    assert code == 2
    assert needle in text


def test_a_single_class_is_refused(small_project: Path, tmp_path: Path) -> None:
    labels = pl.read_parquet(tmp_path / "lab.parquet").filter(pl.col("is_fraud") == 0)
    labels.write_parquet(tmp_path / "neg.parquet")
    root = str(small_project)
    assert minder("ingest", str(tmp_path / "neg.parquet"), "--topic", "labels", "-p", root)[0] == 0
    code, text = minder("train", "-p", root)
    assert code == 2 and "is negative: a model needs both classes" in text


def test_nothing_to_promote_or_score_yet(small_project: Path, tmp_path: Path) -> None:
    root = str(small_project)
    code, text = minder("score", "--out", str(tmp_path / "s.parquet"), "-p", root)
    assert code == 2 and "No model is champion yet" in text
    code, text = minder("models", "rollback", "-p", root)
    assert code == 2 and "There is no champion to roll back" in text
