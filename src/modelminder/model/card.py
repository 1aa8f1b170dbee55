"""The records that travel with a model: its guard report and its model card.

Training writes them, the registry stores them (as JSON, with a ``card_version`` field), and
the gate, the CLI, serving, monitoring and the orchestrator read them -- through these types,
never by string keys. ``ModelCard.from_json(card.to_json())`` gives the card back unchanged
(NaN scores are stored as null and read back as NaN).

The guard report's sections that only the report itself renders (per-fold scores, learning
curve, single-feature scores, audits) stay a JSON mapping in :attr:`GuardReport.details`; what
other packages act on (scores, the overfitting gap, findings, the verdict) is typed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelminder.errors import ArtifactError
from modelminder.events.outcomes import LabelPolicy
from modelminder.jsonable import jsonable
from modelminder.model.reference import Reference

CARD_VERSION = 1


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Scores:
    """What :func:`modelminder.metrics.scores` measures on one set of rows (NaN: not
    measurable, e.g. a single class)."""

    auc: float = math.nan
    average_precision: float = math.nan
    recall_at_alert_rate: float = math.nan
    calibration_error: float = math.nan
    rows: float = 0.0
    positives: float = 0.0

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Scores:
        return cls(**{k: _num(values.get(k, getattr(cls, k))) for k in _SCORE_KEYS})

    def to_json(self) -> dict[str, Any]:
        return {k: jsonable(getattr(self, k)) for k in _SCORE_KEYS}


_SCORE_KEYS = (
    "auc", "average_precision", "recall_at_alert_rate", "calibration_error", "rows", "positives",
)  # fmt: skip


@dataclass(frozen=True)
class ScoreSet:
    """The model's scores in-sample, on purged validation (out of fold), on the out-of-time
    holdout, and the logistic baseline's on that holdout (None when no baseline ran)."""

    train: Scores
    validation: Scores
    oot: Scores
    baseline_oot: Scores | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "train": self.train.to_json(),
            "validation": self.validation.to_json(),
            "oot": self.oot.to_json(),
            "baseline_oot": None if self.baseline_oot is None else self.baseline_oot.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScoreSet:
        base = data.get("baseline_oot")
        return cls(
            Scores.of(data.get("train") or {}),
            Scores.of(data.get("validation") or {}),
            Scores.of(data.get("oot") or {}),
            None if base is None else Scores.of(base),
        )

    def rows(self) -> list[tuple[str, Scores]]:
        """``(name, scores)`` in display order (the baseline only when measured)."""
        out = [("train", self.train), ("validation", self.validation), ("oot", self.oot)]
        return out + ([("baseline_oot", self.baseline_oot)] if self.baseline_oot else [])


@dataclass(frozen=True)
class Gap:
    """The train-vs-validation gap, averaged over the folds (NaN: no fold could measure it)."""

    auc: float = math.nan
    average_precision: float = math.nan
    per_fold_auc: tuple[float, ...] = ()
    trend_per_fold: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = jsonable(
            {
                "auc": self.auc,
                "average_precision": self.average_precision,
                "per_fold_auc": list(self.per_fold_auc),
                "trend_per_fold": self.trend_per_fold,
            }
        )
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gap:
        return cls(
            _num(data.get("auc")),
            _num(data.get("average_precision")),
            tuple(_num(v) for v in data.get("per_fold_auc") or ()),
            _num(data.get("trend_per_fold", 0.0)),
        )


FINDING_KINDS = ("leakage", "data", "overfitting")


@dataclass(frozen=True)
class Finding:
    """Something the guard wants a reader (and the gate, for ``leakage``) to look at."""

    kind: str
    message: str


@dataclass(frozen=True)
class Check:
    """One gate rule applied to a report.

    An ``informational`` check is a diagnostic the gate reports next to its rules (the
    in-sample gap): it always passes and never decides the verdict. Cards written before the
    field existed read back with ``informational=False``.
    """

    name: str
    value: float
    threshold: float
    passed: bool
    message: str
    informational: bool = False


def _check_json(c: Check) -> dict[str, Any]:
    return {
        "name": c.name,
        "value": c.value,
        "threshold": c.threshold,
        "passed": c.passed,
        "message": c.message,
        "informational": c.informational,
    }


def _check_of(c: Mapping[str, Any]) -> Check:
    return Check(
        str(c["name"]),
        _num(c["value"]),
        _num(c["threshold"]),
        bool(c["passed"]),
        str(c["message"]),
        bool(c.get("informational", False)),
    )


