"""Drift report speed and accuracy vs Evidently's data-drift preset, on the same data.

Data: ``--events`` predictions (default 1M) over 30 daily windows (~33k rows each), 20 columns
(17 card-fraud-like numeric features, the model score, 2 categorical), against a reference of
200k rows (10k a day over the 20 days before, as a training sample would be). Every day --
reference days too -- gets its own small random offsets (a stable real stream varies more than
iid sampling). Days 0-19 are stable; on days 20-29 known features drift (a mean shift, a wider
spread, a subtle shift, more missing values, a new channel, a country mix change), and on days
27-29 the relation of ``amount`` to the card's history breaks while every marginal stays put
(the multivariate signal's case).

modelminder: build the Reference from the reference rows (one chunk per day, as long as a
window), then one report over the 30 windows (best of ``--repeat``, each with a fresh
monitor). Evidently 0.7.23, in its own virtualenv (``bench-data/evidently-venv``, created on
first run, with pandas < 3, which 0.7.23 needs): its ``DataDriftPreset`` with tests, per
window against the reference, in a subprocess reading the same Parquet files. Timed there are
the datasets, the report runs and reading their results -- not the venv, the Parquet reading
or the split into days. A feature counts as flagged by modelminder if any of its statistics
drifted, by Evidently if its column drift test failed.

Target (issue 5): >= 10x faster than Evidently, at no worse false-alarm rate on the stable
parts (window x features known to be stable).

    .venv/bin/python benchmarks/drift_speed.py [--events 1000000] [--repeat 2]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from _common import DATA, best, machine, parse
from scipy import special, stats

from modelminder.model.reference import Reference
from modelminder.monitoring.drift import DriftMonitor, DriftReport

EVIDENTLY = "0.7.23"
PANDAS = "2.3.3"  # evidently 0.7.23 imports a helper that pandas 3 removed
DAYS, REF_DAYS, REF_ROWS = 30, 20, 200_000
NUMERIC = [
    "amount", "card_amount_mean_30d", "card_amount_max_24h", "card_count_1h", "card_count_24h",
    "card_count_7d", "card_merchants_24h", "card_amount_sum_24h", "card_secs_since_last",
    "merchant_count_7d", "merchant_count_28d", "amount_z_30d", "amount_ratio_24h_30d",
    "hour_of_day", "is_online", "new_country", "card_amount_std_30d", "score",
]  # fmt: skip
CATEGORICAL = ["channel", "country"]
CHANNELS = np.array(["pos", "web", "app", "atm", "moto"])
P_CHANNEL = np.array([0.55, 0.30, 0.10, 0.04, 0.01])
COUNTRIES = np.array([f"C{i:02d}" for i in range(30)])
P_COUNTRY = (1.0 / np.arange(1, 31)) / (1.0 / np.arange(1, 31)).sum()
# (feature, first day, last day, what): the known drift; everything else is stable.
DRIFT = [
    ("amount", 20, 24, "mean +0.3 sd"),
    ("card_secs_since_last", 22, 26, "spread x1.5"),
    ("hour_of_day", 25, 29, "mean +0.12 sd (subtle)"),
    ("score", 23, 29, "mean +0.25 sd"),
    ("card_amount_std_30d", 20, 29, "missing 5% -> 20%"),
    ("channel", 25, 29, "new 'crypto' 5%"),
    ("country", 26, 29, "3 rare countries x5"),
]
RELATION_DAYS = (27, 29)  # amount no longer follows the card's history (marginals unchanged)

RUNNER = """
import json, sys, time
import pandas as pd
import evidently
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

