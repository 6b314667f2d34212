"""Every speed-up is a paired ratio (timed in turns with the baseline), and the best is chosen by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import slimkit
from slimkit.measure.latency import paired_ratio


def test_a_bench_pairs_every_candidate_and_names_the_best_by_its_paired_ratio(tmp_path: Path, capsys) -> None:
    from slimkit.cli.main import main

    assert main(["bench", "--task", "digits-cnn", "--targets", "torch,onnxruntime", "--quick", "--threads", "1",
                 "--out", str(tmp_path / "b")]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["schema_version"] == 2
    [ort] = [c for c in report["candidates"] if c["target"] == "onnxruntime"]
    sp = ort["speedup"]
    assert sp["reference"] == "baseline" and sp["ci95"][0] <= sp["value"] <= sp["ci95"][1]
    assert sp["method"].startswith("paired") and sp["ms"] > 0 and sp["baseline_ms"] > 0
    if report["best"] is not None:  # chosen by the paired ratio: faster than the baseline in turns with it
        best = next(c for c in report["candidates"] if c["id"] == report["best"])
        assert best["speedup"]["value"] > 1.0
    said = capsys.readouterr().out
    assert f"{sp['value']:.2f}x" in said  # the terminal shows the paired figure
    assert f"{sp['value']:.2f}x ({sp['ci95'][0]:.2f}-{sp['ci95'][1]:.2f})" in (tmp_path / "b" / "report.md").read_text()


def test_the_best_is_never_one_the_paired_timing_found_slower(tmp_path: Path) -> None:
    """A candidate whose own timing led but that was no faster than its float reference in turns."""
    from slimkit.pipeline.paired import _choose_best
    from slimkit.report.schema import Report
    from tests.search.test_search import _entry

    report = Report("t", "test", {}, _entry("baseline", "torch", 10.0))
    report.candidates = [_entry("ref", "onnxruntime", 5.0), _entry("int8", "onnxruntime", 3.0, reference="ref")]
    report.constraints = {"metric_floor": 0.0}
    report.best = "int8"
    report.entry("ref").speedup = {"value": 2.1, "ci95": [2.0, 2.2]}
    report.entry("int8").speedup = {"value": 2.0, "ci95": [1.9, 2.1],
                                    "vs_float": {"value": 0.95, "ci95": [0.9, 1.0], "reference": "ref"}}
    _choose_best(report)
    assert report.best == "ref" and "best by its paired speed-up" in report.entry("ref").notes[0]


def test_paired_ratio_holds_when_the_machine_slows_down_in_some_rounds() -> None:
    base = [[10.0] * 5, [40.0] * 5, [10.0] * 5, [30.0] * 5, [10.0] * 5, [10.0] * 5]  # load in rounds 2 and 4
    cand = [[2.0] * 5, [8.0] * 5, [2.0] * 5, [6.0] * 5, [2.0] * 5, [2.0] * 5]
    value, (lo, hi) = paired_ratio(base, cand)
    assert value == lo == hi == 5.0  # unpaired medians would say 10/2 = 5 only by luck of the order
    with pytest.raises(ValueError):
        paired_ratio([], [])


def test_a_user_model_result_carries_paired_speedups(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()
    result = slimkit.benchmark(model, [torch.randn(8, 16) for _ in range(4)], targets=["onnxruntime"],
                               out=tmp_path / "u", quick=True, threads=1)
    assert all(c.speedup is not None for c in result.candidates)


def test_the_objective_decides_what_the_best_is_chosen_for(tmp_path: Path) -> None:
    """Asked for size, the int8 model is the answer even where it is no faster than float."""
    r = slimkit.quantize("digits-cnn", target="onnxruntime", scheme="int8-dynamic", out=tmp_path / "q",
                         quick=True, threads=1, objective="size")
    int8 = r.entry("onnxruntime-int8-dynamic")
    assert r.constraints["objective"] == "size"
    assert int8.measurement.size_bytes < r.entry("onnxruntime-fp32").measurement.size_bytes
    assert r.best == int8.id  # the smallest meeting the floor, whatever its speed
    with pytest.raises(slimkit.SlimkitError, match="unknown objective"):
        slimkit.quantize("digits-cnn", target="onnxruntime", out=tmp_path / "x", objective="beauty")
