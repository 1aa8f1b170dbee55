"""Scalar operations of row expressions, compiled; the generated row programs call these.

They restate :mod:`modelminder.features.expr`'s semantics for one value: division by zero and
the log of a non-positive number are missing (NaN); comparisons give 0/1 (NaN compares false).
"""

from __future__ import annotations

import numpy as np
from numba import njit

MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR


@njit(cache=True, nogil=True, inline="always")
def div(a: float, b: float) -> float:
    return np.nan if b == 0.0 else a / b


@njit(cache=True, nogil=True, inline="always")
def log(a: float) -> float:
    return np.log(a) if a > 0.0 else np.nan


@njit(cache=True, nogil=True, inline="always")
def log1p(a: float) -> float:
    return log(a + 1.0)


@njit(cache=True, nogil=True, inline="always")
def is_missing(a: float) -> float:
    return 1.0 if np.isnan(a) else 0.0


@njit(cache=True, nogil=True, inline="always")
def hour_of_day(a: float) -> float:
    return float((np.int64(a) % MICROS_PER_DAY) // MICROS_PER_HOUR)


@njit(cache=True, nogil=True, inline="always")
def day_of_week(a: float) -> float:
    # 1970-01-01 was a Thursday; shift so that Monday is 0.
    return float(((np.int64(a) // MICROS_PER_DAY) + 3) % 7)


@njit(cache=True, nogil=True, inline="always")
def gt(a: float, b: float) -> float:
    return 1.0 if a > b else 0.0


@njit(cache=True, nogil=True, inline="always")
def ge(a: float, b: float) -> float:
    return 1.0 if a >= b else 0.0


@njit(cache=True, nogil=True, inline="always")
def lt(a: float, b: float) -> float:
    return 1.0 if a < b else 0.0


@njit(cache=True, nogil=True, inline="always")
def le(a: float, b: float) -> float:
    return 1.0 if a <= b else 0.0


@njit(cache=True, nogil=True, inline="always")
def eq(a: float, b: float) -> float:
    return 1.0 if a == b else 0.0


@njit(cache=True, nogil=True, inline="always")
def ne(a: float, b: float) -> float:
    return 1.0 if a != b else 0.0
