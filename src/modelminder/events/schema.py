"""Topic schemas and batch validation.

A batch is validated whole before anything is written: every problem is reported with its row
number, ``event_id`` and field, and a batch with any problem is rejected whole.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
# Plausible-value limits applied by every entry point (HTTP, files, the Python API).
MAX_ID_CHARS = 128  # event_id
MAX_TEXT_CHARS = 256  # any other text field, unless the schema says otherwise
MAX_SOURCE_CHARS = 64  # a label's source
# Default range of a float field: beyond it window sums could overflow or lose the small
# values next to huge ones. Declare a tighter range per field in [events].ranges.
FLOAT_BOUND = 1e15
INT_BOUND = 2**53  # ints are aggregated as float64, exact up to here
_CONTROL = r"[\x00-\x1f\x7f]"


@dataclass(frozen=True)
class FieldRules:
    """What a topic accepts beyond types: the range of each numeric field and the longest
    text of each text field (``event_id`` included)."""

    ranges: Mapping[str, tuple[float, float]]
    max_chars: Mapping[str, int]

    @classmethod
    def defaults(
        cls,
        fields: Mapping[str, str],
        ranges: Mapping[str, tuple[float, float]] | None = None,
        max_chars: int = MAX_TEXT_CHARS,
    ) -> FieldRules:
        """The default limits for ``fields`` (by type), with ``ranges`` declared on top.

        Examples
        --------
        >>> r = FieldRules.defaults({"amount": "float", "n": "int"}, {"amount": (0.0, 1e6)})
        >>> r.ranges["amount"], r.ranges["n"] == (-2**53, 2**53), r.max_chars["event_id"]
        ((0.0, 1000000.0), True, 128)
        """
        default = {"float": (-FLOAT_BOUND, FLOAT_BOUND), "int": (-INT_BOUND, INT_BOUND)}
        out = {n: default[t] for n, t in fields.items() if t in default}
        out.update(ranges or {})
        chars = {n: max_chars for n, t in fields.items() if t == "str"}
        return cls(out, {**chars, "event_id": MAX_ID_CHARS})


LABEL_RULES = FieldRules({}, {"event_id": MAX_ID_CHARS, "source": MAX_SOURCE_CHARS})


@dataclass(frozen=True)
class EventSchema:
    """The fields of the ``events`` topic beyond ``event_id`` and ``ts`` (name -> type), the
    declared plausible range of numeric fields (name -> (low, high); others get the default
    of their type) and the longest text field accepted."""

    fields: Mapping[str, str]
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    max_chars: int = MAX_TEXT_CHARS
    # The name of the labels' value column ([events].label): what a label says, 0 or 1.
    label: str = "is_fraud"

    @property
    def rules(self) -> FieldRules:
        return FieldRules.defaults(self.fields, self.ranges, self.max_chars)

    def __post_init__(self) -> None:
        self._check_ranges()
        if (
            not isinstance(self.label, str)
            or not _LABEL_NAME.match(self.label)
            or (self.label in _LABEL_RESERVED)
        ):
            raise SchemaError(
                f"The label's name ([events].label) must be an identifier like 'is_fraud' "
                f"(letters, digits, underscores; not one of {', '.join(sorted(_LABEL_RESERVED))})."
                f" Got {self.label!r}."
            )
        if (
            isinstance(self.max_chars, bool)
            or not isinstance(self.max_chars, int)
            or not (1 <= self.max_chars <= 65_536)
        ):
            raise SchemaError(
                f"The longest text field ([events].max_chars) must be an int from 1 to 65536. "
                f"Got {self.max_chars!r}."
            )
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

    def _check_ranges(self) -> None:
        for name, bounds in self.ranges.items():
            kind = self.fields.get(name)
            if kind not in ("float", "int"):
                numeric = [n for n, t in self.fields.items() if t in ("float", "int")]
                raise SchemaError(
                    f"[events].ranges names {name!r}, which is not a float or int field. "
                    f"Numeric fields: {', '.join(numeric) or 'none'}."
                )
            limit = FLOAT_BOUND if kind == "float" else INT_BOUND
            ok = (
                isinstance(bounds, tuple | list)
                and len(bounds) == 2
                and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
                and -limit <= bounds[0] < bounds[1] <= limit
            )
            if not ok:
                raise SchemaError(
                    f"The range of field {name!r} in [events].ranges must be [low, high] with "
                    f"-{limit:g} <= low < high <= {limit:g}, like [0, 1e6]. Got {bounds!r}."
                )


LABEL = "is_fraud"  # the default name of the label's value column ([events].label)
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_LABEL_RESERVED = frozenset({"event_id", "label_ts", "known_at", "source", "offset"})


def label_fields(label: str = LABEL) -> dict[str, str]:
    """The fields of a label (``label`` is the value's name, see :class:`EventSchema`)."""
    return {"event_id": "str", label: "float", "label_ts": "ts", "source": "str"}


def normalize_labels(frame: pl.DataFrame, label: str = LABEL) -> pl.DataFrame:
    """:func:`normalize` for the labels topic, plus its own rules: the value (``label``) is 0
    or 1, and one batch never gives two different labels for the same ``(event_id, source)``."""
    batch = normalize(frame, {label: "float", "source": "str"}, ("label_ts",), LABEL_RULES)
    bad = batch.with_row_index("row").filter(~pl.col(label).is_in([0.0, 1.0])).head(1)
    # Rows of keys with more than one distinct label: checked row by row below (few).
    clash = batch.with_row_index("row").filter(
        pl.struct(label, "label_ts").n_unique().over("event_id", "source") > 1
    )
    _check_labels(bad.rows(named=True) + clash.rows(named=True), label, rows_have_index=True)
    return batch


def validate_label_rows(
    rows: Sequence[Mapping[str, Any]], label: str = LABEL
) -> list[dict[str, Any]]:
    """:func:`normalize_labels` for a few rows given as dicts (the live path).

    Examples
    --------
    >>> validate_label_rows([{"event_id": "e1", "is_fraud": 1, "label_ts": "2026-01-01",
    ...                       "source": "chargeback"}])
    [{'event_id': 'e1', 'label_ts': 1767225600000000, 'is_fraud': 1.0, 'source': 'chargeback'}]
    >>> validate_label_rows([{"event_id": "e1", "is_abuse": 0.5, "label_ts": "2026-01-01",
    ...                       "source": "review"}], "is_abuse")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    modelminder.errors.SchemaError: ...field 'is_abuse' must be 0 or 1; got 0.5
    """
    out = validate_rows(rows, {label: "float", "source": "str"}, ("label_ts",), LABEL_RULES)
    _check_labels(out, label)
    return out


def _check_labels(
    rows: Sequence[Mapping[str, Any]], label: str, *, rows_have_index: bool = False
) -> None:
    """Refuse labels that are not 0/1, and different labels for one (event_id, source).
    Row numbers are positions in ``rows``, or their ``row`` key (``rows_have_index``)."""
    problems: list[str] = []
    first: dict[tuple[str, str], int] = {}
    for k, r in enumerate(rows):
        i = int(r["row"]) if rows_have_index else k
        if r[label] not in (0.0, 1.0):
            problems.append(
                f"row {i} (event_id {r['event_id']!r}): field {label!r} must be 0 or 1; "
                f"got {r[label]!r}"
            )
        key = (r["event_id"], r["source"])
        j = first.setdefault(key, k)
        a = rows[j]
        if j != k and (a[label], a["label_ts"]) != (r[label], r["label_ts"]):
            row_j = int(a["row"]) if rows_have_index else j
            problems.append(
                f"rows {row_j} and {i} give different labels for event_id {key[0]!r} from "
                f"source {key[1]!r} ({a[label]:g} at {a['label_ts']} vs "
                f"{r[label]:g} at {r['label_ts']}); send one label per event and source"
            )
    _reject(problems)


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
    frame: pl.DataFrame,
    fields: Mapping[str, str],
    ts_fields: tuple[str, ...],
    rules: FieldRules | None = None,
) -> pl.DataFrame:
    """Cast ``frame`` to the topic schema: ``ts_fields`` become int64 microseconds (UTC); values
    are held to ``rules`` (default: :meth:`FieldRules.defaults` of ``fields``).

    Raises :class:`SchemaError` listing the first problems (row, field, value, what is allowed).
    """
    rules = rules or FieldRules.defaults(fields)
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
        if kind in ("float", "int") and s.dtype == pl.Boolean:
            problems.append(f"field '{name}' has type Boolean; it must be {kind}")
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
        problem = _frame_limits(frame, name, cast, rules)
        if problem is not None:
            problems.append(problem)
            continue
        out[name] = cast
    _reject(problems)
    return pl.DataFrame([out[name] for name in required])


