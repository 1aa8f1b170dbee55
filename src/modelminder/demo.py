"""``make demo``: simulate a card-fraud world, ingest it, replay features, train under the
guard, promote a champion; show the numbers."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from modelminder.logreplay import compare_tables, replay_log, replay_log_online
from modelminder.project import Project, init_project, load_project
from modelminder.registry import changes
from modelminder.serving.stream import play
from modelminder.sim.world import World, WorldConfig, simulate
from modelminder.training.train import TrainConfig
from modelminder.workflows import check_skew, train_and_register


def run_demo(
    workdir: Path,
    *,
    days: int,
    cards: int,
    seed: int,
    console: Console,
    schedule: str = "steady",
    trials: int = 0,
    live_events: int = 5_000,
    loop_days: int = 100,
    loop_cards: int = 1_000,
) -> None:
    """Run the demo story in ``workdir`` (recreated) and print what happened."""
    if workdir.exists():
        shutil.rmtree(workdir)
    init_project(workdir, builtin=True)
    project = load_project(workdir)

    t0 = time.perf_counter()
    world = simulate(
        WorldConfig(days=days, cards=cards, seed=seed, schedule=schedule, fraud_card_share=0.15)
    )
    console.print(
        f"1. Simulated {days} days x {cards:,} cards: {world.events.height:,} transactions, "
        f"{int(world.truth.get_column('is_fraud').sum()):,} fraudulent, "
        f"{world.labels.height:,} labels known by the end ({time.perf_counter() - t0:.1f}s)."
    )
    scen = world.truth.filter(pl.col("scenario") != "").group_by("scenario").len().sort("scenario")
    console.print(
        "   fraud scenarios: "
        + ", ".join(f"{r['scenario']}={r['len']}" for r in scen.iter_rows(named=True))
    )

    # History: all but the last `live_events` events, with the labels known by then. The rest
    # arrives later, live (step 6).
    cut = world.events.height - min(live_events, world.events.height // 10)
    history = world.events.head(cut)
    seen_until = history.get_column("ts").max()
    log = project.open_log()
    t0 = time.perf_counter()
    ev = log.append_events(history)
    secs = time.perf_counter() - t0
    lab = log.append_labels(world.labels.filter(pl.col("label_ts") <= seen_until))
    console.print(
        f"2. Ingested the history into the embedded log: {ev.summary()} "
        f"({ev.inserted / secs:,.0f}/s)"
    )
    console.print(f"   {lab.summary()}")
    again = log.append_events(world.events.head(1000))
    console.print(f"   re-sending 1,000 events: {again.summary()}")

    plan = project.plan()
    t0 = time.perf_counter()
    table = replay_log(log, plan)
    secs = time.perf_counter() - t0
    console.print(
        f"3. Replayed {len(plan.names)} features over {table.height:,} events in {secs:.1f}s "
        f"({table.height / secs:,.0f} events/s, including reading the log)."
    )
    table.write_parquet(workdir / "features.parquet")

    stats = Table(title="Feature statistics (replay)")
    for col in ("feature", "mean", "std", "min", "max", "missing %"):
        stats.add_column(col, justify="left" if col == "feature" else "right")
    for name in plan.names:
        s = table.get_column(name)
        finite = s.filter(s.is_not_nan()).to_numpy()
        stats.add_row(
            name,
            f"{finite.mean():.3f}" if len(finite) else "-",
            f"{finite.std(ddof=1):.3f}" if len(finite) > 1 else "-",
            f"{finite.min():.3f}" if len(finite) else "-",
            f"{finite.max():.3f}" if len(finite) else "-",
            f"{100 * (1 - len(finite) / max(s.len(), 1)):.1f}",
        )
    console.print(stats)

    sample = min(20_000, table.height)
    to_offset = log.offset_of_nth(sample)
    t0 = time.perf_counter()
    online = replay_log_online(log, plan, to_offset=to_offset)
    secs = time.perf_counter() - t0
    report = compare_tables(table.head(sample), online, plan.names)
    verdict = "identical" if report.ok else f"MISMATCHES {report.mismatches}"
    console.print(
        f"4. Fed the first {sample:,} events one by one through the online path "
        f"({secs / sample * 1e6:,.0f} us/event incl. Python adapter): features {verdict} to "
        "replay."
    )
    log.close()

    t0 = time.perf_counter()
    trained = train_and_register(project, TrainConfig(trials=trials, folds=4))
    result = trained.result
    sc = dict(result.report.scores.rows())
    console.print(f"5. Guarded training ({time.perf_counter() - t0:.0f}s): {trained.data_summary}.")
    for line in result.report.fold_plan:
        console.print(f"   {line}")
    for name, label in (
        ("train", "train (in-sample)"),
        ("validation", "purged walk-forward validation"),
        ("oot", "out-of-time holdout"),
        ("baseline_oot", "logistic baseline, out of time"),
    ):
        if name in sc:
            console.print(
                f"   {label:32} AUC {sc[name].auc:.3f}  average precision "
                f"{sc[name].average_precision:.3f}  recall at 1% alerts "
                f"{sc[name].recall_at_alert_rate:.3f}"
            )
    console.print(f"   gate: {result.verdict.summary()}")
    record = trained.record
    if result.verdict.passed:
        with project.open_log() as log:
            changes.promote(
                project.root, log, record.version, fingerprint=project.fingerprint(),
                actor="demo", reason="passed the gate",
            )  # fmt: skip
        console.print(f"   registered {record.version} and promoted it to champion (audited).")
    else:
        console.print(f"   registered {record.version} as rejected; no champion.")
        console.print(f"Outputs in {workdir}/ (minder.db, features.parquet, models/).")
        return

    live = world.events.slice(cut)
    later = world.labels.filter(pl.col("label_ts") > seen_until)
    t0 = time.perf_counter()
    streamed = play(project, live, later)
    console.print(
        f"6. Live: streamed the next {live.height:,} events and {later.height:,} labels through "
        f"the serving path in {time.perf_counter() - t0:.0f}s: {streamed.summary()}."
    )
    report, n = check_skew(project)
    verdict = "no skew" if report.ok else f"SKEW {report.mismatches}"
    console.print(
        f"7. Skew check: replayed the log and compared all {len(report.mismatches)} features of "
        f"the {n:,} served events with what was served: {verdict}."
    )
    from modelminder.monitoring.monitor import MonitorConfig, run_monitor

    # The simulated world ends at midnight after its last day: judge as of then, so the last
    # day counts as a whole window (a live run would judge as of its own clock).
    day = 86_400_000_000
    world_end = (int(live.select(pl.col("ts").dt.epoch("us").max()).item()) // day + 1) * day
    _review(project, world, world_end - 3_600_000_000, console)
    t0 = time.perf_counter()
    # Daily windows: a shorter window sees only part of the day, and a feature like the hour
    # of day would "drift" against a reference of whole days.
    watched = run_monitor(project, MonitorConfig(window="day", skew_sample=0, as_of=world_end))
    kinds = sorted({a.kind for a in watched.alerts})
    drifted = sorted({a.subject for a in watched.alerts if a.kind == "data_drift"})
    console.print(
        f"9. Monitor ({time.perf_counter() - t0:.0f}s): {watched.windows.height} daily window(s) "
        f"of served events, {len(watched.alerts)} alert(s) "
        f"({', '.join(kinds) or 'none'}); drifting: {', '.join(drifted[:5]) or 'nothing'}. "
        f"Labels for these days have not arrived yet, so performance is the label-free "
        f"estimate. See: minder monitor --project {workdir}"
    )
    from modelminder.report.monitor_html import write

    page = write(watched, workdir / "report.html")
    console.print(f"   report with plots (works offline): {page}")
    if loop_days:
        _loop(workdir / "loop", days=loop_days, cards=loop_cards, seed=seed, console=console)
    console.print(f"Outputs in {workdir}/ (minder.db, features.parquet, models/, serving.db).")


def _loop(root: Path, *, days: int, cards: int, seed: int, console: Console) -> None:
    """Step 10: the retraining loop backtested on an adaptive world (fraudsters change
    tactics; chargebacks within a week), next to the first model left frozen."""
    from modelminder.loop.backtest import run_backtest
    from modelminder.report.backtest_html import write as write_backtest

    t0 = time.perf_counter()
    init_project(root, builtin=True)
    project = load_project(root)
    world = simulate(WorldConfig(
        days=days, cards=cards, seed=seed, schedule="adaptive", fraud_card_share=0.15,
        label_delay_days=2.5, max_label_delay_days=7.0,
    ))  # fmt: skip
    with project.open_log() as log:
        log.append_events(world.events)
        log.append_labels(world.labels)
    day = 86_400_000_000
    first = int(world.events.select(pl.col("ts").dt.epoch("us").min()).item()) // day * day
    start, end = first + (days // 3) * day, first + days * day
    console.print(
        f"10. The loop: an adaptive world of {days} days x {cards:,} cards "
        f"({world.events.height:,} transactions; chargebacks within 7 days) backtested from "
        f"day {days // 3} in simulated time: serving, labels as they arrive, monitors, "
        "triggers, retrains, shadow, promotion; the first model is also kept frozen."
    )
    # The loop's decisions as they happen (the backtest takes minutes).
    result = run_backtest(
        project, from_ts=start, to_ts=end, workdir=root / "backtest",
        say=lambda m: console.print(f"   {m}") if m[:2] == "20" and ": " in m[:12] else None,
    )  # fmt: skip
    table = Table(title="recall at 1% alerts per week: with the loop vs frozen")
    for c in ("week", "frauds", "with the loop", "frozen", "served by"):
        table.add_column(c, justify="left" if c in ("week", "served by") else "right")
    for w in result.windows.iter_rows(named=True):
        table.add_row(
            _iso_day(w["window_start"]), f"{w['positives']:,}", _fmt(w["looped"]),
            _fmt(w["frozen"]), w["versions"],
        )  # fmt: skip
    console.print(table)
    page = write_backtest(result.to_json(), root / "backtest.html")
    console.print(f"   ({time.perf_counter() - t0:.0f}s) loop report with plots: {page}")


def _fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def _iso_day(us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d")


def _review(project: Project, world: World, at: int, console: Console) -> None:
    """Step 8: a reviewer (who knows the simulator's truth) works the queue the live path
    filled, within the daily budget; the review-based recall, naive and corrected, against
    the true recall over the served traffic."""
    from modelminder.events.predictions import PredictionTopic
    from modelminder.review.estimate import Estimate, estimate_review_metrics
    from modelminder.review.queue import ReviewError, ReviewQueue
    from modelminder.review.sample import review_sample

    truth = dict(world.truth.select("event_id", "is_fraud").iter_rows())
    with project.open_log() as log:
        queue = ReviewQueue(log, project.review)
        reviewed = 0
        while True:
            try:
                item = queue.claim("demo reviewer", now=at + reviewed)
            except ReviewError:
                break
            verdict = "fraud" if truth[item.event_id] else "legit"
            queue.label(item.item_id, "demo reviewer", verdict, now=at + reviewed)
            reviewed += 1
        stats = queue.stats(now=at + reviewed)
        sample = review_sample(queue, now=at + reviewed)
        served = PredictionTopic(log).frame(features=False).select("event_id", "decision")
    console.print(
        f"8. Human review: the live path queued {stats['items']:,} of the served events ("
        + ", ".join(f"{k} {v}" for k, v in stats["by_reason"].items() if v)
        + f"), each with its probability; a reviewer labelled {reviewed:,} within the daily "
        f"budget of {stats['daily_budget']} (labels in the log, source review)."
    )
    if sample.items.height == 0:
        return
    flagged = served.get_column("decision") != "approve"
    fraud = served.get_column("event_id").replace_strict(truth, default=0) == 1
    est = estimate_review_metrics(sample.items)

    def shown(e: Estimate) -> str:
        return f"{e.value:.3f} \\[{e.low:.3f}, {e.high:.3f}]"

    console.print(
        f"   fraud rate from review labels: {shown(est.fraud_rate.naive)} on the reviewed "
        f"items (naive), {shown(est.fraud_rate.corrected)} over all traffic (corrected for "
        f"selection); the simulator's truth: {int(fraud.sum()) / max(fraud.len(), 1):.3f}."
    )
    if int(fraud.sum()):
        r = est.recall
        true_recall = (flagged & fraud).sum() / int(fraud.sum())
        console.print(
            f"   recall: {shown(r.naive)} naive, {shown(r.corrected)} corrected; truth "
            f"{true_recall:.3f}."
        )
    else:
        console.print(
            "   recall is undefined here: the simulated world's fraud campaigns are over by "
            "its last day, so none of the live events is fraud (docs/review-estimates.md has "
            "the study with fraud)."
        )
