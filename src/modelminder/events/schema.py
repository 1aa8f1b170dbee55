"""Topic schemas and batch validation.

A batch is validated whole before anything is written: every problem is reported with its row
number, ``event_id`` and field, and a batch with any problem is rejected whole.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from modelminder.errors import SchemaError

TOPICS = ("events", "labels")
_PL_TYPES: dict[str, pl.DataType] = {
    "str": pl.String(),
    "float": pl.Float64(),
    "int": pl.Int64(),
    "bool": pl.Boolean(),
}
MAX_REPORTED = 10


@dataclass(frozen=True)
class EventSchema:
    """The fields of the ``events`` topic beyond ``event_id`` and ``ts`` (name -> type)."""

    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        for name, kind in self.fields.items():
            if kind not in _PL_TYPES:
                raise SchemaError(
                    f"Event field '{name}' has type {kind!r}. Allowed types: "
                    f"{', '.join(_PL_TYPES)}."
                )
            if name in ("event_id", "ts", "offset"):
                raise SchemaError(
                    f"Event field '{name}' is reserved (every event has 'event_id' and 'ts'). "
                    "Remove it from [events].fields."
                )


LABEL_FIELDS = {"event_id": "str", "is_fraud": "float", "label_ts": "ts", "source": "str"}


def _ts_column(frame: pl.DataFrame, name: str, problems: list[str]) -> pl.Series | None:
    s = frame.get_column(name)
    if isinstance(s.dtype, pl.Datetime):
        if s.dtype.time_zone is None:
            s = s.dt.replace_time_zone("UTC")
        return s.dt.convert_time_zone("UTC").dt.cast_time_unit("us").dt.epoch("us")
    if s.dtype == pl.Date:
        return s.cast(pl.Datetime("us")).dt.epoch("us")
    if s.dtype == pl.String:
        parsed = s.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
        bad = parsed.is_null() & s.is_not_null()
        if bad.any():
            i = int(bad.arg_max() or 0)
            problems.append(
                f"{_row_label(frame, i)}: field '{name}' must be an ISO-8601 time like "
                f"'2026-03-01T12:00:00Z'; got {s[i]!r}"
            )
            return None
        return parsed.dt.epoch("us")
    problems.append(
        f"field '{name}' has type {s.dtype}; it must be a datetime or an ISO-8601 string"
    )
    return None


def _row_label(frame: pl.DataFrame, i: int) -> str:
    if "event_id" in frame.columns:
        return f"row {i} (event_id {frame.get_column('event_id')[i]!r})"
    return f"row {i}"


def _reject(problems: list[str]) -> None:
    """Raise the batch's problems (the first few), if any: nothing is written."""
    if not problems:
        return
    shown = problems[:MAX_REPORTED]
    more = (
        f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    )
    raise SchemaError(
        "The batch was rejected whole; nothing was written:\n  - " + "\n  - ".join(shown) + more
    )


