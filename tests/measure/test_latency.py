from __future__ import annotations

import time

from slimkit.measure.flops import count_macs, count_params
from slimkit.measure.latency import Latency, median_ci95, time_callable


def test_ci_contains_median_and_orders():
    s = sorted([float(i % 7) for i in range(200)])
    lo, hi = median_ci95(s)
    lat = Latency.from_samples(s, 1)
    assert lo <= lat.median <= hi and lat.p90 >= lat.median


def test_time_callable_measures_sleep():
    lat = time_callable(lambda: time.sleep(0.002), min_runs=10, min_seconds=0.02, max_seconds=1.0, warmup=1)
    assert 1.5 < lat.median < 20
    assert lat.runs >= 10


def test_macs_of_conv():
    import torch

    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, {"input": torch.zeros(1, 3, 10, 10)}) == 8 * 3 * 9 * 100
    assert count_params(conv) == 8 * 3 * 9
