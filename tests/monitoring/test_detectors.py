"""Concept-drift detection on the error stream: real rises alarm fast, stable streams stay quiet."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelminder.errors import MinderError
from modelminder.monitoring.detectors import DETECTORS, AlarmPolicy, detect


def bernoulli(seed: int, *pieces: tuple[int, float]) -> npt.NDArray[np.float64]:
    """A 0/1 error stream made of (length, error rate) pieces."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(n) < p for n, p in pieces]).astype(np.float64)


@pytest.mark.parametrize("seed", range(5))
def test_an_abrupt_rise_from_5_to_20_percent_alarms_within_400_labels(seed: int) -> None:
    errors = bernoulli(seed, (5_000, 0.05), (3_000, 0.20))
    alarms = AlarmPolicy().alarms(errors)
    assert alarms, "a 5% -> 20% error rise went unreported"
    first = alarms[0]
    assert 5_000 <= first.index < 5_400  # no alarm before the change, and a bounded delay
    assert abs(first.change_point - 5_000) < 300
    assert 0.03 < first.rate_before < 0.07 and first.rate_after > 0.12
    assert first.z >= AlarmPolicy().z_min
    assert first.n_after == first.index - first.change_point + 1


def test_the_delay_is_adwins_own() -> None:
    """The confirmation costs no delay: the alarm is raised at ADWIN's signal."""
    errors = bernoulli(7, (5_000, 0.05), (3_000, 0.20))
    adwin = detect(errors, "adwin")
    [alarm] = AlarmPolicy().alarms(errors)
    assert alarm.index == adwin[adwin >= 5_000][0]


def test_stable_streams_stay_silent() -> None:
    """Budget: at most one false alarm in 1.5 million stable labels (0.07 per 100k)."""
    policy = AlarmPolicy()
    alarms = 0
    for seed in range(5):
        for rate in (0.02, 0.1, 0.3):
            alarms += len(policy.alarms(bernoulli(seed, (100_000, rate))))
    assert alarms <= 1


@pytest.mark.parametrize("seed", range(3))
def test_an_error_drop_is_not_an_alarm_though_adwin_sees_it(seed: int) -> None:
    errors = bernoulli(seed, (5_000, 0.20), (5_000, 0.05))
    assert detect(errors, "adwin").size >= 1  # the drop is visible to river's ADWIN...
    assert AlarmPolicy().alarms(errors) == []  # ...but an improvement pages nobody


@pytest.mark.parametrize("seed", range(3))
def test_a_rise_back_after_an_improvement_alarms_against_the_new_level(seed: int) -> None:
    errors = bernoulli(seed, (5_000, 0.20), (5_000, 0.05), (2_000, 0.20))
    [alarm] = AlarmPolicy().alarms(errors)
    assert 10_000 <= alarm.index < 10_400
    assert alarm.rate_before < 0.08  # compared with the improved level, not the old one


def test_losses_work_as_well_as_misclassifications() -> None:
    rng = np.random.default_rng(3)
    losses = np.concatenate([rng.exponential(0.1, 4_000), rng.exponential(0.3, 1_000)])
    [alarm] = AlarmPolicy().alarms(losses)
    assert 4_000 <= alarm.index < 4_300 and alarm.rate_after > 2 * alarm.rate_before


def test_min_rise_ignores_significant_but_small_rises() -> None:
    errors = bernoulli(0, (20_000, 0.05), (20_000, 0.065))
    assert AlarmPolicy().alarms(errors)  # 1.5 points over 20k labels is significant...
    assert AlarmPolicy(min_rise=0.05).alarms(errors) == []  # ...but below this bar


@pytest.mark.parametrize("name", DETECTORS)
def test_every_river_detector_finds_a_large_rise(name: str) -> None:
    errors = bernoulli(1, (3_000, 0.05), (1_000, 0.5))
    found = detect(errors, name)
    assert np.any((found >= 3_000) & (found < 3_500)), found


@pytest.mark.parametrize("name", DETECTORS)
def test_an_empty_stream_gives_no_detections(name: str) -> None:
    assert detect([], name).tolist() == []
    assert detect(np.array([]), name).dtype == np.int64


