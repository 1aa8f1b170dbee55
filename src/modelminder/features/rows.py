"""Row programs: a plan's expressions compiled once to machine code, run by replay and online.

Each plan has two row programs, generated from its expressions as Python source and compiled
with numba:

* ``values(F, V, lo, hi)`` -- the values window features aggregate (``V[i, j]``);
* ``computes(F, out, lo, hi)`` -- the :class:`Compute` features, in definition order
  (``out[feature, i]``), reading event inputs and earlier features.

``F[k, i]`` is input ``k`` of event ``i``: a numeric field as float64, the event time (integer
microseconds, exact in float64 until the year 2255), or a 0/1 text comparison done before the
compiled code runs (text never enters it). Replay runs the programs over every row; the online
path runs them over a one-row matrix. Same machine code, so the two agree bit for bit.

The generated source is written to a cache directory (``$MODELMINDER_CACHE``, else
``~/.cache/modelminder``) so numba's on-disk cache compiles each distinct plan only once.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from modelminder.errors import FeatureDefinitionError
from modelminder.features.dsl import FeatureSet
from modelminder.features.expr import Binary, Col, Expr, Lit, Unary


class _Group(Protocol):
    @property
    def values(self) -> list[Expr]: ...


class RowPlan(Protocol):
    """What the row compiler reads of a :class:`modelminder.features.plan.Plan` (a protocol,
    so that plans, which type-check their rows when compiled, can import this module)."""

    @property
    def feature_set(self) -> FeatureSet: ...
    @property
    def schema(self) -> dict[str, str]: ...
    @property
    def names(self) -> list[str]: ...
    @property
    def window_groups(self) -> Sequence[_Group]: ...
    @property
    def computes(self) -> list[tuple[int, Expr]]: ...


Array = npt.NDArray[Any]
RowFn = Callable[[Array, Array, int, int], None]

_ARITH = {"+": "+", "-": "-", "*": "*"}
_CALLS = {"/": "div", ">": "gt", ">=": "ge", "<": "lt", "<=": "le", "==": "eq", "!=": "ne"}
_PROGRAMS: dict[str, tuple[RowFn, RowFn, Callable[..., None]]] = {}


@dataclass(frozen=True)
class Input:
    """One input column of the row programs."""

    kind: str  # "num" (a numeric field), "ts", or "eq" (text field == text field or literal)
    field: str = ""
    other: str | None = None  # for "eq": the other field's name ...
    literal: str | None = None  # ... or the literal compared with


@dataclass(frozen=True)
class RowProgram:
    """A plan's compiled row programs and the inputs they read."""

    inputs: tuple[Input, ...]
    values: RowFn
    computes: RowFn
    # values, the state's online_step and computes in one compiled call (online path):
    # online(state, wslots, lslots, t, F, V, C, out)
    online: Callable[..., None]

    def inputs_from_frame(self, frame: pl.DataFrame, ts: npt.NDArray[np.int64]) -> Array:
        """The input matrix ``F`` (inputs x rows) of a frame of events."""
        F = np.empty((max(len(self.inputs), 1), frame.height), np.float64)
        for k, inp in enumerate(self.inputs):
            if inp.kind == "ts":
                F[k] = ts
            elif inp.kind == "num":
                F[k] = frame.get_column(inp.field).cast(pl.Float64).to_numpy()
            else:
                left = frame.get_column(inp.field).cast(pl.String)
                right = (
                    frame.get_column(inp.other).cast(pl.String)
                    if inp.other is not None
                    else inp.literal
                )
                F[k] = (left == right).cast(pl.Float64).to_numpy()
        return F

    def event_writer(self, F: Array) -> Callable[[Mapping[str, Any], int], None]:
        """A function writing one event's inputs into column 0 of ``F``."""
        column = F[:, 0]
        getters = list(enumerate(_getter(inp) for inp in self.inputs))

        def write(event: Mapping[str, Any], ts: int) -> None:
            for k, get in getters:
                column[k] = get(event, ts)

        return write


