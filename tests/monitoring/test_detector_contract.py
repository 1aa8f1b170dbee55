"""One contract for every drift detector in ``DETECTORS`` (and the AlarmPolicy that pages):
deterministic and stateless between calls, quiet on a stationary stream, prompt on an obvious
shift, and refusing bad input with a message that names the position.

State: river's detectors keep theirs in native code with no export, so ``detect`` keeps none
between calls (proved below: a call in between changes nothing); the AlarmPolicy's only state
is its parameters, which round-trip. A new detector joins ``DETECTORS`` and inherits every test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from modelminder.errors import MinderError
from modelminder.monitoring.detectors import DETECTORS, AlarmPolicy, detect

Signals = Callable[[npt.ArrayLike], list[int]]
# Every detector as "positions where it signals"; the policy signals where it alarms.
SIGNALS: dict[str, Signals] = {
    **{name: (lambda errors, name=name: detect(errors, name).tolist()) for name in DETECTORS},
    "alarm_policy": lambda errors: [a.index for a in AlarmPolicy().alarms(errors)],
}
BINARY = {"ddm", "eddm"}  # need a 0/1 error stream
# The stationary contract, as stated: 5 seeds x 5,000 labels at a 10% error rate, no signal.
STATIONARY_SEEDS, STATIONARY_N, STATIONARY_RATE = range(5), 5_000, 0.10
# river's DDM and EDDM with river's defaults do signal on such streams (measured: 7 and 66
# signals over those 25,000 labels; river's own EDDM example changes the defaults "to avoid
# too many false positives"). They are reported beside the policy for comparison only and
# never raise an alert (monitoring/findings.py), so this is a known property, not a defect.
# Strict: the day they stop signalling, this marker must go.
NOISY_WHEN_STATIONARY = {"ddm", "eddm"}


def bernoulli(seed: int, *pieces: tuple[int, float]) -> npt.NDArray[np.float64]:
    """A 0/1 error stream made of (length, error rate) pieces."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(n) < p for n, p in pieces]).astype(np.float64)


def _marks(name: str) -> list[pytest.MarkDecorator]:
    if name in NOISY_WHEN_STATIONARY:
        return [pytest.mark.xfail(strict=True, reason="river's defaults signal when stationary")]
    return []


@pytest.mark.parametrize("name", SIGNALS)
def test_the_same_stream_gives_the_same_signals_and_nothing_carries_over(name: str) -> None:
    signals = SIGNALS[name]
    stream = bernoulli(0, (3_000, 0.05), (2_000, 0.5))
    first = signals(stream)
    signals(bernoulli(1, (4_000, 0.3), (1_000, 0.0)))  # another stream in between
    assert signals(stream) == first
    assert signals(stream.tolist()) == first  # a list is the same stream
    assert signals([]) == []


def test_the_alarm_policy_round_trips_its_parameters() -> None:
    policy = AlarmPolicy(delta=0.01, clock=16, z_min=3.5, min_samples=40, min_rise=0.01)
    again = AlarmPolicy(**dataclasses.asdict(policy))
    stream = bernoulli(2, (3_000, 0.05), (2_000, 0.2))
    assert again == policy and again.alarms(stream) == policy.alarms(stream)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=_marks(n)) for n in SIGNALS]
)  # fmt: skip
def test_a_stationary_stream_gives_no_signal(name: str) -> None:
    total = sum(
        len(SIGNALS[name](bernoulli(seed, (STATIONARY_N, STATIONARY_RATE))))
        for seed in STATIONARY_SEEDS
    )
    assert total == 0


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("seed", range(3))
def test_an_obvious_shift_is_signalled_within_200_labels(name: str, seed: int) -> None:
    stream = bernoulli(seed, (3_000, 0.05), (2_000, 0.5))
    after = [i for i in SIGNALS[name](stream) if i >= 3_000]
    assert after and after[0] < 3_200, after[:3]


@pytest.mark.parametrize("name", sorted(set(SIGNALS) - BINARY))
def test_losses_are_accepted_where_the_detector_takes_any_finite_values(name: str) -> None:
    rng = np.random.default_rng(4)
    losses = np.concatenate([rng.exponential(0.1, 3_000), rng.exponential(1.0, 2_000)])
    after = [i for i in SIGNALS[name](losses) if i >= 3_000]
    assert after and after[0] < 3_200


BAD = {
    "a NaN": ([0.0, 1.0, float("nan"), 0.0], "Got nan at position 2"),
    "an infinity": ([0.0, float("inf")], "Got inf at position 1"),
    "a 2-D array": (np.zeros((3, 2)), "must be 1-D"),
    "text": (["a", "b"], "must be a 1-D sequence of numbers"),
}


@pytest.mark.parametrize("name", SIGNALS)
@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_with_the_position(name: str, case: str) -> None:
    errors, needle = BAD[case]
    with pytest.raises(MinderError, match=needle):
        SIGNALS[name](errors)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_detectors_refuse_values_other_than_0_and_1(name: str) -> None:
    with pytest.raises(MinderError, match=r"needs a 0/1 error stream .* Got 0\.5 at position 1"):
        detect([0.0, 0.5, 1.0], name)


def test_an_unknown_detector_is_refused_with_the_allowed_names() -> None:
    with pytest.raises(MinderError, match=r"Unknown drift detector 'kswin'\. Allowed: 'adwin'"):
        detect([0.0], "kswin")
