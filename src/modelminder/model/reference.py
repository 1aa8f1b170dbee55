"""What training stores about its data, so drift can be measured without the raw rows.

A :class:`Reference` is built once from the training matrix and kept with the model. It holds,
per numeric feature, a grid of reference quantiles (101 by default: the 0%, 1%, ..., 100%
quantiles, ties merged) with the reference's row count and mean value in each *cell* of that
grid; per categorical feature, the counts of its most frequent categories; and the same counts
for ``chunks`` consecutive, time-ordered slices of the reference rows, so thresholds can be
calibrated on how much a stable stream varies between periods. A small PCA model of the
features' normal scores gives one whole-vector drift signal. Everything is counts, quantiles
and means: its size depends on the number of features, cells and chunks, never on the number
of training rows.

Cells of a numeric feature with grid ``g_0 < g_1 < ... < g_m`` are ``x < g_0`` (cell 0, empty
in the reference), ``g_(j-1) <= x < g_j`` (cell j) and ``x >= g_m`` (the last cell). The coarse
bins used by PSI and Jensen-Shannon are unions of adjacent cells split at the 5%, 10%, ...,
95% quantiles (``bins=20``).

:meth:`Reference.to_dict` gives plain JSON-able lists and numbers (no pickle) with a
``version`` field; :meth:`Reference.from_dict` checks and reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import special

from modelminder.errors import MonitorError

VERSION = 1
OTHER = "__other__"

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
CategoricalValues = npt.NDArray[Any] | pl.Series | Sequence[str | None]


def _frozen(a: npt.ArrayLike, dtype: type) -> Any:
    out: Any = np.array(a, dtype=dtype)
    out.flags.writeable = False  # stored statistics never change after the build
    return out


@dataclass(frozen=True, eq=False)
class NumericSummary:
    """The stored distribution of one numeric feature (see the module docstring for cells).

    ``means[j]`` is the mean reference value in cell j (the cell's left edge where the
    reference has no value in it). ``chunk_counts`` has one row per reference chunk.
    ``scale`` is the unit of the normalized Wasserstein distance: the interquartile range
    divided by 1.349 (the standard deviation for normal data), else the standard deviation,
    else 1 for a constant feature.
    """

    name: str
    grid: Floats
    coarse_starts: Ints
    counts: Ints
    means: Floats
    chunk_counts: Ints
    missing: int
    chunk_missing: Ints
    mean: float
    std: float
    scale: float


@dataclass(frozen=True, eq=False)
class CategoricalSummary:
    """The stored distribution of one categorical feature.

    Cells are ``categories`` (most frequent first) then ``__other__``, which holds the
    categories beyond the kept ones; ``counts[-1] == 0`` means every reference category was
    kept, so anything in ``__other__`` later is a new category.
    """

    name: str
    categories: tuple[str, ...]
    counts: Ints
    chunk_counts: Ints
    missing: int
    chunk_missing: Ints


@dataclass(frozen=True, eq=False)
class PcaSummary:
    """A PCA model of the numeric features and its reconstruction error.

    Each feature enters as its normal score through the reference's CDF (see
    :func:`normal_scores`), standardized by ``center`` and ``scale``; a missing value sits at
    zero. A row's error is its mean squared residual over ``features`` after projecting on
    ``components``. ``chunk_error_means`` is the mean error of each reference chunk, and
    ``residual[f]`` the reference's mean squared residual of feature f, used to name the
    features that explain a rise in error.
    """

    features: tuple[str, ...]
    center: Floats
    scale: Floats
    components: Floats
    error_mean: float
    error_var: float
    chunk_error_means: Floats
    residual: Floats


@dataclass(frozen=True, eq=False)
class Reference:
    """What training stores about its data, for drift monitoring.

    Build it with :meth:`build`; store it with :meth:`to_dict`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(5_000, 2))
    >>> ref = Reference.build(x, ["amount", "hour"], categorical={"channel": ["web"] * 5_000})
    >>> ref.feature_names
    ('amount', 'hour', 'channel')
    >>> ref.rows, len(ref.chunk_rows), ref.numeric[0].grid.size
    (5000, 10, 101)
    >>> Reference.from_dict(ref.to_dict()).to_dict() == ref.to_dict()
    True
    """

    rows: int
    chunk_rows: Ints
    numeric: tuple[NumericSummary, ...]
    categorical: tuple[CategoricalSummary, ...]
    pca: PcaSummary | None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Numeric feature names, then categorical ones."""
        return tuple(s.name for s in self.numeric) + tuple(s.name for s in self.categorical)

    @classmethod
    def build(
        cls,
        matrix: npt.ArrayLike,
        feature_names: Sequence[str],
        categorical: Mapping[str, CategoricalValues] | None = None,
        *,
        bins: int = 20,
        grid: int = 101,
        chunks: int = 10,
        max_categories: int = 50,
        pca_variance: float = 0.9,
    ) -> Reference:
        """Summarize the training rows (in time order; NaN = missing) once.

        Parameters
        ----------
        matrix
            Numeric features, rows x features, rows in time order; NaN marks a missing value.
        feature_names
            One name per column of ``matrix``.
        categorical
            Categorical features by name: strings per row (None marks a missing value).
        bins
            Coarse bins for PSI and Jensen-Shannon; ``grid - 1`` must be a multiple of it.
        grid
            Quantiles kept per numeric feature (0% to 100%, evenly spaced).
        chunks
            Consecutive, equal slices of the rows whose differences calibrate the thresholds.
            Make one about as long as a monitoring window (e.g. the number of days the
            training rows cover, for daily windows). A chunk has at least 20 rows.
        max_categories
            Categories kept per categorical feature; the rest are counted as ``__other__``.
        pca_variance
            Share of the (normal-score) variance the PCA components keep.
        """
        _check_options(bins, grid, chunks, max_categories, pca_variance)
        x = np.asarray(matrix, dtype=np.float64)
        names = tuple(feature_names)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise MonitorError(
                f"The reference matrix must be 2-D with one column per feature name "
                f"({len(names)} names). Got shape {x.shape}. Pass rows x features."
            )
        cats = dict(categorical or {})
        _check_names(names, tuple(cats))
        rows = x.shape[0] if x.shape[1] else _categorical_rows(cats)
        if rows == 0:
            raise MonitorError("The reference has no rows. Build it from the training rows.")
        k = max(1, min(chunks, rows // 20))  # a chunk of fewer than 20 rows says nothing
        chunk_of = (np.arange(rows, dtype=np.int64) * k) // rows
        chunk_rows = np.bincount(chunk_of, minlength=k).astype(np.int64)
        numeric = tuple(
            _numeric(name, x[:, j], chunk_of, k, bins, grid) for j, name in enumerate(names)
        )
        categorical_s = tuple(
            _categorical(name, values, rows, chunk_of, k, max_categories)
            for name, values in cats.items()
        )
        pca = _pca(x, numeric, chunk_of, k, pca_variance)
        return cls(rows, _frozen(chunk_rows, np.int64), numeric, categorical_s, pca)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON-able), with a ``version`` field."""
        return {
            "version": VERSION,
            "rows": self.rows,
            "chunk_rows": self.chunk_rows.tolist(),
            "numeric": [
                {
                    "name": s.name,
                    "grid": s.grid.tolist(),
                    "coarse_starts": s.coarse_starts.tolist(),
                    "counts": s.counts.tolist(),
                    "means": s.means.tolist(),
                    "chunk_counts": s.chunk_counts.tolist(),
                    "missing": s.missing,
                    "chunk_missing": s.chunk_missing.tolist(),
                    "mean": s.mean,
                    "std": s.std,
                    "scale": s.scale,
                }
                for s in self.numeric
            ],
            "categorical": [
                {
                    "name": s.name,
                    "categories": list(s.categories),
                    "counts": s.counts.tolist(),
                    "chunk_counts": s.chunk_counts.tolist(),
                    "missing": s.missing,
                    "chunk_missing": s.chunk_missing.tolist(),
                }
                for s in self.categorical
            ],
            "pca": None if self.pca is None else _pca_dict(self.pca),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Read what :meth:`to_dict` wrote; a wrong version or shape raises MonitorError."""
        if data.get("version") != VERSION:
            raise MonitorError(
                f"This reference has version {data.get('version')!r}; this modelminder reads "
                f"version {VERSION}. Rebuild the reference with Reference.build."
            )
        try:
            ref = _from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise MonitorError(
                f"The stored reference is malformed ({type(exc).__name__}: {exc}). Rebuild it "
                "with Reference.build."
            ) from exc
        _check_shapes(ref)
        return ref


def _check_options(bins: int, grid: int, chunks: int, cats: int, variance: float) -> None:
    if bins < 2 or grid < 3 or (grid - 1) % bins:
        raise MonitorError(
            f"'grid' - 1 must be a multiple of 'bins' (coarse bins are unions of grid cells), "
            f"with bins >= 2. Got bins={bins}, grid={grid}. Use e.g. bins=20, grid=101."
        )
    if chunks < 1 or cats < 1:
        raise MonitorError(
            f"'chunks' and 'max_categories' must be >= 1. Got chunks={chunks}, "
            f"max_categories={cats}."
        )
    if not 0.0 < variance < 1.0:
        raise MonitorError(f"'pca_variance' must be in (0, 1), like 0.9. Got {variance}.")


def _check_names(numeric: tuple[str, ...], categorical: tuple[str, ...]) -> None:
    names = numeric + categorical
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise MonitorError(f"Feature {name!r} is given twice. Give each feature once.")
        seen.add(name)
    if not names:
        raise MonitorError("The reference has no features. Pass at least one column.")


def _categorical_rows(cats: Mapping[str, CategoricalValues]) -> int:
    return len(next(iter(cats.values()))) if cats else 0


def categorical_series(name: str, values: CategoricalValues, rows: int) -> pl.Series:
    """Values of a categorical feature as a String series (None = missing), checked."""
    try:
        s = values if isinstance(values, pl.Series) else pl.Series(name, values)
        dtype = str(s.dtype)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        dtype = f"mixed ({exc})"
    if dtype not in ("String", "Categorical", "Null") and not dtype.startswith("Enum"):
        raise MonitorError(
            f"Categorical feature {name!r} must hold strings (None for missing). Got values "
            f"of type {dtype}. Convert the column to strings (e.g. str(code))."
        )
    s = s.cast(pl.String)
    if s.len() != rows:
        raise MonitorError(
            f"Categorical feature {name!r} has {s.len():,} values but the data has {rows:,} "
            "rows. Pass one value per row."
        )
    return s


def _numeric(
    name: str, col: Floats, chunk_of: Ints, k: int, bins: int, grid: int
) -> NumericSummary:
    if np.isinf(col).any():
        raise MonitorError(
            f"Reference feature {name!r} has {int(np.isinf(col).sum()):,} infinite values. "
            "Use NaN for missing values, or clip them, before building the reference."
        )
    missing = np.isnan(col)
    v = np.sort(col[~missing])
    if v.size == 0:
        raise MonitorError(
            f"Reference feature {name!r} has no value (all {col.size:,} rows are missing). "
            "Drop it from the monitored features or fix the training data."
        )
    q = v[np.ceil(np.linspace(0.0, 1.0, grid) * v.size).astype(np.int64).clip(1, v.size) - 1]
    g = np.unique(q)  # the inverted-CDF quantiles, ties merged: actual reference values
    left = np.searchsorted(v, g, side="left")
    bounds = np.concatenate([[0], left, [v.size]])
    counts = np.diff(bounds)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    sums = csum[bounds[1:]] - csum[bounds[:-1]]
    edges = np.concatenate([[g[0]], g])  # each cell's left edge (cell 0: the minimum)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), edges).clip(edges, None)
    coarse = np.unique(q[(grid - 1) // bins :: (grid - 1) // bins][:-1])
    starts = np.concatenate([[0], np.searchsorted(g, coarse, side="right")])
    cell = np.searchsorted(g, col, side="right")
    cell[missing] = g.size + 1  # an extra column for missing values, dropped below
    both = np.bincount(chunk_of * (g.size + 2) + cell, minlength=k * (g.size + 2))
    both = both.reshape(k, g.size + 2)
    iqr = float(q[(3 * (grid - 1)) // 4] - q[(grid - 1) // 4])
    std = float(v.std())
    scale = iqr / 1.349 if iqr > 0 else std if std > 0 else 1.0
    return NumericSummary(
        name=name,
        grid=_frozen(g, np.float64),
        coarse_starts=_frozen(np.unique(starts), np.int64),
        counts=_frozen(counts, np.int64),
        means=_frozen(means, np.float64),
        chunk_counts=_frozen(both[:, :-1], np.int64),
        missing=int(missing.sum()),
        chunk_missing=_frozen(both[:, -1], np.int64),
        mean=float(v.mean()),
        std=std,
        scale=float(scale),
    )


def _categorical(
    name: str, values: CategoricalValues, rows: int, chunk_of: Ints, k: int, cap: int
) -> CategoricalSummary:
    s = categorical_series(name, values, rows)
    missing = s.is_null().to_numpy()
    vc = s.alias("value").drop_nulls().value_counts(name="count")
    vc = vc.sort(["count", "value"], descending=[True, False])  # ties: a stable order
    kept = tuple(str(c) for c in vc.get_column("value").head(cap).to_list())
    code = s.replace_strict(kept, list(range(len(kept))), default=len(kept), return_dtype=pl.Int64)
    cells = code.to_numpy().copy()
    cells[missing] = len(kept) + 1
    both = np.bincount(chunk_of * (len(kept) + 2) + cells, minlength=k * (len(kept) + 2))
    both = both.reshape(k, len(kept) + 2)
    return CategoricalSummary(
        name=name,
        categories=kept,
        counts=_frozen(both[:, :-1].sum(axis=0), np.int64),
        chunk_counts=_frozen(both[:, :-1], np.int64),
        missing=int(missing.sum()),
        chunk_missing=_frozen(both[:, -1], np.int64),
    )


def normal_scores(x: Floats, s: NumericSummary) -> Floats:
    """Map values through the reference's CDF to normal scores (clipped to +-3.09).

    A fixed monotone map, the same for reference and current rows, so the PCA sees the joint
    structure without being dominated by heavy-tailed features. Missing values give NaN.
    """
    below = np.cumsum(s.counts)[:-1] / s.counts.sum()  # share below each grid point
    level = (below + np.append(below[1:], 1.0)) / 2.0  # mid-rank of atoms on the grid
    u = np.interp(x, s.grid, level) if s.grid.size > 1 else np.full(x.shape, 0.5)
    z: Floats = special.ndtri(np.clip(u, 0.001, 0.999))
    z[np.isnan(x)] = np.nan
    return z


def standardize(
    x: Floats, numeric: Sequence[NumericSummary], pca: PcaSummary, columns: Sequence[int]
) -> Floats:
    """PCA input, *transposed* (features x rows; a long inner dimension keeps the matrix
    products fast): normal scores standardized by the reference's, missing values at zero."""
    zt = _scores(x, numeric, columns)
    zt -= pca.center[:, None]
    zt /= pca.scale[:, None]
    return np.nan_to_num(zt, copy=False, nan=0.0)


def _scores(x: Floats, numeric: Sequence[NumericSummary], columns: Sequence[int]) -> Floats:
    zt = np.empty((len(columns), x.shape[0]))
    for i, j in enumerate(columns):
        zt[i] = normal_scores(x[:, j], numeric[i])
    return zt


def pca_errors(zt: Floats, components: Floats) -> tuple[Floats, Floats]:
    """Per-row reconstruction error and squared residuals (features x rows) of ``zt``."""
    projector = np.eye(components.shape[1]) - components.T @ components
    resid = projector @ zt
    sq = resid * resid
    return sq.mean(axis=0), sq


def _pca(
    x: Floats, numeric: tuple[NumericSummary, ...], chunk_of: Ints, k: int, variance: float
) -> PcaSummary | None:
    used = [j for j, s in enumerate(numeric) if s.std > 0]
    if len(used) < 2:
        return None  # one varying feature has no cross-feature structure to watch
    zt = _scores(x, [numeric[j] for j in used], used)
    center, scale = np.nanmean(zt, axis=1), np.nanstd(zt, axis=1)
    varying = scale > 0
    if varying.sum() < 2:
        return None
    used = [j for j, v in zip(used, varying, strict=True) if v]
    center, scale = center[varying], scale[varying]
    zt = np.nan_to_num((zt[varying] - center[:, None]) / scale[:, None], nan=0.0)
    eigval, eigvec = np.linalg.eigh(zt @ zt.T / zt.shape[1])
    order = np.argsort(eigval)[::-1]
    share = np.cumsum(eigval[order]) / max(float(eigval.sum()), 1e-300)
    keep = min(int(np.searchsorted(share, variance)) + 1, len(used) - 1)
    components = np.ascontiguousarray(eigvec[:, order[:keep]].T)
    err, sq = pca_errors(zt, components)
    chunk_n = np.bincount(chunk_of, minlength=k)
    return PcaSummary(
        features=tuple(numeric[j].name for j in used),
        center=_frozen(center, np.float64),
        scale=_frozen(scale, np.float64),
        components=_frozen(components, np.float64),
        error_mean=float(err.mean()),
        error_var=float(err.var()),
        chunk_error_means=_frozen(np.bincount(chunk_of, err, k) / chunk_n, np.float64),
        residual=_frozen(sq.mean(axis=1), np.float64),
    )


def _pca_dict(p: PcaSummary) -> dict[str, Any]:
    return {
        "features": list(p.features),
        "center": p.center.tolist(),
        "scale": p.scale.tolist(),
        "components": p.components.tolist(),
        "error_mean": p.error_mean,
        "error_var": p.error_var,
        "chunk_error_means": p.chunk_error_means.tolist(),
        "residual": p.residual.tolist(),
    }


def _from_dict(d: Mapping[str, Any]) -> Reference:
    numeric = tuple(
        NumericSummary(
            name=str(s["name"]),
            grid=_frozen(s["grid"], np.float64),
            coarse_starts=_frozen(s["coarse_starts"], np.int64),
            counts=_frozen(s["counts"], np.int64),
            means=_frozen(s["means"], np.float64),
            chunk_counts=_frozen(s["chunk_counts"], np.int64),
            missing=int(s["missing"]),
            chunk_missing=_frozen(s["chunk_missing"], np.int64),
            mean=float(s["mean"]),
            std=float(s["std"]),
            scale=float(s["scale"]),
        )
        for s in d["numeric"]
    )
    categorical = tuple(
        CategoricalSummary(
            name=str(s["name"]),
            categories=tuple(str(c) for c in s["categories"]),
            counts=_frozen(s["counts"], np.int64),
            chunk_counts=_frozen(s["chunk_counts"], np.int64),
            missing=int(s["missing"]),
            chunk_missing=_frozen(s["chunk_missing"], np.int64),
        )
        for s in d["categorical"]
    )
    p = d["pca"]
    pca = None
    if p is not None:
        pca = PcaSummary(
            features=tuple(str(f) for f in p["features"]),
            center=_frozen(p["center"], np.float64),
            scale=_frozen(p["scale"], np.float64),
            components=_frozen(p["components"], np.float64),
            error_mean=float(p["error_mean"]),
            error_var=float(p["error_var"]),
            chunk_error_means=_frozen(p["chunk_error_means"], np.float64),
            residual=_frozen(p["residual"], np.float64),
        )
    return Reference(int(d["rows"]), _frozen(d["chunk_rows"], np.int64), numeric, categorical, pca)


def _check_shapes(ref: Reference) -> None:
    k = ref.chunk_rows.size
    for s in ref.numeric:
        c = s.grid.size + 1
        ok = (
            s.counts.shape == (c,)
            and s.means.shape == (c,)
            and s.chunk_counts.shape == (k, c)
            and s.chunk_missing.shape == (k,)
            and s.coarse_starts.size >= 1
            and int(s.coarse_starts.max()) < c
        )
        if not ok:
            raise MonitorError(
                f"Stored numeric feature {s.name!r} has inconsistent array shapes (grid of "
                f"{s.grid.size}, {k} chunks). Rebuild the reference with Reference.build."
            )
    for cs in ref.categorical:
        c = len(cs.categories) + 1
        if cs.counts.shape != (c,) or cs.chunk_counts.shape != (k, c):
            raise MonitorError(
                f"Stored categorical feature {cs.name!r} has inconsistent array shapes. "
                "Rebuild the reference with Reference.build."
            )
    _check_names(tuple(s.name for s in ref.numeric), tuple(s.name for s in ref.categorical))
