"""Strict JSON from what the packages compute (below every layer that writes reports)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """Strict JSON: NaN/inf become None, NumPy scalars and arrays become Python values.

    Examples
    --------
    >>> jsonable({"a": np.float64("nan"), "b": np.arange(2), 3: (1.5,)})
    {'a': None, 'b': [0, 1], '3': [1.5]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
