"""Feature and score drift per time window against a stored :class:`Reference`.

Statistics (per window x feature; numeric features and the model score alike)
---------------------------------------------------------------------------
All are computed from the window's counts in the reference's cells (see ``reference.py``), so
one ``searchsorted`` and one ``bincount`` per feature cover every window at once.

``psi``
    Population stability index over the coarse quantile bins (20 by default), both sides
    smoothed by half a count per bin so an empty bin is finite.
``js``
    Jensen-Shannon distance (base 2, in [0, 1]) over the same bins, or over the categories.
``wasserstein``
    Earth mover's distance divided by the reference's ``scale`` (IQR / 1.349, else std), so
    0.1 means "moved by a tenth of a standard deviation" for every feature. Each side's mass
    in a grid cell is placed at the reference's mean value in that cell, except beyond the
    reference's range, where the window's own mean is used. So the value is exact for values
    outside the reference range and for discrete features whose values are on the grid, and
    otherwise off by at most the mass-weighted width of the 1% cells.
``ks``
    Kolmogorov-Smirnov statistic evaluated at the grid points. It is never above the exact
    statistic and at most the largest one-cell mass (about 0.01 for a continuous feature)
    below it.
``chi2``
    Pearson chi-square of the window's category counts against the reference shares
    (smoothed by half a count, so a new category is finite but large).
``missing``
    Absolute change of the missing share (NaN, infinite or None values).

Calibrated thresholds
---------------------
Each statistic is turned into a *distance* ``d`` (``sqrt(psi)``, ``sqrt(chi2 / n)``, the others
as they are). For a window with ``n`` rows and a reference of ``N`` rows::

    threshold_d(n) = Q[1 - a](d of iid samples at n_eff)  +  natural

* ``n_eff = n N / (n + N)``: the window and the reference are both samples, so their
  difference varies like one sample of ``n_eff`` rows against the truth. It is rounded *down*
  to a quarter octave (``2 ** (k / 4)``), and thresholds are cached per bucket.
* ``Q`` comes from ``bootstrap`` Poisson resamples of the reference's cell counts at ``n_eff``
  (a Poisson bootstrap is a multinomial one with a random total). The quantile is read from a
  gamma distribution fitted to the resampled ``d**2`` by its mean and variance (every statistic
  here is close to a quadratic form of the count noise, i.e. a weighted sum of chi-squares),
  which is stable far in the tail with a thousand resamples.
* ``natural`` is how far a stable period departs from the rest beyond what sampling explains.
  For each reference chunk k, ``e_k = d_k**2 - E[d**2 at m_k]``, with ``d_k`` the chunk
  against the rest of the reference and ``E`` the bootstrap mean at the chunk's ``n_eff``.
  The term is the larger of ``max_k sqrt(e_k)`` and ``z * sqrt(mean_k e_k)``, with ``z`` the
  two-sided ``1 - a`` prediction multiplier of a new period from ``K`` observed ones (Student
  t with ``K - 1`` degrees of freedom, times ``sqrt(1 + 1/K)``): ten chunks cannot show a
  1-in-500 day, so the tail is extrapolated from their spread, and widened for how little
  ``K`` chunks tell (below 5 chunks only the largest departure counts). A stable real stream
  varies more between periods than iid sampling does, and this term does not shrink with
  ``n``. Make a chunk about as long as a window (e.g. one per day of training data with daily
  windows: ``Reference.build(chunks=days)``).
* ``a`` is ``false_alarm_rate`` (default 1% per window x feature) split evenly over the
  feature's statistics (Bonferroni), so a window x feature alarms on a stable stream at most
  about that often. Raw p-values are never used: at large ``n`` they call any tiny, harmless
  difference significant.

A statistic is drifted when ``d > threshold_d``; severity is ``warn`` up to ``severe`` times
the threshold (default 2) and ``severe`` beyond.

The multivariate signal is the window's mean PCA reconstruction error over the reference's
(1.0 = as in training). The PCA sees each numeric feature as a normal score through the
reference's CDF, so it watches how features move together rather than their heavy tails. Its
one-sided threshold is a gamma approximation of a mean of ``n_eff`` errors (at level
``false_alarm_rate``) plus the same chunk term. When it drifts, the features whose mean squared
residual rose most (at least a tenth of the largest rise) are named as explaining it.

Result layout
-------------
:class:`DriftReport` holds four polars DataFrames:

* ``statistics``: one row per window x feature x statistic -- window, feature, kind
  (numeric / categorical), statistic, n (rows the statistic used: the non-missing ones, or all
  for ``missing``), value, threshold (same units as value), ratio (distance over threshold
  distance), drifted, severity (ok, warn, severe, no_data).
* ``features``: one row per window x feature -- window, feature, kind, rows, missing_share,
  drifted, severity (the worst), score (the largest ratio), worst (its statistic), rank (1 =
  most drifting in the window).
* ``windows``: one row per window -- window, rows, drifted_features, top_features (drifted
  ones, most drifting first), multivariate (error ratio), multivariate_threshold,
  multivariate_drifted, multivariate_features (the features that explain it, when drifted).
  The multivariate columns are null when the reference has fewer than two varying numeric
  features.
* ``findings``: data-quality findings -- window, feature, issue, detail.

Bad input
---------
No rows, an expected window with no rows, a feature the reference lacks (or one it has that
the data lacks) raise :class:`MonitorError` naming it. A column that is all missing in a window
is a *finding* (``all_missing``), not an error, so one broken column does not hide the other
features: its distribution statistics are NaN with severity ``no_data`` (never a silent zero),
and its ``missing`` statistic flags the jump in missing share. Infinite values count as missing
and are reported as ``non_finite``; categories the reference never kept as
``unseen_categories``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import stats as sps

from modelminder.errors import MonitorError
from modelminder.model.reference import (
    CategoricalSummary,
    CategoricalValues,
    NumericSummary,
    Reference,
    categorical_series,
    pca_errors,
    standardize,
)

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
NUMERIC_STATS = ("psi", "js", "wasserstein", "ks", "missing")
CATEGORICAL_STATS = ("chi2", "js", "missing")
SEVERITY = ("ok", "no_data", "warn", "severe")  # in increasing order of concern
_BLOCK = 1 << 18  # rows per PCA block: bounds memory on large windows


@dataclass(frozen=True)
class DriftConfig:
    """How thresholds are calibrated (see the module docstring for the rule).

    Parameters
    ----------
    false_alarm_rate
        Target share of stable windows x features flagged, split over the feature's statistics.
    bootstrap
        Resamples per feature and window-size bucket.
    seed
        Seed of the resampling, so a report is reproducible.
    severe
        A statistic this many times past its threshold (as a distance) is ``severe``.
    top
        How many features ``top_features`` and ``multivariate_features`` name per window.
    min_missing_change
        The smallest change of a missing share that can alarm (0.01 = one percentage point).
    """

    false_alarm_rate: float = 0.01
    bootstrap: int = 1000
    seed: int = 0
    severe: float = 2.0
    top: int = 5
    min_missing_change: float = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.false_alarm_rate < 0.5:
            raise MonitorError(
                f"'false_alarm_rate' must be in (0, 0.5), like 0.01. Got {self.false_alarm_rate}."
            )
        if not 0.0 <= self.min_missing_change < 1.0:
            raise MonitorError(
                f"'min_missing_change' must be in [0, 1), like 0.01. Got {self.min_missing_change}."
            )
        if self.bootstrap < 50 or self.severe <= 1.0 or self.top < 1:
            raise MonitorError(
                "DriftConfig needs bootstrap >= 50, severe > 1 and top >= 1. Got "
                f"bootstrap={self.bootstrap}, severe={self.severe}, top={self.top}."
            )


@dataclass(frozen=True)
class DriftReport:
    """Drift per window (see the module docstring for the columns of each frame)."""

    statistics: pl.DataFrame
    features: pl.DataFrame
    windows: pl.DataFrame
    findings: pl.DataFrame

    def top_features(self, window: int) -> list[str]:
        """The drifted features of ``window``, most drifting first."""
        row = self.windows.filter(pl.col("window") == window)
        if row.height == 0:
            known = self.windows.get_column("window").to_list()
            raise MonitorError(f"Window {window} is not in this report. It has {known}.")
        return list(row.get_column("top_features")[0])


@dataclass
class _Feature:
    """Per-window arrays of one feature, in distance form (statistics x windows)."""

    name: str
    kind: str
    stats: tuple[str, ...]
    n: Ints  # rows used, per statistic and window
    d: Floats
    t: Floats
    raw: Floats = field(init=False)
    raw_t: Floats = field(init=False)

    def __post_init__(self) -> None:
        self.raw, self.raw_t = self.d.copy(), self.t.copy()
        for i, s in enumerate(self.stats):
            if s == "psi":
                self.raw[i], self.raw_t[i] = self.d[i] ** 2, self.t[i] ** 2
            elif s == "chi2":
                self.raw[i], self.raw_t[i] = self.n[i] * self.d[i] ** 2, self.n[i] * self.t[i] ** 2


class DriftMonitor:
    """Drift of current data against one reference; caches thresholds per window size.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> ref = Reference.build(rng.normal(size=(20_000, 2)), ["amount", "score"])
    >>> x = rng.normal(size=(6_000, 2))
    >>> x[3_000:, 0] += 0.5  # window 1: amount moved by half a standard deviation
    >>> report = DriftMonitor(ref).report(x, ["amount", "score"], np.repeat([0, 1], 3_000))
    >>> report.top_features(0), report.top_features(1)
    ([], ['amount'])
    >>> report.windows.get_column("drifted_features").to_list()
    [0, 1]
    """

    def __init__(self, reference: Reference, config: DriftConfig | None = None) -> None:
        self.reference = reference
        self.config = config or DriftConfig()
        self._quantiles: dict[tuple[str, int], Floats] = {}
        self._natural: dict[str, Floats] = {}
        self._by_name: dict[str, NumericSummary | CategoricalSummary] = {}
        self._by_name.update((s.name, s) for s in reference.numeric)
        self._by_name.update((s.name, s) for s in reference.categorical)

    def report(
        self,
        matrix: npt.ArrayLike,
        feature_names: Sequence[str],
        windows: npt.ArrayLike,
        categorical: Mapping[str, CategoricalValues] | None = None,
        *,
        expected_windows: Sequence[int] | None = None,
    ) -> DriftReport:
        """Drift of every window of the current data (see the module docstring).

        Parameters
        ----------
        matrix
            Current numeric features, rows x features (NaN = missing), any row order.
        feature_names
            Names of the columns of ``matrix``: the reference's numeric features.
        windows
            Integer window id per row (e.g. the day index).
        categorical
            The reference's categorical features by name: strings per row (None = missing).
        expected_windows
            Windows that must have rows; one without any raises MonitorError.
        """
        ref = self.reference
        x, cats = _check_input(ref, matrix, feature_names, categorical)
        ids, widx, rows = _window_index(windows, x.shape[0], expected_windows)
        findings: list[tuple[int, str, str, str]] = []
        col = {name: j for j, name in enumerate(feature_names)}
        feats = [
            self._numeric(s, x[:, col[s.name]], widx, rows, ids, findings) for s in ref.numeric
        ]
        feats += [
            self._categorical(s, cats[s.name], widx, rows, ids, findings) for s in ref.categorical
        ]
        mv = self._multivariate(x, col, widx, rows)
        return _assemble(ids, rows, feats, mv, findings, self.config)

    # -- per feature -------------------------------------------------------------------------

    def _numeric(
        self,
        s: NumericSummary,
        x: Floats,
        widx: Ints,
        rows: Ints,
        ids: Ints,
        findings: list[tuple[int, str, str, str]],
    ) -> _Feature:
        w, c = rows.size, s.grid.size + 1
        finite = np.isfinite(x)
        cell = np.searchsorted(s.grid, x, side="right")
        cell[~finite] = c  # one more column holds the missing values
        flat = widx * (c + 1) + cell
        counts = np.bincount(flat, minlength=w * (c + 1)).reshape(w, c + 1).astype(np.float64)
        k, miss = counts[:, :c], counts[:, c]
        outer = finite & ((cell == 0) | (cell == c - 1))  # beyond the reference's range
        sums = np.bincount(flat[outer], x[outer], minlength=w * (c + 1)).reshape(w, c + 1)
        xp = np.broadcast_to(s.means, (w, c)).copy()
        for j in (0, c - 1):
            xp[:, j] = np.where(k[:, j] > 0, sums[:, j] / np.maximum(k[:, j], 1), s.means[j])
        n = k.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = _numeric_distances(k, s.counts.astype(np.float64), xp, s, s.means)
        d[:, n == 0] = np.nan  # no value, no distribution: never a silent zero
        d = np.vstack([d, np.abs(miss / rows - s.missing / self.reference.rows)])
        t = self._thresholds(s.name, n, rows, len(NUMERIC_STATS))
        _quality(s.name, ids, n, rows - n - np.bincount(widx[np.isnan(x)], minlength=w), findings)
        return _Feature(s.name, "numeric", NUMERIC_STATS, _ns(n, rows, 4), d, t)

    def _categorical(
        self,
        s: CategoricalSummary,
        values: pl.Series,
        widx: Ints,
        rows: Ints,
        ids: Ints,
        findings: list[tuple[int, str, str, str]],
    ) -> _Feature:
        w, c = rows.size, len(s.categories) + 1
        null = values.is_null().to_numpy()
        code = values.replace_strict(
            list(s.categories), list(range(c - 1)), default=c - 1, return_dtype=pl.Int64
        ).to_numpy()
        cells = np.where(null, c, code)
        counts = np.bincount(widx * (c + 1) + cells, minlength=w * (c + 1)).reshape(w, c + 1)
        k = counts[:, :c].astype(np.float64)
        n = k.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = _categorical_distances(k, s.counts.astype(np.float64))
        d[:, n == 0] = np.nan
        d = np.vstack([d, np.abs(counts[:, c] / rows - s.missing / self.reference.rows)])
        t = self._thresholds(s.name, n, rows, len(CATEGORICAL_STATS))
        _quality(s.name, ids, n, np.zeros(w), findings)
        unseen = (cells == c - 1) & ~null
        if unseen.any():
            _unseen(s, values.filter(pl.Series(unseen)), ids[widx[unseen]], findings)
        return _Feature(s.name, "categorical", CATEGORICAL_STATS, _ns(n, rows, 2), d, t)

    # -- thresholds --------------------------------------------------------------------------

    def _thresholds(self, name: str, n: Floats, rows: Ints, stats: int) -> Floats:
        """Threshold distances (statistics x windows) by the calibration rule."""
        ref = self.reference
        big_n = float(self._summary(name).counts.sum())
        alpha = self.config.false_alarm_rate / stats
        natural = self._natural_term(name, alpha)
        out = np.empty((stats, n.size))
        dist_b = _bucket(n * big_n / np.maximum(n + big_n, 1))
        miss_b = _bucket(rows * ref.rows / (rows + ref.rows))
        for b in np.unique(dist_b):
            out[:-1, dist_b == b] = self._iid(name, int(b), alpha)[:-1, None]
        for b in np.unique(miss_b):
            out[-1, miss_b == b] = self._iid(name, int(b), alpha)[-1]
        out += natural[:, None]
        # A practical floor: when the reference had no missing value, one NaN in a small
        # window is "significant" yet says nothing; below this change the share never alarms.
        out[-1] = np.maximum(out[-1], self.config.min_missing_change)
        return np.maximum(out, 1e-12)

    def _summary(self, name: str) -> NumericSummary | CategoricalSummary:
        return self._by_name[name]

    def _draws(self, name: str, n: float) -> Floats:
        """Distances (statistics x resamples) of iid Poisson resamples of ``n`` rows."""
        s = self._summary(name)
        cfg = self.config
        # Seeded by feature and size only, so a window's thresholds never depend on which
        # other windows or features were computed first.
        rng = np.random.default_rng([cfg.seed, zlib.crc32(name.encode()), round(n * 16)])
        r = s.counts.astype(np.float64)
        k = rng.poisson(n * r / r.sum(), size=(cfg.bootstrap, r.size)).astype(np.float64)
        k = k[k.sum(axis=1) > 0]
        p_miss = (s.missing + 0.5) / (self.reference.rows + 1.0)
        m = rng.poisson(n * p_miss, size=cfg.bootstrap).astype(np.float64)
        o = rng.poisson(n * (1.0 - p_miss), size=cfg.bootstrap).astype(np.float64)
        ok = m + o > 0
        miss = np.abs(m[ok] / (m[ok] + o[ok]) - s.missing / self.reference.rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            if isinstance(s, NumericSummary):
                d = _numeric_distances(k, r, s.means, s, s.means)
            else:
                d = _categorical_distances(k, r)
        size = min(d.shape[1], miss.size)
        return np.vstack([d[:, :size], miss[None, :size]])

    def _iid(self, name: str, bucket: int, alpha: float) -> Floats:
        key = (name, bucket)
        if key not in self._quantiles:
            draws = self._draws(name, 2.0 ** (bucket / 4))
            self._quantiles[key] = np.array([_gamma_quantile(row**2, 1.0 - alpha) for row in draws])
        return self._quantiles[key] ** 0.5

    def _natural_term(self, name: str, alpha: float) -> Floats:
        """Per statistic: how far a stable period departs beyond what sampling explains."""
        if name in self._natural:
            return self._natural[name]
        ref, s = self.reference, self._summary(name)
        chunks = s.chunk_counts.astype(np.float64)
        if chunks.shape[0] < 2:  # no periods to compare: sampling noise only
            stats = NUMERIC_STATS if isinstance(s, NumericSummary) else CATEGORICAL_STATS
            self._natural[name] = np.zeros(len(stats))
            return self._natural[name]
        rest = s.counts - chunks
        m, total = chunks.sum(axis=1), float(s.counts.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            if isinstance(s, NumericSummary):
                d = _numeric_distances(chunks, rest, s.means, s, s.means)
            else:
                d = _categorical_distances(chunks, rest)
        cm, cr = s.chunk_missing.astype(np.float64), ref.chunk_rows.astype(np.float64)
        miss = np.abs(cm / cr - (s.missing - cm) / (ref.rows - cr))
        d = np.nan_to_num(np.vstack([d, miss]))
        m_eff = np.vstack(
            [
                np.broadcast_to(m * (total - m) / total, (d.shape[0] - 1, m.size)),
                cr * (ref.rows - cr) / ref.rows,
            ]
        )
        typical = float(np.median(m_eff[0]))
        mean_sq = np.array([np.mean(r**2) for r in self._draws(name, typical)])
        expected = mean_sq[:, None] * typical / np.maximum(m_eff, 1.0)
        out = _spread(d**2 - expected, _multiplier(alpha / 2, m.size))
        self._natural[name] = out
        return out

    # -- multivariate ------------------------------------------------------------------------

    def _multivariate(
        self, x: Floats, col: Mapping[str, int], widx: Ints, rows: Ints
    ) -> tuple[Floats, Floats, list[list[str]]] | None:
        p = self.reference.pca
        if p is None:
            return None
        cols = [col[f] for f in p.features]
        by_name = {s.name: s for s in self.reference.numeric}
        summaries = [by_name[f] for f in p.features]
        w = rows.size
        err, resid = np.zeros(w), np.zeros((w, len(cols)))
        for start in range(0, x.shape[0], _BLOCK):
            zt = standardize(x[start : start + _BLOCK], summaries, p, cols)
            e, sq = pca_errors(zt, p.components)
            wb = widx[start : start + _BLOCK]
            err += np.bincount(wb, e, minlength=w)
            for f in range(len(cols)):
                resid[:, f] += np.bincount(wb, sq[f], minlength=w)
        mu, var, big_n = max(p.error_mean, 1e-12), p.error_var, float(self.reference.rows)
        n_eff = rows * big_n / (rows + big_n)
        shape = np.maximum(mu * mu * n_eff / max(var, 1e-300), 1e-6)
        q = sps.gamma.ppf(1.0 - self.config.false_alarm_rate, shape, scale=mu / shape)
        m = self.reference.chunk_rows.astype(np.float64)
        natural = 0.0
        if m.size >= 2:
            rest = (big_n * mu - m * p.chunk_error_means) / (big_n - m)
            gap = (p.chunk_error_means - rest) ** 2 - var / (m * (big_n - m) / big_n)
            z = _multiplier(self.config.false_alarm_rate, m.size)
            natural = float(_spread(gap[None, :], z)[0])
        excess = resid / rows[:, None] - p.residual
        top = self.config.top
        value, threshold = err / rows / mu, (q + natural) / mu
        # Name the features whose squared residual rose by at least a tenth of the largest rise.
        names = [
            [p.features[f] for f in np.argsort(-row, kind="stable")[:top] if row[f] >= cut]
            if drifted
            else []
            for row, drifted, cut in zip(
                excess, value > threshold, np.maximum(excess.max(axis=1), 1e-12) / 10, strict=True
            )
        ]
        return value, threshold, names


# -- statistics kernels (vectorized over leading axes) -----------------------------------------


def _js(p: Floats, q: Floats) -> Floats:
    m = (p + q) / 2.0
    safe_m = np.where(m > 0, m, 1.0)
    a = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0) / safe_m), 0.0)
    b = np.where(q > 0, q * np.log2(np.where(q > 0, q, 1.0) / safe_m), 0.0)
    out: Floats = np.sqrt(np.maximum(0.5 * (a.sum(-1) + b.sum(-1)), 0.0))
    return out


def _numeric_distances(k: Floats, r: Floats, xp: Floats, s: NumericSummary, xr: Floats) -> Floats:
    """PSI (as its square root), JS, normalized Wasserstein and KS (4 x leading shape)."""
    n, big_n = k.sum(-1, keepdims=True), r.sum(-1, keepdims=True)
    p, q = k / n, r / big_n
    after = np.cumsum(p, -1) - np.cumsum(q, -1)  # F_cur - F_ref at each cell's right edge
    before = np.concatenate([np.zeros_like(after[..., :1]), after[..., :-1]], axis=-1)
    ks = np.abs(after[..., :-1]).max(-1)
    xp, xr = np.broadcast_arrays(xp, xr)
    lo, hi = np.minimum(xp, xr), np.maximum(xp, xr)
    left = np.concatenate([s.grid[:1], s.grid])
    right = np.concatenate([s.grid, s.grid[-1:]])
    mid = np.where(xp <= xr, before + p, before - q)  # between the two sides' points
    w = (
        np.abs(before) * np.maximum(lo - left, 0.0)
        + np.abs(mid) * (hi - lo)
        + np.abs(after) * np.maximum(right - hi, 0.0)
    ).sum(-1) / s.scale
    kc = np.add.reduceat(k, s.coarse_starts, axis=-1)
    rc = np.add.reduceat(r, s.coarse_starts, axis=-1)
    bins = kc.shape[-1]
    ps, qs = (kc + 0.5) / (n + 0.5 * bins), (rc + 0.5) / (big_n + 0.5 * bins)
    psi = ((ps - qs) * np.log(ps / qs)).sum(-1)
    return np.stack([np.sqrt(np.maximum(psi, 0.0)), _js(kc / n, rc / big_n), w, ks])


def _categorical_distances(k: Floats, r: Floats) -> Floats:
    """Chi-square as sqrt(chi2 / n) and JS distance (2 x leading shape)."""
    n, big_n = k.sum(-1, keepdims=True), r.sum(-1, keepdims=True)
    qs = (r + 0.5) / (big_n + 0.5 * r.shape[-1])
    chi2 = ((k - n * qs) ** 2 / (n * qs)).sum(-1)
    return np.stack([np.sqrt(chi2 / n[..., 0]), _js(k / n, r / big_n)])


def _multiplier(tail: float, chunks: int) -> float:
    """Student-t prediction multiplier: how far a new period may depart, in root mean squares
    of ``chunks`` observed ones, with probability ``tail`` (0 below 5 chunks: too few to
    extrapolate from, so only the largest chunk departure counts)."""
    if chunks < 5:
        return 0.0
    return float(sps.t.isf(tail, chunks - 1) * np.sqrt(1.0 + 1.0 / chunks))


def _spread(excess: Floats, z: float) -> Floats:
    """Natural departure per row of squared chunk excesses (rows x chunks): the larger of the
    largest one and ``z`` times their root mean square (a normal tail beyond the few chunks)."""
    rms = np.sqrt(np.maximum(excess.mean(axis=1), 0.0))
    out: Floats = np.maximum(np.sqrt(np.maximum(excess, 0.0)).max(axis=1), z * rms)
    return out


def _gamma_quantile(sample: Floats, level: float) -> float:
    """Quantile of a gamma distribution with the sample's mean and variance."""
    mean, var = float(sample.mean()), float(sample.var())
    if mean <= 0.0 or var <= 0.0:
        return float(sample.max())
    shape = mean * mean / var
    return float(sps.gamma.ppf(level, shape, scale=mean / shape))


