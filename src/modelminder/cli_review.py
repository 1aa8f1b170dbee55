"""``minder review ...``: the human review queue from the terminal (see modelminder.review)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from modelminder.cli_common import ProjectOpt, out

if TYPE_CHECKING:
    from modelminder.review.queue import ReviewItem, ReviewQueue

review_app = typer.Typer(help="The human review queue: list, claim, label, stats.")
ReviewerOpt = Annotated[
    str | None,
    typer.Option(help="Who reviews (default: $MODELMINDER_ACTOR, else the OS user)."),
]


@contextmanager
def _queue(project: Path) -> Iterator[tuple[ReviewQueue, int]]:
    from modelminder.project import load_project
    from modelminder.review.queue import ReviewQueue

    proj = load_project(project)
    with proj.open_log() as log:
        yield ReviewQueue(log, proj.review), log.clock.now_us()


def _who(reviewer: str | None) -> str:
    from modelminder.workflows import actor

    return reviewer or actor()


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _show(item: ReviewItem) -> None:
    out.print(
        f"item {item.item_id}: event {item.event_id} at {_when(item.ts)}, score "
        f"{item.score:.3f} ({item.decision}) by {item.model_version}; queued for "
        f"{', '.join(item.reasons)} (p={item.propensity:.3g}); {item.status}"
        + (f" by {item.reviewer}" if item.reviewer else "")
    )


@review_app.command("queue")
def queue(
    status: Annotated[str | None, typer.Option(help="open, leased, closed or expired.")] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="must_review, uncertain, disagreement, drift or exploration."),
    ] = None,
    sort: Annotated[str, typer.Option(help="order (the claim order), priority or age.")] = "order",
    limit: Annotated[int, typer.Option(help="At most this many items.")] = 30,
    project: ProjectOpt = Path("."),
) -> None:
    """List review items in the order reviewers get them, with why each was queued, its
    probability and its priority (the expected value of a review).

    Example: minder review queue --status open --reason uncertain --project myproj
    """
    with _queue(project) as (q, now):
        items = q.items(now=now, status=status, reason=reason, limit=limit, sort=sort)
    table = Table(title=f"{len(items)} review item(s)")
    for col in ("item", "event", "time", "score", "decision", "reasons", "p", "priority",
                "status"):  # fmt: skip
        table.add_column(col)
    for i in items:
        table.add_row(
            str(i.item_id), i.event_id, _when(i.ts), f"{i.score:.3f}", i.decision,
            ",".join(i.reasons), f"{i.propensity:.3g}", f"{i.priority:.3g}",
            i.status + (f" ({i.reviewer})" if i.reviewer else ""),
        )  # fmt: skip
    out.print(table)


@review_app.command("next")
def next_item(reviewer: ReviewerOpt = None, project: ProjectOpt = Path(".")) -> None:
    """Claim the open item of highest priority (a lease of [review].lease) and show it.

    Example: minder review next --reviewer alice --project myproj
    """
    with _queue(project) as (q, now):
        item = q.claim(_who(reviewer), now=now)
    _show(item)
    out.print(f"label it: minder review label {item.event_id} fraud|legit|unsure")


@review_app.command("label")
def label(
    event_id: Annotated[str, typer.Argument(help="The event of the item.")],
    verdict: Annotated[str, typer.Argument(help="fraud, legit or unsure.")],
    note: Annotated[str, typer.Option(help="Why (kept with the review).")] = "",
    reviewer: ReviewerOpt = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Record a verdict on an item (claiming it first if it is open); fraud/legit become
    labels in the log (source review).

    Example: minder review label ev000123 fraud --note testing --project myproj
    """
    who = _who(reviewer)
    with _queue(project) as (q, now):
        item = q.by_event(event_id, now=now)
        if item.status == "open":
            item = q.claim(who, now=now, item_id=item.item_id)
        done = q.label(item.item_id, who, verdict, now=now, note=note)
    _show(done)


