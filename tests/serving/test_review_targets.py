"""Open drift alerts point the review queue's drift policy at the drifted region."""

from __future__ import annotations

import numpy as np

from modelminder.model.reference import Reference
from modelminder.monitoring.alerts import Alert
from modelminder.serving.service import drift_targets


def _alert(subject: str, *, version: str = "v1", is_open: bool = True) -> Alert:
    return Alert("data_drift", "warn", subject, version, 0, 1, {}, "look", 1, is_open)


def test_open_drift_alerts_on_numeric_features_become_targets() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=5000), rng.integers(0, 5, 5000).astype(float)])
    ref = Reference.build(x, ["amount", "hour"])
    alerts = [_alert("amount"), _alert("hour", is_open=False), _alert("amount", version="v0"),
              _alert("score")]  # fmt: skip
    (target,) = drift_targets(alerts, ref, ["hour", "amount"], "v1")
    assert (target.feature, target.index) == ("amount", 1)
    q05, q95 = np.quantile(x[:, 0], [0.05, 0.95])
    assert target.low <= q05 < q95 <= target.high  # the training's central range, or wider
    assert target.high - target.low < (q95 - q05) * 1.2
    assert target.hit([0.0, target.high + 1.0]) and not target.hit([0.0, 0.0])
    assert not target.hit([0.0, float("nan")]) and not target.hit([0.0, None])
    assert drift_targets(alerts, None, ["amount"], "v1") == ()
