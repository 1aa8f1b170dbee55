from __future__ import annotations

import json
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from modelminder.errors import MonitorError
from modelminder.model.reference import Reference
from modelminder.monitoring.drift import DriftConfig, DriftMonitor, drift_report

NAMES = ["amount", "gap", "online", "count", "ratio"]
P_CHANNEL = [0.5, 0.3, 0.1, 0.07, 0.03]


def stream(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Card-like features: normal, exponential, binary, small counts, heavy tail with gaps."""
    x = np.column_stack(
        [
            rng.normal(100.0, 15.0, rows),
            rng.exponential(60.0, rows),
            (rng.random(rows) < 0.3).astype(float),
            rng.poisson(3.0, rows).astype(float),
            rng.lognormal(0.0, 1.0, rows),
        ]
    )
    x[rng.random(rows) < 0.05, 4] = np.nan
    channel = rng.choice(np.array(["pos", "web", "app", "atm", "moto"]), rows, p=P_CHANNEL)
    return x, {"channel": channel}


@cache
def reference() -> Reference:
    x, cats = stream(100_000, np.random.default_rng(7))
    return Reference.build(x, NAMES, cats)


@cache
def monitor() -> DriftMonitor:
    return DriftMonitor(reference())


def test_stable_stream_raises_few_alarms_at_every_window_size() -> None:
    rng = np.random.default_rng(11)
    for size, count in [(200, 150), (2_000, 40), (20_000, 8), (200_000, 2)]:
        x, cats = stream(size * count, rng)
        report = monitor().report(x, NAMES, np.repeat(np.arange(count), size), cats)
        flagged = report.features.get_column("drifted")
        # Target: 1% of window x features (6 features here); the chunk term makes it lower.
        assert flagged.mean() <= 0.01, (size, report.features.filter(pl.col("drifted")))
        assert report.windows.get_column("multivariate_drifted").sum() <= max(1, count // 50)
        assert report.findings.height == 0


def shifted() -> tuple[DriftMonitor, pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(5)
    size = 5_000
    x, cats = stream(4 * size, rng)
    w = np.repeat(np.arange(4), size)
    x[w == 1, 0] += 0.3 * 15.0  # amount: mean up by 0.3 standard deviations
    x[w == 2, 1] *= 1.4  # gap: 40% more spread
    channel = cats["channel"].astype(object)
    channel[(w == 3) & (rng.random(w.size) < 0.04)] = "crypto"  # a new channel
    report = monitor().report(x, NAMES, w, {"channel": channel})
    return monitor(), report.windows, report.findings


def test_drift_is_flagged_on_the_right_feature() -> None:
    _, windows, findings = shifted()
    tops = dict(windows.select("window", "top_features").iter_rows())
    assert tops[0] == []
    assert tops[1][0] == "amount"
    assert tops[2][0] == "gap"
    assert tops[3][0] == "channel"
    assert findings.rows() == [(3, "channel", "unseen_categories", findings.item(0, "detail"))]
    assert "new categories: 'crypto'" in findings.item(0, "detail")


def test_severity_grows_with_the_shift() -> None:
    rng = np.random.default_rng(8)
    x, cats = stream(3 * 4_000, rng)
    w = np.repeat(np.arange(3), 4_000)
    x[w == 1, 0] += 0.1 * 15.0
    x[w == 2, 0] += 1.0 * 15.0
    feats = monitor().report(x, NAMES, w, cats).features.filter(pl.col("feature") == "amount")
    score = feats.sort("window").get_column("score").to_list()
    assert score[0] < score[1] < score[2]
    assert feats.sort("window").get_column("severity").to_list()[2] == "severe"


def test_multivariate_signal_names_the_features_whose_relation_changed() -> None:
    rng = np.random.default_rng(2)

    def correlated(rows: int, rho: float) -> np.ndarray:
        a = rng.normal(size=rows)
        b = rho * a + np.sqrt(1 - rho**2) * rng.normal(size=rows)
        return np.column_stack([a, b, rng.normal(size=(rows, 4))])

    names = ["a", "b", "c", "d", "e", "f"]
    ref = Reference.build(correlated(50_000, 0.8), names)
    x = np.vstack([correlated(5_000, 0.8), correlated(5_000, -0.8)])
    report = DriftMonitor(ref).report(x, names, np.repeat([0, 1], 5_000))
    windows = report.windows.sort("window")
    assert windows.get_column("multivariate_drifted").to_list() == [False, True]
    assert sorted(windows.item(1, "multivariate_features")) == ["a", "b"]
    assert windows.get_column("drifted_features").to_list() == [0, 0]  # marginals unchanged


def plain_binned(col: np.ndarray, s: Any) -> np.ndarray:
    """Coarse-bin counts the slow, obvious way (a reference implementation)."""
    edges = [s.grid[i - 1] for i in s.coarse_starts[1:]]
    values = col[np.isfinite(col)]
    bin_of = (values[:, None] >= np.array(edges)[None, :]).sum(axis=1)
    return np.bincount(bin_of, minlength=len(edges) + 1).astype(float)


def test_statistics_agree_with_plain_and_exact_computations() -> None:
    rng = np.random.default_rng(3)
    ref_x, _ = stream(100_000, np.random.default_rng(7))
    x, cats = stream(1_500, rng)
    x[:, 1] *= 1.3
    report = monitor().report(x, NAMES, np.zeros(1_500, dtype=np.int64), cats)
    got = {
        (f, s): v for f, s, v in report.statistics.select("feature", "statistic", "value").rows()
    }
    for j, s in enumerate(reference().numeric):
        cur, ref = x[:, j], ref_x[:, j]
        kc, rc = plain_binned(cur, s), plain_binned(ref, s)
        ps = (kc + 0.5) / (kc.sum() + 0.5 * kc.size)
        qs = (rc + 0.5) / (rc.sum() + 0.5 * rc.size)
        assert got[s.name, "psi"] == pytest.approx(float(np.sum((ps - qs) * np.log(ps / qs))))
        kl = stats.entropy  # scipy's Kullback-Leibler divergence; JS averages two of them
        m = (kc / kc.sum() + rc / rc.sum()) / 2
        plain_js = np.sqrt((kl(kc / kc.sum(), m, base=2) + kl(rc / rc.sum(), m, base=2)) / 2)
        assert got[s.name, "js"] == pytest.approx(plain_js, abs=1e-9)
        # KS on the grid: never above the exact statistic, at most one cell's mass below it.
        cur, ref = cur[np.isfinite(cur)], ref[np.isfinite(ref)]
        exact = stats.ks_2samp(cur, ref).statistic
        cells = np.bincount(np.searchsorted(s.grid, cur, side="right"), minlength=s.grid.size + 1)
        largest = max(float((cells / cur.size).max()), float((s.counts / s.counts.sum()).max()))
        assert exact - largest - 1e-12 <= got[s.name, "ks"] <= exact + 1e-12
        # Wasserstein: within the mass-weighted widths of the interior cells.
        width = np.diff(s.grid)
        mass = (cells[1:-1] / cur.size + s.counts[1:-1] / s.counts.sum()) @ width
        exact_w = stats.wasserstein_distance(cur, ref) / s.scale
        assert abs(got[s.name, "wasserstein"] - exact_w) <= mass / s.scale + 1e-9
    c = reference().categorical[0]
    k = np.array([np.sum(cats["channel"] == v) for v in c.categories] + [0])
    q = (c.counts + 0.5) / (c.counts.sum() + 0.5 * c.counts.size)
    chi2 = float(np.sum((k - k.sum() * q) ** 2 / (k.sum() * q)))
    assert got["channel", "chi2"] == pytest.approx(chi2)


def test_all_missing_column_is_a_finding_not_a_zero() -> None:
    x, cats = stream(2_000, np.random.default_rng(4))
    w = np.repeat([0, 1], 1_000)
    x[w == 1, 0] = np.nan
    x[:3, 3] = np.inf
    report = monitor().report(x, NAMES, w, cats)
    issues = report.findings.select("window", "feature", "issue").rows()
    assert (1, "amount", "all_missing") in issues and (0, "count", "non_finite") in issues
    amount = report.statistics.filter((pl.col("window") == 1) & (pl.col("feature") == "amount"))
    by_stat = {r["statistic"]: r for r in amount.iter_rows(named=True)}
    for name in ("psi", "js", "wasserstein", "ks"):
        assert np.isnan(by_stat[name]["value"]) and by_stat[name]["severity"] == "no_data"
    assert by_stat["missing"]["value"] == 1.0 and by_stat["missing"]["severity"] == "severe"
    assert report.top_features(1)[0] == "amount"


def test_json_reference_gives_the_same_report() -> None:
    x, cats = stream(3_000, np.random.default_rng(9))
    ref = Reference.build(x[:2_000], NAMES, {"channel": cats["channel"][:2_000]})
    back = Reference.from_dict(json.loads(json.dumps(ref.to_dict())))
    cur = {"channel": cats["channel"][2_000:]}
    w = np.repeat([0, 1], 500)
    a = drift_report(ref, x[2_000:], NAMES, w, cur)
    b = drift_report(back, x[2_000:], NAMES, w, cur)
    assert a.statistics.equals(b.statistics) and a.windows.equals(b.windows)


@st.composite
def current(draw: st.DrawFn) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, int]:
    rows = draw(st.integers(20, 400))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x, cats = stream(rows, rng)
    x[:, 0] += draw(st.sampled_from([0.0, 5.0]))
    windows = rng.integers(0, draw(st.integers(1, 4)), rows)
    return x, cats, windows, seed


def same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    keys = ["window", "feature", "statistic"]
    a, b = a.sort(keys), b.sort(keys)
    assert a.select(*keys, "n", "threshold", "drifted", "severity").equals(
        b.select(*keys, "n", "threshold", "drifted", "severity")
    )
    assert np.allclose(a["value"], b["value"], rtol=1e-9, atol=1e-12, equal_nan=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=current())
def test_row_order_and_window_split_do_not_matter(
    data: tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, int],
) -> None:
    x, cats, windows, seed = data
    whole = monitor().report(x, NAMES, windows, cats)
    order = np.random.default_rng(seed).permutation(windows.size)
    fresh = DriftMonitor(reference())  # an empty threshold cache must give the same thresholds
    shuffled = fresh.report(x[order], NAMES, windows[order], {"channel": cats["channel"][order]})
    same(whole.statistics, shuffled.statistics)
    assert np.allclose(whole.windows["multivariate"], shuffled.windows["multivariate"], rtol=1e-9)
    for w in np.unique(windows):
        rows = windows == w
        alone = fresh.report(x[rows], NAMES, windows[rows], {"channel": cats["channel"][rows]})
        same(whole.statistics.filter(pl.col("window") == w), alone.statistics)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"names": ["amount", "gap", "online", "count", "fee"]}, "'fee' is not in the reference"),
        ({"names": ["amount", "gap", "online", "count", "fee"]}, "has: amount, gap, online"),
        ({"names": NAMES[:4], "cols": 4}, "'ratio' is missing from the current data"),
        ({"cats": {}}, "'channel' is missing from the current data"),
        ({"names": ["amount", "gap", "online", "count", "channel"]}, "'channel' is categorical"),
        ({"rows": 0}, "no rows"),
        ({"expected": [0, 1, 2, 5]}, "Windows 2, 5 have no rows"),
        ({"expected": [0, 1, 2]}, "Window 2 has no rows"),
        ({"windows": "float"}, "one integer window id per row"),
        ({"cats": {"channel": [1.0] * 100}}, "'channel' must hold strings"),
    ],
)
def test_bad_input_is_named(change: dict[str, Any], needle: str) -> None:
    rows = change.get("rows", 100)
    x, cats = stream(rows, np.random.default_rng(1))
    names = change.get("names", NAMES)
    x = x[:, : change.get("cols", 5)]
    windows: np.ndarray = np.arange(rows) % 2
    if change.get("windows") == "float":
        windows = windows.astype(float)
    with pytest.raises(MonitorError, match=needle):
        monitor().report(
            x, names, windows, change.get("cats", cats), expected_windows=change.get("expected")
        )


def test_bad_config_is_named() -> None:
    with pytest.raises(MonitorError, match="'false_alarm_rate' must be in"):
        DriftConfig(false_alarm_rate=2.0)
    x, cats = stream(10, np.random.default_rng(0))
    report = monitor().report(x, NAMES, np.zeros(10, dtype=np.int64), cats)
    with pytest.raises(MonitorError, match="Window 3 is not in this report"):
        report.top_features(3)


def test_a_single_missing_value_is_not_drift_but_a_missing_jump_is() -> None:
    rng = np.random.default_rng(5)
    ref = Reference.build(rng.normal(size=(20_000, 1)), ["amount"])
    x = rng.normal(size=(600, 1))
    x[0, 0] = np.nan  # window 0: one missing value (the reference had none)
    x[300:360, 0] = np.nan  # window 1: 20% missing
    report = DriftMonitor(ref).report(x, ["amount"], np.repeat([0, 1], 300))
    missing = report.statistics.filter(pl.col("statistic") == "missing").sort("window")
    assert missing.get_column("drifted").to_list() == [False, True]
