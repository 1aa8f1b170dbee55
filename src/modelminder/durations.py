"""Parsing of window strings such as ``'1h'`` or ``'30d'`` into microseconds."""

from __future__ import annotations

import re

from modelminder.errors import FeatureDefinitionError

MICROS_PER_SECOND = 1_000_000
_UNITS = {
    "s": MICROS_PER_SECOND,
    "m": 60 * MICROS_PER_SECOND,
    "h": 3600 * MICROS_PER_SECOND,
    "d": 86_400 * MICROS_PER_SECOND,
    "w": 7 * 86_400 * MICROS_PER_SECOND,
}
_PATTERN = re.compile(r"^(\d+)([smhdw])$")


def parse_duration(text: str, *, what: str, allow_zero: bool = False) -> int:
    """Return the duration ``text`` in microseconds.

    Parameters
    ----------
    text:
        A positive whole number followed by one unit: ``s``, ``m``, ``h``, ``d`` or ``w``.
    what:
        Names the thing being parsed, for the error message.
    allow_zero:
        Accept ``'0s'`` (or any unit) as zero, for gaps that may be switched off.

    Examples
    --------
    >>> parse_duration("1h", what="window")
    3600000000
    >>> parse_duration("30d", what="window") // 86_400_000_000
    30
    """
    match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None or (int(match.group(1)) <= 0 and not allow_zero):
        kind = "a duration (0 allowed)" if allow_zero else "a positive duration"
        raise FeatureDefinitionError(
            f"The {what} must be {kind} like '15m', '1h', '7d' or '2w' "
            f"(units s, m, h, d, w). Got {text!r}."
        )
    return int(match.group(1)) * _UNITS[match.group(2)]
