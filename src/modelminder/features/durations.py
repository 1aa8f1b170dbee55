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


def parse_duration(text: str, *, what: str) -> int:
    """Return the duration ``text`` in microseconds.

    Parameters
    ----------
    text:
        A positive whole number followed by one unit: ``s``, ``m``, ``h``, ``d`` or ``w``.
    what:
        Names the thing being parsed, for the error message.

    Examples
    --------
    >>> parse_duration("1h", what="window")
    3600000000
    >>> parse_duration("30d", what="window") // 86_400_000_000
    30
    """
    match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match.group(1)) <= 0:
        raise FeatureDefinitionError(
            f"The {what} must be a positive duration like '15m', '1h', '7d' or '2w' "
            f"(units s, m, h, d, w). Got {text!r}."
        )
    return int(match.group(1)) * _UNITS[match.group(2)]