@dataclass(frozen=True)
class Verdict:
    """The gate's decision: passed only if every check passed."""

    passed: bool
    checks: tuple[Check, ...] = ()

    @property
    def reasons(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def summary(self) -> str:
        """``PASSED: <every rule>`` or ``REJECTED: <the failed rules>``, then the
        informational checks in brackets."""
        rules = [c for c in self.checks if not c.informational]
        info = "; ".join(c.message for c in self.checks if c.informational)
        tail = f" [information: {info}]" if info else ""
        if self.passed:
            return "PASSED: " + "; ".join(c.message for c in rules) + tail
        return "REJECTED: " + "; ".join(self.reasons) + tail

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [jsonable(_check_json(c)) for c in self.checks],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        return cls(
            bool(data["passed"]),
            tuple(_check_of(c) for c in data.get("checks") or ()),
        )


@dataclass(frozen=True)
class GuardReport:
    """What the guard measured about a training run; the gate judges it."""

    scheme: str
    fold_plan: tuple[str, ...]
    scores: ScoreSet
    gap: Gap
    findings: tuple[Finding, ...] = ()
    verdict: Verdict | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "fold_plan": list(self.fold_plan),
            "scores": self.scores.to_json(),
            "gap": self.gap.to_json(),
            "findings": [{"kind": f.kind, "message": f.message} for f in self.findings],
            "verdict": None if self.verdict is None else self.verdict.to_json(),
            **{k: jsonable(v) for k, v in self.details.items() if k not in _REPORT_KEYS},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardReport:
        verdict = data.get("verdict")
        return cls(
            str(data["scheme"]),
            tuple(str(x) for x in data.get("fold_plan") or ()),
            ScoreSet.from_json(data["scores"]),
            Gap.from_json(data.get("gap") or {}),
            tuple(Finding(str(f["kind"]), str(f["message"])) for f in data.get("findings") or ()),
            None if verdict is None else Verdict.from_json(verdict),
            {k: v for k, v in data.items() if k not in _REPORT_KEYS},
        )


_REPORT_KEYS = frozenset({"scheme", "fold_plan", "scores", "gap", "findings", "verdict"})


@dataclass(frozen=True)
class TrainingSummary:
    """The data a model was trained on: log offsets and times covered, the cut-off, the label
    policy, and the row counts (rows, positives, labelled/matured negatives, immature)."""

    from_offset: int
    to_offset: int
    from_ts: int
    to_ts: int
    cutoff: int
    label_policy: LabelPolicy
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "from_offset": self.from_offset,
            "to_offset": self.to_offset,
            "from_ts": self.from_ts,
            "to_ts": self.to_ts,
            "cutoff": self.cutoff,
            "label_policy": {
                "unlabeled": self.label_policy.unlabeled,
                "maturity": self.label_policy.maturity,
            },
            "counts": {k: int(v) for k, v in self.counts.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingSummary:
        pol = data.get("label_policy") or {}
        return cls(
            int(data["from_offset"]),
            int(data["to_offset"]),
            int(data["from_ts"]),
            int(data["to_ts"]),
            int(data["cutoff"]),
            LabelPolicy(**pol),
            {str(k): int(v) for k, v in (data.get("counts") or {}).items()},
        )


@dataclass(frozen=True)
class ModelCard:
    """Everything registered with a model besides its files.

    Examples
    --------
    >>> card = ModelCard.example()
    >>> again = ModelCard.from_json(card.to_json())
    >>> again.feature_names, again.training.label_policy.maturity, again.card_version
    (('amount', 'count_1h'), '30d', 1)
    """

    feature_set: str
    fingerprint: str
    feature_names: tuple[str, ...]
    estimator: str
    params: Mapping[str, Any]
    training: TrainingSummary
    report: GuardReport
    reference: Reference | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    card_version: int = CARD_VERSION

    @property
    def metrics(self) -> ScoreSet:
        return self.report.scores

    @property
    def label_policy(self) -> LabelPolicy:
        return self.training.label_policy

    def to_json(self) -> dict[str, Any]:
        """The card as strict JSON (what the registry stores as the version's meta)."""
        return {
            "card_version": self.card_version,
            "feature_set": self.feature_set,
            "fingerprint": self.fingerprint,
            "feature_names": list(self.feature_names),
            "estimator": self.estimator,
            "params": jsonable(dict(self.params)),
            "training": self.training.to_json(),
            "metrics": self.report.scores.to_json(),
            "report": self.report.to_json(),
            "monitor_reference": None if self.reference is None else self.reference.to_dict(),
            "config": jsonable(dict(self.config)),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelCard:
        """Read what :meth:`to_json` wrote. Raises ArtifactError (naming what is wrong) for
        a card of an unknown version or a malformed one."""
        version = data.get("card_version", CARD_VERSION if "report" in data else None)
        if version != CARD_VERSION:
            raise ArtifactError(
                f"This model's card has version {version!r}; this modelminder reads version "
                f"{CARD_VERSION}. Retrain and register the model with this version."
            )
        try:
            ref = data.get("monitor_reference")
            return cls(
                str(data["feature_set"]),
                str(data["fingerprint"]),
                tuple(str(n) for n in data["feature_names"]),
                str(data["estimator"]),
                dict(data.get("params") or {}),
                TrainingSummary.from_json(data["training"]),
                GuardReport.from_json(data["report"]),
                Reference.from_dict(ref) if ref else None,
                dict(data.get("config") or {}),
            )
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"This model's card is malformed ({type(exc).__name__}: {exc}); retrain and "
                "register the model again."
            ) from None

    @classmethod
    def example(cls, names: Sequence[str] = ("amount", "count_1h")) -> ModelCard:
        """A small, valid card (for examples and tests)."""
        s = Scores(0.9, 0.5, 0.6, 0.02, 1000.0, 20.0)
        return cls(
            "example",
            "f" * 64,
            tuple(names),
            "lightgbm",
            {"num_leaves": 15},
            TrainingSummary(0, 999, 0, 86_400_000_000, 86_400_000_001, LabelPolicy(), {}),
            GuardReport("walk_forward", ("fold 1: ...",), ScoreSet(s, s, s), Gap(0.02, 0.1)),
        )