def _getter(inp: Input) -> Callable[[Mapping[str, Any], int], float]:
    name = inp.field
    if inp.kind == "ts":
        return lambda e, t: t
    if inp.kind == "num":
        return lambda e, t: e[name]
    if inp.other is not None:
        other = inp.other
        return lambda e, t: 1.0 if str(e[name]) == str(e[other]) else 0.0
    literal = inp.literal
    return lambda e, t: 1.0 if str(e[name]) == literal else 0.0


class _Compiler:
    def __init__(self, plan: RowPlan) -> None:
        self.plan = plan
        self.inputs: list[Input] = []
        self.feature_index = {name: j for j, name in enumerate(plan.names)}

    def _input(self, inp: Input) -> str:
        if inp not in self.inputs:
            self.inputs.append(inp)
        return f"F[{self.inputs.index(inp)}, i]"

    def _is_text(self, e: Expr) -> bool:
        if isinstance(e, Lit):
            return isinstance(e.value, str)
        return isinstance(e, Col) and self.plan.schema.get(e.name) == "str"

    def emit(self, e: Expr, owner: str, features: bool) -> str:
        if isinstance(e, Col):
            if e.name == "ts":
                return self._input(Input("ts"))
            if e.name in self.plan.schema:
                if self.plan.schema[e.name] == "str":
                    raise self._text_error(owner, e.name)
                return self._input(Input("num", e.name))
            if features and e.name in self.feature_index:
                return f"out[{self.feature_index[e.name]}, i]"
            raise FeatureDefinitionError(f"Feature '{owner}' refers to unknown name '{e.name}'.")
        if isinstance(e, Lit):
            return self._literal(e, owner)
        if isinstance(e, Binary):
            if self._is_text(e.left) or self._is_text(e.right):
                return self._text_comparison(e, owner)
            a = self.emit(e.left, owner, features)
            b = self.emit(e.right, owner, features)
            if e.op in _ARITH:
                return f"({a} {_ARITH[e.op]} {b})"
            return f"{_CALLS[e.op]}({a}, {b})"
        if isinstance(e, Unary):
            a = self.emit(e.arg, owner, features)
            if e.fn == "neg":
                return f"(-{a})"
            if e.fn == "abs":
                return f"abs({a})"
            return f"{e.fn}({a})"
        raise FeatureDefinitionError(f"Feature '{owner}' uses an unsupported expression {e!r}.")

    def _literal(self, e: Lit, owner: str) -> str:
        if isinstance(e.value, bool | int | float) and not isinstance(e.value, str):
            x = float(e.value)
            if math.isnan(x):
                return "np.nan"
            if math.isinf(x):
                return "np.inf" if x > 0 else "(-np.inf)"
            return repr(x)
        raise FeatureDefinitionError(
            f"Feature '{owner}' uses the constant {e.value!r} in arithmetic. Constants must be "
            "numbers, or text compared with a text field, e.g. col('channel').eq('online')."
        )

    def _text_comparison(self, e: Binary, owner: str) -> str:
        left, right = e.left, e.right
        if isinstance(left, Lit):
            left, right = right, left
        if e.op not in ("==", "!="):
            raise FeatureDefinitionError(
                f"Feature '{owner}' applies '{e.op}' to text ({_describe_text(left, right)!r}). "
                "Text can only be compared for equality, e.g. col('channel').eq('online')."
            )
        if not (self._is_text(left) and self._is_text(right)):
            raise FeatureDefinitionError(
                f"Feature '{owner}' compares {left.describe()} with {right.describe()}: one is "
                "text and the other is not. Compare text with text, numbers with numbers."
            )
        assert isinstance(left, Col)  # a text operand that is not a literal is a text field
        if isinstance(right, Col):
            ref = self._input(Input("eq", left.name, other=right.name))
        elif isinstance(right, Lit) and isinstance(right.value, str):
            ref = self._input(Input("eq", left.name, literal=right.value))
        else:  # pragma: no cover -- both operands were checked to be text
            raise self._text_error(owner, left.name)
        return ref if e.op == "==" else f"(1.0 - {ref})"

    @staticmethod
    def _text_error(owner: str, name: str) -> FeatureDefinitionError:
        return FeatureDefinitionError(
            f"Feature '{owner}' uses the text field or constant '{name}' in a numeric "
            "operation. Text can only be compared for equality with a text field or constant, "
            "e.g. col('channel').eq('online') or col('country').ne(col('home_country'))."
        )

    def source(self) -> str:
        plan = self.plan
        value_lines: list[str] = []
        for j, (g_name, v) in enumerate(_value_owners(plan)):
            value_lines.append(f"        V[i, {j}] = {self.emit(v, g_name, features=False)}")
        compute_lines = [
            f"        out[{idx}, i] = {self.emit(expr, plan.names[idx], features=True)}"
            for idx, expr in plan.computes
        ]
        return "\n".join(
            [
                '"""Generated by modelminder.features.rows -- do not edit."""',
                f"# engine {_engine_fingerprint()}",
                "import numpy as np",
                "from numba import njit",
                "from modelminder.features.rowfns import (",
                "    day_of_week, div, eq, ge, gt, hour_of_day, is_missing, le, log, log1p,",
                "    lt, ne,",
                ")",
                "from modelminder.features.state import online_step",
                "",
                "",
                "@njit(cache=True, nogil=True)",
                "def values(F, V, lo, hi):",
                "    for i in range(lo, hi):",
                *(value_lines or ["        pass"]),
                "",
                "",
                "@njit(cache=True, nogil=True)",
                "def computes(F, out, lo, hi):",
                "    for i in range(lo, hi):",
                *(compute_lines or ["        pass"]),
                "",
                "",
                "@njit(cache=True, nogil=True)",
                "def online(st, wslots, lslots, t, F, V, C, out):",
                "    values(F, V, 0, 1)",
                "    online_step(st, wslots, lslots, t, V, C, out)",
                "    computes(F, out, 0, 1)",
                "",
            ]
        )


