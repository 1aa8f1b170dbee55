"""``minder train``, ``minder models ...``, ``minder score``, ``minder evaluate``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from modelminder.cli_common import ProjectOpt, console, out, parse_time, progress_bar
from modelminder.errors import MinderError

if TYPE_CHECKING:
    from modelminder.model.card import ScoreSet

models_app = typer.Typer(help="List, inspect, promote and roll back model versions.")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _scores_table(scores: ScoreSet) -> Table:
    table = Table(title="Scores (AUC / average precision / recall at 1% alert rate)")
    for col in ("", "AUC", "avg precision", "recall@1%", "rows", "positives"):
        table.add_column(col, justify="left" if not col else "right")
    labels = {
        "train": "train (in-sample)",
        "validation": "validation (purged folds)",
        "oot": "out-of-time holdout",
        "baseline_oot": "baseline on holdout",
    }
    for name, s in scores.rows():
        table.add_row(
            labels[name],
            _fmt(s.auc),
            _fmt(s.average_precision),
            _fmt(s.recall_at_alert_rate),
            f"{int(s.rows):,}",
            f"{int(s.positives):,}",
        )
    return table


def train(
    estimator: Annotated[
        str, typer.Option(help="lightgbm (default), logistic, or mlp (needs the \\[torch] extra).")
    ] = "lightgbm",
    trials: Annotated[int, typer.Option(help="Search trials (0: default parameters).")] = 10,
    cutoff: Annotated[
        str | None, typer.Option(help="Labels known by this time (default: the latest event).")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Oldest event to use.")] = None,
    folds: Annotated[int, typer.Option(help="Walk-forward validation folds.")] = 4,
    holdout: Annotated[float, typer.Option(help="Share of the latest rows held out.")] = 0.2,
    embargo: Annotated[str, typer.Option(help="Gap around validation blocks.")] = "1d",
    maturity: Annotated[
        str,
        typer.Option(
            help="Unlabelled events older than this count as negative: auto (estimated from how "
            "late positive labels arrive; auto:0.99 for another share) or a duration like 14d."
        ),
    ] = "auto",
    unlabeled: Annotated[
        str, typer.Option(help="negative_after_maturity (default) or exclude.")
    ] = "negative_after_maturity",
    scheme: Annotated[
        str, typer.Option(help="walk_forward (default) or random (optimistic; warned).")
    ] = "walk_forward",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    stack: Annotated[
        bool, typer.Option(help="Try stacking with the baseline; kept only if better out of time.")
    ] = False,
    recency_half_life: Annotated[
        str | None,
        typer.Option(
            help="Weigh training rows by recency: a row this old at the cut-off counts half "
            "(e.g. 30d). Default: every row counts the same."
        ),
    ] = None,
    report_html: Annotated[
        Path | None, typer.Option("--report-html", help="Write the guard report as HTML.")
    ] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Train a model under the guard and register it (accepted, or rejected with reasons).

    Prints the fold plan, the scores and the gate's verdict; exits 1 if the gate rejects.
    Example: minder train --trials 20 --cutoff 2026-03-01 --project myproj
    """
    from modelminder.events.outcomes import LabelPolicy
    from modelminder.project import load_project
    from modelminder.training.report import to_html
    from modelminder.training.train import TrainConfig
    from modelminder.workflows import train_and_register

    proj = load_project(project)
    config = TrainConfig(
        estimator=estimator, trials=trials, folds=folds, holdout=holdout, embargo=embargo,
        scheme=scheme, seed=seed, stack=stack, recency_half_life=recency_half_life,
    )  # fmt: skip
    policy = LabelPolicy(unlabeled)
    with progress_bar() as bar:
        stage = bar.add_task("building the training set", total=1)
        search_task = None
        best = [float("nan")]

        def say(message: str) -> None:
            bar.update(stage, description=message.splitlines()[0][:60])
            out.print(message)

        def on_trial(done: int, total: int, score: float) -> None:
            nonlocal search_task
            if search_task is None:
                search_task = bar.add_task("search", total=total)
            if not best[0] >= score:  # also replaces the initial NaN
                best[0] = score
            bar.update(search_task, completed=done, description=f"search (best AP {best[0]:.4f})")

        trained = train_and_register(
            proj,
            config,
            cutoff=parse_time(cutoff, "--cutoff"),
            from_ts=parse_time(from_, "--from"),
            policy=policy,
            maturity=maturity,
            progress=say,
            on_trial=on_trial,
        )
        bar.update(stage, total=1, completed=1, description="done")
    result = trained.result
    out.print(_scores_table(result.report.scores))
    gap = result.report.gap
    out.print(
        f"in-sample (train-vs-validation) AUC gap, information: {_fmt(gap.auc)} (per fold: "
        + ", ".join(_fmt(g) for g in gap.per_fold_auc)
        + f"; trend {gap.trend_per_fold:+.3f}/fold)"
    )
    for f in result.report.findings:
        out.print(f"[yellow]finding[/yellow] [{f.kind}] {f.message}")
    if report_html is not None:
        report_html.write_text(to_html(result.report))
        out.print(f"report: {report_html}")
    record = trained.record
    if result.verdict.passed:
        out.print(f"[green]{result.verdict.summary()}[/green]")
        out.print(
            f"Registered {record.version} (accepted). Promote it: "
            f"minder models promote {record.version} --project {project}"
        )
    else:
        out.print(f"[red]{result.verdict.summary()}[/red]")
        out.print(
            f"Registered {record.version} as REJECTED. It cannot become champion without "
            "--override (recorded)."
        )
        raise typer.Exit(1)