ref_path, cur_path, out_path, numeric, categorical = sys.argv[1:6]
numeric, categorical = numeric.split(","), categorical.split(",")
ref = pd.read_parquet(ref_path)[numeric + categorical]
cur = pd.read_parquet(cur_path)
days = sorted(int(d) for d in cur["day"].unique())
parts = {d: cur[cur["day"] == d][numeric + categorical].reset_index(drop=True) for d in days}
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
t0 = time.perf_counter()
reference = Dataset.from_pandas(ref, data_definition=definition)
flags, seconds = {}, [time.perf_counter() - t0]
for d in days:
    t0 = time.perf_counter()
    current = Dataset.from_pandas(parts[d], data_definition=definition)
    result = Report([DataDriftPreset()], include_tests=True).run(current, reference).dict()
    seconds.append(time.perf_counter() - t0)
    flags[d] = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
        for t in result["tests"]
        if t["metric_config"]["params"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    print(f"  evidently day {d}: {seconds[-1]:.1f} s", file=sys.stderr, flush=True)
json.dump({"version": evidently.__version__, "seconds": seconds, "flags": flags},
          open(out_path, "w"))
"""


def simulate_days(days: range, rows_per_day: int, seed: int) -> pl.DataFrame:
    """Card-like features from a Gaussian copula, with a small random offset per day."""
    rng = np.random.default_rng(seed)
    f = len(NUMERIC)
    corr = np.eye(f)
    for group, rho in (([0, 1, 2], 0.7), ([3, 4, 5, 6, 7], 0.6)):
        for i in group:
            for j in group:
                corr[i, j] = 1.0 if i == j else rho
    chol = np.linalg.cholesky(corr)
    frames = []
    for day in days:
        z = rng.normal(size=(rows_per_day, f)) @ chol.T + rng.normal(0.0, 0.02, f)
        p_channel = P_CHANNEL * np.exp(rng.normal(0.0, 0.03, P_CHANNEL.size))
        p_country = P_COUNTRY.copy()
        missing_std, crypto = 0.05, 0.0
        for name, first, last, _ in DRIFT:
            if first <= day <= last:
                col = NUMERIC.index(name) if name in NUMERIC else -1
                if name == "amount":
                    z[:, col] += 0.3
                elif name == "card_secs_since_last":
                    z[:, col] *= 1.5
                elif name == "hour_of_day":
                    z[:, col] += 0.12
                elif name == "score":
                    z[:, col] += 0.25
                elif name == "card_amount_std_30d":
                    missing_std = 0.20
                elif name == "channel":
                    crypto = 0.05
                elif name == "country":
                    p_country[[20, 25, 29]] *= 5.0
        if RELATION_DAYS[0] <= day <= RELATION_DAYS[1]:
            z[:, 0] = rng.normal(size=rows_per_day)  # same marginal, no tie to the history
        frames.append(features(z, rng, day, (missing_std, crypto), p_channel, p_country))
    return pl.concat(frames)


def features(
    z: np.ndarray,
    rng: np.random.Generator,
    day: int,
    shares: tuple[float, float],
    p_channel: np.ndarray,
    p_country: np.ndarray,
) -> pl.DataFrame:
    u = special.ndtr(z)
    pois = stats.poisson.ppf
    cols = {
        "amount": np.exp(3.5 + 1.0 * z[:, 0]),
        "card_amount_mean_30d": np.exp(3.5 + 0.5 * z[:, 1]),
        "card_amount_max_24h": np.exp(4.0 + 0.9 * z[:, 2]),
        "card_count_1h": pois(u[:, 3], 0.4),
        "card_count_24h": pois(u[:, 4], 4.0),
        "card_count_7d": pois(u[:, 5], 20.0),
        "card_merchants_24h": pois(u[:, 6], 2.0),
        "card_amount_sum_24h": np.exp(4.5 + 1.0 * z[:, 7]),
        "card_secs_since_last": -np.log1p(-np.clip(u[:, 8], 0, 1 - 1e-12)) * 3600.0,
        "merchant_count_7d": pois(u[:, 9], 50.0),
        "merchant_count_28d": pois(u[:, 10], 200.0),
        "amount_z_30d": z[:, 11],
        "amount_ratio_24h_30d": u[:, 12] ** 2,
        "hour_of_day": np.floor(24.0 * u[:, 13]).clip(0, 23),
        "is_online": (u[:, 14] < 0.35).astype(float),
        "new_country": (u[:, 15] < 0.03).astype(float),
        "card_amount_std_30d": np.exp(3.0 + 0.4 * z[:, 16]),
        "score": u[:, 17] ** 8,
    }
    rows, (missing_std, crypto) = z.shape[0], shares
    cols["card_amount_std_30d"][rng.random(rows) < missing_std] = np.nan
    channel = rng.choice(CHANNELS, rows, p=p_channel / p_channel.sum()).astype(object)
    channel[rng.random(rows) < crypto] = "crypto"
    country = rng.choice(COUNTRIES, rows, p=p_country / p_country.sum())
    return pl.DataFrame(
        {"day": np.full(rows, day), **cols, "channel": channel.astype(str), "country": country}
    )


def data(events: int) -> tuple[Path, Path]:
    folder = DATA / f"drift-{events}-ref{REF_DAYS}d"
    ref, cur = folder / "reference.parquet", folder / "current.parquet"
    if not cur.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        simulate_days(range(-REF_DAYS, 0), REF_ROWS // REF_DAYS, seed=1).write_parquet(ref)
        simulate_days(range(DAYS), events // DAYS, seed=2).write_parquet(folder / "tmp")
        (folder / "tmp").rename(cur)
        print(
            f"simulated the reference and {events:,} predictions in "
            f"{time.perf_counter() - t0:.1f} s -> {folder}"
        )
    return ref, cur


def evidently_python() -> Path:
    """The benchmark's own virtualenv with Evidently (never the project's)."""
    venv = DATA / "evidently-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with evidently=={EVIDENTLY} (not timed) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"evidently=={EVIDENTLY}",
                f"pandas=={PANDAS}",
            ],
            check=True,
        )
    return python


def ours(ref: pl.DataFrame, cur: pl.DataFrame) -> DriftReport:
    reference = Reference.build(
        ref.select(NUMERIC).to_numpy(),
        NUMERIC,
        {c: ref.get_column(c) for c in CATEGORICAL},
        chunks=REF_DAYS,  # one chunk per day: chunks as long as the windows
    )
    return DriftMonitor(reference).report(
        cur.select(NUMERIC).to_numpy(),
        NUMERIC,
        cur.get_column("day").to_numpy(),
        {c: cur.get_column(c) for c in CATEGORICAL},
    )


def drifted(feature: str, day: int) -> bool:
    return any(f == feature and a <= day <= b for f, a, b, _ in DRIFT)


def rates(flags: dict[tuple[int, str], bool]) -> tuple[int, int, int, int]:
    """(false alarms, stable pairs, detections, drifted pairs)."""
    stable = [v for (d, f), v in flags.items() if not drifted(f, d)]
    moved = [v for (d, f), v in flags.items() if drifted(f, d)]
    return sum(stable), len(stable), sum(moved), len(moved)


def main() -> None:
    args = parse(__doc__.splitlines()[0], 1_000_000)
    ref_path, cur_path = data(args.events)
    ref, cur = pl.read_parquet(ref_path), pl.read_parquet(cur_path)
    print(
        f"{cur.height:,} predictions x {len(NUMERIC) + len(CATEGORICAL)} columns "
        f"({len(NUMERIC)} numeric incl. score, {len(CATEGORICAL)} categorical), {DAYS} daily "
        f"windows; reference {ref.height:,} rows; {machine()}"
    )
    ours(ref.head(20_000), cur.head(20_000))  # load code paths once
    t_ours, report = best(lambda: ours(ref, cur), args.repeat)

    python = evidently_python()
    out = ref_path.parent / "evidently.json"
    runner = ref_path.parent / "evidently_runner.py"
    runner.write_text(RUNNER)
    cmd = [str(python), str(runner), str(ref_path), str(cur_path), str(out)]
    print("running Evidently's DataDriftPreset per window (a few minutes) ...", flush=True)
    subprocess.run([*cmd, ",".join(NUMERIC), ",".join(CATEGORICAL)], check=True)
    ev = json.loads(out.read_text())
    t_ev = float(sum(ev["seconds"]))

    flagged = report.features.select("window", "feature", "drifted").rows()
    mine = {(d, f): bool(v) for d, f, v in flagged}
    theirs = {
        (d, f): bool(ev["flags"].get(str(d), {}).get(f, False))
        for d, f in mine  # a column Evidently skipped counts as not flagged
    }
    print(
        f"modelminder  {t_ours:7.2f} s  reference + report over {DAYS} windows (best of "
        f"{args.repeat})"
    )
    print(
        f"evidently    {t_ev:7.2f} s  version {ev['version']}: reference dataset + "
        f"{DAYS} presets ({np.median(ev['seconds'][1:]):.1f} s per window, one run)"
    )
    print(f"{'':12} {'false alarms (stable)':>24} {'detected (drifted)':>20}")
    for name, flags in (("modelminder", mine), ("evidently", theirs)):
        fa, stable, hit, moved = rates(flags)
        print(
            f"{name:12} {fa:>6}/{stable} = {fa / stable:6.2%} {hit:>8}/{moved} = {hit / moved:6.1%}"
        )
    print("detected windows per drift (modelminder / evidently):")
    for feature, first, last, what in DRIFT:
        span = range(first, last + 1)
        a = sum(mine[d, feature] for d in span)
        b = sum(theirs[d, feature] for d in span)
        print(f"  {feature:22} days {first}-{last} {what:24} {a}/{len(span)}  /  {b}/{len(span)}")
    win = report.windows
    mv = dict(win.select("window", "multivariate_drifted").iter_rows())
    lo, hi = RELATION_DAYS
    named = win.filter(pl.col("window") == hi).item(0, "multivariate_features").to_list()
    print(
        f"multivariate (PCA error): relation change days {lo}-{hi} flagged "
        f"{sum(mv[d] for d in range(lo, hi + 1))}/{hi - lo + 1}, naming {named}; stable days "
        f"0-19 flagged {sum(mv[d] for d in range(20))}/20"
    )
    fa_ours, stable, _, _ = rates(mine)
    fa_ev, _, _, _ = rates(theirs)
    print(f"RATIO evidently/modelminder time = {t_ev / t_ours:.1f}  (target >= 10)")
    verdict = "met" if fa_ours <= fa_ev else "NOT met"
    print(
        f"false-alarm rate modelminder {fa_ours / stable:.2%} vs evidently {fa_ev / stable:.2%}"
        f"  (target: no worse) {verdict}"
    )


if __name__ == "__main__":
    main()