def test_an_empty_stream_gives_no_alarms() -> None:
    assert AlarmPolicy().alarms([]) == []
    assert AlarmPolicy().alarms(np.zeros(0)) == []


def test_an_unknown_detector_name_lists_the_allowed_ones() -> None:
    with pytest.raises(MinderError, match="Unknown drift detector 'adwinn'") as info:
        detect([0.0, 1.0], "adwinn")
    assert all(repr(name) in str(info.value) for name in DETECTORS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_error_is_refused_with_its_position(bad: float) -> None:
    errors = [0.0, 1.0, 0.0, bad, 0.0]
    with pytest.raises(MinderError, match=rf"finite numbers\. Got {bad} at position 3"):
        AlarmPolicy().alarms(errors)
    with pytest.raises(MinderError, match="position 3"):
        detect(errors, "page_hinkley")


@pytest.mark.parametrize("name", ["ddm", "eddm"])
def test_binary_detectors_refuse_losses(name: str) -> None:
    with pytest.raises(
        MinderError, match=rf"'{name}' needs a 0/1 error stream.*0\.5 at position 2"
    ):
        detect([0, 1, 0.5, 1], name)
    assert detect([0.0, 1.0, 0.5], "adwin").size == 0  # losses are fine for ADWIN


@pytest.mark.parametrize("errors", [[[0.0, 1.0]], ["a", "b"], 1.0])
def test_a_stream_that_is_not_1d_numbers_is_refused(errors: Any) -> None:
    with pytest.raises(MinderError, match="error stream given to AlarmPolicy must be"):
        AlarmPolicy().alarms(errors)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.5}, "delta"),
        ({"clock": 0}, "clock"),
        ({"clock": 2.5}, "clock"),
        ({"z_min": -1.0}, "z_min"),
        ({"z_min": float("nan")}, "z_min"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_rise": -0.1}, "min_rise"),
        ({"min_rise": float("inf")}, "min_rise"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(MinderError, match=rf"The '{name}' of AlarmPolicy must be .* Got"):
        AlarmPolicy(**kwargs)


@st.composite
def streams(draw: st.DrawFn) -> npt.NDArray[np.float64]:
    """Piecewise streams: 0/1 errors or losses, with up to four changes of level."""
    seed = draw(st.integers(0, 2**32 - 1))
    rates = draw(st.lists(st.floats(0.0, 0.6), min_size=1, max_size=5))
    sizes = draw(st.lists(st.integers(0, 1_500), min_size=len(rates), max_size=len(rates)))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        parts = [(rng.random(n) < p).astype(np.float64) for n, p in zip(sizes, rates, strict=True)]
    else:
        parts = [rng.exponential(p + 0.01, n) for n, p in zip(sizes, rates, strict=True)]
    return np.concatenate(parts)


@settings(max_examples=60, deadline=None)
@given(errors=streams(), z_min=st.floats(1.0, 6.0), min_samples=st.integers(1, 80))
def test_alarms_are_confirmed_adwin_signals_with_consistent_evidence(
    errors: npt.NDArray[np.float64], z_min: float, min_samples: int
) -> None:
    policy = AlarmPolicy(z_min=z_min, min_samples=min_samples)
    alarms = policy.alarms(errors)
    assert alarms == policy.alarms(errors.copy())  # deterministic
    index = [a.index for a in alarms]
    assert index == sorted(set(index))  # strictly increasing
    assert set(index) <= set(detect(errors, "adwin").tolist())  # only ever confirms ADWIN
    for a in alarms:
        assert 0 <= a.change_point <= a.index < errors.size
        assert a.n_before >= min_samples and a.n_after >= min_samples
        assert a.n_after == a.index - a.change_point + 1
        assert a.z >= z_min and a.rate_after > a.rate_before
        after = errors[a.change_point : a.index + 1]
        assert a.rate_after == pytest.approx(after.mean())
    previous = [0] + [a.change_point for a in alarms]
    for a, start in zip(alarms, previous, strict=False):
        assert a.change_point - a.n_before >= start  # each regime starts after the last alarm
