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
    held = claimed.output.split("event ")[1].split()[0]  # alice's item: bob takes another
    other = next(e for e in ("e0", "e1", "e2") if e != held)
    taken = run.invoke(
        app, ["review", "label", held, "fraud", "--reviewer", "bob", "--project", root]
    )
    assert taken.exit_code != 0 and "held by alice" in str(taken.exception)
    labelled = run.invoke(
        app, ["review", "label", other, "fraud", "--reviewer", "bob", "--project", root]
    )
    assert labelled.exit_code == 0, labelled.output
    assert "closed by bob" in labelled.output
    bad = run.invoke(
        app, ["review", "label", other, "legit", "--reviewer", "bob", "--project", root]
    )
    assert bad.exit_code != 0 and "already closed" in str(bad.exception)
    # A correction is a new label (the next revision), never an overwrite.
    fixed = run.invoke(
        app, ["review", "correct", other, "legit", "--note", "receipt found", "--reviewer",
              "carol", "--project", root],
    )  # fmt: skip
    assert fixed.exit_code == 0, fixed.output
    stats = run.invoke(app, ["review", "stats", "--project", root])
    assert "reviewed today: 1 of 200" in stats.output and "legit 1" in stats.output
    with load_project(root).open_log() as log:
        labels = log.read("labels")
    columns = ("event_id", "is_fraud", "source", "revision", "reviewer", "note")
    assert labels.select(columns).rows() == [
        (other, 1.0, "review", 0, "bob", ""), (other, 0.0, "review", 1, "carol", "receipt found")
    ]  # fmt: skip