def _frame_limits(frame: pl.DataFrame, name: str, s: pl.Series, rules: FieldRules) -> str | None:
    """The first value of column ``name`` outside ``rules``, described; None if all fit."""
    if name in rules.ranges:
        low, high = rules.ranges[name]
        bad = (s < low) | (s > high)
        if bad.any():
            i = int(bad.arg_max() or 0)
            return (
                f"{_row_label(frame, i)}: field '{name}' must be within [{low:g}, {high:g}]; "
                f"got {s[i]!r} ({int(bad.sum())} such rows)"
            )
    if name in rules.max_chars:
        limit = rules.max_chars[name]
        bad = s.str.len_chars() > limit
        if bad.any():
            i = int(bad.arg_max() or 0)
            return (
                f"{_row_label(frame, i)}: field '{name}' is longer than {limit} characters "
                f"({s.str.len_chars()[i]:,})"
            )
    if name in _ID_FIELDS:
        bad = (s.str.strip_chars().str.len_chars() == 0) | s.str.contains(_CONTROL)
        if bad.any():
            i = int(bad.arg_max() or 0)
            return f"row {i}: field '{name}' {_ID_RULE}; got {s[i]!r}"
    return None


# Identifiers: printed, searched and typed by people.
_ID_FIELDS = ("event_id", "source")
_ID_RULE = "must be non-blank text without control characters"