def normalize(
    frame: pl.DataFrame, fields: Mapping[str, str], ts_fields: tuple[str, ...]
) -> pl.DataFrame:
    """Cast ``frame`` to the topic schema: ``ts_fields`` become int64 microseconds (UTC).

    Raises :class:`SchemaError` listing the first problems (row, field, value, what is allowed).
    """
    problems: list[str] = []
    required = ["event_id", *ts_fields, *fields]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"The batch has no column(s) {', '.join(repr(m) for m in missing)}. Required columns: "
            f"{', '.join(required)}. Nothing was written."
        )
    extra = [c for c in frame.columns if c not in required]
    if extra:
        raise SchemaError(
            f"The batch has unknown column(s) {', '.join(repr(c) for c in extra)}. Allowed "
            f"columns: {', '.join(required)}. Declare new fields in minder.toml [events].fields "
            "or drop them. Nothing was written."
        )
    out: dict[str, pl.Series] = {}
    for name in required:
        s = frame.get_column(name)
        nulls = s.is_null()
        if nulls.any():
            i = int(nulls.arg_max() or 0)
            problems.append(f"{_row_label(frame, i)}: field '{name}' is missing (null)")
            continue
        if name in ts_fields:
            ts = _ts_column(frame, name, problems)
            if ts is not None:
                out[name] = ts.alias(name)
            continue
        kind = "str" if name == "event_id" else fields[name]
        target = _PL_TYPES[kind]
        if kind == "str" and s.dtype != pl.String:
            if s.dtype.is_numeric() and not s.dtype.is_float():
                s = s.cast(pl.String)
            else:
                problems.append(f"field '{name}' has type {s.dtype}; it must be text (str)")
                continue
        cast = s.cast(target, strict=False)
        bad = cast.is_null() & s.is_not_null()
        if kind == "int" and s.dtype.is_float():  # 1.5 must not become 1 silently
            bad = bad | (cast.cast(pl.Float64) != s).fill_null(False)
        if bad.any():
            i = int(bad.arg_max() or 0)
            problems.append(f"{_row_label(frame, i)}: field '{name}' must be {kind}; got {s[i]!r}")
            continue
        if kind == "float":
            nonfinite = ~cast.is_finite()
            if nonfinite.any():
                i = int(nonfinite.arg_max() or 0)
                problems.append(
                    f"{_row_label(frame, i)}: field '{name}' must be a finite number; "
                    f"got {cast[i]!r} ({int(nonfinite.sum())} such rows)"
                )
                continue
        if name == "event_id":
            empty = cast.str.len_chars() == 0
            if empty.any():
                problems.append(f"row {int(empty.arg_max() or 0)}: field 'event_id' is empty")
                continue
        out[name] = cast
    _reject(problems)
    return pl.DataFrame([out[name] for name in required])


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_ts(value: Any) -> int | None:
    """A datetime (naive = UTC) or ISO-8601 text as UTC microseconds; None if it is neither.

    Examples
    --------
    >>> parse_ts("1970-01-01T00:00:01Z"), parse_ts("soon")
    (1000000, None)
    """
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        # Exact integer arithmetic: timestamp() is a float and loses microseconds.
        return (aware - _EPOCH) // dt.timedelta(microseconds=1)
    if isinstance(value, str):
        try:
            return parse_ts(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def validate_rows(
    rows: Sequence[Mapping[str, Any]], fields: Mapping[str, str], ts_fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """:func:`normalize` for a few rows given as dicts (the live path), without frame
    operations: same rules and messages; the rows normalized (times as UTC microseconds),
    as dicts with the required keys in order.

    Examples
    --------
    >>> validate_rows([{"event_id": "a", "ts": "2026-01-01T00:00:00Z", "amount": 2}],
    ...               {"amount": "float"}, ("ts",))
    [{'event_id': 'a', 'ts': 1767225600000000, 'amount': 2.0}]
    """
    required = ["event_id", *ts_fields, *fields]
    kinds = {"event_id": "str", **dict.fromkeys(ts_fields, "ts"), **fields}
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        where = f"row {i} (event_id {row.get('event_id')!r})"
        missing = [c for c in required if c not in row]
        extra = [c for c in row if c not in kinds]
        if missing or extra:
            what = (
                f"has no field(s) {', '.join(map(repr, missing))}"
                if missing
                else f"has unknown field(s) {', '.join(map(repr, extra))}"
            )
            problems.append(f"{where} {what}; allowed fields: {', '.join(required)}")
            continue
        clean: dict[str, Any] = {}
        for name in required:
            value, kind = row[name], kinds[name]
            if value is None:
                problems.append(f"{where}: field '{name}' is missing (null)")
            elif kind == "ts":
                ts = parse_ts(value)
                if ts is None:
                    problems.append(
                        f"{where}: field '{name}' must be an ISO-8601 time like "
                        f"'2026-03-01T12:00:00Z'; got {value!r}"
                    )
                value = ts
            elif kind == "str":
                if isinstance(value, int) and not isinstance(value, bool):
                    value = str(value)
                if not isinstance(value, str) or (name == "event_id" and not value):
                    problems.append(f"{where}: field '{name}' must be non-empty str; got {value!r}")
                elif not _utf8(value):
                    problems.append(
                        f"{where}: field '{name}' is not valid Unicode text (a lone surrogate); "
                        f"got {value!r}"
                    )
            elif kind == "float":
                if not isinstance(value, int | float):
                    problems.append(f"{where}: field '{name}' must be float; got {value!r}")
                elif isinstance(value, int) and not -(2**53) <= value <= 2**53:
                    problems.append(
                        f"{where}: field '{name}' is too large for a float; got {value!r}"
                    )
                elif not math.isfinite(value):
                    problems.append(
                        f"{where}: field '{name}' must be a finite number; got {value!r}"
                    )
                value = float(value) if isinstance(value, int | float) else value
            elif kind == "int" and (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not -(2**63) <= value < 2**63
            ):
                problems.append(f"{where}: field '{name}' must be a 64-bit int; got {value!r}")
            elif kind == "bool" and not isinstance(value, bool):
                problems.append(f"{where}: field '{name}' must be bool; got {value!r}")
            clean[name] = value
        out.append(clean)
    _reject(problems)
    return out
