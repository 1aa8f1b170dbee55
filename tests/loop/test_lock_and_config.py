"""The loop's lease (two loops never work at once), its state fold and its configuration."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import polars as pl
import pytest

from modelminder.errors import ConfigError
from modelminder.events.log import EventLog
from modelminder.events.schema import EventSchema
from modelminder.loop.lock import LockHeld, LoopLock
from modelminder.loop.policyfile import read_policy
from modelminder.loop.state import fold
from modelminder.project import LoopConfig, init_project, load_project


def _race(path: str, barrier: object, results: object) -> None:
    log = EventLog.open(path, EventSchema({"card_id": "str"}))
    lock = LoopLock(log)
    barrier.wait()  # type: ignore[attr-defined]
    try:
        lock.acquire(now=1_000)
        results.put("won")  # type: ignore[attr-defined]
    except LockHeld:
        results.put("held")  # type: ignore[attr-defined]
    finally:
        log.close()


def test_of_four_processes_racing_for_the_lease_exactly_one_wins(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    EventLog.open(path, EventSchema({"card_id": "str"})).close()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = sorted(results.get(timeout=5) for _ in procs)
    assert got == ["held", "held", "held", "won"]


def test_a_crashed_holders_lease_expires_and_the_next_loop_takes_it(tmp_path: Path) -> None:
    log = EventLog.open(tmp_path / "log.db", EventSchema({"card_id": "str"}))
    crashed = LoopLock(log, holder="crashed", lease_us=100)
    crashed.acquire(now=0)  # and never releases
    with pytest.raises(LockHeld, match="crashed"):
        LoopLock(log, holder="next").acquire(now=50)
    assert LoopLock(log, holder="next").acquire(now=101).holder == "next"
    log.close()


def _records(*rows: tuple[int, str, dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(
        {"ts": [r[0] for r in rows], "kind": [r[1] for r in rows],
         "payload": [json.dumps(r[2]) for r in rows]}
    )  # fmt: skip


def test_the_state_is_the_fold_of_the_records() -> None:
    s = fold(_records(
        (1, "loop.retrain_started", {}), (2, "loop.retrain_finished", {"version": "v2"}),
        (3, "loop.shadow_started", {"version": "v2"}),
        (9, "loop.promoted", {"version": "v2", "previous": "v1"}),
    ))  # fmt: skip
    assert (s.stage, s.candidate, s.previous, s.since) == ("probation", "v2", "v1", 9)
    assert s.last_retrain_at == 2 and s.unfinished is None and s.retrains == 1
    done = fold(_records((1, "loop.promoted", {"version": "v2"}), (5, "loop.rolled_back", {})))
    assert done.stage == "idle" and done.candidate is None


def test_a_retrain_that_never_finished_is_visible_in_the_state() -> None:
    s = fold(_records((1, "loop.retrain_requested", {}), (4, "loop.retrain_started", {})))
    assert s.unfinished == 4 and not s.retrain_requested and s.stage == "idle"


def test_loop_config_errors_name_the_key_and_the_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[loop\]\.promotion must be one of auto, approve"):
        LoopConfig(promotion="sometimes")
    with pytest.raises(ConfigError, match=r"\[loop\]\.alert_kinds"):
        LoopConfig(alert_kinds=("performance", "bogus"))
    with pytest.raises(ConfigError, match=r"\[loop\]\.train_window"):
        LoopConfig(train_window="-5d")
    with pytest.raises(ConfigError, match=r"\[loop\]\.alert_rate must be a number"):
        LoopConfig(alert_rate=2.0)
    init_project(tmp_path / "p", builtin=True)
    toml = tmp_path / "p" / "minder.toml"
    toml.write_text(toml.read_text().replace('promotion = "auto"', 'promotion = "auto"\nbogus = 1'))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \[loop\]\.bogus"):
        load_project(tmp_path / "p")


def test_the_template_loop_section_loads_and_a_policy_file_overrides_it(tmp_path: Path) -> None:
    init_project(tmp_path / "p", builtin=True)
    assert load_project(tmp_path / "p").loop == LoopConfig()
    policy = tmp_path / "policy.toml"
    policy.write_text('[loop]\nschedule = ""\nnew_labels = 200\npromotion = "approve"\n')
    cfg = read_policy(policy)
    assert (cfg.schedule_us, cfg.new_labels, cfg.promotion) == (0, 200, "approve")
    policy.write_text("[loop]\nmargin = 3\n")
    with pytest.raises(ConfigError, match=r"policy.toml: \[loop\]\.margin"):
        read_policy(policy)


def test_the_configs_alert_kinds_are_the_monitors() -> None:
    from modelminder.monitoring.alerts import KINDS
    from modelminder.project import ALERT_KINDS

    assert ALERT_KINDS == KINDS


def test_a_lease_held_by_a_dead_process_of_this_host_is_taken_at_once(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    log = EventLog.open(tmp_path / "log.db", EventSchema({"card_id": "str"}))
    holder = f"{socket.gethostname()}:{dead.stdout.strip()}:abcd1234"
    LoopLock(log, holder=holder).acquire(now=0)
    taker = LoopLock(log, holder="next")
    assert taker.acquire(now=10).holder == "next"
    taker.release()
    alive = f"{socket.gethostname()}:{os.getpid()}:abcd1234"  # this very process
    LoopLock(log, holder=alive).acquire(now=20)
    with pytest.raises(LockHeld):
        LoopLock(log, holder="third").acquire(now=30)
    log.close()
