"""Estimators the guard can train: LightGBM (default), logistic regression (the baseline), an
MLP with dropout (extra ``[torch]``), or any scikit-learn classifier.

Each knows its default parameters, its regularization search space (optuna) and how to fit one
fold from a :class:`FitData` (train rows with weights, validation rows for early stopping where
the model supports it). Class imbalance is handled by weights; calibration happens on the
ensemble.

The contract every estimator keeps (``tests/training/test_estimator_contract.py`` runs each one
through it): ``fit`` returns a member whose ``predict`` gives one finite probability per row,
missing feature values (NaN) included; the same data, parameters and seed give the same scores;
the member's bytes load back to identical scores; bad input is refused once, by
:class:`FitData`, with a :class:`~modelminder.errors.TrainingError` that names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from modelminder.errors import TrainingError
from modelminder.model.ensemble import LightGBMMember, Member, MLPMember, SklearnMember

Array = npt.NDArray[Any]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
THREADS = 2  # these machines have 2 cores; more threads thrash


@dataclass(frozen=True)
class FitData:
    """The rows one model learns from, checked once when it is made.

    Parameters
    ----------
    X
        Training features, shape ``(rows, features)``; NaN means missing (every estimator
        accepts it).
    y
        Training labels, 0 or 1, one per row of ``X``; both classes must be present.
    weight
        Row weights, one per row: finite, at least 0, with a positive total.
    X_valid, y_valid
        Validation rows (same features) for early stopping; zero rows is allowed.

    Arrays are stored as float64 (features, weights) and int64 (labels). :meth:`of` fills in
    equal weights and an empty validation set.

    Examples
    --------
    >>> data = FitData.of([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> data.weight.tolist(), data.X_valid.shape
    ([1.0, 1.0, 1.0, 1.0], (0, 1))
    >>> FitData.of([[0.0], [1.0]], [0, float("nan")])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.TrainingError: The training labels 'y' must be 0 or 1. Got nan at row 1...
    """

    X: FloatArray
    y: IntArray
    weight: FloatArray
    X_valid: FloatArray
    y_valid: IntArray

    def __post_init__(self) -> None:
        X = _matrix(self.X, "training features 'X'")
        y = _labels(self.y, "training labels 'y'", len(X))
        X_valid = _matrix(self.X_valid, "validation features 'X_valid'", allow_empty=True)
        y_valid = _labels(self.y_valid, "validation labels 'y_valid'", len(X_valid))
        weight = _weights(self.weight, len(X))
        if X_valid.shape[1] != X.shape[1]:
            raise TrainingError(
                f"The validation features 'X_valid' must have the training features' "
                f"{X.shape[1]} columns. Got {X_valid.shape[1]}."
            )
        positives = int(y.sum())
        if positives in (0, len(y)):
            only = "negative (0)" if positives == 0 else "positive (1)"
            raise TrainingError(
                f"Every one of the {len(y):,} training labels 'y' is {only}: a classifier "
                "needs both classes. Train on a longer range or wait for more labels."
            )
        for name, value in (
            ("X", X), ("y", y), ("weight", weight), ("X_valid", X_valid), ("y_valid", y_valid)
        ):  # fmt: skip
            object.__setattr__(self, name, value)

    @classmethod
    def of(
        cls,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        weight: npt.ArrayLike | None = None,
        X_valid: npt.ArrayLike | None = None,
        y_valid: npt.ArrayLike | None = None,
    ) -> FitData:
        """Equal weights and no validation rows unless given."""
        X_ = _matrix(X, "training features 'X'")
        w = np.ones(len(X_), np.float64) if weight is None else weight
        Xv = np.zeros((0, X_.shape[1]), np.float64) if X_valid is None else X_valid
        yv = np.zeros(0, np.int64) if y_valid is None else y_valid
        return cls(X_, y, w, Xv, yv)  # type: ignore[arg-type]  # normalized in __post_init__


def _matrix(value: object, what: str, *, allow_empty: bool = False) -> FloatArray:
    try:
        A = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"The {what} must be numbers. Got {exc}.") from None
    if A.ndim != 2:
        raise TrainingError(
            f"The {what} must be a 2-D array (rows x features). Got shape {A.shape}."
        )
    if not allow_empty and (A.shape[0] == 0 or A.shape[1] == 0):
        raise TrainingError(f"The {what} must have rows and features. Got shape {A.shape}.")
    return A


def _vector(value: object, what: str, rows: int) -> FloatArray:
    """One number per row, or a TrainingError naming ``what``."""
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"The {what} must be numbers. Got {exc}.") from None
    if v.ndim != 1 or len(v) != rows:
        raise TrainingError(
            f"The {what} must be 1-D with one value per row ({rows:,}). Got shape {v.shape}."
        )
    return v


def _labels(value: object, what: str, rows: int) -> IntArray:
    v = _vector(value, what, rows)
    bad = np.flatnonzero((v != 0.0) & (v != 1.0))
    if bad.size:
        raise TrainingError(
            f"The {what} must be 0 or 1. Got {v[bad[0]]} at row {bad[0]} ({bad.size:,} bad "
            "values in all); drop the rows without a label or map them to 0/1 first."
        )
    return v.astype(np.int64)


def _weights(value: object, rows: int) -> FloatArray:
    w = _vector(value, "row weights 'weight'", rows)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise TrainingError(
            f"The row weights 'weight' must be finite and >= 0. Got {w[bad[0]]} at row {bad[0]}."
        )
    if not w.sum() > 0:
        raise TrainingError("The row weights 'weight' must not all be 0.")
    return w


class Estimator(Protocol):
    name: str

    def default_params(self) -> dict[str, Any]: ...

    def suggest(self, trial: Any) -> dict[str, Any]: ...

    def fit(self, data: FitData, params: dict[str, Any], *, seed: int) -> Member:
        """One fitted member from ``data`` (checked already), ``params`` and ``seed``."""
        ...


def _pos_weight(y: Array, w: FloatArray, cap: float = 10.0) -> float:
    """Up-weight the rare positives, by the square root of the imbalance and at most ``cap``:
    full balancing lets deep trees isolate single frauds; calibration undoes the shift."""
    pos = float(np.sum(w[y == 1]))
    neg = float(np.sum(w[y == 0]))
    return min(math.sqrt(neg / pos), cap) if pos > 0 else 1.0


class LightGBMEstimator:
    """Gradient-boosted trees; regularization searched, trees stopped early on validation."""

    name = "lightgbm"

    def default_params(self) -> dict[str, Any]:
        return {
            "num_leaves": 31,
            "min_child_samples": 100,
            "lambda_l1": 0.1,
            "lambda_l2": 1.0,
            "feature_fraction": 0.8,
            "learning_rate": 0.05,
            "max_rounds": 400,
            "early_stopping": True,
        }

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 20, 1000, log=True),
            "lambda_l1": trial.suggest_float("lambda_l1", 1e-3, 10.0, log=True),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
            "max_rounds": 400,
            "early_stopping": True,
        }

    def fit(self, data: FitData, params: dict[str, Any], *, seed: int) -> LightGBMMember:
        import lightgbm as lgb

        X, y, w, Xv, yv = data.X, data.y, data.weight, data.X_valid, data.y_valid
        p = dict(params)
        rounds = int(p.pop("max_rounds", 400))
        stop = bool(p.pop("early_stopping", True))
        booster_params = {
            "objective": "binary",
            "metric": "average_precision",
            "scale_pos_weight": _pos_weight(y, w),
            "num_threads": THREADS,
            "verbosity": -1,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            **p,
        }
        train = lgb.Dataset(X, label=y, weight=w, free_raw_data=True)
        callbacks: list[Any] = []
        valid_sets = []
        if stop and len(yv) and 0 < int(np.sum(yv)) < len(yv):
            valid_sets = [lgb.Dataset(Xv, label=yv, reference=train)]
            callbacks.append(lgb.early_stopping(30, verbose=False))
        booster = lgb.train(
            booster_params, train, num_boost_round=rounds, valid_sets=valid_sets,
            callbacks=callbacks,
        )  # fmt: skip
        return LightGBMMember(booster)


class SklearnEstimator:
    """Any scikit-learn classifier (cloned per fold). Missing values are imputed first."""

    def __init__(self, estimator: Any, name: str = "sklearn") -> None:
        if not (hasattr(estimator, "fit") and hasattr(estimator, "predict_proba")):
            raise TrainingError(
                f"{type(estimator).__name__} does not look like a scikit-learn classifier: it "
                "needs fit() and predict_proba()."
            )
        self.estimator = estimator
        self.name = name

    def default_params(self) -> dict[str, Any]:
        return {}

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {}

    def _pipeline(self, params: dict[str, Any], seed: int) -> Any:
        from sklearn.base import clone
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        est = clone(self.estimator)
        settable = {k: v for k, v in params.items() if k in est.get_params()}
        est.set_params(**settable)
        if "random_state" in est.get_params():
            est.set_params(random_state=seed)
        return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), est)

    def fit(self, data: FitData, params: dict[str, Any], *, seed: int) -> SklearnMember:
        X, y, w = data.X, data.y, data.weight
        pipe = self._pipeline(params, seed)
        last = pipe.steps[-1][0]
        try:
            pipe.fit(X, y, **{f"{last}__sample_weight": w})
        except TypeError:  # the estimator takes no sample weights
            pipe.fit(X, y)
        return SklearnMember(pipe)


class LogisticEstimator(SklearnEstimator):
    """Standardized logistic regression with balanced class weights: the simple baseline."""

    def __init__(self) -> None:
        from sklearn.linear_model import LogisticRegression

        super().__init__(LogisticRegression(max_iter=1000, class_weight="balanced"), "logistic")

    def default_params(self) -> dict[str, Any]:
        return {"C": 1.0}

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}

    def _pipeline(self, params: dict[str, Any], seed: int) -> Any:
        from sklearn.preprocessing import StandardScaler

        pipe = super()._pipeline(params, seed)
        pipe.steps.insert(1, ("standardscaler", StandardScaler()))
        return pipe


class MLPEstimator:
    """A two-layer MLP with dropout and early stopping (PyTorch, extra ``[torch]``)."""

    name = "mlp"

    def default_params(self) -> dict[str, Any]:
        return {"hidden": 64, "dropout": 0.2, "weight_decay": 1e-4, "lr": 1e-3, "epochs": 20}

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {
            "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
            "epochs": 20,
        }

    def fit(self, data: FitData, params: dict[str, Any], *, seed: int) -> MLPMember:
        X, y, w, Xv, yv = data.X, data.y, data.weight, data.X_valid, data.y_valid
        try:
            import torch
        except ImportError as exc:  # pragma: no cover -- depends on the install
            raise TrainingError(
                "The 'mlp' estimator needs PyTorch: pip install 'modelminder[torch]'."
            ) from exc
        from modelminder.metrics import average_precision

        torch.manual_seed(seed)
        torch.set_num_threads(THREADS)
        mean = np.nanmean(X, axis=0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        std = np.nanstd(X, axis=0)
        std = np.where((std > 0) & np.isfinite(std), std, 1.0)

        def prep(A: FloatArray) -> Any:
            Z = (A - mean) / std
            return torch.tensor(np.where(np.isnan(Z), 0.0, Z), dtype=torch.float32)

        h = int(params["hidden"])
        net = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], h), torch.nn.ReLU(), torch.nn.Dropout(params["dropout"]),
            torch.nn.Linear(h, h // 2), torch.nn.ReLU(), torch.nn.Dropout(params["dropout"]),
            torch.nn.Linear(h // 2, 1),
        )  # fmt: skip
        opt = torch.optim.Adam(
            net.parameters(), lr=params["lr"], weight_decay=params["weight_decay"]
        )
        loss_fn = torch.nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(_pos_weight(y, w)), reduction="none"
        )
        Xt, yt, wt = prep(X), torch.tensor(y, dtype=torch.float32), torch.tensor(w).float()
        Xvt = prep(Xv) if len(yv) else None
        best, best_state, patience = -math.inf, None, 0
        gen = torch.Generator().manual_seed(seed)
        for _ in range(int(params["epochs"])):
            net.train()
            for idx in torch.split(torch.randperm(len(yt), generator=gen), 1024):
                opt.zero_grad()
                loss = (loss_fn(net(Xt[idx])[:, 0], yt[idx]) * wt[idx]).mean()
                loss.backward()
                opt.step()
            if Xvt is None:
                continue
            net.eval()
            with torch.no_grad():
                score = average_precision(yv, net(Xvt)[:, 0].numpy())
            if not math.isnan(score) and score > best:
                best, patience = score, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                patience += 1
                if patience >= 3:  # early stopping on the validation fold
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        layers = [
            (
                m.weight.detach().numpy().T.astype(np.float64),
                m.bias.detach().numpy().astype(np.float64),
            )
            for m in linears
        ]
        return MLPMember(mean.astype(np.float64), std.astype(np.float64), layers)


ESTIMATORS = ("lightgbm", "logistic", "mlp")


def make_estimator(name_or_estimator: str | Any) -> Any:
    """An estimator by name (``lightgbm``, ``logistic``, ``mlp``) or a scikit-learn classifier."""
    if not isinstance(name_or_estimator, str):
        return SklearnEstimator(name_or_estimator)
    if name_or_estimator == "lightgbm":
        return LightGBMEstimator()
    if name_or_estimator == "logistic":
        return LogisticEstimator()
    if name_or_estimator == "mlp":
        return MLPEstimator()
    raise TrainingError(
        f"Unknown estimator {name_or_estimator!r}. Allowed: {', '.join(ESTIMATORS)} "
        "(or, from Python, any scikit-learn classifier instance)."
    )
