"""Latency with its spread: warm-up, then runs until the median is stable.

The 95% confidence interval of the median is distribution-free (order statistics of a
binomial(n, 1/2)), so no assumption about the shape of the timing distribution is made.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call of one batch.

    Example:
        >>> lat = Latency.from_samples([1.0, 2.0, 3.0, 4.0, 100.0], batch=1)
        >>> lat.median, lat.runs
        (3.0, 5)
    """

    batch: int
    median: float
    p90: float
    ci95: tuple[float, float]
    mean: float
    runs: int

    @classmethod
    def from_samples(cls, samples_ms: list[float], batch: int) -> Latency:
        s = sorted(samples_ms)
        n = len(s)
        return cls(batch, _quantile(s, 0.5), _quantile(s, 0.9), median_ci95(s), sum(s) / n, n)

    def to_dict(self) -> dict[str, object]:
        return {"batch": self.batch, "median": round(self.median, 5), "p90": round(self.p90, 5),
                "ci95": [round(self.ci95[0], 5), round(self.ci95[1], 5)],
                "mean": round(self.mean, 5), "runs": self.runs}


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_ci95(sorted_values: list[float]) -> tuple[float, float]:
    """Distribution-free 95% CI of the median from order statistics.

    Example:
        >>> median_ci95(list(range(1, 101)))
        (40, 61)
    """
    n = len(sorted_values)
    if n < 6:
        return sorted_values[0], sorted_values[-1]
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    return sorted_values[lo], sorted_values[hi]


def time_callable(
    fn: Callable[[], object],
    *,
    batch: int = 1,
    warmup: int = 10,
    min_runs: int = 30,
    max_runs: int = 3000,
    min_seconds: float = 0.5,
    max_seconds: float = 8.0,
    rel_ci: float = 0.02,
) -> Latency:
    """Time ``fn`` until the median's 95% CI is within ``rel_ci`` of it (or the budget ends).

    Example:
        >>> lat = time_callable(lambda: sum(range(1000)), min_runs=10, min_seconds=0.01)
        >>> lat.runs >= 10 and lat.median > 0
        True
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < max_runs:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if elapsed >= max_seconds:
            break
        if len(samples) >= min_runs and elapsed >= min_seconds and len(samples) % 10 == 0:
            s = sorted(samples)
            lo, hi = median_ci95(s)
            if (hi - lo) <= rel_ci * _quantile(s, 0.5):
                break
    return Latency.from_samples(samples, batch)


def interleaved(runners: Mapping[str, Callable[[], object]], *, rounds: int = 20, runs: int = 10,
                warmup: int = 5, batch: int = 1, min_block_ms: float = 0.0,
                cooldown_s: float = 0.01) -> dict[str, Latency]:
    """Latency of several callables timed in turns (``rounds`` blocks of at least ``runs`` calls
    each), so that a change in the machine's speed (other processes, clock, thermal state) hits
    all alike and their ratios hold even where each one's absolute time drifts. A block of a fast
    callable grows to last ``min_block_ms`` (estimated in the warm-up), so that sub-millisecond
    models are not timed from a handful of calls.

    Example:
        >>> lat = interleaved({"short": lambda: sum(range(100)), "long": lambda: sum(range(20000))},
        ...                   rounds=3, runs=5)
        >>> lat["short"].median < lat["long"].median, lat["long"].runs
        (True, 15)
    """
    rounds_ms = interleaved_rounds(runners, rounds=rounds, runs=runs, warmup=warmup, min_block_ms=min_block_ms,
                                   cooldown_s=cooldown_s)
    return {name: Latency.from_samples([x for block in blocks for x in block], batch)
            for name, blocks in rounds_ms.items()}


def interleaved_rounds(runners: Mapping[str, Callable[[], object]], *, rounds: int = 20, runs: int = 10,
                       warmup: int = 5, min_block_ms: float = 0.0,
                       cooldown_s: float = 0.01) -> dict[str, list[list[float]]]:
    """The samples of :func:`interleaved`, kept per round (name -> rounds -> call times in ms): the
    rounds pair the callables' timings, so a ratio can be taken round by round.

    Example:
        >>> r = interleaved_rounds({"a": lambda: None, "b": lambda: None}, rounds=4, runs=3)
        >>> len(r["a"]), len(r["a"][0])
        (4, 3)
    """
    per_block = {}
    for name, fn in runners.items():
        warm = []
        for _ in range(max(warmup, 1)):
            t0 = time.perf_counter()
            fn()
            warm.append((time.perf_counter() - t0) * 1e3)
        per_block[name] = max(runs, min(1000, math.ceil(min_block_ms / max(min(warm), 1e-3))))
    samples: dict[str, list[list[float]]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            block: list[float] = []
            samples[name].append(block)
            # A pause between blocks lets the previous runtime's worker threads stop spinning (ONNX
            # Runtime's spin after each call; OpenMP's after each parallel region): on a loaded 2-core
            # machine, torch eager right after ONNX Runtime ran hundreds of times slower than alone.
            time.sleep(cooldown_s)
            fn()  # the block's first call pays for that switch; not a sample
            for _ in range(per_block[name]):
                t0 = time.perf_counter()
                fn()
                block.append((time.perf_counter() - t0) * 1e3)
    return samples


def paired_ratio(numerator: list[list[float]], denominator: list[list[float]]) -> tuple[float, tuple[float, float]]:
    """The ratio of two callables' times from rounds timed in turns (e.g. baseline / candidate: a
    speed-up), with its 95% interval: the median of the per-round ratios of block medians, and the
    order-statistic interval of that median. Whatever the machine did in one round hit both alike.

    Example:
        >>> base = [[2.0, 2.1], [4.0, 4.2], [2.0, 2.0]]    # the machine slowed down in round 2
        >>> cand = [[1.0, 1.0], [2.0, 2.1], [1.0, 1.0]]
        >>> paired_ratio(base, cand)[0]
        2.0
    """
    ratios = sorted(statistics.median(n) / statistics.median(d) for n, d in zip(numerator, denominator, strict=True)
                    if n and d and statistics.median(d) > 0)
    if not ratios:
        raise ValueError("no paired rounds to take a ratio from")
    return statistics.median(ratios), median_ci95(ratios)