def _bucket(n_eff: Floats) -> Ints:
    """Quarter-octave bucket (rounded down, so thresholds err on the safe side)."""
    out: Ints = np.floor(4.0 * np.log2(np.maximum(n_eff, 1.0))).astype(np.int64)
    return out


def _ns(n: Floats, rows: Ints, dist: int) -> Ints:
    out: Ints = np.vstack([np.broadcast_to(n, (dist, n.size)), rows[None, :]]).astype(np.int64)
    return out


# -- input and findings ------------------------------------------------------------------------


def _check_input(
    ref: Reference,
    matrix: npt.ArrayLike,
    feature_names: Sequence[str],
    categorical: Mapping[str, CategoricalValues] | None,
) -> tuple[Floats, dict[str, pl.Series]]:
    x = np.asarray(matrix, dtype=np.float64)
    names = list(feature_names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise MonitorError(
            f"The current matrix must be 2-D with one column per feature name ({len(names)} "
            f"names). Got shape {x.shape}. Pass rows x features."
        )
    cats = dict(categorical or {})
    have = ", ".join(ref.feature_names)
    numeric = {s.name for s in ref.numeric}
    for name in [*names, *cats]:
        if name not in ref.feature_names:
            raise MonitorError(
                f"Feature {name!r} is not in the reference, which has: {have}. Drop the "
                "column, or build a new reference that includes it."
            )
    for name in names:
        if name not in numeric:
            raise MonitorError(
                f"Feature {name!r} is categorical in the reference; pass it in 'categorical'."
            )
    if len(set(names)) != len(names):
        raise MonitorError(f"A feature name is given twice in {names}. Give each once.")
    for name in ref.feature_names:
        if name not in names and name not in cats:
            raise MonitorError(
                f"Reference feature {name!r} is missing from the current data (given: "
                f"{', '.join([*names, *cats]) or 'nothing'}). Pass every reference feature."
            )
    rows = x.shape[0] if names else len(next(iter(cats.values()), []))
    return x, {n: categorical_series(n, v, rows) for n, v in cats.items()}


def _window_index(
    windows: npt.ArrayLike, rows: int, expected: Sequence[int] | None
) -> tuple[Ints, Ints, Ints]:
    """Sorted window ids, each row's index into them, and rows per window."""
    w = np.asarray(windows)
    if w.ndim != 1 or w.size != rows or (w.size and w.dtype.kind not in "iu"):
        raise MonitorError(
            f"'windows' must hold one integer window id per row ({rows:,} rows). Got an array "
            f"of shape {w.shape} and dtype {w.dtype}. Pass e.g. the day index of each row."
        )
    if rows == 0:
        raise MonitorError("The current data has no rows. Pass at least one window of rows.")
    w = w.astype(np.int64)
    lo, hi = int(w.min()), int(w.max())
    if hi - lo < 4 * rows + 1024:  # dense ids (days): a bincount beats a sort
        count = np.bincount(w - lo)
        ids = np.flatnonzero(count).astype(np.int64) + lo
        idx = (np.cumsum(count > 0) - 1)[w - lo]
    else:
        ids, idx = np.unique(w, return_inverse=True)
    absent = sorted(set(expected or ()) - set(ids.tolist()))
    if absent:
        which = ", ".join(str(a) for a in absent[:10]) + (", ..." if len(absent) > 10 else "")
        raise MonitorError(
            f"Window{'s' if len(absent) > 1 else ''} {which} ha{'ve' if len(absent) > 1 else 's'}"
            " no rows. Every expected window needs rows: check the data feed for that period, "
            "or leave it out of 'expected_windows'."
        )
    return ids, idx.astype(np.int64), np.bincount(idx, minlength=ids.size).astype(np.int64)


def _quality(
    name: str, ids: Ints, n: Floats, inf: Floats, findings: list[tuple[int, str, str, str]]
) -> None:
    for i in np.flatnonzero(n == 0):
        findings.append((int(ids[i]), name, "all_missing", "every value is missing"))
    for i in np.flatnonzero(inf > 0):
        detail = f"{int(inf[i]):,} infinite values, counted as missing"
        findings.append((int(ids[i]), name, "non_finite", detail))


def _unseen(
    s: CategoricalSummary, values: pl.Series, win: Ints, findings: list[tuple[int, str, str, str]]
) -> None:
    what = "new categories" if s.counts[-1] == 0 else "categories beyond the kept ones"
    frame = pl.DataFrame({"window": win, "value": values})
    counts = frame.group_by("window", "value").len().sort(["window", "len", "value"])
    for window in counts.get_column("window").unique(maintain_order=True).to_list():
        part = counts.filter(pl.col("window") == window).sort("len", descending=True).head(3)
        listed = ", ".join(f"{v!r} ({c:,})" for v, c in part.select("value", "len").iter_rows())
        findings.append((int(window), s.name, "unseen_categories", f"{what}: {listed}"))


# -- assembling the report ---------------------------------------------------------------------


def _assemble(
    ids: Ints,
    rows: Ints,
    feats: list[_Feature],
    mv: tuple[Floats, Floats, list[list[str]]] | None,
    findings: list[tuple[int, str, str, str]],
    cfg: DriftConfig,
) -> DriftReport:
    w = ids.size
    parts: list[pl.DataFrame] = []
    per_feature: list[dict[str, Any]] = []
    for f in feats:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = f.d / f.t
        over = ratio > 1.0 + 1e-9  # within float rounding of the threshold is not an alarm
        level = np.where(np.isnan(ratio), 1, np.where(~over, 0, np.where(ratio > cfg.severe, 3, 2)))
        s = len(f.stats)
        parts.append(
            pl.DataFrame(
                {
                    "window": np.tile(ids, s),
                    "feature": [f.name] * (s * w),
                    "kind": [f.kind] * (s * w),
                    "statistic": np.repeat(f.stats, w),
                    "n": f.n.ravel(),
                    "value": f.raw.ravel(),
                    "threshold": f.raw_t.ravel(),
                    "ratio": ratio.ravel(),
                    "drifted": over.ravel(),
                    "severity": np.array(SEVERITY)[level].ravel(),
                }
            )
        )
        score = np.nanmax(np.where(np.isnan(ratio), -np.inf, ratio), axis=0)
        per_feature.append(
            {
                "window": ids,
                "feature": [f.name] * w,
                "kind": [f.kind] * w,
                "rows": rows,
                "missing_share": (rows - f.n[0]) / rows,
                "drifted": over.any(axis=0),
                "severity": np.array(SEVERITY)[level.max(axis=0)],
                "score": score,
                "worst": np.array(f.stats)[np.argmax(np.where(np.isnan(ratio), -1, ratio), 0)],
            }
        )
    statistics = pl.concat(parts)
    features = (
        pl.concat([pl.DataFrame(p) for p in per_feature])
        .sort(["window", "drifted", "score"], descending=[False, True, True], maintain_order=True)
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("window"))
    )
    top = (
        features.filter(pl.col("drifted"))
        .group_by("window", maintain_order=True)
        .agg(pl.col("feature").head(cfg.top).alias("top_features"))
    )
    win = pl.DataFrame({"window": ids, "rows": rows})
    counts = features.group_by("window").agg(pl.col("drifted").sum().alias("drifted_features"))
    win = win.join(counts, on="window", how="left").join(top, on="window", how="left")
    win = win.with_columns(pl.col("top_features").fill_null(pl.lit([], pl.List(pl.String))))
    if mv is None:
        none = pl.lit(None, pl.Float64)
        win = win.with_columns(
            multivariate=none,
            multivariate_threshold=none,
            multivariate_drifted=pl.lit(None, pl.Boolean),
            multivariate_features=pl.lit([], pl.List(pl.String)),
        )
    else:
        value, threshold, names = mv
        win = win.with_columns(
            multivariate=pl.Series(value),
            multivariate_threshold=pl.Series(threshold),
            multivariate_drifted=pl.Series(value > threshold),
            multivariate_features=pl.Series(names, dtype=pl.List(pl.String)),
        )
    schema = {"window": pl.Int64, "feature": pl.String, "issue": pl.String, "detail": pl.String}
    found = pl.DataFrame(findings, schema=schema, orient="row").sort(
        ["window", "feature", "issue"], maintain_order=True
    )
    return DriftReport(statistics, features, win.sort("window"), found)


def drift_report(
    reference: Reference,
    matrix: npt.ArrayLike,
    feature_names: Sequence[str],
    windows: npt.ArrayLike,
    categorical: Mapping[str, CategoricalValues] | None = None,
    *,
    config: DriftConfig | None = None,
    expected_windows: Sequence[int] | None = None,
) -> DriftReport:
    """One-off :meth:`DriftMonitor.report` (keep a monitor to reuse its threshold cache).

    Examples
    --------
    >>> import numpy as np
    >>> ref = Reference.build(
    ...     np.zeros((1_000, 0)), [], categorical={"channel": ["web", "pos"] * 500}
    ... )
    >>> report = drift_report(
    ...     ref, np.zeros((400, 0)), [], np.repeat([7, 8], 200),
    ...     categorical={"channel": ["web", "pos"] * 100 + ["app"] * 200},
    ... )
    >>> report.windows.select("window", "drifted_features").rows()
    [(7, 0), (8, 1)]
    >>> report.findings.select("window", "issue").rows()
    [(8, 'unseen_categories')]
    """
    monitor = DriftMonitor(reference, config)
    return monitor.report(
        matrix, feature_names, windows, categorical, expected_windows=expected_windows
    )