@models_app.command("list")
def list_models(project: ProjectOpt = Path(".")) -> None:
    """List model versions with status, out-of-time scores and aliases.

    Example: minder models list --project myproj
    """
    from modelminder.registry import Registry
    from modelminder.workflows import record_summary

    with Registry.open(project) as reg:
        aliases = reg.aliases()
        rows = [record_summary(r, aliases) for r in reg.list()]
    table = Table(title="Models")
    for col in ("version", "created", "status", "estimator", "OOT AUC", "OOT AP", "aliases"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["version"], r["created"], r["status"], r["estimator"], _fmt(r["oot_auc"]),
            _fmt(r["oot_ap"]), r["aliases"],
        )  # fmt: skip
    out.print(table if rows else "No models yet. Train one: minder train")


@models_app.command("show")
def show_model(
    version: Annotated[str, typer.Argument(help="A version (v3) or an alias (champion).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full record as JSON.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Show one model: data range, scores, the gate's checks, findings.

    Example: minder models show v3 --project myproj
    """
    from modelminder.registry import Registry
    from modelminder.registry.changes import resolve

    with Registry.open(project) as reg:
        record = reg.get(resolve(reg, version))
    if as_json:
        out.print_json(record.to_json())
        return
    card = record.card
    out.print(f"{record.version}: {record.status}, {card.estimator}, by {record.created_by}")
    data = card.training
    out.print(
        f"data: offsets {data.from_offset}..{data.to_offset}, cut-off {data.cutoff}, "
        f"counts {dict(data.counts)}"
    )
    from modelminder.training.dataset import maturity_evidence

    evidence = maturity_evidence(card)
    out.print(evidence.describe() if evidence else f"label policy: {data.label_policy.describe()}")
    out.print(_scores_table(card.metrics))
    for check in card.report.verdict.checks if card.report.verdict else ():
        mark = (
            "[blue]info[/blue]"
            if check.informational
            else "[green]ok[/green]"
            if check.passed
            else "[red]FAIL[/red]"
        )
        out.print(f"  {mark} {check.message}")
    for f in card.report.findings:
        out.print(f"  [yellow]finding[/yellow] [{f.kind}] {f.message}")


@models_app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="The version to promote, e.g. v3.")],
    alias: Annotated[str, typer.Option(help="champion, challenger or shadow.")] = "champion",
    override: Annotated[
        bool, typer.Option(help="Promote a rejected model anyway (recorded; needs --reason).")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    project: ProjectOpt = Path("."),
) -> None:
    """Point an alias at a version (audited). Rejected models need --override --reason.

    Example: minder models promote v3 --alias champion --project myproj
    """
    from modelminder.project import load_project
    from modelminder.registry import changes
    from modelminder.workflows import actor

    proj = load_project(project)
    with proj.open_log() as log:
        loaded = changes.promote(
            proj.root, log, version, alias=alias, fingerprint=proj.fingerprint(),
            actor=actor(), reason=reason, override=override,
        )  # fmt: skip
    out.print(f"{alias} -> {loaded.version}")


@models_app.command("rollback")
def rollback(
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "rollback",
    project: ProjectOpt = Path("."),
) -> None:
    """Move champion back to the previous champion (audited).

    Example: minder models rollback --reason "precision dropped" --project myproj
    """
    from modelminder.project import load_project
    from modelminder.registry import changes
    from modelminder.workflows import actor

    proj = load_project(project)
    with proj.open_log() as log:
        loaded = changes.rollback(
            proj.root, log, fingerprint=proj.fingerprint(), actor=actor(), reason=reason
        )
    out.print(f"champion -> {loaded.version}")


def score(
    out_file: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    model: Annotated[str, typer.Option(help="A version or an alias.")] = "champion",
    from_: Annotated[str | None, typer.Option("--from", help="Start time (inclusive).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End time (exclusive).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Batch-score a time range of the log with any model version (for backtests).

    Writes event_id, ts, score.

    Example: minder score --model v2 --from 2026-03-01 --out s.parquet
    """
    from modelminder.project import load_project
    from modelminder.workflows import score_range

    proj = load_project(project)
    with console.status("scoring"):
        table = score_range(
            proj, model, from_ts=parse_time(from_, "--from"), to_ts=parse_time(to, "--to")
        )
    tmp = out_file.with_suffix(out_file.suffix + ".tmp")
    table.write_parquet(tmp)
    tmp.replace(out_file)
    out.print(f"Wrote {table.height:,} scores by {model} to {out_file}")


def evaluate(
    model: Annotated[str, typer.Option(help="A version or an alias.")] = "champion",
    from_: Annotated[str | None, typer.Option("--from", help="Start time (inclusive).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End time (exclusive).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Metrics of a model on a time range, with the labels known now: per day and overall.

    Example: minder evaluate --model champion --from 2026-02-01 --to 2026-03-01
    """
    from modelminder.project import load_project
    from modelminder.workflows import evaluate_range

    proj = load_project(project)
    with console.status("evaluating"):
        overall, days, note = evaluate_range(
            proj, model, from_ts=parse_time(from_, "--from"), to_ts=parse_time(to, "--to")
        )
    table = Table(title=f"{model}: per day")
    for col in ("day", "AUC", "avg precision", "recall@1%", "rows", "positives"):
        table.add_column(col, justify="right")
    for r in days.iter_rows(named=True):
        table.add_row(
            r["day"], _fmt(r["auc"]), _fmt(r["average_precision"]),
            _fmt(r["recall_at_alert_rate"]), f"{int(r['rows']):,}", f"{int(r['positives']):,}",
        )  # fmt: skip
    out.print(table)
    out.print(
        f"overall: AUC {_fmt(overall['auc'])}, average precision "
        f"{_fmt(overall['average_precision'])}, recall at 1% alert rate "
        f"{_fmt(overall['recall_at_alert_rate'])} on {int(overall['rows']):,} events; {note}"
    )


def register_commands(app: typer.Typer) -> None:
    """Add these commands to the ``minder`` app."""
    app.command()(train)
    app.command()(score)
    app.command()(evaluate)
    app.add_typer(models_app, name="models")


__all__ = ["MinderError", "register_commands"]