def _row_limits(name: str, value: Any, rules: FieldRules) -> str | None:
    """:func:`_frame_limits` for one value already of the right type."""
    if name in rules.ranges:
        low, high = rules.ranges[name]
        if not low <= value <= high:
            return f"field '{name}' must be within [{low:g}, {high:g}]; got {value!r}"
    if name in rules.max_chars and len(value) > rules.max_chars[name]:
        return f"field '{name}' is longer than {rules.max_chars[name]} characters ({len(value):,})"
    if name in _ID_FIELDS and (not value.strip() or _has_control(value)):
        return f"field '{name}' {_ID_RULE}; got {value!r}"
    return None


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


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
    rows: Sequence[Mapping[str, Any]],
    fields: Mapping[str, str],
    ts_fields: tuple[str, ...],
    rules: FieldRules | None = None,
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
    rules = rules or FieldRules.defaults(fields)
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
            value, problem = _row_value(name, row[name], kinds[name])
            if problem is None and value is not None and kinds[name] != "ts":
                problem = _row_limits(name, value, rules)
            if problem is not None:
                problems.append(f"{where}: {problem}")
            clean[name] = value
        out.append(clean)
    _reject(problems)
    return out


def _row_value(name: str, value: Any, kind: str) -> tuple[Any, str | None]:
    """One value of a row, normalized to its field's type, or what is wrong with it."""
    if value is None:
        return None, f"field '{name}' is missing (null)"
    if kind == "ts":
        ts = parse_ts(value)
        if ts is None:
            return value, (
                f"field '{name}' must be an ISO-8601 time like '2026-03-01T12:00:00Z'; "
                f"got {value!r}"
            )
        return ts, None
    if kind == "str":
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or (name == "event_id" and not value):
            return value, f"field '{name}' must be non-empty str; got {value!r}"
        if not _utf8(value):
            return value, (
                f"field '{name}' is not valid Unicode text (a lone surrogate); got {value!r}"
            )
        return value, None
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value, f"field '{name}' must be float; got {value!r}"
        if isinstance(value, int) and not -(2**53) <= value <= 2**53:
            return value, f"field '{name}' is too large for a float; got {value!r}"
        if not math.isfinite(value):
            return value, f"field '{name}' must be a finite number; got {value!r}"
        return float(value), None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
            return value, f"field '{name}' must be a 64-bit int; got {value!r}"
        return value, None
    if kind == "bool" and not isinstance(value, bool):
        return value, f"field '{name}' must be bool; got {value!r}"
    return value, None


def refuse_ahead(
    event_ids: Sequence[str] | pl.Series,
    times: Sequence[int] | pl.Series,
    name: str,
    what: str,
    *,
    now: int,
    lead_us: int,
    lead_text: str,
    setting: str,
) -> None:
    """Refuse a batch in which a time ``name`` is more than ``lead_us`` ahead of ``now``: a
    label or event "from the future" is a clock or data error at the source, and folded in it
    would count before it happened. ``setting`` names the config key that sets the bound.
    ``times`` is a Series for bulk batches (vectorized) or a list for a few live rows.

    Examples
    --------
    >>> refuse_ahead(["a", "b"], [10, 5_000_000], "label_ts", "Label", now=0, lead_us=1_000,
    ...              lead_text="1ms", setting="[serving].max_event_lead")
    Traceback (most recent call last):
    ...
    modelminder.errors.SchemaError: Label of event 'b': field 'label_ts' is more than 1ms ahead ...
    """
    limit = now + lead_us
    if isinstance(times, pl.Series):
        late = times > limit
        count = int(late.sum())
        first = str(pl.Series(event_ids).filter(late)[0]) if count else ""
    else:
        over = [i for i, t in enumerate(times) if t > limit]
        count = len(over)
        first = str(event_ids[over[0]]) if count else ""
    if count:
        raise SchemaError(
            f"{what} of event {first!r}: field {name!r} is more than {lead_text} ahead of the "
            f"server's clock ({count} such row(s) in the batch; {setting}). Check the "
            "source's clock. Nothing was written."
        )