@functools.cache
def _engine_fingerprint() -> str:
    """A digest of the compiled modules the generated code links in. Numba's on-disk cache
    checks only the generated file, so without it a changed engine would keep running the
    stale machine code of ``online`` (and the online path would part from replay)."""
    from modelminder.features import kernel, rowfns, state

    digest = hashlib.sha256()
    for module in (kernel, state, rowfns):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def _describe_text(left: Expr, right: Expr) -> str:
    for e in (left, right):
        if isinstance(e, Col):
            return e.name
        if isinstance(e, Lit):
            return str(e.value)
    return left.describe()


def _value_owners(plan: RowPlan) -> list[tuple[str, Expr]]:
    """Each aggregated value with the name of a feature that uses it (for messages)."""
    owners: list[tuple[str, Expr]] = []
    for g in plan.window_groups:
        for v in g.values:
            text = v.describe()
            owner = next(
                f.name
                for f in plan.feature_set.features
                if getattr(getattr(f, "agg", None), "value", None) is not None
                and f.agg.value.describe() == text  # type: ignore[union-attr]
            )
            owners.append((owner, v))
    return owners


def cache_dir() -> Path:
    """Where generated row programs (and numba's compiled copies) are kept."""
    base = os.environ.get("MODELMINDER_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "modelminder"
    )
    return Path(base) / "rows"


def _load(source: str) -> tuple[RowFn, RowFn, Callable[..., None]]:
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    cached = _PROGRAMS.get(digest)
    if cached is not None:
        return cached
    name = f"mm_rows_{digest}"
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.mkdtemp(prefix="modelminder-rows-"))
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        # Write then rename: concurrent processes never see a half-written module.
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # numba's cache re-imports the module by name
    spec.loader.exec_module(module)
    programs = (module.values, module.computes, module.online)
    _PROGRAMS[digest] = programs
    return programs


def check_row_types(plan: RowPlan) -> None:
    """Raise :class:`FeatureDefinitionError` if an expression mixes text and numbers."""
    _Compiler(plan).source()


def row_program(plan: RowPlan) -> RowProgram:
    """Compile (or fetch from the cache) the row programs of ``plan``.

    Raises :class:`FeatureDefinitionError` for an expression that mixes text and numbers.
    """
    compiler = _Compiler(plan)
    source = compiler.source()
    values, computes, online = _load(source)
    return RowProgram(tuple(compiler.inputs), values, computes, online)
