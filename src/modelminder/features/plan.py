"""Compile a validated :class:`FeatureSet` into the arrays the kernel runs on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelminder.features.dsl import Compute, FeatureSet, LabelWindow, Window
from modelminder.features.expr import Expr
from modelminder.features.kernel import KIND_CODES, MOMENT_KINDS, TILES_PER_WINDOW
from modelminder.features.rows import check_row_types


@dataclass
class WindowGroup:
    """All window features that share one entity key."""

    keys: tuple[str, ...]
    values: list[Expr]  # aggregated value expressions, indexed by spec column
    categoricals: list[str]  # fields whose distinct values are counted
    specs: npt.NDArray[np.int64]  # rows of (kind, window_us, column, output index)
    horizon: int
    tile: int = 0  # time-tile width of sums, means and std (0: the group has none)
    value_offset: int = 0  # first column of this group's values in the plan's value matrix
    cat_offset: int = 0  # first column of this group's codes in the plan's code matrix


@dataclass
class LabelGroup:
    """All label-aware features that share one entity key and one time axis.

    ``known`` groups hold the windows over the time labels became known (``over="known"``):
    their state is sorted by ``known_at``; the others' by the labelled event's time.
    """

    keys: tuple[str, ...]
    specs: npt.NDArray[np.int64]
    horizon: int
    known: bool = False


@dataclass
class Plan:
    """A feature set compiled for execution; shared by replay and online."""

    feature_set: FeatureSet
    schema: dict[str, str]
    names: list[str]
    window_groups: list[WindowGroup]
    label_groups: list[LabelGroup]
    computes: list[tuple[int, Expr]]

    @property
    def values(self) -> list[Expr]:
        """Every aggregated value expression, group by group (columns of the value matrix)."""
        return [v for g in self.window_groups for v in g.values]

    @property
    def categoricals(self) -> list[str]:
        """Every field counted by ``distinct``, group by group (columns of the code matrix)."""
        return [c for g in self.window_groups for c in g.categoricals]

    @property
    def max_horizon(self) -> int:
        groups: list[WindowGroup | LabelGroup] = [*self.window_groups, *self.label_groups]
        return max((g.horizon for g in groups), default=0)


def _tile_width(rows: list[list[int]]) -> int:
    """Tile width of a window group (see :mod:`modelminder.features.kernel`): its longest
    sum/mean/std window over ``TILES_PER_WINDOW``, so such a window covers at most that many
    whole tiles; 0 when the group has no sum, mean or std."""
    moments = {KIND_CODES[k] for k in MOMENT_KINDS}
    longest = max((r[1] for r in rows if r[0] in moments), default=0)
    return max(1, longest // TILES_PER_WINDOW) if longest else 0


def compile_plan(feature_set: FeatureSet, schema: Mapping[str, str]) -> Plan:
    """Validate ``feature_set`` against ``schema`` and compile it."""
    feature_set.validate(schema)
    lateness = feature_set.lateness_us
    names = feature_set.feature_names
    wrows: dict[tuple[str, ...], list[list[int]]] = {}
    wvalues: dict[tuple[str, ...], list[Expr]] = {}
    wcats: dict[tuple[str, ...], list[str]] = {}
    lrows: dict[tuple[tuple[str, ...], bool], list[list[int]]] = {}
    computes: list[tuple[int, Expr]] = []
    for idx, feat in enumerate(feature_set.features):
        if isinstance(feat, Window):
            rows = wrows.setdefault(feat.keys, [])
            column = 0
            if feat.agg.value is not None:
                vals = wvalues.setdefault(feat.keys, [])
                desc = [v.describe() for v in vals]
                text = feat.agg.value.describe()
                if text not in desc:
                    vals.append(feat.agg.value)
                    desc.append(text)
                column = desc.index(text)
            elif feat.agg.field is not None:
                cats = wcats.setdefault(feat.keys, [])
                if feat.agg.field not in cats:
                    cats.append(feat.agg.field)
                column = cats.index(feat.agg.field)
            rows.append([KIND_CODES[feat.agg.kind], feat.window_us, column, idx])
        elif isinstance(feat, LabelWindow):
            lrows.setdefault((feat.keys, feat.over_known), []).append(
                [KIND_CODES[feat.agg.kind], feat.window_us, 0, idx]
            )
        elif isinstance(feat, Compute):
            computes.append((idx, feat.expr))
    window_groups = [
        WindowGroup(
            keys=keys,
            values=wvalues.get(keys, []),
            categoricals=wcats.get(keys, []),
            # Sorted by window, so the kernel searches each window's bound once per event.
            specs=np.array(sorted(rows, key=lambda r: (r[1], r[3])), dtype=np.int64).reshape(-1, 4),
            horizon=max(r[1] for r in rows) + lateness,
            tile=_tile_width(rows),
        )
        for keys, rows in wrows.items()
    ]
    voff = coff = 0
    for g in window_groups:
        g.value_offset, g.cat_offset = voff, coff
        voff += len(g.values)
        coff += len(g.categoricals)
    label_groups = [
        LabelGroup(
            keys=keys,
            specs=np.array(rows, dtype=np.int64).reshape(-1, 4),
            horizon=max(r[1] for r in rows) + lateness,
            known=known,
        )
        for (keys, known), rows in lrows.items()
    ]
    plan = Plan(feature_set, dict(schema), names, window_groups, label_groups, computes)
    check_row_types(plan)
    return plan
