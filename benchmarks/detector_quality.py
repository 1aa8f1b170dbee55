"""Concept-drift detector quality: our alarm policy vs river's ADWIN and Page-Hinkley defaults.

Streams: river's synthetic generators SEA (10% label noise), Agrawal, STAGGER and Sine, each
switching concept twice, at 1/3 and 2/3 of the monitored stream (20,000 and 40,000 by default):
SEA thresholds 8 -> 9.5 -> 7, Agrawal functions 0 -> 2 -> 4, STAGGER 0 -> 1 -> 2, Sine
SINE1 -> SINE2 -> reversed SINE1. Each comes abrupt (the next concept from one sample on) and
gradual (river's ConceptDriftStream, sigmoid transition of width ``events / 12``, 5,000 by
default, centred on the drift point), for several seeds.

Error stream: a river Hoeffding tree run prequentially (predict, then learn) over the stream;
the 0/1 misclassification of each sample, after a 1,000-sample warm-up that is not monitored,
is what every detector sees. A Hoeffding tree learns each concept to a low error, so a concept
change shows as a sharp rise of the error; it then re-learns within a few thousand samples, so
the stream also holds long drops of the error, as a production model's after a retrain. (river's
Gaussian naive Bayes was tried too: ~4x slower here, and its error stays high after a drift.)

Scoring, per drift point p and width w (w = 0 when abrupt): an alarm in ``[p - w, p + w + T)``,
T = ``events / 12`` (5,000 by default), detects the drift; the delay is the first such alarm
minus p (negative: found before the middle of a gradual transition). A drift without one is
missed. Every alarm outside all such windows is a false alarm, counted per 100,000 samples.
River's detectors are two-sided: an alarm in a window counts as a detection even when it was
signalled by a drop of the error.

    .venv/bin/python benchmarks/detector_quality.py [--events 60000] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import machine
from river import tree
from river.datasets import synth
from river.datasets.base import SyntheticDataset

from modelminder.monitoring.detectors import AlarmPolicy, detect

WARMUP = 1_000
Sample = tuple[dict[Hashable, Any], Any]
# The three concepts each generator switches between (see the module docstring).
GENERATORS: dict[str, tuple[int, int, int]] = {
    "SEA": (0, 3, 2),
    "Agrawal": (0, 2, 4),
    "STAGGER": (0, 1, 2),
    "Sine": (0, 2, 1),
}
DETECTORS: dict[str, Callable[[npt.NDArray[np.float64]], list[int]]] = {
    "ours": lambda x: [a.index for a in AlarmPolicy().alarms(x)],
    "adwin": lambda x: detect(x, "adwin").tolist(),
    "page_hinkley": lambda x: detect(x, "page_hinkley").tolist(),
    "ddm": lambda x: detect(x, "ddm").tolist(),
    "eddm": lambda x: detect(x, "eddm").tolist(),
}
BASELINES = ("adwin", "page_hinkley")  # river defaults the policy is compared with


def concept(name: str, function: int, seed: int) -> SyntheticDataset:
    """One concept of a generator, as an endless river dataset."""
    if name == "SEA":
        return synth.SEA(variant=function, noise=0.1, seed=seed)
    if name == "Agrawal":
        return synth.Agrawal(classification_function=function, seed=seed)
    if name == "STAGGER":
        return synth.STAGGER(classification_function=function, seed=seed)
    return synth.Sine(classification_function=function, seed=seed)


def stream(
    name: str, kind: str, seed: int, n: int, drifts: tuple[int, int], width: int
) -> Iterator[Sample]:
    """``WARMUP + n`` samples of generator ``name`` with its two concept changes."""
    a, b, c = (concept(name, f, seed * 10 + i) for i, f in enumerate(GENERATORS[name]))
    p1, p2 = (WARMUP + p for p in drifts)
    if kind == "abrupt":
        return itertools.chain(a.take(p1), b.take(p2 - p1), c.take(WARMUP + n - p2))
    # river counts samples from 1 and draws half from the new concept at `position`.
    first = synth.ConceptDriftStream(a, b, position=p1 + 1, width=width, seed=seed)
    both = synth.ConceptDriftStream(first, c, position=p2 + 1, width=width, seed=seed + 1)
    return iter(both.take(WARMUP + n))


def error_stream(samples: Iterator[Sample]) -> npt.NDArray[np.float64]:
    """Prequential 0/1 errors of a Hoeffding tree, warm-up dropped."""
    model = tree.HoeffdingTreeClassifier()
    errors = []
    for x, y in samples:
        errors.append(model.predict_one(x) != y)
        model.learn_one(x, y)
    return np.asarray(errors[WARMUP:], dtype=np.float64)


@dataclass
class Score:
    delays: list[int] = field(default_factory=list)
    drifts: int = 0
    false: int = 0
    samples: int = 0

    def add(self, alarms: list[int], windows: list[tuple[int, int, int]], n: int) -> None:
        for lo, hi, p in windows:
            hits = [a for a in alarms if lo <= a < hi]
            if hits:
                self.delays.append(hits[0] - p)
        self.drifts += len(windows)
        self.false += sum(not any(lo <= a < hi for lo, hi, _ in windows) for a in alarms)
        self.samples += n

    def merge(self, other: Score) -> None:
        self.delays += other.delays
        self.drifts += other.drifts
        self.false += other.false
        self.samples += other.samples

    @property
    def missed(self) -> float:
        return 1.0 - len(self.delays) / self.drifts

    @property
    def fa_per_100k(self) -> float:
        return self.false / self.samples * 1e5

    def mean_delay(self) -> float:
        return float(np.mean(self.delays)) if self.delays else float("nan")

    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else float("nan")

    def cells(self) -> str:
        missed = f"{self.drifts - len(self.delays)}/{self.drifts}"
        return (
            f"{self.mean_delay():8.0f} {self.median_delay():8.0f} {missed:>7} {self.missed:7.2f} "
            f"{self.fa_per_100k:11.1f}"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("BENCH_EVENTS", 60_000)),
        help="monitored samples per stream (default 60,000)",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per stream (default 3)")
    parser.add_argument("--quick", action="store_true", help="one seed, 30,000 samples")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.events = 1, 30_000
    if args.events < 1_200 or args.seeds < 1:
        parser.error("--events must be at least 1200 and --seeds at least 1")
    return args


def main() -> None:
    args = parse()
    n = args.events
    drifts = (n // 3, 2 * n // 3)
    width = tol = n // 12
    print(
        f"{machine()}; {n:,} monitored samples per stream, drifts at {drifts[0]:,} and "
        f"{drifts[1]:,}, gradual width {width:,}, tolerance {tol:,}, seeds {args.seeds}; "
        "learner: river HoeffdingTreeClassifier (prequential)"
    )
    scores: dict[tuple[str, str, str], Score] = {}
    t0 = time.perf_counter()
    for name in GENERATORS:
        for kind in ("abrupt", "gradual"):
            w = width if kind == "gradual" else 0
            windows = [(p - w, p + w + tol, p) for p in drifts]
            rates = []
            for seed in range(args.seeds):
                x = error_stream(stream(name, kind, seed, n, drifts, width))
                # before the transition starts, and after its middle
                rates.append([x[max(0, p - w - 2_000) : p - w].mean() for p in drifts])
                rates[-1] += [x[p : p + 2_000].mean() for p in drifts]
                for det, run in DETECTORS.items():
                    key = (name, kind, det)
                    scores.setdefault(key, Score()).add(run(x), windows, n)
            r = np.mean(rates, axis=0)
            print(
                f"  {name} {kind}: learner error (2,000 samples) before -> after drift 1: "
                f"{r[0]:.3f} -> {r[2]:.3f}, drift 2: {r[1]:.3f} -> {r[3]:.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )

    print()
    head = f"{'generator':9} {'drift':8} {'detector':13} {'delay':>8} {'median':>8} {'missed':>7}"
    print(f"{head} {'rate':>7} {'false/100k':>11}")
    for name in GENERATORS:
        for kind in ("abrupt", "gradual"):
            for det in DETECTORS:
                print(f"{name:9} {kind:8} {det:13} {scores[name, kind, det].cells()}")
        print()

    totals: dict[tuple[str, str], Score] = {}
    for (_, kind, det), score in scores.items():
        totals.setdefault((det, kind), Score()).merge(score)
        totals.setdefault((det, "all"), Score()).merge(score)
    for det in DETECTORS:
        ab, gr, al = totals[det, "abrupt"], totals[det, "gradual"], totals[det, "all"]
        print(
            f"RESULT {det:13} delay abrupt mean {ab.mean_delay():5.0f} "
            f"(median {ab.median_delay():4.0f}), gradual mean {gr.mean_delay():6.0f}; "
            f"missed {al.drifts - len(al.delays)}/{al.drifts} ({al.missed:.2f}); "
            f"false alarms {al.fa_per_100k:.1f} per 100k"
        )
    ours = totals["ours", "all"]
    for base in BASELINES:
        other = totals[base, "all"]
        ratio = other.fa_per_100k / ours.fa_per_100k if ours.false else float("inf")
        delay = totals["ours", "abrupt"].mean_delay() / totals[base, "abrupt"].mean_delay()
        print(
            f"RATIO false alarms {base}/ours = {ratio:.1f}  (target > 1); "
            f"abrupt mean delay ours/{base} = {delay:.2f}  (target about 1 or below)"
        )


if __name__ == "__main__":
    main()
