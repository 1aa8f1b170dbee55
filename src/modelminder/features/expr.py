"""Row expressions: small, typed, vectorized formulas over event fields and earlier features.

An expression is evaluated on columns (NumPy arrays). Replay evaluates it on whole columns and
the online path on columns of length one, with the same code, so the two cannot disagree.

Examples
--------
>>> import numpy as np
>>> e = (col("amount") + 1.0).log()
>>> float(e.evaluate({"amount": np.array([np.e - 1.0])})[0])
1.0
>>> sorted(e.names())
['amount']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

_MICROS_PER_HOUR = 3_600_000_000
_MICROS_PER_DAY = 24 * _MICROS_PER_HOUR


def _safe_div(a: Array, b: Array) -> Array:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(a, b)
    # Division by zero has no meaningful value for a feature: it is missing (NaN), not inf.
    return np.where(b == 0.0, np.nan, out)


def _safe_log(a: Array) -> Array:
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a)
    return np.where(a > 0.0, out, np.nan)


def _as_float(a: Array) -> Array:
    return np.asarray(a, dtype=np.float64)


_BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "+": lambda a, b: _as_float(a) + _as_float(b),
    "-": lambda a, b: _as_float(a) - _as_float(b),
    "*": lambda a, b: _as_float(a) * _as_float(b),
    "/": _safe_div,
    ">": lambda a, b: (a > b).astype(np.float64),
    ">=": lambda a, b: (a >= b).astype(np.float64),
    "<": lambda a, b: (a < b).astype(np.float64),
    "<=": lambda a, b: (a <= b).astype(np.float64),
    "==": lambda a, b: (a == b).astype(np.float64),
    "!=": lambda a, b: (a != b).astype(np.float64),
}

_UNARY: dict[str, Callable[[Array], Array]] = {
    "log": _safe_log,
    "log1p": lambda a: _safe_log(_as_float(a) + 1.0),
    "abs": lambda a: np.abs(_as_float(a)),
    "neg": lambda a: -_as_float(a),
    "is_missing": lambda a: np.isnan(_as_float(a)).astype(np.float64),
    # Timestamps are integer microseconds since the Unix epoch, in UTC.
    "hour_of_day": lambda a: (
        (np.asarray(a, np.int64) % _MICROS_PER_DAY) // _MICROS_PER_HOUR
    ).astype(np.float64),
    # 1970-01-01 was a Thursday; shift so that Monday is 0.
    "day_of_week": lambda a: (((np.asarray(a, np.int64) // _MICROS_PER_DAY) + 3) % 7).astype(
        np.float64
    ),
}


class Expr:
    """Base of all expressions. Build them with :func:`col`, :func:`lit` and operators."""

    def names(self) -> set[str]:
        """Names of the fields and features this expression reads."""
        raise NotImplementedError

    def evaluate(self, env: Mapping[str, Array]) -> Array:
        """Evaluate on columns; every column in ``env`` has the same length."""
        raise NotImplementedError

    def describe(self) -> str:
        """A canonical text form, used in fingerprints and messages."""
        raise NotImplementedError

    def _bin(self, op: str, other: object, *, swap: bool = False) -> Expr:
        rhs = other if isinstance(other, Expr) else Lit(other)
        return Binary(op, rhs, self) if swap else Binary(op, self, rhs)

    def __add__(self, other: object) -> Expr:
        return self._bin("+", other)

    def __radd__(self, other: object) -> Expr:
        return self._bin("+", other, swap=True)

    def __sub__(self, other: object) -> Expr:
        return self._bin("-", other)

    def __rsub__(self, other: object) -> Expr:
        return self._bin("-", other, swap=True)

    def __mul__(self, other: object) -> Expr:
        return self._bin("*", other)

    def __rmul__(self, other: object) -> Expr:
        return self._bin("*", other, swap=True)

    def __truediv__(self, other: object) -> Expr:
        return self._bin("/", other)

    def __rtruediv__(self, other: object) -> Expr:
        return self._bin("/", other, swap=True)

    def __gt__(self, other: object) -> Expr:
        return self._bin(">", other)

    def __ge__(self, other: object) -> Expr:
        return self._bin(">=", other)

    def __lt__(self, other: object) -> Expr:
        return self._bin("<", other)

    def __le__(self, other: object) -> Expr:
        return self._bin("<=", other)

    def eq(self, other: object) -> Expr:
        """Equality as a 0/1 feature (``==`` is kept for Python identity semantics)."""
        return self._bin("==", other)

    def ne(self, other: object) -> Expr:
        """Inequality as a 0/1 feature."""
        return self._bin("!=", other)

    def __neg__(self) -> Expr:
        return Unary("neg", self)

    def log(self) -> Expr:
        """Natural logarithm; missing (NaN) for values <= 0."""
        return Unary("log", self)

    def log1p(self) -> Expr:
        """``log(1 + x)``; missing for values <= -1."""
        return Unary("log1p", self)

    def abs(self) -> Expr:
        """Absolute value."""
        return Unary("abs", self)

    def is_missing(self) -> Expr:
        """1 where the value is missing (NaN), else 0."""
        return Unary("is_missing", self)

    def hour_of_day(self) -> Expr:
        """Hour (0-23, UTC) of a timestamp field."""
        return Unary("hour_of_day", self)

    def day_of_week(self) -> Expr:
        """Day of week (Monday = 0, UTC) of a timestamp field."""
        return Unary("day_of_week", self)

    __hash__ = object.__hash__


@dataclass(frozen=True, eq=False)
class Col(Expr):
    """A field of the event, or a feature defined earlier in the same feature set."""

    name: str

    def names(self) -> set[str]:
        return {self.name}

    def evaluate(self, env: Mapping[str, Array]) -> Array:
        return env[self.name]

    def describe(self) -> str:
        return f"col({self.name!r})"


@dataclass(frozen=True, eq=False)
class Lit(Expr):
    """A constant number (or string, for comparisons with string fields)."""

    value: object

    def names(self) -> set[str]:
        return set()

    def evaluate(self, env: Mapping[str, Array]) -> Array:
        return np.asarray(self.value)

    def describe(self) -> str:
        return repr(self.value)


@dataclass(frozen=True, eq=False)
class Binary(Expr):
    """An arithmetic or comparison operator applied to two expressions."""

    op: str
    left: Expr
    right: Expr

    def names(self) -> set[str]:
        return self.left.names() | self.right.names()

    def evaluate(self, env: Mapping[str, Array]) -> Array:
        return _BINARY[self.op](self.left.evaluate(env), self.right.evaluate(env))

    def describe(self) -> str:
        return f"({self.left.describe()} {self.op} {self.right.describe()})"


@dataclass(frozen=True, eq=False)
class Unary(Expr):
    """A function of one expression."""

    fn: str
    arg: Expr

    def names(self) -> set[str]:
        return self.arg.names()

    def evaluate(self, env: Mapping[str, Array]) -> Array:
        return _UNARY[self.fn](self.arg.evaluate(env))

    def describe(self) -> str:
        return f"{self.fn}({self.arg.describe()})"


def col(name: str) -> Col:
    """Refer to an event field or an earlier feature by name."""
    return Col(name)


def lit(value: object) -> Lit:
    """A constant."""
    return Lit(value)


def as_expr(value: Expr | str) -> Expr:
    """Accept a field name where an expression is expected."""
    return value if isinstance(value, Expr) else Col(value)
