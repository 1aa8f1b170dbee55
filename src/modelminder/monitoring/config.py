"""What a monitor run looks at and how it judges (:class:`MonitorConfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelminder.durations import parse_duration
from modelminder.errors import MinderError, MonitorError
from modelminder.monitoring.drift import DriftConfig

MIN_WINDOW_US = 60_000_000
MAX_WINDOWS = 20_000  # per run: a report over more windows is a mistake, not a request
WINDOWS = {"hour": "1h", "day": "1d", "week": "7d"}


@dataclass(frozen=True)
class MonitorConfig:
    """What a run looks at and how it judges (defaults suit card fraud)."""

    window: str = "day"  # hour, day, week, or a duration like "6h"
    from_ts: int | None = None
    to_ts: int | None = None
    as_of: int | None = None  # the run's "now" (default: the latest time in the log)
    review_at: float = 0.2  # decision threshold: precision and recall count score >= this
    block_at: float = 0.8  # probing looks just under it
    entity: str | None = None  # probing's entity field (default: the first feature key)
    skew_sample: int = 2000  # latest served events replayed for the skew check (0 = off)
    perf_drop: float = 0.1  # AUC or recall this far below the out-of-time score alerts
    min_positives: int = 30  # labelled positives before measured performance can alert
    # The AUC measured performance is held to when the model's card has no measured AUC to
    # compare with (no fraud in its out-of-time holdout nor its validation); None: no floor.
    perf_floor_auc: float | None = 0.75
    drift: DriftConfig = field(default_factory=DriftConfig)

    @property
    def window_us(self) -> int:
        try:
            return parse_duration(WINDOWS.get(self.window, self.window), what="monitor 'window'")
        except MinderError as exc:  # a bad option of this run, not a feature definition
            raise MonitorError(f"{exc} (or hour, day, week)") from None

    def check(self) -> None:
        if self.window_us < MIN_WINDOW_US:
            raise MonitorError(
                f"The monitor window must be at least 1 minute (like 1h or day). Got "
                f"{self.window!r}."
            )
        if not 0.0 <= self.review_at <= self.block_at <= 1.0:
            raise MonitorError(
                "The thresholds must satisfy 0 <= review_at <= block_at <= 1. Got "
                f"review_at={self.review_at}, block_at={self.block_at}."
            )
        floor = self.perf_floor_auc
        if floor is not None and (
            isinstance(floor, bool) or not isinstance(floor, int | float) or not 0.5 < floor < 1.0
        ):
            raise MonitorError(
                "The monitor's 'perf_floor_auc' must be an AUC above 0.5 (chance) and below 1, "
                f"like 0.75, or None to judge no model against a floor. Got {floor!r}."
            )
        if self.from_ts is not None and self.to_ts is not None and self.from_ts >= self.to_ts:
            raise MonitorError("The monitored range is empty: --from must be before --to.")