@review_app.command("correct")
def correct(
    event_id: Annotated[str, typer.Argument(help="The event of a closed item.")],
    verdict: Annotated[str, typer.Argument(help="fraud, legit or unsure.")],
    note: Annotated[str, typer.Option(help="Why the verdict changes.")] = "",
    reviewer: ReviewerOpt = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Change a closed item's verdict: a new label (the next revision), never an overwrite.

    Example: minder review correct ev000123 legit --note receipt --project myproj
    """
    who = _who(reviewer)
    with _queue(project) as (q, now):
        item = q.by_event(event_id, now=now)
        done = q.correct(item.item_id, who, verdict, now=now, note=note)
    _show(done)


@review_app.command("case")
def case(
    event_id: Annotated[str, typer.Argument(help="An event, e.g. a confirmed fraud.")],
    label: Annotated[
        str | None, typer.Option(help="Label the listed events: fraud, legit or unsure.")
    ] = None,
    events: Annotated[
        str | None, typer.Option(help="Comma-separated event ids to label (default: all shown).")
    ] = None,
    note: Annotated[str, typer.Option(help="Why (kept with each label).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 20,
    reviewer: ReviewerOpt = None,
    project: ProjectOpt = Path("."),
) -> None:
    """The case view: the other recent events of an event's card (its entity), with their
    scores and labels; with --label, label them in one go (each its own label event).

    Example: minder review case ev000123 --label fraud --events ev000120,ev000121
    """
    from modelminder.errors import SchemaError
    from modelminder.events.predictions import PredictionTopic
    from modelminder.project import load_project
    from modelminder.review.case import entity_keys, history
    from modelminder.review.queue import ReviewQueue

    proj = load_project(project)
    with proj.open_log() as log:
        keys = entity_keys(proj.plan())
        past = history(log, PredictionTopic(log), event_id, keys, limit=limit)
        table = Table(title=f"{len(past)} other event(s) of {', '.join(keys)} near {event_id}")
        for col in ("event", "time", "score", "decision", "labels"):
            table.add_column(col)
        for e in past:
            table.add_row(
                e.event_id, _when(e.ts),
                "-" if e.served is None else f"{e.served.score:.3f}",
                "-" if e.served is None else e.served.decision,
                ", ".join(f"{'fraud' if x.value else 'legit'} ({x.source})" for x in e.labels),
            )  # fmt: skip
        out.print(table)
        if label is None:
            return
        shown = [e.event_id for e in past]
        chosen = [x.strip() for x in events.split(",") if x.strip()] if events else shown
        strays = [x for x in chosen if x not in shown]
        if strays:
            raise SchemaError(
                f"--events must be among the events shown; {strays[0]!r} is not. Shown: "
                f"{', '.join(shown) or '(none)'}."
            )
        n = ReviewQueue(log, proj.review).label_events(
            dict.fromkeys(chosen, label), _who(reviewer), now=log.clock.now_us(), note=note
        )
    out.print(f"{n} label(s) appended (source review), one per event.")


@review_app.command("stats")
def stats(project: ProjectOpt = Path(".")) -> None:
    """Items by status and reason, verdicts, reviewed today against the budget, turnaround.

    Example: minder review stats --project myproj
    """
    with _queue(project) as (q, now):
        s = q.stats(now=now)
    out.print(
        f"{s['items']} item(s): "
        + ", ".join(f"{k} {v}" for k, v in s["by_status"].items())
        + "; reasons: "
        + ", ".join(f"{k} {v}" for k, v in s["by_reason"].items())
    )
    out.print("verdicts: " + ", ".join(f"{k} {v}" for k, v in s["verdicts"].items()))
    turn = s["median_turnaround_s"]
    agree = s["agreement"]
    out.print(
        f"reviewed today: {s['reviewed_today']} of {s['daily_budget']}; skips {s['skips']}; "
        "median turnaround "
        + ("-" if turn is None else f"{turn / 3600:.1f} h")
        + "; reviewer agreement on the overlap sample: "
        + (f"{agree['rate']:.0%} of {agree['items']}" if agree["rate"] is not None else "-")
    )


def register_review(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
