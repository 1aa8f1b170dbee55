"""Fitted models and their safe serialization: members, the bagged ensemble, calibration.

A model that modelminder ships is an :class:`Ensemble`: the fold models of the guarded
cross-validation (*members*), averaged, then calibrated by a strictly increasing map built on
an isotonic fit of their out-of-fold scores (:class:`Calibrator`). Every member saves to bytes
in a format that cannot run code on load:

* LightGBM -- the booster's own text format;
* scikit-learn -- skops, loaded only if every type in the file is on an allow-list;
* MLP -- its weights as a NumPy ``.npz`` (``allow_pickle=False``); scored in NumPy.

No pickle is ever loaded.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modelminder.errors import ArtifactError, TrainingError

Array = npt.NDArray[Any]
FloatArray = npt.NDArray[np.float64]
# Types a skops file may contain beyond skops' own defaults (which name scikit-learn's
# estimators and numpy/scipy containers one by one): the fitted internals of common
# classifiers, each named exactly. Never a prefix (``sklearn.`` would admit any function in
# the package) and never a ``builtins`` callable (``builtins.exec`` runs code on load).
# Anything else is refused before a byte of the file is turned into an object.
TRUSTED_TYPES = frozenset(
    {
        "numpy.dtype",  # pipelines with imputers/scalers keep their dtypes
        "sklearn.tree._tree.Tree",  # decision trees, random forests, extra trees, GBM
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    }
)


class Member(Protocol):
    """One fitted model: probabilities of the positive class, and its bytes."""

    kind: str

    def predict(self, X: FloatArray) -> FloatArray: ...

    def to_bytes(self) -> bytes: ...


class LightGBMMember:
    kind = "lightgbm"
    suffix = "txt"

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, X: FloatArray) -> FloatArray:
        return np.asarray(self.booster.predict(X, num_threads=1), np.float64)

    def to_bytes(self) -> bytes:
        return str(self.booster.model_to_string()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LightGBMMember:
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=data.decode()))


class SklearnMember:
    kind = "sklearn"
    suffix = "skops"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, X: FloatArray) -> FloatArray:
        return np.asarray(self.estimator.predict_proba(X)[:, 1], np.float64)

    def to_bytes(self) -> bytes:
        import skops.io as sio

        return bytes(sio.dumps(self.estimator))

    @classmethod
    def from_bytes(cls, data: bytes) -> SklearnMember:
        import skops.io as sio

        try:
            # Reads the file's schema only; nothing in it is constructed or called.
            types = sio.get_untrusted_types(data=data)
        except Exception as exc:  # not a skops file, or a malformed one
            raise ArtifactError(
                f"A scikit-learn model file is not a readable skops file ({exc}). It was not "
                "loaded."
            ) from None
        refused = sorted(t for t in types if t not in TRUSTED_TYPES)
        if refused:
            raise ArtifactError(
                f"A scikit-learn model file contains types that are not trusted: "
                f"{', '.join(refused)}. It was not loaded (no code in it ran). Trusted are "
                "scikit-learn's estimators, the numpy/scipy containers they use and "
                "training.ensemble.TRUSTED_TYPES; retrain with scikit-learn estimators, or "
                "review the file."
            )
        try:
            return cls(sio.loads(data, trusted=sorted(types)))
        except Exception as exc:
            raise ArtifactError(
                f"A scikit-learn model file could not be loaded ({exc}). Retrain the model."
            ) from None


class MLPMember:
    """A feed-forward net (ReLU hidden layers, sigmoid output) scored in NumPy.

    Inputs are standardized with the training mean/std; missing values become the mean.
    """

    kind = "mlp"
    suffix = "npz"

    def __init__(self, mean: FloatArray, std: FloatArray, layers: list[tuple[Array, Array]]):
        self.mean = mean
        self.std = std
        self.layers = layers

    def predict(self, X: FloatArray) -> FloatArray:
        h = (np.asarray(X, np.float64) - self.mean) / self.std
        h = np.where(np.isnan(h), 0.0, h)
        for i, (W, b) in enumerate(self.layers):
            h = h @ W + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        z = h[:, 0]
        return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)

    def to_bytes(self) -> bytes:
        arrays: dict[str, Array] = {"mean": self.mean, "std": self.std}
        for i, (W, b) in enumerate(self.layers):
            arrays[f"W{i}"] = W
            arrays[f"b{i}"] = b
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> MLPMember:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            n = sum(1 for k in z.files if k.startswith("W"))
            layers = [(z[f"W{i}"], z[f"b{i}"]) for i in range(n)]
            return cls(z["mean"], z["std"], layers)


MEMBER_TYPES: dict[str, type[LightGBMMember] | type[SklearnMember] | type[MLPMember]] = {
    "lightgbm": LightGBMMember,
    "sklearn": SklearnMember,
    "mlp": MLPMember,
}


MIN_CALIBRATION_POSITIVES = 5
"""Fewest positives, and fewest negatives, :meth:`Calibrator.fit` accepts. The isotonic map
has at most one step per positive: fitted on none, it maps every score to 0 (a model that
served 0.0 for every event was made so). Training validates each fold on at least as many
positives (``modelminder.training.splits.MIN_VALID_POSITIVES``), so a fold plan that passes
its check has enough positives."""

TIE_BREAK = 1e-6
"""Weight of the raw score in the calibrated one (see :class:`Calibrator`): it moves a
calibrated probability by at most one in a million, far below any calibration error a
monitor can measure, and keeps the map strictly increasing where the isotonic fit is flat."""

CALIBRATOR_KIND = "centered_isotonic"  # the map written since model format 2
MODEL_FORMAT = 2
"""The format of ``model.json`` this code writes. 2: the calibrator is a
:data:`CALIBRATOR_KIND` map (``kind``, ``x``, ``y``, ``tie_break``, ``lo``, ``hi``); 1: it was
the isotonic step map (``x``, ``y`` only). Both are read; a format-1 model scores as before."""
MODEL_FORMATS = (1, 2)


@dataclass
class Calibrator:
    """A strictly increasing map from raw to calibrated scores: the order of the raw scores
    (and so every ranking metric: AUC, average precision, recall at an alert rate) is kept.

    How it is made. An isotonic regression of the labels on the raw scores gives a step
    function: each step is a block of consecutive raw scores and its fraud rate. Used as it is
    (what models of format 1 did), every score of a block gets the same probability: on a
    real week, 67,000 events got 40-50 distinct scores and the ties cost 0.044 average
    precision. Here each step becomes one knot instead, at the block's mean raw score and its
    rate (*centered* isotonic regression): the rate of a block is the fraud rate *at its
    mean score*, not at its ends. Between knots the map is linear; the rates rise from knot
    to knot, so it rises strictly there. Below the first knot and above the last it would be
    flat, so a tie-break is mixed in::

        calibrated = (1 - w) * interp(raw, knots) + w * (raw - lo) / (hi - lo)

    with ``w`` = :data:`TIE_BREAK` (1e-6) and ``[lo, hi]`` the span of ``[0, 1]`` and of the
    fitted raw scores (for probabilities, the tie-break is ``w * raw``). It changes no
    probability by more than ``w``, keeps every output in [0, 1], and makes the map strictly
    increasing on all of ``[lo, hi]``; beyond it (raw scores outside the fitted range and
    outside [0, 1]) the map is constant, never decreasing.

    In floating point: two raw scores never swap order (the map is evaluated so that it
    never decreases, knots included), and two raw scores that differ by more than about
    ``1e-9 * (hi - lo)`` always get distinct calibrated scores. Closer ones may tie where the
    isotonic fit is flat; raw scores that differ only in their last bits (rounding noise,
    a relative difference of ~1e-15) may tie anywhere.

    Models saved before (format 1) keep their step map and score exactly as they did:
    ``tie_break=0`` means "the knots as scikit-learn gave them, linear in between".

    Examples
    --------
    >>> raw = np.linspace(0.0, 1.0, 40); labels = (raw > 0.7).astype(int)
    >>> cal = Calibrator.fit(raw, labels)
    >>> np.round(cal(np.array([0.1, 0.5, 0.9])), 3).tolist()
    [0.0, 0.3, 1.0]
    >>> bool(np.all(np.diff(cal(raw)) > 0))  # every raw score keeps its rank
    True
    >>> Calibrator.fit(raw[:4], labels[:4])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.TrainingError: The calibrator cannot be fitted on 4 scores with 0 ...
    """

    x: FloatArray  # knots: raw scores, strictly increasing
    y: FloatArray  # knots: calibrated scores in [0, 1], non-decreasing
    tie_break: float = 0.0  # w above; 0: a format-1 step map, evaluated as it was
    lo: float = 0.0
    hi: float = 1.0

    @classmethod
    def fit(cls, raw: FloatArray, labels: Array) -> Calibrator:
        """Fit on out-of-sample ``raw`` scores and their 0/1 ``labels``; refuses (with a
        :class:`~modelminder.errors.TrainingError`) non-finite scores, labels other than 0/1,
        and fewer than :data:`MIN_CALIBRATION_POSITIVES` positives or negatives."""
        from sklearn.isotonic import isotonic_regression

        raw, labels = cls._checked(raw, labels)
        order = np.argsort(raw, kind="stable")
        values, first, counts = np.unique(raw[order], return_index=True, return_counts=True)
        rates = np.add.reduceat(labels[order], first) / counts
        fitted = isotonic_regression(rates, sample_weight=counts, y_min=0.0, y_max=1.0)
        starts = np.r_[True, fitted[1:] != fitted[:-1]]  # each block's first distinct score
        block = np.cumsum(starts) - 1
        weight = np.bincount(block, weights=counts)
        mean = np.bincount(block, weights=values * counts) / weight
        # Inside its block's range despite rounding: knots stay strictly increasing.
        knots = np.clip(mean, values[starts], values[np.r_[starts[1:], True]])
        return cls(
            np.asarray(knots, np.float64),
            np.asarray(fitted[starts], np.float64),
            TIE_BREAK,
            float(min(0.0, values[0])),
            float(max(1.0, values[-1])),
        )

    def __call__(self, raw: FloatArray) -> FloatArray:
        r = np.asarray(raw, np.float64)
        if self.tie_break == 0.0:  # format 1: exactly the map it served with
            return np.asarray(np.interp(r, self.x, self.y), np.float64)
        g = np.interp(r, self.x, self.y)
        if len(self.x) > 1:
            # np.interp can overshoot a knot by a rounding error just below it; held inside
            # each segment's ends, the map never decreases.
            j = np.clip(np.searchsorted(self.x, r, "right") - 1, 0, len(self.x) - 2)
            g = np.clip(g, self.y[j], self.y[j + 1])
        # Halves: (hi - lo) cannot overflow for any finite span.
        half = 0.5 * self.hi - 0.5 * self.lo
        t = (0.5 * np.clip(r, self.lo, self.hi) - 0.5 * self.lo) / half
        w = self.tie_break
        return np.asarray(np.clip((1.0 - w) * g + w * t, 0.0, 1.0), np.float64)

    def to_json(self) -> dict[str, Any]:
        """The map as written in ``model.json`` (format 2; a format-1 map keeps its form)."""
        if self.tie_break == 0.0:
            return {"x": self.x.tolist(), "y": self.y.tolist()}
        return {
            "kind": CALIBRATOR_KIND,
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "tie_break": self.tie_break,
            "lo": self.lo,
            "hi": self.hi,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibrator:
        """Read :meth:`to_json` output, of either format; raises ArtifactError for a map
        that is not one this code wrote."""
        x, y = np.asarray(data["x"], np.float64), np.asarray(data["y"], np.float64)
        kind = data.get("kind")
        if kind is None:  # format 1: the isotonic step map, as it was served
            return cls(x, y)
        if kind != CALIBRATOR_KIND:
            raise ArtifactError(
                f"Unknown calibrator kind {kind!r} in model.json. Known: {CALIBRATOR_KIND!r} "
                "(or none, for format 1)."
            )
        cal = cls(x, y, float(data["tie_break"]), float(data["lo"]), float(data["hi"]))
        ok = (
            x.ndim == 1 and x.shape == y.shape and len(x) >= 1
            and bool(np.all(np.isfinite(x)) and np.all(np.diff(x) > 0))
            and bool(np.all((y >= 0.0) & (y <= 1.0)) and np.all(np.diff(y) >= 0))
            and 0.0 < cal.tie_break < 1.0 and math.isfinite(cal.lo) and math.isfinite(cal.hi)
            and cal.lo < cal.hi
        )  # fmt: skip
        if not ok:
            raise ArtifactError(
                "The calibrator in model.json is malformed: it needs raw-score knots 'x' "
                "strictly increasing and finite, as many calibrated knots 'y' in [0, 1] never "
                "decreasing, 0 < 'tie_break' < 1 and finite 'lo' < 'hi'. Got "
                f"{len(x)} x and {len(y)} y knots, tie_break={cal.tie_break}, lo={cal.lo}, "
                f"hi={cal.hi}. Retrain and register a new version."
            )
        return cal

    @staticmethod
    def _checked(raw: FloatArray, labels: Array) -> tuple[FloatArray, FloatArray]:
        """The scores and labels as float arrays, or a TrainingError naming what is wrong."""
        r = np.asarray(raw, np.float64)
        v = np.asarray(labels, np.float64)
        if r.ndim != 1 or v.shape != r.shape:
            raise TrainingError(
                f"The calibrator needs one label per score (1-D arrays of equal length). Got "
                f"scores of shape {r.shape} and labels of shape {v.shape}."
            )
        bad = np.flatnonzero(~np.isfinite(r))
        if bad.size:
            raise TrainingError(
                f"The calibrator needs finite scores. Got {r[bad[0]]} at position {bad[0]} "
                f"({bad.size:,} in all); fit it on the out-of-fold scores of validated rows "
                "only."
            )
        bad = np.flatnonzero((v != 0.0) & (v != 1.0))
        if bad.size:
            raise TrainingError(
                f"The calibrator needs 0/1 labels. Got {v[bad[0]]} at position {bad[0]}."
            )
        positives = int(v.sum())
        negatives = len(v) - positives
        if min(positives, negatives) < MIN_CALIBRATION_POSITIVES:
            raise TrainingError(
                f"The calibrator cannot be fitted on {len(v):,} scores with {positives:,} "
                f"positives and {negatives:,} negatives: it needs at least "
                f"{MIN_CALIBRATION_POSITIVES} of each (MIN_CALIBRATION_POSITIVES in "
                "modelminder.model.ensemble); with fewer its map is a guess, and with no positive "
                "it scores every event 0. Validate on more rows: more history, fewer folds, or a "
                "shorter maturity if labels really arrive sooner."
            )
        return r, v


@dataclass
class Stack:
    """A logistic meta-model over groups of members: ``sigmoid(b + sum_i w_i logit(g_i))``
    where ``g_i`` is the mean score of group ``i`` (members ``groups[i][0]:groups[i][1]``)."""

    groups: list[tuple[int, int]]
    coef: list[float]
    intercept: float

    def combine(self, members: list[Any], X: FloatArray) -> FloatArray:
        z = np.full(len(X), self.intercept, np.float64)
        for (a, b), w in zip(self.groups, self.coef, strict=True):
            z += w * logit(np.mean([m.predict(X) for m in members[a:b]], axis=0))
        return np.asarray(1.0 / (1.0 + np.exp(-z)), np.float64)


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)), np.float64)


@dataclass
class Ensemble:
    """The shipped model: averaged members, then calibration.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> m = Ensemble(["x"], [SklearnMember(LogisticRegression().fit(X, y))], "logistic", {})
    >>> again = Ensemble.from_files(m.to_files())
    >>> bool(np.allclose(again.predict(X), m.predict(X)))
    True
    """

    feature_names: list[str]
    members: list[Any]
    estimator: str
    params: dict[str, Any]
    calibrator: Calibrator | None = None
    info: dict[str, Any] = field(default_factory=dict)
    stack: Stack | None = None

    def raw(self, X: FloatArray) -> FloatArray:
        """The members' average probability (or the stack's), before calibration."""
        if self.stack is not None:
            return self.stack.combine(self.members, X)
        return np.asarray(np.mean([m.predict(X) for m in self.members], axis=0), np.float64)

    def predict(self, X: FloatArray) -> FloatArray:
        """Calibrated probability of the positive class for each row of ``X``."""
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(
                f"The model expects {len(self.feature_names)} features "
                f"({', '.join(self.feature_names[:5])}...); got an array of shape {X.shape}."
            )
        raw = self.raw(X)
        return self.calibrator(raw) if self.calibrator is not None else raw

    def contributions(self, X: FloatArray) -> FloatArray | None:
        """Per-feature contributions (log-odds) to the first row's score, from the first
        LightGBM member, or None when no member can explain itself. One member, not all:
        contributions cost ~15x a prediction per member."""
        for m in self.members:
            if isinstance(m, LightGBMMember):
                out = m.booster.predict(np.asarray(X, np.float64), pred_contrib=True, num_threads=1)
                return np.asarray(out, np.float64)[0, :-1]
        return None

    def to_files(self) -> dict[str, bytes]:
        """The files of the artifact (JSON description plus one file per member)."""
        files: dict[str, bytes] = {}
        kinds = []
        for i, m in enumerate(self.members):
            name = f"member_{i}.{m.suffix}"
            files[name] = m.to_bytes()
            kinds.append({"kind": m.kind, "file": name})
        doc = {
            "format": MODEL_FORMAT,
            "feature_names": self.feature_names,
            "estimator": self.estimator,
            "params": self.params,
            "members": kinds,
            "calibrator": None if self.calibrator is None else self.calibrator.to_json(),
            "info": self.info,
            "stack": None
            if self.stack is None
            else {
                "groups": [list(g) for g in self.stack.groups],
                "coef": self.stack.coef,
                "intercept": self.stack.intercept,
            },
        }
        files["model.json"] = json.dumps(doc, indent=1, default=_jsonable).encode()
        return files

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> Ensemble:
        """Rebuild from :meth:`to_files` output (checksums are the registry's job)."""
        if "model.json" not in files:
            raise ArtifactError("The model artifact has no model.json; it is not a model.")
        try:
            return cls._from_files(files)
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ArtifactError(
                f"The model artifact is malformed ({type(exc).__name__}: {exc}); it was not "
                "loaded. Retrain and register a new version."
            ) from None

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> Ensemble:
        doc = json.loads(files["model.json"])
        if not isinstance(doc, dict):
            raise TypeError("model.json does not hold an object")
        fmt = doc.get("format", 1)
        if fmt not in MODEL_FORMATS:
            raise ArtifactError(
                f"The model artifact has format {fmt!r}; this modelminder reads formats "
                f"{', '.join(map(str, MODEL_FORMATS))}. Upgrade modelminder to serve it, or "
                "retrain and register the model with this version."
            )
        members = []
        for spec in doc["members"]:
            kind = spec["kind"]
            if kind not in MEMBER_TYPES:
                raise ArtifactError(
                    f"Unknown member kind {kind!r} in model.json. Known: {', '.join(MEMBER_TYPES)}."
                )
            members.append(MEMBER_TYPES[kind].from_bytes(files[spec["file"]]))
        cal = doc.get("calibrator")
        calibrator = None if cal is None else Calibrator.from_json(cal)
        st = doc.get("stack")
        stack = (
            None
            if st is None
            else Stack(
                [(int(a), int(b)) for a, b in st["groups"]],
                [float(w) for w in st["coef"]],
                float(st["intercept"]),
            )
        )
        return cls(
            list(doc["feature_names"]),
            members,
            str(doc["estimator"]),
            dict(doc["params"]),
            calibrator,
            dict(doc.get("info", {})),
            stack,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
