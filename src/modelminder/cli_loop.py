"""``minder loop``, ``minder retrain``, ``minder backtest``: the retraining loop from the shell."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from modelminder.cli_common import ProjectOpt, console, out, parse_time, progress_bar
from modelminder.errors import MinderError


def loop(
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
    every: Annotated[
        str, typer.Option(help="Time between passes when not --once (a duration like 1h).")
    ] = "1h",
    project: ProjectOpt = Path("."),
) -> None:
    """Run the retraining loop: monitors, triggers ([loop] in minder.toml), retrain by
    replay, backtest against the champion, shadow, promote or wait for approval, probation
    and automatic rollback. Every step is an audit record; decisions print in plain words.

    Example: minder loop --once --project myproj
    """
    from modelminder.durations import parse_duration
    from modelminder.loop.engine import LockHeld, RunContext, run_once
    from modelminder.project import load_project

    pause = parse_duration(every, what="--every") / 1e6
    proj = load_project(project)
    while True:
        try:
            decisions = run_once(RunContext(proj, say=lambda m: console.print(m)))
        except LockHeld as exc:
            console.print(str(exc))
            decisions = []
        if not decisions:
            out.print("loop: nothing to do (no trigger fired; the stage did not change)")
        if once:
            return
        time.sleep(pause)


def retrain(
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "by hand",
    project: ProjectOpt = Path("."),
) -> None:
    """Retrain now: one loop pass with the retrain trigger fired by hand. The candidate is
    judged by the gate and the backtest, then shadows as any other (never champion at once).

    Example: minder retrain --reason "new fraud ring" --project myproj
    """
    from modelminder.loop.engine import RunContext, request_retrain, run_once
    from modelminder.project import load_project
    from modelminder.workflows import actor

    proj = load_project(project)
    request_retrain(proj, actor=actor(), reason=reason)
    run_once(RunContext(proj, say=lambda m: console.print(m)))


def backtest(
    start: Annotated[str, typer.Option("--from", help="First simulated day (ISO).")],
    end: Annotated[str, typer.Option("--to", help="End of the simulated range (ISO, excluded).")],
    policy: Annotated[
        Path | None,
        typer.Option(help="A TOML file with a [loop] table to try instead of minder.toml's."),
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Scratch project folder (default: PROJECT/backtest).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write the report page here (default: in workdir).")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Replay the project's history through the whole loop in simulated time (serving in
    order, labels as they became known, monitors, triggers, retrains, shadowing, promotions)
    and compare it with a frozen first model. The project itself is only read.

    Example: minder backtest --from 2026-02-15 --to 2026-05-01 --project myproj
    """
    from modelminder.loop.backtest import run_backtest
    from modelminder.loop.policyfile import read_policy
    from modelminder.project import load_project
    from modelminder.report.backtest_html import write

    proj = load_project(project)
    cfg = read_policy(policy) if policy is not None else proj.loop
    lo, hi = parse_time(start, "--from"), parse_time(end, "--to")
    if lo is None or hi is None:  # required options: typer enforces them
        raise MinderError("--from and --to are required.")
    folder = workdir or proj.root / "backtest"
    quiet = as_json or not console.is_terminal
    with progress_bar() as bar:
        task = bar.add_task("simulated days", total=None, visible=not quiet)

        def step(done: int, total: int, day: str) -> None:
            bar.update(task, completed=done, total=total, description=f"simulated {day}")

        result = run_backtest(
            proj, from_ts=lo, to_ts=hi, workdir=folder, config=cfg, progress=step,
            say=(lambda _m: None) if as_json else (lambda m: console.print(m)),
        )  # fmt: skip
    data = result.to_json()
    (folder / "backtest.json").write_text(json.dumps(data, indent=1))
    page = write(data, html or folder / "backtest.html")
    if as_json:
        print(json.dumps(data))
        return
    _print(data)
    out.print(f"written: {folder / 'backtest.json'}, {page}")


def _print(data: dict[str, object]) -> None:
    from rich.table import Table

    metric = str(data["metric"]).replace("_", " ")
    table = Table(title=f"{metric} per {data['window_days']}-day window: loop vs frozen")
    for c in ("window", "events", "frauds", "outcomes known", "looped", "frozen", "served by"):
        table.add_column(c, justify="left" if c in ("window", "served by") else "right")
    for w in data["windows"]:  # type: ignore[attr-defined]
        table.add_row(
            w["window"], f"{w['rows']:,}", f"{w['positives']:,}", f"{w['coverage']:.0%}",
            _num(w["looped"]), _num(w["frozen"]), w["versions"],
        )  # fmt: skip
    out.print(table)
    out.print("decisions:")
    for d in data["decisions"]:  # type: ignore[attr-defined]
        out.print(f"  {d['date']}: {d['text']}")
    out.print(f"frozen first model: {data['frozen_version']}; {data['seconds']} s")


def _num(v: object) -> str:
    return "-" if v is None else f"{float(v):.3f}"  # type: ignore[arg-type]


def approve(
    version: Annotated[str, typer.Argument(help="The candidate waiting for approval.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Approve the candidate the loop is holding for a human ([loop].promotion = "approve"):
    it becomes champion at once, through the checked path; the previous champion shadows it.

    Example: minder models approve v7 --project myproj
    """
    from modelminder.loop.engine import approve as do_approve
    from modelminder.project import load_project
    from modelminder.workflows import actor

    out.print(do_approve(load_project(project), version, actor=actor()))


def status(project: ProjectOpt = Path(".")) -> None:
    """Where the loop stands: its stage, the candidate, the last retrain.

    Example: minder loop-status --project myproj
    """
    from modelminder.loop.engine import current_state
    from modelminder.project import load_project

    s = current_state(load_project(project))
    out.print(
        f"stage {s.stage}; candidate {s.candidate or '-'}; previous {s.previous or '-'}; "
        f"retrains {s.retrains}"
    )


def register_loop(app: typer.Typer, models: typer.Typer | None = None) -> None:
    app.command()(loop)
    app.command("loop-status")(status)
    app.command()(retrain)
    app.command()(backtest)
    if models is not None:
        models.command()(approve)


__all__ = ["MinderError", "register_loop"]
