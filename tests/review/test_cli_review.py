"""``minder review`` end to end on a project whose queue holds a few served events."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from modelminder.cli import app
from modelminder.project import load_project

from .factories import queued_project


def test_queue_next_label_stats(tmp_path: Path) -> None:
    root = str(queued_project(tmp_path / "p"))
    run = CliRunner()
    listed = run.invoke(app, ["review", "queue", "--project", root])
    assert listed.exit_code == 0 and "3 review item(s)" in listed.output
    claimed = run.invoke(app, ["review", "next", "--reviewer", "alice", "--project", root])
    assert claimed.exit_code == 0 and "leased by alice" in claimed.output
    labelled = run.invoke(
        app, ["review", "label", "e2", "fraud", "--reviewer", "bob", "--project", root]
    )
    assert labelled.exit_code == 0, labelled.output
    assert "closed by bob" in labelled.output
    bad = run.invoke(
        app, ["review", "label", "e2", "legit", "--reviewer", "bob", "--project", root]
    )
    assert bad.exit_code != 0 and "already closed" in str(bad.exception)
    stats = run.invoke(app, ["review", "stats", "--project", root])
    assert "reviewed today" in stats.output and "fraud 1" in stats.output
    with load_project(root).open_log() as log:
        labels = log.read("labels")
    assert labels.select("event_id", "is_fraud", "source").rows() == [("e2", 1.0, "review")]
